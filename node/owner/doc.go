// Package owner decides when a volunteer's machine may compute: the owner
// policy (Policy) and the sensors it reads (Sensors). docs/design.md §7: the
// node's owner comes first.
//
// # Policy
//
// BOINC's client and HTCondor's startd both keep an "owner policy": suspend
// work while the owner uses the machine (keyboard/mouse input, other
// processes' CPU load), on battery, outside configured hours, and resume
// once the owner has gone. HTCondor writes it as START/SUSPEND/CONTINUE
// expressions over machine attributes (KeyboardIdle, LoadAvg, …) with
// separate thresholds and delays for suspending and continuing; BOINC as
// preferences ("suspend when non-BOINC CPU usage is above N %", "while on
// batteries", "only after the computer has been idle for N minutes", daily
// time windows). This package takes the same rules and adds a temperature
// limit, which BOINC's users have long asked for.
//
// Policy is a pure state machine over (Readings, time): it never reads the
// clock or a sensor, so tests drive it with a fake clock. Hysteresis is
// what makes it bearable: a rule must hold for Config.PauseAfter (≈1 s)
// before the node pauses, and every rule must have been clear for
// Config.ResumeAfter (≈1 min) before it resumes. Without it a signal that
// wobbles around a threshold — owner CPU at 24–26 %, a laptop's charger
// flickering — would make the node stop and start every sample, each
// transition costing a checkpoint, a lease hand-off and, for a voter, a
// raft membership change. With it, after a resume the node needs
// PauseAfter to pause again and then ResumeAfter to resume, so there is
// at most one pause and one resume per calm-down period whatever the
// signal does. The owner does not wait for the policy: compute runs at
// idle priority, so the owner's programs win every contended cycle at once;
// the policy only decides when stepping aside entirely is better.
//
// Temperature throttles before it pauses: full speed at or below
// Config.TempSoft, a share falling linearly to 0 at Config.TempHard, and a
// pause (with the usual hysteresis) above TempHard. The throttle needs no
// delay before it slows compute down, only a small dead band
// (ThrottleDeadBand) and a shortest time between two changes
// (ThrottleHold), so that a sensor jumping a degree or two between readings
// does not retune the compute process, log and announce on every reading.
//
// A reading that is unknown (no battery, no thermal sensor, an OS that
// cannot tell idle time) never fires its rule: a missing sensor never
// blocks work. Config.Dedicated ignores the rules about the owner (CPU,
// input, battery) but keeps the schedule and the temperature limits.
//
// # Sensors
//
// On Linux the sensors read procfs and sysfs directly, under roots that
// tests replace with a fake tree (SensorConfig.ProcRoot, SysRoot):
//   - OwnerCPU: user+system+irq+softirq fraction of the whole machine from
//     /proc/stat deltas (the nice column and steal are left out: niced
//     background work yields anyway), minus the CPU of this process and of
//     un-niced SensorConfig.ExcludePIDs from /proc/<pid>/stat utime+stime
//     deltas (the niced compute child is in the nice column already).
//   - Battery and power: /sys/class/power_supply/*: type Battery (system
//     scope; peripherals' batteries are skipped) status and capacity, type
//     Mains/USB online.
//   - Temperature: the hottest /sys/class/thermal/thermal_zone*/temp, or
//     hwmon temp*_input where no thermal zone gives a temperature.
//   - Idle: logind's IdleHint needs D-Bus, so instead the counts of
//     /proc/interrupts lines for input devices (i8042, keyboard, mouse,
//     touchpad, HID, and the I2C touchpads, keyboards and touchscreens
//     bound to /sys/bus/i2c/drivers/{i2c_hid,i2c_hid_acpi,i2c_hid_of,
//     elan_i2c}, whose lines carry their device name): a count that
//     changed means input since the last read. This is a heuristic — USB keyboards share their controller's
//     interrupt with other devices, so they are not counted — and idle time
//     is unknown when no such line exists or until the first input is seen.
//
// On other systems gopsutil (pure Go, no cgo) gives CPU times and
// temperatures (read every 2 s: on Windows it asks WMI), and each OS its
// battery and idle time:
//   - macOS: `pmset -g batt` (AC or battery, charge) at most every 5 s and
//     `ioreg -c IOHIDSystem` (HIDIdleTime) at most every 2 s, run in the
//     background so a reading never waits for a program to start.
//   - Windows: GetSystemPowerStatus and GetLastInputInfo/GetTickCount. A
//     service in session 0 sees no user input, so idle is unknown there.
//   - Elsewhere battery and idle are unknown.
//
// This package imports no other Hydra package; the node wires it in.
package owner

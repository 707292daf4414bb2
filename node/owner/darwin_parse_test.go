package owner

import (
	"math"
	"strings"
	"testing"
	"time"
)

// boolStr shows a *bool for test messages.
func boolStr(b *bool) string {
	if b == nil {
		return "nil"
	}
	if *b {
		return "true"
	}
	return "false"
}

func TestParsePmsetBatt(t *testing.T) {
	for _, tc := range []struct {
		name      string
		out       string
		onBattery *bool
		pct       float64
	}{
		{"laptop on battery",
			"Now drawing from 'Battery Power'\n -InternalBattery-0 (id=4653155)\t85%; discharging; 5:12 remaining present: true\n",
			ptr(true), 85},
		{"laptop charging",
			"Now drawing from 'AC Power'\n -InternalBattery-0 (id=4653155)\t42%; charging; 1:10 until full present: true\n",
			ptr(false), 42},
		{"laptop full, no estimate",
			"Now drawing from 'AC Power'\n -InternalBattery-0 (id=3735651)\t100%; charged; 0:00 remaining present: true\n",
			ptr(false), 100},
		{"AC attached, not charging (optimised charging)",
			"Now drawing from 'AC Power'\n -InternalBattery-0 (id=1)\t80%; AC attached; not charging present: true\n",
			ptr(false), 80},
		{"discharging, no estimate yet",
			"Now drawing from 'Battery Power'\n -InternalBattery-0 (id=3735651)\t97%; discharging; (no estimate) present: true\n",
			ptr(true), 97},
		{"Mac mini: AC and no battery line", "Now drawing from 'AC Power'\n", ptr(false), -1},
		{"desktop on its UPS", "Now drawing from 'UPS Power'\n -UPS-CyberPower (id=1)\t90%; discharging; 0:20 remaining\n", ptr(true), -1},
		{"no source line: the battery's state decides",
			" -InternalBattery-0 (id=7)\t55%; discharging; 2:00 remaining present: true\n", ptr(true), 55},
		{"no source line, charging", " -InternalBattery-0 (id=7)\t55%; charging; 2:00 until full\n", ptr(false), 55},
		{"source line wins over the battery's state",
			"Now drawing from 'AC Power'\n -InternalBattery-0 (id=7)\t55%; discharging; 2:00 remaining\n", ptr(false), 55},
		{"spaces instead of a tab",
			"Now drawing from 'Battery Power'\n -InternalBattery-0 (id=7)  61%; discharging; 3:00 remaining\n", ptr(true), 61},
		{"CRLF line ends",
			"Now drawing from 'Battery Power'\r\n -InternalBattery-0 (id=7)\t30%; discharging; 1:00 remaining\r\n", ptr(true), 30},
		{"two batteries: the mean",
			"Now drawing from 'Battery Power'\n -InternalBattery-0 (id=1)\t80%; discharging;\n -InternalBattery-1 (id=2)\t40%; discharging;\n",
			ptr(true), 60},
		{"unknown source", "Now drawing from 'Solar Power'\n", nil, -1},
		{"empty", "", nil, -1},
		{"garbage", "pmset: command not found\n\x00\xff\xfe%;%;", nil, -1},
		{"percent out of range", "Now drawing from 'Battery Power'\n -InternalBattery-0 (id=1)\t250%; discharging;\n", ptr(true), -1},
		{"negative percent", " -InternalBattery-0 (id=1)\t-5%; discharging;\n", ptr(true), -1},
		{"NaN percent", " -InternalBattery-0 (id=1)\tNaN%; charging;\n", ptr(false), -1},
		{"huge percent", " -InternalBattery-0 (id=1)\t" + strings.Repeat("9", 400) + "%; charging;\n", ptr(false), -1},
		{"battery line without fields", " -InternalBattery-0 (id=1)\n", nil, -1},
		{"unterminated quote", "Now drawing from 'AC Power", ptr(false), -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			on, pct := parsePmsetBatt(tc.out)
			if boolStr(on) != boolStr(tc.onBattery) || pct != tc.pct {
				t.Errorf("parsePmsetBatt = %s, %v; want %s, %v", boolStr(on), pct, boolStr(tc.onBattery), tc.pct)
			}
		})
	}
}

// ioregHID is the IOHIDSystem part of `ioreg -c IOHIDSystem -d 4` output.
func ioregHID(idle string) string {
	return "+-o Root  <class IORegistryEntry, id 0x100000100, retain 29>\n" +
		"  +-o J316sAP  <class IOPlatformExpertDevice, id 0x100000238, registered, matched, active, busy 0 (1398 ms), retain 40>\n" +
		"    +-o IOResources  <class IOResources, id 0x100000104, registered, matched, active, busy 0 (0 ms), retain 131>\n" +
		"      +-o IOHIDSystem  <class IOHIDSystem, id 0x1000004c3, registered, matched, active, busy 0 (0 ms), retain 22>\n" +
		"          {\n" +
		"            \"HIDParameters\" = {\"HIDClickTime\"=500000000,\"HIDKeyRepeat\"=83333333}\n" +
		"            \"HIDIdleTime\" = " + idle + "\n" +
		"            \"IOClass\" = \"IOHIDSystem\"\n" +
		"          }\n"
}

func TestParseHIDIdle(t *testing.T) {
	for _, tc := range []struct {
		name string
		out  string
		want time.Duration
	}{
		{"typical", ioregHID("1419958123"), 1419958123},
		{"just now", ioregHID("0"), 0},
		{"a week", ioregHID("604800000000000"), 7 * 24 * time.Hour},
		{"largest Duration", ioregHID("9223372036854775807"), maxDuration},
		{"overflows int64", ioregHID("9223372036854775808"), -1},
		{"huge", ioregHID(strings.Repeat("9", 300)), -1},
		{"negative", ioregHID("-5"), -1},
		{"hex data (old releases)", ioregHID("<a0b1c2d3e4f50617>"), -1},
		{"no spaces", `"HIDIdleTime"=42`, 42},
		{"the first of two", `"HIDIdleTime" = 7` + "\n" + `"HIDIdleTime" = 9`, 7},
		{"key without a value, then a real one", `"HIDIdleTime" is described below` + "\n" + `"HIDIdleTime" = 11`, 11},
		{"no IOHIDSystem (ioreg found nothing)", "", -1},
		{"garbage", "\x00\xffHIDIdleTime = 5", -1},
		{"key at the very end", `"HIDIdleTime"`, -1},
		{"key and = at the very end", `"HIDIdleTime" =`, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseHIDIdle(tc.out); got != tc.want {
				t.Errorf("parseHIDIdle = %v, want %v", got, tc.want)
			}
		})
	}
}

func FuzzParsePmset(f *testing.F) {
	for _, s := range []string{
		"Now drawing from 'Battery Power'\n -InternalBattery-0 (id=4653155)\t85%; discharging; 5:12 remaining present: true\n",
		"Now drawing from 'AC Power'\n",
		"Now drawing from 'AC Power'\n -InternalBattery-0 (id=1)\t80%; AC attached; not charging present: true\n",
		" -InternalBattery-0 (id=7)  61%; discharging; 3:00 remaining\n",
		" -InternalBattery-0 (id=1)\t1e400%; charging;\n",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, out string) {
		on, pct := parsePmsetBatt(out)
		if math.IsNaN(pct) || (pct != -1 && (pct < 0 || pct > 100)) {
			t.Fatalf("pct %v is neither -1 nor in 0–100", pct)
		}
		if !strings.Contains(out, "InternalBattery") && pct != -1 {
			t.Fatalf("pct %v without a battery line", pct)
		}
		if on != nil && !strings.Contains(out, "Now drawing from '") && !strings.Contains(out, "InternalBattery") {
			t.Fatalf("onBattery %v from neither a source nor a battery line", *on)
		}
	})
}

func FuzzParseHIDIdle(f *testing.F) {
	for _, s := range []string{
		ioregHID("1419958123"), ioregHID("9223372036854775808"), ioregHID("<00>"),
		`"HIDIdleTime"=42`, `"HIDIdleTime" =`, "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, out string) {
		d := parseHIDIdle(out)
		if d < -1 {
			t.Fatalf("idle %v is below -1", d)
		}
		if d >= 0 && !strings.Contains(out, `"HIDIdleTime"`) {
			t.Fatalf("idle %v without a HIDIdleTime key", d)
		}
	})
}

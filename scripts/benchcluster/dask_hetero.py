# Heterogeneous efficiency of Dask distributed, for scripts/bench-cluster (phase dask-hetero),
# measured the way the hetero phase measures Hydra: one worker process per limit (1 thread,
# no nanny) held to L % of a core by a cgroup CPU quota of its own where /sys/fs/cgroup can be
# written (cgroup v2 cpu.max or v1 cpu.cfs_quota_us: exact over every 100 ms), else run under
# `cpulimit -l L` (loose: small limits overshoot by 15-35 %); one π job and one Mandelbrot job
# (the same view as Hydra's) sized for about JOB_SECONDS on a calibration, each split into
# COUNTS equal tasks (default 64,512); standalone rates measured for all workers at the same
# time (tasks pinned to each worker) in three rounds: before, between and after the jobs.
# Efficiency = units ÷ Σ each worker's median standalone rate ÷ wall time. Units: π samples,
# Mandelbrot iterations. Each job is held against the rates of its own tasks, because a numpy
# task's cost is not proportional to its units: a worker's standalone rate for the c-task job
# is measured on that job's tasks (π tasks of its size; a random sample of its Mandelbrot
# strips, in an order spread over the image, since their in-set pixels make some far dearer per
# iteration than others), two in flight,
# for STANDALONE_SECONDS ÷ len(COUNTS), then the tasks in flight finish and count.
#
# Run with /usr/bin/python3 (Debian python3-distributed, python3-numpy) as root for the cgroups, or
# with cpulimit on PATH:
#   dask_hetero.py LIMITS JOB_SECONDS STANDALONE_SECONDS CX CY SPAN MAX_ITER [COUNTS]
# e.g. dask_hetero.py 75,40,20,15 20 8 -0.743643887 0.131825904 0.02 2000 64,512
# Prints "RESULT pi|mandelbrot <best efficiency> ..." lines.
import os
import random
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
from distributed import Client, LocalCluster, as_completed, get_task_stream


DEBUG = os.environ.get("DASK_HETERO_DEBUG") == "1"


# The numpy kernels work in blocks whose arrays fit the caches and come from the heap: π in 2^16
# samples (2^20 ran at a fifth of the speed, its 8 MB arrays mapped and faulted in afresh,
# at a speed that varied with the allocator's state), Mandelbrot in rows of at most
# MANDEL_BLOCK pixels (a strip of 64 rows of a 4k-wide view in one piece: 0.8x the speed).
PI_BLOCK = 1 << 16
MANDEL_BLOCK = 1 << 14


def pi_task(n, seed):
    rng = np.random.default_rng(seed)
    hits = 0
    left = n
    while left > 0:
        k = min(left, PI_BLOCK)
        x = rng.random(k)
        y = rng.random(k)
        hits += int(np.count_nonzero(x * x + y * y <= 1.0))
        left -= k
    return n, hits


def pi_samples(n, seed):
    return pi_task(n, seed)[0]


def mandel_rows(w, h, cx, cy, span, max_iter, y0, y1):
    """Iterations of rows [y0, y1) of the view (Hydra's pixel centres; escape |z|² > 4), in
    blocks of rows of at most MANDEL_BLOCK pixels (at least one row)."""
    step = max(1, MANDEL_BLOCK // w)
    return sum(mandel_block(w, h, cx, cy, span, max_iter, y, min(y1, y + step)) for y in range(y0, y1, step))


def mandel_block(w, h, cx, cy, span, max_iter, y0, y1):
    """Iterations of rows [y0, y1) of the view, in one numpy loop."""
    s = span / w
    xs = cx + (np.arange(w) - w / 2 + 0.5) * s
    ys = cy - (np.arange(y0, y1) - h / 2 + 0.5) * s
    c = (xs[None, :] + 1j * ys[:, None]).ravel()
    z = np.zeros_like(c)
    cnt = np.zeros(c.size, dtype=np.int64)
    idx = np.arange(c.size)
    for i in range(max_iter):
        zr2 = z.real * z.real
        zi2 = z.imag * z.imag
        esc = zr2 + zi2 > 4.0
        if esc.any():
            cnt[idx[esc]] = i
            keep = ~esc
            z, c, idx = z[keep], c[keep], idx[keep]
            if idx.size == 0:
                break
        z = z * z + c
    cnt[idx] = max_iter
    return int(cnt.sum())


CGROUP_V1 = "/sys/fs/cgroup/cpu"  # the cgroup v1 cpu hierarchy
CGROUP_V2 = "/sys/fs/cgroup"  # the cgroup v2 root, with the cpu controller if enabled
PERIOD_US = 100000  # the quota's period: 100 ms


def quota_root():
    """Where each worker can get a CPU-time quota of its own (the kernel's CFS bandwidth control,
    which holds a process to exactly its limit over every period): the cgroup v2 root when its
    cpu controller is enabled, else the cgroup v1 cpu hierarchy; None when neither can be
    written (cpulimit then, whose SIGSTOP/SIGCONT duty cycle lets small limits overshoot by
    15–35 %). DASK_HETERO_LIMITER=cpulimit forces cpulimit."""
    if os.environ.get("DASK_HETERO_LIMITER") == "cpulimit":
        return None
    try:
        with open(os.path.join(CGROUP_V2, "cgroup.subtree_control")) as f:
            if "cpu" in f.read().split() and os.access(CGROUP_V2, os.W_OK):
                return CGROUP_V2
    except OSError:
        pass
    if os.access(os.path.join(CGROUP_V1, "cpu.cfs_quota_us"), os.W_OK):
        return CGROUP_V1
    return None


class Quotas:
    """A cgroup per worker with a CPU quota of its limit; removed by close()."""

    def __init__(self, root, limits):
        self.root, self.dirs = root, []
        for i, lim in enumerate(limits):
            d = os.path.join(root, "hydra-dask-%d-%d" % (os.getpid(), i))
            os.mkdir(d)
            self.dirs.append(d)
            if root == CGROUP_V2:
                self.write(d, "cpu.max", "%d %d" % (lim * PERIOD_US // 100, PERIOD_US))
            else:
                self.write(d, "cpu.cfs_period_us", str(PERIOD_US))
                self.write(d, "cpu.cfs_quota_us", str(lim * PERIOD_US // 100))

    @staticmethod
    def write(d, name, value):
        with open(os.path.join(d, name), "w") as f:
            f.write(value)

    def enter(self, i):
        """A preexec_fn: the new process joins worker i's group before it runs anything."""
        d = self.dirs[i]
        return lambda: self.write(d, "cgroup.procs", str(os.getpid()))

    def close(self):
        for d in self.dirs:
            try:
                os.rmdir(d)
            except OSError:
                pass


# glibc's malloc for the workers: with its default dynamic thresholds numpy's temporaries (the
# kernels' blocks) were mapped and faulted in afresh or trimmed and faulted in again, depending
# on the sizes the worker had allocated before, and a worker's speed per CPU-second swung by up
# to 8x with its history (a π task after a Mandelbrot one: 2.6e7 samples per CPU-second instead
# of 2.2e8), from round to round and job to job. Fixed thresholds keep the heap's pages mapped.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(256 << 20), "MALLOC_TRIM_THRESHOLD_": str(256 << 20)}


def start_workers(addr, limits, quotas):
    """One dask-worker per limit: in a cgroup with that CPU quota (quotas), or under cpulimit."""
    env = dict(os.environ, **MALLOC_ENV)
    procs = []
    for i, lim in enumerate(limits):
        cmd = ["/usr/bin/python3", "/usr/bin/dask-worker", addr,
               "--nthreads", "1", "--no-nanny", "--name", "w%d-%d" % (i + 1, lim), "--no-dashboard",
               "--memory-limit", "0"]
        pre = None
        if quotas is not None:
            pre = quotas.enter(i)
        else:
            cmd = ["cpulimit", "-q", "-f", "-l", str(lim), "--"] + cmd
        procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=pre, env=env))
    return procs


def parents():
    """(pid, parent pid) of every process in /proc."""
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        yield int(d), int(st[st.rindex(")") + 2:].split()[1])


def children(procs, quotas):
    """The pid of each worker, in the order of procs: the process itself in a cgroup, the child
    of its cpulimit otherwise."""
    if quotas is not None:
        return [p.pid for p in procs]
    out = {}
    pids = {p.pid: i for i, p in enumerate(procs)}
    for pid, ppid in parents():
        if ppid in pids:
            out[pids[ppid]] = pid
    return [out.get(i) for i in range(len(procs))]


TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids):
    """Each process's CPU seconds (user + system; 0 when gone)."""
    out = []
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                st = f.read()
            fs = st[st.rindex(")") + 2:].split()
            out.append((int(fs[11]) + int(fs[12])) / TICK)
        except (OSError, TypeError):
            out.append(0.0)
    return out


def machine_busy():
    """CPU seconds the whole machine has been busy (all CPUs; not idle, iowait or steal)."""
    with open("/proc/stat") as f:
        fs = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal ...
    return (fs[0] + fs[1] + fs[2] + fs[5] + fs[6]) / TICK


class Others:
    """The CPU used beside the workers over a window: by this process (the scheduler and the
    client) and by everything else on the machine, in cores; a worker under its quota gets its
    limit only while the rest leaves it room."""

    def __init__(self, wpids):
        self.wpids = wpids
        self.t, self.m, self.w = time.perf_counter(), machine_busy(), sum(cpu_seconds(wpids))
        self.own = time.process_time()

    def __str__(self):
        dt = time.perf_counter() - self.t
        own = time.process_time() - self.own
        rest = machine_busy() - self.m - (sum(cpu_seconds(self.wpids)) - self.w) - own
        return "scheduler and client %.2f cores, the rest of the machine %.2f cores" % (own / dt, max(0.0, rest) / dt)


def kill_all(procs):
    """SIGKILL each cpulimit and the worker it runs (its child), and reap them."""
    import signal
    pids = {p.pid for p in procs}
    for pid, ppid in parents():
        if ppid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    for p in procs:
        p.kill()
        p.wait()


def keep_two(client, addr, secs, make, pid=None):
    """Run tasks make() (a function and its arguments; None: no more) pinned to worker addr, two
    in flight (one computing, one queued, as a Hydra worker keeps one chunk in hand and one
    queued), until make() has no more or secs have passed, then let the tasks in flight finish
    (a running Dask task cannot be cancelled: left running, it would delay whatever the worker
    is given next); return all their units ÷ the time from the first submit to the last
    completion, the tasks done and the worker's CPU seconds ÷ that time (pid: the worker's
    process; 0 without it)."""

    def sub():
        t = make()
        if t is None:
            return None
        f, args = t
        return client.submit(f, *args, pure=False, workers=[addr], allow_other_workers=False)

    c0 = cpu_seconds([pid])[0] if pid else 0.0
    t0 = time.perf_counter()
    ac = as_completed([f for f in (sub(), sub()) if f is not None])
    units, n = 0, 0
    for fut in ac:
        units += fut.result()
        n += 1
        if secs is None or time.perf_counter() - t0 < secs:
            nxt = sub()
            if nxt is not None:
                ac.add(nxt)
    dt = time.perf_counter() - t0
    cpu = cpu_seconds([pid])[0] - c0 if pid else 0.0
    return units / dt, n, cpu / dt


def in_parallel(workers, one):
    """one(i, addr) for every worker at the same time; their results in worker order."""
    out = [None] * len(workers)

    def run(i, addr):
        out[i] = one(i, addr)

    ts = [threading.Thread(target=run, args=(i, a)) for i, a in enumerate(workers)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return out


def spread_order(n, u):
    """The numbers 0…n-1 in an order whose every prefix is spread evenly over them, from a
    random offset u in [0, 1): the van der Corput sequence shifted by u. A worker that gets
    through only a few of a job's strips samples the whole image, not a random clump of it
    (the strips' cost per iteration differs with the in-set pixels they hold)."""
    out, seen, i = [], set(), 0
    while len(out) < n and i < 4 * n:
        x, f, k = 0.0, 0.5, i
        while k:
            x, k, f = x + f * (k & 1), k >> 1, f / 2
        j = int(((u + x) % 1.0) * n)
        if j not in seen:
            seen.add(j)
            out.append(j)
        i += 1
    return out + [j for j in range(n) if j not in seen]


def median(xs):
    s = sorted(xs)
    k = len(s)
    return s[k // 2] if k % 2 else (s[k // 2 - 1] + s[k // 2]) / 2


def job_usage(stream, addrs, t0, wall, cpu, limits):
    """Per worker, from a job's task stream (each task's compute start and stop, wall clock):
    the share of the job's wall time it computed, the seconds it was idle after its last task,
    and its CPU ÷ its limit over the job and while computing (what a CPU quota should keep at
    1.00)."""
    busy = {a: 0.0 for a in addrs}
    last = {a: 0.0 for a in addrs}
    for t in stream:
        for ss in t.get("startstops", ()):
            if ss.get("action") == "compute" and t.get("worker") in busy:
                busy[t["worker"]] += ss["stop"] - ss["start"]
                last[t["worker"]] = max(last[t["worker"]], ss["stop"] - t0)
    out = []
    for i, a in enumerate(addrs):
        lim = limits[i] / 100
        out.append("w%d %d%%: computing %.2f, idle at the end %.2f s, CPU ÷ limit %.2f (while computing %.2f)" %
                   (i + 1, limits[i], busy[a] / wall, max(0.0, wall - last[a]), cpu[i] / wall / lim,
                    cpu[i] / busy[a] / lim if busy[a] else 0))
    return "; ".join(out)


def main():
    limits = [int(x) for x in sys.argv[1].split(",")]
    job_secs = float(sys.argv[2])
    solo_secs = float(sys.argv[3])
    cx, cy, span, max_iter = float(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6]), int(sys.argv[7])
    counts = [int(x) for x in (sys.argv[8] if len(sys.argv) > 8 else "64,512").split(",")]
    # iterations per pixel of the view, from a 320×180 estimate (as the hetero phase sizes
    # Hydra's images): an image of I iterations has about I ÷ ipp pixels
    ipp = mandel_rows(320, 180, cx, cy, span, max_iter, 0, 180) / (320 * 180)

    def view(iters):
        w = max(16, int((iters / ipp * 16 / 9) ** 0.5))
        return w, max(9, w * 9 // 16)

    root = quota_root()
    if root is None and shutil.which("cpulimit") is None:
        sys.exit("dask-hetero: no way to limit the workers: no writable cgroup cpu controller "
                 "and no cpulimit on PATH (apt-get install cpulimit)")
    with LocalCluster(n_workers=0, processes=True, dashboard_address=None, host="127.0.0.1") as cluster, \
            Client(cluster) as client:
        quotas = Quotas(root, limits) if root else None
        procs = []
        try:
            procs = start_workers(cluster.scheduler_address, limits, quotas)
            client.wait_for_workers(len(limits), timeout=120)
            info = client.scheduler_info()["workers"]
            workers = sorted(info, key=lambda a: info[a]["name"])
            how = "a cgroup CPU quota each (%s, %d ms period)" % (root, PERIOD_US // 1000) if quotas else "cpulimit"
            print("dask: %d workers under %s %s" % (len(workers), how, limits), flush=True)
            print("LIMITER %s" % ("cgroup" if quotas else "cpulimit"), flush=True)
            print("dask: workers' malloc %s" % " ".join("%s=%s" % kv for kv in sorted(MALLOC_ENV.items())), flush=True)
            wpids = children(procs, quotas)

            def cpu_use(c0, t0):
                """Each worker's CPU since c0 (at t0) ÷ what its limit allows, for the output."""
                dt = time.perf_counter() - t0
                return ", ".join("%.2f" % ((b - a) / dt / (lim / 100)) for a, b, lim in zip(c0, cpu_seconds(wpids), limits))

            # A first guess of each worker's rates, to size the jobs: π on 2^25 samples,
            # Mandelbrot on a 320×180 view (each after a first task that pays for the start-up).
            def calibrate(i, addr):
                r = []
                for f, warm, args in ((pi_samples, (1 << 22, 1), (1 << 25, 2)),
                                      (mandel_rows, None, (320, 180, cx, cy, span, max_iter, 0, 180))):
                    for a in (warm or args, args):
                        t = time.perf_counter()
                        u = client.submit(f, *a, pure=False, workers=[addr], allow_other_workers=False).result()
                        rate = u / (time.perf_counter() - t)
                    r.append(rate)
                return r
            cal = in_parallel(workers, calibrate)
            # Both jobs are fixed before the first round, so that every round measures the tasks
            # of the jobs themselves: π in tasks of total ÷ c samples, Mandelbrot in the strips
            # of its view.
            total = int(sum(r[0] for r in cal) * job_secs)
            mw, mh = view(sum(r[1] for r in cal) * job_secs)
            strips = {c: [mh * j // min(c, mh) for j in range(min(c, mh) + 1)] for c in counts}
            print("dask: jobs sized for %g s on the calibration: π %d samples (Σ %.4g samples/s), Mandelbrot %dx%d (Σ %.4g iterations/s)" %
                  (job_secs, total, sum(r[0] for r in cal), mw, mh, sum(r[1] for r in cal)), flush=True)
            by = {"pi": {c: [] for c in counts}, "mandelbrot": {c: [] for c in counts}}  # per count: rounds of rates

            def one_round(label):
                """Each worker's standalone rates, all at the same time, for each job task count
                c (solo_secs ÷ len(counts) each, then the tasks in flight finish): π in tasks of
                the c-task job's size; Mandelbrot on the strips of the c-task job itself (its
                width, its strip height), in an order spread over the image from a random offset of
                the worker's own (a new one each round). Units ÷ time. Each job is held against the rates of its own tasks: a
                numpy task's cost is not proportional to its units (π: a short task pays for its
                fresh arrays' page faults, 20–40 ms of CPU; Mandelbrot: numpy's loop runs to
                max_iter over the in-set pixels a strip holds, fast when few remain, so only a
                sample of the job's own strips has the job's mix)."""
                rnd = len(by["pi"][counts[0]])
                budget = solo_secs / len(counts)
                # The workers go through the phases (π, then Mandelbrot, each task count in turn)
                # together: a phase starts for all at once, and a worker done measuring it goes
                # on with the same tasks, uncounted, until every worker is done, so that each
                # rate is measured beside the same work on the other workers, as in the job (π's
                # big arrays beside a Mandelbrot strip slow it down: they share the caches).
                phases = [(kind, c) for kind in ("pi", "mandelbrot") for c in counts]
                start = threading.Barrier(len(workers))
                left = {ph: [len(workers), threading.Event()] for ph in phases}
                lock = threading.Lock()

                def one(i, addr):
                    lim = limits[i] / 100
                    rates, how = {"pi": {}, "mandelbrot": {}}, []
                    for kind, c in phases:
                        if kind == "pi":
                            seed = [1000000 * (rnd + 1) + 10000 * (i + 1) + 10 * c]

                            def make(c=c, seed=seed):
                                seed[0] += 1
                                return pi_samples, (total // c, seed[0])
                        else:
                            b = strips[c]
                            rng = random.Random(100000 * (rnd + 1) + 1000 * (i + 1) + c)
                            order = []

                            def make(b=b, rng=rng, order=order):
                                if not order:  # a new order when the last is used up
                                    order.extend(reversed(spread_order(len(b) - 1, rng.random())))
                                j = order.pop()
                                return mandel_rows, (mw, mh, cx, cy, span, max_iter, b[j], b[j + 1])
                        start.wait()
                        t = time.perf_counter()
                        rates[kind][c], n, u = keep_two(client, addr, budget, make, wpids[i])
                        how.append("%s %d-task job's %s: %d in %.1f s, CPU ÷ limit %.2f" %
                                   ("π" if kind == "pi" else "Mandelbrot", c, "tasks" if kind == "pi" else "strips",
                                    n, time.perf_counter() - t, u / lim))
                        with lock:
                            left[(kind, c)][0] -= 1
                            if left[(kind, c)][0] == 0:
                                left[(kind, c)][1].set()
                        while not left[(kind, c)][1].is_set():
                            f, args = make()
                            client.submit(f, *args, pure=False, workers=[addr], allow_other_workers=False).result()
                    return rates, "; ".join(how)
                c0, t0, oth = cpu_seconds(wpids), time.perf_counter(), Others(wpids)
                res = in_parallel(workers, one)
                use = "%s; %s" % (cpu_use(c0, t0), oth)
                for kind in by:
                    for c in counts:
                        by[kind][c].append([r[0][kind][c] for r in res])
                print("dask: standalone round %d (%s, %.1f s): Σ π %s samples/s, Σ Mandelbrot %s iterations/s; CPU ÷ limit over the round %s" %
                      (rnd + 1, label, time.perf_counter() - t0,
                       ", ".join("%.4g (%d-task job)" % (sum(by["pi"][c][-1]), c) for c in counts),
                       ", ".join("%.4g (%d-task job)" % (sum(by["mandelbrot"][c][-1]), c) for c in counts), use), flush=True)
                for i, (rates, how) in enumerate(res):
                    print("dask:   worker %d (%d%%): π %s samples/s, Mandelbrot %s iterations/s (%s)" %
                          (i + 1, limits[i], ", ".join("%.4g" % rates["pi"][c] for c in counts),
                           ", ".join("%.4g" % rates["mandelbrot"][c] for c in counts), how), flush=True)

            def run_job(kind, k, futs_of):
                """Run one job (futs_of() submits its tasks), print its time and per-worker use."""
                c0, t, oth = cpu_seconds(wpids), time.perf_counter(), Others(wpids)
                with get_task_stream(client) as ts:
                    tw = time.time()
                    units = sum(client.gather(futs_of()))
                    wall = time.perf_counter() - t
                cpu = [b - a for a, b in zip(c0, cpu_seconds(wpids))]
                print("dask: %s %d tasks: %.2f s; %s; %s" % (kind, k, wall, job_usage(ts.data, workers, tw, wall, cpu, limits), oth), flush=True)
                return units, wall

            one_round("before the π jobs")
            runs = {"pi": [], "mandelbrot": []}
            for c in counts:
                n = total // c
                units, wall = run_job("π", c, lambda: client.map(pi_samples, [n] * c, range(1000 + 100 * c, 1000 + 100 * c + c), pure=False))
                runs["pi"].append((c, units, wall))
            one_round("between the π and Mandelbrot jobs")
            for c in counts:
                b = strips[c]
                k = len(b) - 1
                units, wall = run_job("Mandelbrot", k, lambda: client.map(
                    mandel_rows, [mw] * k, [mh] * k, [cx] * k, [cy] * k, [span] * k, [max_iter] * k, b[:-1], b[1:], pure=False))
                runs["mandelbrot"].append((c, units, wall))
            one_round("after the Mandelbrot jobs")
            for kind in ("pi", "mandelbrot"):
                effs = []
                for c, units, wall in runs[kind]:
                    rounds = by[kind][c]  # the baseline of the job's own tasks
                    rate = sum(median([r[i] for r in rounds]) for i in range(len(workers)))
                    lo = min(units / sum(r) / wall for r in rounds)
                    hi = max(units / sum(r) / wall for r in rounds)
                    sums = [sum(r) / rate for r in rounds]
                    effs.append((units / rate / wall, c, wall, units / rate, lo, hi, sums))
                best = max(effs)
                detail = ", ".join("%d tasks %.3f [%.3f–%.3f] (%.2f s vs ideal %.2f s; rounds' Σ ÷ Σ of the medians %s)" %
                                   (k, e, lo, hi, wall, ideal, " ".join("%.3f" % x for x in sums))
                                   for e, k, wall, ideal, lo, hi, sums in effs)
                extra = " (%dx%d max_iter %d)" % (mw, mh, max_iter) if kind == "mandelbrot" else ""
                sums = best[6]
                print("RESULT %s %.3f best of: %s%s; standalone spread (each round's Σ ÷ Σ of the medians) %s (±%.1f %%)" %
                      (kind, best[0], detail, extra, ", ".join("%.3f" % x for x in sums),
                       100 * max(abs(x - 1) for x in sums)), flush=True)
        finally:
            kill_all(procs)
            if quotas is not None:
                quotas.close()


if __name__ == "__main__":
    main()

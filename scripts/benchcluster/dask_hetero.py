# Heterogeneous efficiency of Dask distributed, for scripts/bench-cluster (phase dask-hetero),
# measured the way the hetero phase measures Hydra: one worker process per limit (1 thread,
# no nanny) held to L % of a core by a cgroup CPU quota of its own where /sys/fs/cgroup can be
# written (cgroup v2 cpu.max or v1 cpu.cfs_quota_us: exact over every 100 ms), else run under
# `cpulimit -l L` (loose: small limits overshoot by 15-35 %), standalone rates measured for all workers at the same
# time (tasks pinned to each worker) in three rounds: before, between and after the cluster
# jobs; one π job and one Mandelbrot job (the same view as Hydra's) sized for about
# JOB_SECONDS on the sum of the first round's rates, each split into COUNTS equal tasks
# (default 64,512). Efficiency = units ÷ Σ each worker's median standalone rate ÷ wall time.
# Units: π samples, Mandelbrot iterations. A worker's Mandelbrot rate is measured on the whole
# view (sized for STANDALONE_SECONDS ÷ len(COUNTS) at its rate) once per job task count c, in
# tasks of the pixels of one c-th of the job, so the rows sampled are the job's mix and each task
# costs what a task of that job costs (numpy's speed per iteration depends on the pixels of a
# task: a whole 960x540 image in one task runs 0.7x as fast as 77,000-pixel blocks, whose arrays
# fit the caches); each Mandelbrot job is held against the rates of its own task size.
#
# Run with /usr/bin/python3 (Debian python3-distributed, python3-numpy) as root for the cgroups, or
# with cpulimit on PATH:
#   dask_hetero.py LIMITS JOB_SECONDS STANDALONE_SECONDS CX CY SPAN MAX_ITER [COUNTS]
# e.g. dask_hetero.py 75,40,20,15 20 8 -0.743643887 0.131825904 0.02 2000 64,512
# Prints "RESULT pi|mandelbrot <best efficiency> ..." lines.
import os
import subprocess
import sys
import threading
import time

import numpy as np
from distributed import Client, LocalCluster, as_completed


DEBUG = os.environ.get("DASK_HETERO_DEBUG") == "1"


def pi_task(n, seed):
    rng = np.random.default_rng(seed)
    hits = 0
    left = n
    while left > 0:
        k = min(left, 1 << 20)
        x = rng.random(k)
        y = rng.random(k)
        hits += int(np.count_nonzero(x * x + y * y <= 1.0))
        left -= k
    return n, hits


def pi_samples(n, seed):
    return pi_task(n, seed)[0]


def mandel_rows(w, h, cx, cy, span, max_iter, y0, y1):
    """Iterations of rows [y0, y1) of the view (Hydra's pixel centres; escape |z|² > 4)."""
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


def start_workers(addr, limits, quotas):
    """One dask-worker per limit: in a cgroup with that CPU quota (quotas), or under cpulimit."""
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
        procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=pre))
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


def keep_two(client, addr, secs, make):
    """Run tasks make() (a function and its arguments; None: no more) pinned to worker addr, two
    in flight (one computing, one queued, as a Hydra worker keeps one chunk in hand and one
    queued), until make() has no more or secs have passed; return the units done ÷ the time."""
    subs = []

    def sub():
        t = make()
        if t is None:
            return None
        f, args = t
        fut = client.submit(f, *args, pure=False, workers=[addr], allow_other_workers=False)
        subs.append(fut)
        return fut

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
        else:
            break
    rate = units / (time.perf_counter() - t0)
    for fut in subs:
        if not fut.done():
            fut.cancel()
    return rate, n


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


def median(xs):
    s = sorted(xs)
    k = len(s)
    return s[k // 2] if k % 2 else (s[k // 2 - 1] + s[k // 2]) / 2


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

    with LocalCluster(n_workers=0, processes=True, dashboard_address=None, host="127.0.0.1") as cluster, \
            Client(cluster) as client:
        root = quota_root()
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
            wpids = children(procs, quotas)

            def cpu_use(c0, t0):
                """Each worker's CPU since c0 (at t0) ÷ what its limit allows, for the output."""
                dt = time.perf_counter() - t0
                return ", ".join("%.2f" % ((b - a) / dt / (lim / 100)) for a, b, lim in zip(c0, cpu_seconds(wpids), limits))

            # A first guess of each worker's rates (two short tasks each), to size the first round.
            def calibrate(i, addr):
                r = []
                for f, args in ((pi_samples, (1 << 22, 1)), (mandel_rows, (320, 180, cx, cy, span, max_iter, 0, 180))):
                    for _ in range(2):  # the first pays for the start-up
                        t = time.perf_counter()
                        u = client.submit(f, *args, pure=False, workers=[addr], allow_other_workers=False).result()
                        rate = u / (time.perf_counter() - t)
                    r.append(rate)
                return r
            cal = in_parallel(workers, calibrate)
            pi_rounds, m_rounds = [], []  # per round, each worker's rate (Mandelbrot: 64-task size)
            m_by = {c: [] for c in counts}  # Mandelbrot, per job task count: rounds of rates
            job = {}  # the jobs' sizes, fixed after the first round

            def one_round(label):
                """Each worker's standalone rates, all at the same time: π in tasks of the
                64-task job's size for solo_secs; Mandelbrot, for each job task count c, on the
                whole view at a resolution sized for about solo_secs ÷ len(counts) at the
                worker's rate, in tasks of the pixels of one c-th of the cluster job: numpy's
                speed per iteration depends on the pixels of a task (arrays that fit the caches
                are faster), so each job is held against a baseline of its own task size."""
                gp = [median([r[i] for r in pi_rounds]) if pi_rounds else cal[i][0] for i in range(len(workers))]
                gm = [median([r[i] for r in m_rounds]) if m_rounds else cal[i][1] for i in range(len(workers))]
                pi_task_n = job.get("pi_task", int(sum(gp) * job_secs / 64))
                jw, jh = job.get("view", view(sum(gm) * job_secs))

                def one(i, addr):
                    seed = [1000 * (i + 1) + 100 * len(pi_rounds)]

                    def pi_next():
                        seed[0] += 1
                        return pi_samples, (pi_task_n, seed[0])
                    rp, kp = keep_two(client, addr, solo_secs, pi_next)
                    rm, km, how = {}, 0, []
                    for c in counts:
                        w, h = view(gm[i] * solo_secs / len(counts))
                        k = max(1, int(jw * jh / c / w + 0.5))
                        row = [0]

                        def m_next():
                            y0 = row[0]
                            if y0 >= h:
                                return None
                            row[0] = min(h, y0 + k)
                            return mandel_rows, (w, h, cx, cy, span, max_iter, y0, row[0])
                        t = time.perf_counter()
                        rm[c], n = keep_two(client, addr, None, m_next)
                        km += n
                        how.append("%dx%d in %.1f s, tasks of a %dth" % (w, h, time.perf_counter() - t, c))
                    return rp, kp, rm, km, "; ".join(how)
                c0, t0 = cpu_seconds(wpids), time.perf_counter()
                res = in_parallel(workers, one)
                use = cpu_use(c0, t0)
                pi_rounds.append([r[0] for r in res])
                m_rounds.append([r[2][counts[0]] for r in res])
                for c in counts:
                    m_by[c].append([r[2][c] for r in res])
                print("dask: standalone round %d (%s): Σ π %.4g samples/s, Σ Mandelbrot %.4g iterations/s; CPU ÷ limit %s" %
                      (len(pi_rounds), label, sum(pi_rounds[-1]), sum(m_rounds[-1]), use), flush=True)
                for i, r in enumerate(res):
                    print("dask:   worker %d (%d%%): π %.4g samples/s (%d tasks); Mandelbrot %s iterations/s (%d tasks, %s)" %
                          (i + 1, limits[i], r[0], r[1], ", ".join("%.4g" % r[2][c] for c in counts), r[3], r[4]), flush=True)

            one_round("before the π jobs")
            p1 = pi_rounds[0]
            m1 = m_rounds[0]
            total = int(sum(p1) * job_secs)
            job["pi_task"] = total // 64
            mw, mh = view(sum(m1) * job_secs)
            job["view"] = (mw, mh)
            runs = {"pi": [], "mandelbrot": []}
            for k in counts:
                n = total // k
                t, c0 = time.perf_counter(), cpu_seconds(wpids)
                client.gather(client.map(pi_task, [n] * k, range(1000 + 100 * k, 1000 + 100 * k + k), pure=False))
                runs["pi"].append((k, n * k, time.perf_counter() - t))
                print("dask: π %d tasks: %.2f s; CPU ÷ limit %s" % (k, runs["pi"][-1][2], cpu_use(c0, t)), flush=True)
            one_round("between the π and Mandelbrot jobs")
            for k in counts:
                k = min(k, mh)
                bounds = [mh * i // k for i in range(k + 1)]
                t, c0 = time.perf_counter(), cpu_seconds(wpids)
                res = client.gather(client.map(mandel_rows, [mw] * k, [mh] * k, [cx] * k, [cy] * k, [span] * k,
                                               [max_iter] * k, bounds[:-1], bounds[1:], pure=False))
                runs["mandelbrot"].append((k, sum(res), time.perf_counter() - t))
                print("dask: Mandelbrot %d tasks: %.2f s; CPU ÷ limit %s" % (k, runs["mandelbrot"][-1][2], cpu_use(c0, t)), flush=True)
            one_round("after the Mandelbrot jobs")
            for kind, rounds in (("pi", pi_rounds), ("mandelbrot", m_rounds)):
                med = [median([r[i] for r in rounds]) for i in range(len(workers))]
                rate = sum(med)
                sums = [sum(r) / rate for r in rounds]
                effs = []
                for k, units, wall in runs[kind]:
                    if kind == "mandelbrot":  # the baseline of the job's own task size
                        rounds = m_by[counts[[min(c, mh) for c in counts].index(k)]]
                        rate = sum(median([r[i] for r in rounds]) for i in range(len(workers)))
                    lo = min(units / sum(r) / wall for r in rounds)
                    hi = max(units / sum(r) / wall for r in rounds)
                    effs.append((units / rate / wall, k, wall, units / rate, lo, hi))
                best = max(effs)
                detail = ", ".join("%d tasks %.3f [%.3f–%.3f] (%.2f s vs ideal %.2f s)" % (k, e, lo, hi, wall, ideal)
                                   for e, k, wall, ideal, lo, hi in effs)
                extra = " (%dx%d max_iter %d)" % (mw, mh, max_iter) if kind == "mandelbrot" else ""
                print("RESULT %s %.3f best of: %s%s; standalone spread (each round's Σ ÷ Σ of the medians) %s (±%.1f %%)" %
                      (kind, best[0], detail, extra, ", ".join("%.3f" % x for x in sums),
                       100 * max(abs(x - 1) for x in sums)), flush=True)
        finally:
            kill_all(procs)
            if quotas is not None:
                quotas.close()


if __name__ == "__main__":
    main()

# Heterogeneous efficiency of Dask distributed, for scripts/bench-cluster (phase dask-hetero),
# measured the way the hetero phase measures Hydra: one worker process per limit (1 thread,
# no nanny) run under `cpulimit -l L`, standalone rates measured for all workers at the same
# time (tasks pinned to each worker, one after the other), before and after the cluster jobs;
# then one π job and one Mandelbrot job (the same view as Hydra's) sized for about
# JOB_SECONDS on the sum of the rates, split into 4, 64 and 512 equal tasks. Efficiency =
# units ÷ Σ mean standalone rate ÷ wall time. Units: π samples, Mandelbrot iterations.
#
# Run with /usr/bin/python3 (Debian python3-distributed, python3-numpy) and cpulimit on PATH:
#   dask_hetero.py LIMITS JOB_SECONDS STANDALONE_SECONDS CX CY SPAN MAX_ITER
# e.g. dask_hetero.py 75,40,20,15 20 12 -0.743643887 0.131825904 0.02 2000
# Prints "RESULT pi|mandelbrot <best efficiency> ..." lines.
import subprocess
import sys
import threading
import time

import os

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


def start_workers(addr, limits):
    procs = []
    for i, lim in enumerate(limits):
        cmd = ["cpulimit", "-q", "-f", "-l", str(lim), "--", "/usr/bin/python3", "/usr/bin/dask-worker", addr,
               "--nthreads", "1", "--no-nanny", "--name", "w%d-%d" % (i + 1, lim), "--no-dashboard",
               "--memory-limit", "0"]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return procs


def kill_all(procs):
    """SIGKILL each cpulimit and the worker it runs (its child), and reap them."""
    import os
    import signal
    pids = {p.pid for p in procs}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        if int(st[st.rindex(")") + 2:].split()[1]) in pids:
            try:
                os.kill(int(d), signal.SIGKILL)
            except OSError:
                pass
    for p in procs:
        p.kill()
        p.wait()


def standalone(client, workers, secs, unit_task):
    """Each worker's rate, all measured at the same time: tasks of about 1 s pinned to it."""
    rates = [0.0] * len(workers)

    def one(i, addr):
        # calibrate the task size with a small task, then keep two tasks in flight for secs
        # (one computing, one queued, as a Hydra worker keeps one chunk in hand and one queued)
        f, args = unit_task(None)
        t = time.perf_counter()
        done = client.submit(f, *args, pure=False, workers=[addr], allow_other_workers=False).result()
        r = done / (time.perf_counter() - t)
        f, args = unit_task(r)  # a second, bigger one: the first pays for the start-up
        t = time.perf_counter()
        done = client.submit(f, *args, pure=False, workers=[addr], allow_other_workers=False).result()
        r = done / (time.perf_counter() - t)

        subs = []

        def sub():
            f, args = unit_task(r)
            fut = client.submit(f, *args, pure=False, workers=[addr], allow_other_workers=False)
            subs.append(fut)
            return fut

        ac = as_completed([sub(), sub()])
        units, t0, n = 0, time.perf_counter(), 0
        for fut in ac:
            units += fut.result()
            n += 1
            if time.perf_counter() - t0 < secs:
                ac.add(sub())
            else:
                break
        rates[i] = units / (time.perf_counter() - t0)
        if DEBUG:
            print("  worker %d: calibration %.4g/s, %d tasks, %.4g units/s" % (i, r, n, rates[i]), flush=True)
        for fut in subs:
            if not fut.done():
                fut.cancel()

    ts = [threading.Thread(target=one, args=(i, a)) for i, a in enumerate(workers)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return rates


def main():
    limits = [int(x) for x in sys.argv[1].split(",")]
    job_secs = float(sys.argv[2])
    solo_secs = float(sys.argv[3])
    cx, cy, span, max_iter = float(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6]), int(sys.argv[7])
    counts = [4, 64, 512]
    with LocalCluster(n_workers=0, processes=True, dashboard_address=None, host="127.0.0.1") as cluster, \
            Client(cluster) as client:
        procs = start_workers(cluster.scheduler_address, limits)
        try:
            client.wait_for_workers(len(limits), timeout=120)
            info = client.scheduler_info()["workers"]
            workers = sorted(info, key=lambda a: info[a]["name"])
            print("dask: %d workers under cpulimit %s" % (len(workers), limits), flush=True)

            # π
            seed = [0]

            def pi_unit(rate):
                seed[0] += 1
                n = 1 << 20 if rate is None else max(1 << 20, int(rate))
                return pi_samples, (n, seed[0])

            def measure_pi():
                return standalone(client, workers, solo_secs, pi_unit)

            # Mandelbrot: the view sized for about job_secs on the measured rates
            mrow = [0]
            mh = [360]
            mw = [640]

            def mandel_unit(rate):
                # rows of the standalone image, cycling; about rate × 1 s of iterations
                w, h = mw[0], mh[0]
                k = 1 if rate is None else max(1, int(rate / (w * max_iter * 0.3) + 0.5))
                y0 = mrow[0] % h
                y1 = min(h, y0 + k)
                mrow[0] = y1 % h
                return mandel_rows, (w, h, cx, cy, span, max_iter, y0, y1)

            def measure_m():
                return standalone(client, workers, solo_secs, mandel_unit)

            pa = measure_pi()
            ma = measure_m()
            print("dask: standalone before: π %s samples/s, Mandelbrot %s iterations/s" %
                  (["%.4g" % r for r in pa], ["%.4g" % r for r in ma]), flush=True)
            runs = {"pi": [], "mandelbrot": []}
            total = int(sum(pa) * job_secs)
            for k in counts:
                n = total // k
                t = time.perf_counter()
                client.gather(client.map(pi_task, [n] * k, range(1000 + 100 * k, 1000 + 100 * k + k), pure=False))
                runs["pi"].append((k, n * k, time.perf_counter() - t))
            # the Mandelbrot view for the cluster job: scale a 160×90 estimate
            est = mandel_rows(160, 90, cx, cy, span, max_iter, 0, 90)
            scale = (sum(ma) * job_secs / est) ** 0.5
            W, H = max(16, int(160 * scale)), max(9, int(90 * scale))
            iters = None
            for k in counts:
                k = min(k, H)
                bounds = [H * i // k for i in range(k + 1)]
                t = time.perf_counter()
                res = client.gather(client.map(mandel_rows, [W] * k, [H] * k, [cx] * k, [cy] * k, [span] * k,
                                               [max_iter] * k, bounds[:-1], bounds[1:], pure=False))
                runs["mandelbrot"].append((k, sum(res), time.perf_counter() - t))
                iters = sum(res)
            pb = measure_pi()
            mb = measure_m()
            print("dask: standalone after: π %s samples/s, Mandelbrot %s iterations/s" %
                  (["%.4g" % r for r in pb], ["%.4g" % r for r in mb]), flush=True)
            for kind, a, b in (("pi", pa, pb), ("mandelbrot", ma, mb)):
                rate = sum((x + y) / 2 for x, y in zip(a, b))
                effs = []
                for k, units, wall in runs[kind]:
                    effs.append((units / rate / wall, k, wall, units / rate))
                best = max(effs)
                detail = ", ".join("%d tasks %.3f (%.2f s vs ideal %.2f s)" % (k, e, wall, ideal)
                                   for e, k, wall, ideal in effs)
                extra = " (%dx%d max_iter %d)" % (W, H, max_iter) if kind == "mandelbrot" else ""
                print("RESULT %s %.3f best of: %s%s" % (kind, best[0], detail, extra), flush=True)
        finally:
            kill_all(procs)


if __name__ == "__main__":
    main()

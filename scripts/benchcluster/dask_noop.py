# No-op tasks per second of Dask distributed on a LocalCluster of 2 worker
# processes (1 thread each), for scripts/bench-cluster. Run with
# /usr/bin/python3 (Debian python3-distributed). Prints "RESULT <tasks/s> ...".
import sys
import time

from distributed import Client, LocalCluster


def noop(i):
    return i


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None, host="127.0.0.1") as cluster, Client(cluster) as client:
        client.gather(client.map(noop, range(200), pure=False))  # warm up
        t = time.perf_counter()
        futs = client.map(noop, range(n), pure=False)
        client.gather(futs)
        dt = time.perf_counter() - t
    print("RESULT %.0f tasks/s (%d no-op tasks in %.2f s, LocalCluster 2 processes x 1 thread)" % (n / dt, n, dt))


if __name__ == "__main__":
    main()

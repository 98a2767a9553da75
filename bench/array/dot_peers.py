"""The product of two random n x n f64 arrays, summed: numpy (its BLAS, on every core) and
dask.array (threads, and a LocalCluster of 2 workers x 1 thread), the arrays made and
kept in memory before the clock starts, as bench-array does for chorus.

  python dot_peers.py --mode {numpy,dask_threads,dask_cluster} [--n 8000] [--chunk 2000] [--reps 3]

Prints `RESULT dot_<mode>_<n>=<median seconds> s`.
"""
import argparse
import statistics
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", required=True, choices=["numpy", "dask_threads", "dask_cluster"])
    ap.add_argument("--n", type=int, default=8000)
    ap.add_argument("--chunk", type=int, default=2000)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    times = []
    if a.mode == "numpy":
        import numpy as np
        rng = np.random.default_rng(0)
        x, y = rng.random((a.n, a.n)), rng.random((a.n, a.n))
        for _ in range(a.reps):
            t = time.perf_counter()
            s = (x @ y).sum()
            times.append(time.perf_counter() - t)
    else:
        import dask
        import dask.array as da
        client = cluster = None
        if a.mode == "dask_cluster":
            from dask.distributed import Client, LocalCluster
            cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
            client = Client(cluster)
        else:
            dask.config.set(scheduler="threads")
        x = da.random.random((a.n, a.n), chunks=(a.chunk, a.chunk)).persist()
        y = da.random.random((a.n, a.n), chunks=(a.chunk, a.chunk)).persist()
        for _ in range(a.reps):
            t = time.perf_counter()
            s = (x @ y).sum().compute()
            times.append(time.perf_counter() - t)
        if client is not None:
            client.close()
            cluster.close()
    print(f"# sum={s:.6e}")
    print(f"RESULT dot_{a.mode}_{a.n}={statistics.median(times):.3f} s")


if __name__ == "__main__":
    main()

"""The peers' side of bench-bag: Python, multiprocessing and dask.bag on the workloads of
`bench/bag` (run by it; it passes --peers, the directory of shared/peers).

  python peers.py wordcount --path FILE --reps 3 --dump TABLE.json
      python (Counter), mp_pool (2 processes) and dask_bag (read_text.str.split().flatten()
      .frequencies() on a LocalCluster of 2 workers x 1 thread), from the peers'
      bench_wordcount.py; checks they agree and writes the python table as JSON.
  python peers.py sequence --n 5000000 --reps 3
      the seed: db.from_sequence(nums).map(chr).compute(), nums the seed's integers
      below 100 as a Python list (dask.bag is slower still on the numpy array).
  python peers.py groupby --n 10000000 --keys 100000 --npartitions 20 --reps 1
      db.range(n).map(lambda i: (i % keys, i)).groupby(key, shuffle="tasks")
      .map(lambda kv: (kv[0], len(kv[1]))).compute().

Prints `RESULT name=median unit` lines and `PEAK name=bytes` with the summed peak RSS
(VmHWM) of the processes of each method.
"""
import argparse
import json
import os
import statistics
import sys
import time


def hwm(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def result(name, values, unit="s"):
    print(f"# {name}: {['%.4g' % v for v in values]}", flush=True)
    print(f"RESULT {name}={statistics.median(values):.6g} {unit}", flush=True)


def timed(reps, fn):
    values, out = [], None
    for _ in range(reps):
        t = time.perf_counter()
        out = fn()
        values.append(time.perf_counter() - t)
    return values, out


def dask_cluster():
    from dask.distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(cluster)
    client.wait_for_workers(2)
    return cluster, client


def dask_peak(client):
    return sum(hwm(p) for p in client.run(os.getpid).values())


def wordcount(a):
    sys.path.insert(0, a.peers)
    import bench_wordcount as bw
    from collections import Counter

    tables = {}
    v, tables["python"] = timed(a.reps, lambda: bw.m_python_update(a.path))
    result("wordcount_python", v)
    print(f"PEAK wordcount_python={hwm(os.getpid())}")
    import multiprocessing as mp

    with mp.Pool(2) as pool:
        v, tables["mp_pool"] = timed(a.reps, lambda: bw.m_mp_pool(a.path, pool))
        result("wordcount_mp_pool", v)
        print(f"PEAK wordcount_mp_pool={hwm(os.getpid()) + sum(hwm(p.pid) for p in pool._pool)}")
    import dask.bag as db

    cluster, client = dask_cluster()
    v, tables["dask_bag"] = timed(a.reps, lambda: Counter(dict(db.read_text(a.path, blocksize=bw.BLOCK).str.split().flatten().frequencies().compute())))
    result("wordcount_dask_bag", v)
    print(f"PEAK wordcount_dask_bag={hwm(os.getpid()) + dask_peak(client)}")
    client.close()
    cluster.close()
    ref = tables["python"]
    agree = all(t == ref for t in tables.values())
    print(f"# peers agree: {agree}; {sum(ref.values())} words, {len(ref)} distinct")
    if not agree:
        sys.exit("the peers' word counts differ")
    with open(a.dump, "w") as f:
        json.dump(dict(ref), f)


def sequence(a):
    import numpy as np
    import dask.bag as db

    # The seed's numpy array, as a list of Python ints: dask.bag takes minutes per
    # repetition on it, and longer still on the array itself (numpy scalars).
    nums = np.random.default_rng(0).integers(low=0, high=100, size=a.n).tolist()
    v, out = timed(a.reps, lambda: [chr(x) for x in nums])
    result("sequence_python", v)
    cluster, client = dask_cluster()
    v, out2 = timed(a.reps, lambda: db.from_sequence(nums).map(chr).compute())
    assert out == out2
    result("sequence_dask_bag", v)
    print(f"PEAK sequence_dask_bag={hwm(os.getpid()) + dask_peak(client)}")
    client.close()
    cluster.close()


def groupby(a):
    import dask.bag as db

    cluster, client = dask_cluster()
    keys = a.keys

    def run():
        b = db.range(a.n, npartitions=a.npartitions).map(lambda i: (i % keys, i))
        return b.groupby(lambda p: p[0], shuffle="tasks").map(lambda kv: (kv[0], len(kv[1]))).compute()

    v, out = timed(a.reps, run)
    sizes = dict(out)
    assert len(sizes) == keys and all(n == a.n // keys for n in sizes.values()), "dask's groups are wrong"
    result("groupby_dask_bag", v)
    print(f"PEAK groupby_dask_bag={hwm(os.getpid()) + dask_peak(client)}")
    client.close()
    cluster.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["wordcount", "sequence", "groupby"])
    ap.add_argument("--peers", default=os.path.expanduser("~/.cache/chorus-peers"))
    ap.add_argument("--path")
    ap.add_argument("--dump")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--n", type=int, default=5_000_000)
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--npartitions", type=int, default=20)
    a = ap.parse_args()
    {"wordcount": wordcount, "sequence": sequence, "groupby": groupby}[a.mode](a)


if __name__ == "__main__":
    main()

"""One TPC-H query in DuckDB over bench-frame's Parquet tables, for its TPC-H table.

    python tpch_duckdb.py TABLES N REPS

Reads TABLES/<table>/*.parquet through views (DuckDB reads the files on every run, as
DataFusion and chorus do) and TABLES/queries/qN.sql (bench-frame writes the very SQL
chorus runs). Prints `seconds=` (the median of REPS runs) and `rss_max_mb=` (this
process's peak), the fields bench-frame reads from its own jobs.
"""
import resource
import statistics
import sys
import time

import duckdb

TABLES = ["region", "nation", "part", "supplier", "partsupp", "customer", "orders", "lineitem"]

tables, n, reps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
con = duckdb.connect()
for t in TABLES:
    con.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{tables}/{t}/*.parquet')")
with open(f"{tables}/queries/q{n}.sql") as f:
    sql = f.read()
times = []
for _ in range(max(reps, 1)):
    started = time.perf_counter()
    con.execute(sql).fetchall()
    times.append(time.perf_counter() - started)
print(f"seconds={statistics.median(times)}")
print(f"rss_max_mb={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}")

#!/usr/bin/env bash
# DataFrame benchmarks of chorus beside Polars, DuckDB, pandas and Dask (shared/peers'
# df_query.py through bench_dataframes.py), same CSV files, same run; then TPC-H.
#
#   bash bench/frame/run.sh [SIZES] [PEER_REPS] [TPCH_SF]     # defaults: 1m,10m 3 1
#
# Needs the peers' pinned Polars, DuckDB, pandas and Dask in
# ~/.cache/chorus-peers/venv-frame; installs them there if missing (PyPI reachable).
# TPCH_SF=0 skips TPC-H.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PEERS_SRC=${PEERS_SRC:-$ROOT/../shared/peers}
W=${CHORUS_PEERS:-$HOME/.cache/chorus-peers}
SIZES=${1:-1m,10m}
REPS=${2:-3}
SF=${3:-1}
mkdir -p "$W/data" "$W/results"
cp "$PEERS_SRC"/bench_common.py "$PEERS_SRC"/df_query.py "$PEERS_SRC"/bench_dataframes.py "$W"/
if [ ! -x "$W/venv-frame/bin/python" ]; then
  python3 -m venv "$W/venv-frame"
  "$W/venv-frame/bin/pip" install -q "pandas==3.1.1" "pyarrow==25.0.1" "numpy==2.4.6" psutil \
      "polars==2.1.0" "duckdb==2.0.0" "dask[dataframe,distributed]==2026.8.0"
fi
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time; }
OUT=$(mktemp)
cd "$ROOT" && cargo build -q --release -p bench-frame
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/bench-frame
"$BIN" --sizes "$SIZES" --ranks 1,2 --reps 3 | tee -a "$OUT"
# The peers read the very files chorus read.
for size in ${SIZES//,/ }; do ln -sf "$ROOT/data/purchases_$size.csv" "$W/data/purchases_$size.csv"; done
(cd "$W" && venv-frame/bin/python bench_dataframes.py --sizes "$SIZES" --reps "$REPS" \
    --engines polars,duckdb,pandas,dask_cluster) | tee -a "$OUT" || echo "peer benchmark failed"
if [ "$SF" != 0 ]; then
  # Its own table: each query in DataFusion alone, in DuckDB, and on 1 and 2 ranks,
  # answers checked against DataFusion's.
  "$BIN" --tpch "$SF" --ranks 1,2 --reference --duckdb "$W/venv-frame/bin/python" | tee -a "$OUT"
fi
python3 - "$OUT" "$SIZES" <<'PY'
import re, sys
r = {}
for line in open(sys.argv[1]):
    m = re.match(r"RESULT (\S+)=(\S+) (\S+)", line)
    if m:
        r[m.group(1)] = float(m.group(2))
print("\n| size | query | chorus 1 rank | chorus 2 ranks | peak MB (2 ranks) | Polars | DuckDB | pandas | Dask 2 workers | chorus 2 ranks vs Polars |")
print("|---|---|---|---|---|---|---|---|---|---|")
for size in sys.argv[2].split(","):
    for q in ["mean", "groupby", "age40"]:
        c1, c2 = r.get(f"frame_chorus1_{size}_{q}"), r.get(f"frame_chorus2_{size}_{q}")
        mem = r.get(f"frame_chorus2_{size}_{q}_rss")
        peers = [r.get(f"df_{e}_{size}_{q}") for e in ["polars", "duckdb", "pandas", "dask_cluster"]]
        f = lambda v: "–" if v is None else f"{v:.3f} s"
        ratio = "–" if not (c2 and peers[0]) else f"{peers[0] / c2:.2f}× {'faster' if peers[0] > c2 else 'slower'}"
        print(f"| {size} | {q} | {f(c1)} | {f(c2)} | {'–' if mem is None else f'{mem:.0f}'} | " + " | ".join(f(p) for p in peers) + f" | {ratio} |")
PY
rm -f "$OUT"

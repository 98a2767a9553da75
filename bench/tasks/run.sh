#!/usr/bin/env bash
# Task-layer benchmarks of chorus beside Dask distributed and Ray, same workloads, same run.
#
#   bash bench/tasks/run.sh [PEER_REPS]
#
# Needs the peers' Dask and Ray (pinned versions of shared/peers/setup.sh) in
# ~/.cache/chorus-peers/venv-tasks; installs them there if missing (PyPI reachable).
# Peers run 10,000-task maps (Dask manages ~600 tasks/s: 100k would take minutes);
# chorus runs 10,000 to 10,000,000.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PEERS_SRC=${PEERS_SRC:-$ROOT/../shared/peers}
W=${CHORUS_PEERS:-$HOME/.cache/chorus-peers}
REPS=${1:-1}
mkdir -p "$W"
cp "$PEERS_SRC"/bench_common.py "$PEERS_SRC"/bench_dask_tasks.py "$PEERS_SRC"/bench_ray_tasks.py "$W"/
if [ ! -x "$W/venv-tasks/bin/python" ]; then
  python3 -m venv "$W/venv-tasks"
  "$W/venv-tasks/bin/pip" install -q "dask[distributed]==2026.8.0" "distributed==2026.8.0" "ray==2.60.0" psutil numpy
fi
PY=$W/venv-tasks/bin/python
OUT=$(mktemp)
cd "$ROOT" && cargo build -q --release -p bench-tasks
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/bench-tasks
# Maps of 10k to 10M tasks: the cost per task should stay flat (10M takes about 8 GB).
"$BIN" --map 10000,100000,1000000,10000000 --reps 3 | tee -a "$OUT"
# Spilling: 1.5 GiB of results on 2 workers of 256 MiB, beside dd in the same directory.
"$BIN" --spill 1536 | tee -a "$OUT"
# The Dask script reads distributed's configuration before importing it, which fails
# unless distributed is imported first.
(cd "$W" && $PY -c "import distributed, runpy, sys; sys.argv[0] = 'bench_dask_tasks.py'; runpy.run_path('bench_dask_tasks.py', run_name='__main__')" \
    --reps "$REPS" --sizes 10000 --rtt-n 1000) | tee -a "$OUT" || echo "dask benchmark failed"
(cd "$W" && $PY bench_ray_tasks.py --reps "$REPS" --sizes 10000 --rtt-n 1000) | tee -a "$OUT" || echo "ray benchmark failed"
python3 - "$OUT" <<'PY'
import re, sys
r = {}
for line in open(sys.argv[1]):
    m = re.match(r"RESULT (\S+)=(\S+) (\S+)", line)
    if m:
        r[m.group(1)] = (float(m.group(2)), m.group(3))
def row(label, mine, peer, higher_better):
    if mine not in r or peer not in r:
        return
    a, unit = r[mine]; b, _ = r[peer]
    ratio = a / b if higher_better else b / a
    print(f"| {label} | {a:,.6g} {unit} | {b:,.6g} {unit} | {ratio:,.1f}x |")
print("\n| workload | chorus | peer | chorus advantage |\n|---|---|---|---|")
for peer in ("dask", "ray"):
    row(f"map 10k no-op tasks vs {peer}", "chorus_map_tput_10000", f"{peer}_map_tput_10000", True)
    row(f"round trip vs {peer}", "chorus_rtt", f"{peer}_rtt", False)
    # Dask's script names its level-by-level futures tree `dask_tree_futures_8192`.
    tree = "dask_tree_futures_8192" if peer == "dask" else f"{peer}_tree_8192"
    row(f"tree 8192 leaves vs {peer}", "chorus_tree_8192", tree, False)
for k in ("chorus_map_tput_100000", "chorus_map_tput_1000000", "chorus_map_tput_10000000",
          "chorus_scatter_gather_100MB", "chorus_scatter_100MB", "chorus_gather_100MB",
          "chorus_start_2w", "chorus_start_4w", "chorus_spill_write", "dd_write_cached",
          "dd_write_fdatasync", "chorus_spill_read", "dd_read_cached",
          "chorus_spill_worker0_peak_rss", "chorus_spill_worker1_peak_rss"):
    if k in r:
        print(f"| {k} | {r[k][0]:,.6g} {r[k][1]} | | |")
PY
rm -f "$OUT"

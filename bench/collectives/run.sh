#!/usr/bin/env bash
# chorus's collectives (shared memory with and without single copies, Unix sockets, TCP) beside mpi4py on Open MPI (shared/peers/bench_mpi.py), same machine,
# same run, 2 and 4 ranks; prints both and the ratio.
#
#   bash bench/collectives/run.sh            # from the repository root
#
# Needs Open MPI (apt-get install openmpi-bin) and a Python venv with numpy + mpi4py; the
# venv is made under ~/.cache/chorus-peers/venv-mpi when missing. Override with
# PEERS_DIR (where shared/peers is) and CHORUS_PEERS_WORK (a writable work folder).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
peers=${PEERS_DIR:-$root/../shared/peers}
work=${CHORUS_PEERS_WORK:-$HOME/.cache/chorus-peers}
mkdir -p "$work"
cp "$peers/bench_mpi.py" "$peers/bench_common.py" "$work/"

command -v mpiexec >/dev/null || { apt-get update -qq && apt-get install -y -qq openmpi-bin; }
if [ ! -x "$work/venv-mpi/bin/python" ]; then
  python3 -m venv "$work/venv-mpi"
  "$work/venv-mpi/bin/pip" install -q numpy "mpi4py==4.1.2"
fi

cd "$root"
cargo build --release -q -p chorus-cli -p chorus-bench-collectives
bin=${CARGO_TARGET_DIR:-$root/target}/release
results=$(mktemp)
# With 4 ranks on a 2-core machine the ranks share cores (MPI's busy-polling then crawls):
# fewer iterations there, the same for both.
iters() { if [ "$1" -gt "$(nproc)" ]; then echo 300; else echo 10000; fi; }
for n in 2 4; do
  echo "# chorus, $n ranks (shared memory, the default)" >&2
  "$bin/chorus" run -n "$n" --no-prefix "$bin/bench-collectives" --iters "$(iters "$n")" | tee -a "$results"
done
echo "# chorus, 2 ranks on shared memory without single copies (large messages in two copies through the rings)" >&2
CHORUS_SINGLE_COPY=off "$bin/chorus" run -n 2 --no-prefix "$bin/bench-collectives" | sed 's/chorus_auto_/chorus_twocopy_/' | tee -a "$results"
echo "# chorus, 2 ranks over Unix sockets" >&2
CHORUS_TRANSPORT=unix "$bin/chorus" run -n 2 --no-prefix "$bin/bench-collectives" | tee -a "$results"
echo "# chorus, 2 ranks over loopback TCP" >&2
CHORUS_TRANSPORT=tcp "$bin/chorus" run -n 2 --no-prefix "$bin/bench-collectives" | tee -a "$results"
# Runs bench_mpi.py on $1 ranks; the subshell becomes `timeout`, so its PID stops the run.
mpi() {
  cd "$work" && MPI4PY_LIBMPI=/usr/lib/x86_64-linux-gnu/libmpi.so.40 exec timeout 900 \
    mpiexec --allow-run-as-root --oversubscribe -n "$1" "$work/venv-mpi/bin/python" bench_mpi.py \
    --label "openmpi_${1}ranks" --iters "$(iters "$1")"
}
echo "# mpi4py on Open MPI, 2 ranks" >&2
(mpi 2) | tee -a "$results"
# bench_mpi.py's closing ping-pong pairs rank r with rank 1 - r, which exists only with 2
# ranks: with 4, stop the run once its collectives have been printed.
echo "# mpi4py on Open MPI, 4 ranks (collectives only)" >&2
four=$(mktemp)
# Stopped early, Open MPI leaves its shared-memory segments behind: note the ones there
# before, and remove the ones this run added.
shm_before=$(ls /dev/shm 2>/dev/null | grep '^vader_segment' || true)
(mpi 4) > "$four" 2>&1 &
mpi_pid=$!
while kill -0 "$mpi_pid" 2>/dev/null && ! grep -q "allgather_50MB_per_rank=" "$four"; do sleep 1; done
kill "$mpi_pid" 2>/dev/null || true
wait "$mpi_pid" 2>/dev/null || true
cat "$four" | tee -a "$results"
rm -f "$four"
for seg in $(ls /dev/shm 2>/dev/null | grep '^vader_segment' || true); do
  grep -qxF "$seg" <<<"$shm_before" || rm -f "/dev/shm/$seg"
done

python3 - "$results" <<'PY'
import re, sys
vals = {}
for line in open(sys.argv[1]):
    m = re.match(r"RESULT (\S+)=([\d.]+) (\S+)", line)
    if m:
        vals[m.group(1)] = (float(m.group(2)), m.group(3))
rows = [("allreduce_f64", "us/op"), ("allreduce_f64_obj", "us/op"), ("barrier", "us/op"),
        ("bcast_100MB", "GB/s"), ("gather_50MB_per_rank", "GB/s"), ("allgather_50MB_per_rank", "GB/s"),
        ("pingpong_8B_rtt", "us")]
print()
print(f"{'workload':<26}{'ranks':>6}{'chorus shm':>12}{'2 copies':>10}{'chorus unix':>12}{'chorus tcp':>12}{'Open MPI':>12}  ratio (chorus shm vs MPI)")
for n in (2, 4):
    for name, unit in rows:
        c = vals.get(f"chorus_auto_{n}ranks_{name}")
        two = vals.get(f"chorus_twocopy_{n}ranks_{name}")
        u = vals.get(f"chorus_unix_{n}ranks_{name}")
        t = vals.get(f"chorus_tcp_{n}ranks_{name}")
        m = vals.get(f"mpi_openmpi_{n}ranks_{name}")
        if not c:
            continue
        fmt = lambda v: f"{v[0]:.2f}" if v else "-"
        if m:
            ratio = (c[0] / m[0]) if unit == "GB/s" else (m[0] / c[0])
            note = f"{ratio:.2f}x {'as fast' if ratio >= 1 else 'the speed'}"
        else:
            note = "-"
        print(f"{name + ' (' + unit + ')':<26}{n:>6}{fmt(c):>12}{fmt(two):>10}{fmt(u):>12}{fmt(t):>12}{fmt(m):>12}  {note}")
PY
rm -f "$results"

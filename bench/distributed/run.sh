#!/bin/sh
# bench/distributed/run.sh: data-parallel training on this machine, measured and
# set against the step-time model of docs/distributed.md.
#
#   bench/distributed/run.sh [BUILD_DIR] [REPEATS]
#
# On the 6 x 384 model (bench.pipeline, batch 8 x 256): one process with 2
# threads against 2 ranks with 1 thread each (mpirun over shared memory, then
# over TCP on loopback), and one process with 1 thread on half the batch (the
# per-rank compute the model starts from). Prints tokens/s (the group's, median
# over the steps after the first two), the share of each run spent waiting for
# gradient sums, MPI_Allreduce's measured bus bandwidth for the gradient's size,
# and the model's prediction. STEPS sets the steps per run (default 8).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-.}" && pwd)
repeats=${2:-1}
steps=${STEPS:-8}
gptd="$build/daemon/gptd"
allreduce="$build/bench/distributed/bench-allreduce"
log=${LOG:-bench-distributed.log}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

[ -x "$gptd" ] || { echo "no $gptd: build first" >&2; exit 1; }
[ -x "$allreduce" ] || { echo "no $allreduce: configure --with-mpi and make $allreduce" >&2; exit 1; }
export GPTD_PLUGIN_PATH="${GPTD_PLUGIN_PATH:-$build/plugins/core/.libs:$build/plugins/bpe/.libs:$build/plugins/train/.libs}"
export OMP_WAIT_POLICY=passive
root=""
[ "$(id -u)" = 0 ] && root=--allow-run-as-root

echo "# $(date -u +%FT%TZ) $(nproc) CPUs, load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$log"
grep -m1 'model name' /proc/cpuinfo | tee -a "$log"

# run NAME BTL [gptd run options]: one run; prints its line.
run() {
  name=$1; btl=$2; shift 2
  dir="$work/$name"
  GPTD_MPIRUN_ARGS="--oversubscribe --mca btl $btl" \
    "$gptd" run --run-dir "$dir" --set steps="$steps" "$@" "$here/bench.pipeline" \
    > "$work/$name.out" 2>&1 || { cat "$work/$name.out" >&2; exit 1; }
  share=$(sed -n 's/.*waiting for gradient sums (\([0-9.]*\)%).*/\1/p' "$work/$name.out")
  wait_s=$(sed -n 's/.*ranks: \([0-9.]*\) s of this session waiting.*/\1/p' "$work/$name.out")
  tail -n +4 "$dir/metrics.csv" | cut -d, -f7 | sort -g |
    awk -v name="$name" -v share="${share:-0}" -v wait_s="${wait_s:-0}" -v steps="$steps" '
      { t[++n] = $1 }
      END { m = n % 2 ? t[(n + 1) / 2] : (t[n / 2] + t[n / 2 + 1]) / 2;
            printf "run=%s tokens_per_s=%.1f comm_wait_share=%s comm_wait_s_per_step=%.3f\n",
                   name, m, share, wait_s / steps }' | tee -a "$log"
}

i=0
while [ "$i" -lt "$repeats" ]; do
  run one-2threads self,vader --set threads=2
  run one-1thread-half self,vader --set threads=1 --set batch=4
  run ranks2-shm self,vader --ranks 2 --set threads=1
  run ranks2-tcp self,tcp --ranks 2 --set threads=1
  i=$((i + 1))
done

# Up to the gradient's size: the model's 30.0M parameters in floats, 114.6 MiB.
for btl in self,vader self,tcp; do
  echo "# allreduce over $btl" | tee -a "$log"
  mpirun $root --oversubscribe --bind-to none --mca btl "$btl" -np 2 "$allreduce" \
    --max-mib 114.6 --repeats 5 | tee -a "$log"
done

/usr/bin/env python3 "$here/model.py" "$log"

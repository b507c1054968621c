#!/bin/sh
# bench/lora/run.sh: LoRA (rank 16, the book's appendix E) against full
# fine-tuning in gptd on the gpt2-small shape (random weights, next-token loss,
# AdamW), alternating the two, each step in its own process: median step time
# and peak memory.
#
#   bench/lora/run.sh [BUILD_DIR] [REPEATS]
#
# Peak memory is /usr/bin/time -v's maximum resident set size of each process.
# THREADS (default 2), BATCH (2), CONTEXT (128), STEPS (3), WARMUP (1) and RANK
# (16) set the runs. Prints Markdown.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-.}" && pwd)
repeats=${2:-3}
threads=${THREADS:-2}
bench="$build/bench/lora/bench-lora"
log=${LOG:-bench-lora.log}
python=${PYTHON:-/usr/bin/python3}
export OMP_WAIT_POLICY=passive

[ -x "$bench" ] || { echo "no $bench: build it first (make bench/lora/bench-lora)" >&2; exit 1; }

echo "# $(date -u +%FT%TZ) $(uname -m), $(nproc) CPUs, threads=$threads," \
     "load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$log"
grep -m1 'model name' /proc/cpuinfo | tee -a "$log"

measure () {   # measure COMMAND...: the command's key=value line plus rss_kib=
  /usr/bin/time -v "$@" 2> time.err > line.out || { cat time.err >&2; exit 1; }
  printf '%s rss_kib=%s\n' "$(cat line.out)" \
    "$(sed -n 's/.*Maximum resident set size (kbytes): //p' time.err)"
}

common="--threads $threads --batch ${BATCH:-2} --context ${CONTEXT:-128} --steps ${STEPS:-3} --warmup ${WARMUP:-1}"
i=0
while [ "$i" -lt "$repeats" ]; do
  # shellcheck disable=SC2086
  measure "$bench" $common --lora-rank 0 | tee -a "$log"
  # shellcheck disable=SC2086
  measure "$bench" $common --lora-rank "${RANK:-16}" --lora-alpha "${RANK:-16}" | tee -a "$log"
  i=$((i + 1))
done
rm -f time.err line.out

"$python" - "$log" <<'PY'
import re, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    kv = dict(re.findall(r"(\w+)=(\S+)", line))
    if "mode" in kv:
        runs.setdefault(kv["mode"], []).append(kv)
med = {k: (statistics.median(float(r["step_ms"]) for r in v),
           statistics.median(float(r["rss_kib"]) / 1024 for r in v),
           v[0]["trainable_params"], v[0]["adamw_floats"], len(v)) for k, v in runs.items()}
print("\n| mode | step ms (median) | peak RSS MiB (median) | trainable parameters | AdamW state floats | runs |")
print("|---|---:|---:|---:|---:|---:|")
for k in ("full", "lora"):
    if k in med:
        t, r, p, a, n = med[k]
        print("| %s | %.0f | %.0f | %s | %s | %d |" % (k, t, r, p, a, n))
if "full" in med and "lora" in med:
    print("\nLoRA / full: **%.2fx** step time, peak memory **%.0f%%**"
          % (med["lora"][0] / med["full"][0], 100 * med["lora"][1] / med["full"][1]))
PY

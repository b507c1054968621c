#!/bin/sh
# bench/classify/run.sh: the book's classification fine-tuning step (gpt2-small
# shape, batch 8 x 120 tokens, the last block, the final LayerNorm and the head
# trainable, AdamW) in gptd against the book's own code in PyTorch, in the same run,
# with the same threads, alternating the two; then the wall time of
# pipelines/sms-spam-small.pipeline (with $GPTD_DATA_DIR).
#
#   bench/classify/run.sh [BUILD_DIR] [REPEATS]
#
# Peak memory is /usr/bin/time -v's maximum resident set size of each process.
# THREADS (default 2), STEPS (10) and WARMUP (2) set the runs; SMALL=0 leaves the
# pipeline out. Prints Markdown.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build=$(cd "${1:-.}" && pwd)
repeats=${2:-3}
threads=${THREADS:-2}
steps=${STEPS:-10}
warmup=${WARMUP:-2}
python=${PYTHON:-/usr/bin/python3}
bench="$build/bench/classify/bench-classify"
log=${LOG:-bench-classify.log}
export OMP_WAIT_POLICY=passive

[ -x "$bench" ] || { echo "no $bench: build it first (make bench/classify/bench-classify)" >&2; exit 1; }

echo "# $(date -u +%FT%TZ) $(uname -m), $(nproc) CPUs, threads=$threads," \
     "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}, load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$log"
grep -m1 'model name' /proc/cpuinfo | tee -a "$log"
echo "# CPU flags: $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx|avx2|fma|avx512f|avx512bw|avx512_bf16|amx)' | tr '\n' ' ')" | tee -a "$log"

measure () {   # measure COMMAND...: the command's key=value line plus rss_kib=
  /usr/bin/time -v "$@" 2> time.err > line.out || { cat time.err >&2; exit 1; }
  printf '%s rss_kib=%s\n' "$(cat line.out)" \
    "$(sed -n 's/.*Maximum resident set size (kbytes): //p' time.err)"
}

i=0
while [ "$i" -lt "$repeats" ]; do
  measure "$bench" --threads "$threads" --steps "$steps" --warmup "$warmup" | tee -a "$log"
  measure "$python" "$here/bench_classify_torch.py" --threads "$threads" --steps "$steps" \
    --warmup "$warmup" | tee -a "$log"
  i=$((i + 1))
done
rm -f time.err line.out

"$python" - "$log" <<'PY'
import re, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    kv = dict(re.findall(r"(\w+)=(\S+)", line))
    if "impl" in kv:
        runs.setdefault(kv["impl"], []).append(kv)
med = {k: (statistics.median(float(r["examples_per_s"]) for r in v),
           statistics.median(float(r["rss_kib"]) / 1024 for r in v),
           v[0]["trainable_params"], len(v)) for k, v in runs.items()}
print("\n| program | examples/s (median) | peak RSS MiB (median) | trainable parameters | runs |")
print("|---|---:|---:|---:|---:|")
for k in ("gptd", "pytorch"):
    if k in med:
        e, r, p, n = med[k]
        print("| %s | %.2f | %.0f | %s | %d |" % (k, e, r, p, n))
if "gptd" in med and "pytorch" in med:
    print("\ngptd / PyTorch: **%.2fx** examples/s (goal 1.5x), peak memory **%.0f%%** of "
          "PyTorch's (goal at most 50%%)" % (med["gptd"][0] / med["pytorch"][0],
                                             100 * med["gptd"][1] / med["pytorch"][1]))
PY

if [ "${SMALL:-1}" != 0 ] && [ -n "${GPTD_DATA_DIR:-}" ]; then
  dir=$(mktemp -d "${TMPDIR:-/tmp}/gptd-sms-XXXXXX")
  t0=$(date +%s.%N)
  (cd "$dir" && "$build/daemon/gptd" run "$src/pipelines/sms-spam-small.pipeline" \
     --set train.threads="$threads" --run-dir run > out.txt 2> err.txt) ||
    { tail -n 5 "$dir/err.txt"; exit 1; }
  t1=$(date +%s.%N)
  printf '\nsms-spam-small.pipeline, %s threads: %.1f s wall; %s\n' "$threads" \
    "$(echo "$t1 - $t0" | bc)" "$(grep -o 'Training accuracy.*' "$dir/err.txt" | tail -n 1)"
  rm -rf "$dir"
fi

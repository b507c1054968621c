#!/bin/sh
# bench/instruct/run.sh: instruction fine-tuning steps (the book's chapter 7) of
# gptd against PyTorch on the gpt2-small shape, random weights, batches of 8
# collated from instruction-data.json as the book's custom_collate_fn pads them;
# both programs train on identical batches (bench-instruct dumps them), in the
# same run, with the same threads, alternating.
#
#   GPTD_DATA_DIR=/path/to/data bench/instruct/run.sh [BUILD_DIR] [REPEATS]
#
# BUILD_DIR holds the built bench/instruct/bench-instruct (default: the current
# directory). Each program runs REPEATS times (default 3); the summary gives the
# medians. STEPS and WARMUP set the timed and warm-up batches; THREADS (default
# 2) the threads of both. The environment is bench/train/run.sh's.
set -eu

export OMP_WAIT_POLICY=passive MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-.}
repeats=${2:-3}
steps=${STEPS:-10}
warmup=${WARMUP:-2}
threads=${THREADS:-2}
bench="$build/bench/instruct/bench-instruct"
python=${PYTHON:-/usr/bin/python3}
log=${LOG:-bench-instruct.log}
: "${GPTD_DATA_DIR:?set GPTD_DATA_DIR (instruction-data.json, gpt2/)}"

[ -x "$bench" ] || { echo "no $bench: build it first (make bench/instruct/bench-instruct)" >&2; exit 1; }
batches=$(mktemp)
trap 'rm -f "$batches"' EXIT

echo "# $(date -u +%FT%TZ) $(uname -m), $(nproc) CPUs, threads=$threads," \
     "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}, load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$log"
grep -m1 'model name' /proc/cpuinfo | tee -a "$log"
echo "# CPU flags: $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx|avx2|fma|avx512f|avx512_bf16|amx)' | tr '\n' ' ')" | tee -a "$log"

i=0
while [ "$i" -lt "$repeats" ]; do
  "$bench" --data "$GPTD_DATA_DIR" --threads "$threads" --steps "$steps" --warmup "$warmup" \
    --dump "$batches" | tee -a "$log"
  "$python" "$here/bench_instruct_torch.py" "$batches" --threads "$threads" \
    --warmup "$warmup" | tee -a "$log"
  i=$((i + 1))
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$log"

"$python" - "$log" <<'EOF'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    kv = dict(re.findall(r"(\w+)=(\S+)", line))
    if "impl" in kv:
        rows.setdefault(kv["impl"].split("-")[0], []).append(kv)
print("\nbatches (padded lengths, timed): %s" % rows["gptd"][0]["seq_lens"])
print("\n| program | tokens/s (median) | runs | step s | peak RSS MiB | loss first -> last |")
print("|---|---:|---|---:|---:|---|")
med = {}
for impl in ("gptd", "torch"):
    runs = rows[impl]
    med[impl] = statistics.median(float(r["tokens_per_s"]) for r in runs)
    print("| %s | %.1f | %s | %.3f | %.0f | %s -> %s |"
          % (runs[0]["impl"], med[impl], ", ".join(r["tokens_per_s"] for r in runs),
             statistics.median(float(r["step_s"]) for r in runs),
             statistics.median(float(r["peak_rss_mib"]) for r in runs),
             runs[0]["loss_first"], runs[0]["loss_last"]))
print("\ngptd / PyTorch: %.2fx" % (med["gptd"] / med["torch"]))
EOF

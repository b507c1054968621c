#!/bin/sh
# bench/train/run.sh: training-step speed of gptd against PyTorch, in the same
# run, with the same threads and OpenBLAS core type, alternating the two.
#
#   bench/train/run.sh [BUILD_DIR] [REPEATS]
#
# BUILD_DIR holds the built bench/train/bench-train (default: the current
# directory).  Each configuration runs REPEATS times (default 3) per program;
# the summary gives the medians.  Both programs run in the environment that
# suits PyTorch (Debian's python3-torch) best here: OMP_WAIT_POLICY=passive,
# MALLOC_MMAP_MAX_=0, MALLOC_TRIM_THRESHOLD_=100000000000 (gptd allocates its
# buffers once, so the malloc settings do not matter to it).  GPT2_STEPS,
# SMALL_STEPS and WARMUP set the measured and warm-up steps per run.
set -eu

export OMP_WAIT_POLICY=passive MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000
gpt2_steps=${GPT2_STEPS:-6}
small_steps=${SMALL_STEPS:-8}
warmup=${WARMUP:-2}

here=$(cd "$(dirname "$0")" && pwd)
build=${1:-.}
repeats=${2:-3}
bench="$build/bench/train/bench-train"
python=${PYTHON:-/usr/bin/python3}
threads=${THREADS:-$(nproc)}
log=${LOG:-bench-train.log}

[ -x "$bench" ] || { echo "no $bench: build it first (make bench/train/bench-train)" >&2; exit 1; }

echo "# $(date -u +%FT%TZ) $(uname -m), $(nproc) CPUs, threads=$threads," \
     "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}, load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$log"
grep -m1 'model name' /proc/cpuinfo | tee -a "$log"

peak() { "$bench" --sgemm-peak --threads "$threads" | tee -a "$log"; }

run_pair() {
  # $@: model options shared by both programs
  "$bench" --threads "$threads" "$@" | tee -a "$log"
  "$python" "$here/bench_torch.py" --threads "$threads" "$@" | tee -a "$log"
}

peak
i=0
while [ "$i" -lt "$repeats" ]; do
  run_pair --preset gpt2-small --batch 4 --context 256 --steps "$gpt2_steps" --warmup "$warmup"
  run_pair --layers 6 --embd 384 --heads 6 --batch 8 --context 256 --steps "$small_steps" --warmup "$warmup"
  i=$((i + 1))
done
peak

# Medians per (program, model).
"$python" - "$log" <<'EOF'
import re, statistics, sys
rows, peaks = {}, []
for line in open(sys.argv[1]):
    kv = dict(re.findall(r"(\w+)=(\S+)", line))
    if "sgemm_peak_gflops" in kv:
        peaks.append(float(kv["sgemm_peak_gflops"]))
    elif "impl" in kv:
        key = (kv["impl"].split("-")[0], kv["layers"], kv["embd"], kv["batch"])
        rows.setdefault(key, []).append(kv)
peak = statistics.median(peaks)
print("\nsgemm peak (OpenBLAS, %s): %.1f GFLOP/s (runs: %s)"
      % ("threads as above", peak, ", ".join("%.1f" % p for p in peaks)))
print("\n| model | batch x ctx | program | tokens/s | GFLOP/s | % of sgemm peak | GFLOP per CPU-second | peak RSS MiB | speed-up |")
print("|---|---|---|---|---|---|---|---|---|")
for (impl, L, C, B), runs in sorted(rows.items(), key=lambda r: (-int(r[0][1]), r[0][0])):
    tps = statistics.median(float(r["tokens_per_s"]) for r in runs)
    gf = statistics.median(float(r["gflops"]) for r in runs)
    rss = statistics.median(float(r["peak_rss_mib"]) for r in runs)
    gcpu = statistics.median(float(r["gflops_per_cpu_s"]) for r in runs)
    other = rows.get(("torch" if impl == "gptd" else "gptd", L, C, B))
    ratio = ""
    if impl == "gptd" and other:
        ratio = "%.2fx" % (tps / statistics.median(float(r["tokens_per_s"]) for r in other))
    print("| %s layers x %s | %s x %s | %s | %.1f | %.1f | %.0f%% | %.1f | %.0f | %s |"
          % (L, C, B, runs[0]["context"], impl, tps, gf, 100 * gf / peak, gcpu, rss, ratio))
EOF

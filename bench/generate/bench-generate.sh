#!/bin/sh
# bench-generate.sh: batch-1 generation speed of gptd against PyTorch, with and
# without a KV cache, next to the memory-bandwidth bound, in one run with the
# same thread count.
#
#   bench/generate/bench-generate.sh [BUILDDIR] [THREADS] [REPEAT]
#
# BUILDDIR is the build tree holding bench/generate/bench-generate (default:
# the current directory); THREADS defaults to 2; REPEAT (default 3) is the
# number of runs with a KV cache, whose median is reported (runs without a
# cache are made once: they are slow; SKIP_NO_CACHE=1 leaves them out).  Needs /usr/bin/python3 with PyTorch
# for the reference figures (skipped when absent).  Prints JSON lines, then a
# Markdown table.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-.}
threads=${2:-2}
repeat=${3:-3}
python=${PYTHON:-/usr/bin/python3}
out=$(mktemp)
trap 'rm -f "$out"' EXIT

# Both run with idle OpenMP threads sleeping rather than spinning (the cores
# are shared), unless GOMP_SPINCOUNT is given (gptd's own default is 10000: a
# brief spin); PyTorch also with glibc's allocator kept from returning memory.
if [ -z "${GOMP_SPINCOUNT:-}" ]; then export OMP_WAIT_POLICY=passive; else unset OMP_WAIT_POLICY; fi
skip=
if [ "${SKIP_NO_CACHE:-0}" = 1 ]; then skip=--skip-no-cache; fi
"$build/bench/generate/bench-generate" --threads "$threads" --repeat "$repeat" $skip | tee -a "$out"
if "$python" -c 'import torch' 2>/dev/null; then
  MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000 \
    "$python" "$here/bench-generate.py" --threads "$threads" --repeat "$repeat" $skip | tee -a "$out"
else
  echo "# PyTorch not found: reference figures skipped" >&2
fi

"$python" - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
bw = next(r for r in rows if r["impl"] == "bandwidth")
bound = bw["bound_tokens_per_s"]
ref = {r["kv_cache"]: r["tokens_per_s"] for r in rows if r["impl"] == "pytorch"}
print()
print("Bandwidth: read %.1f GB/s, copy %.1f GB/s; %.0f MB of parameters per token;"
      " bound %.1f tokens/s" % (bw["read_gb_s"], bw["copy_gb_s"],
                                 bw["param_bytes_per_token"] / 1e6, bound))
print()
print("| implementation | KV cache | tokens/s | of the bound | vs PyTorch with cache |")
print("| --- | --- | ---: | ---: | ---: |")
for r in rows:
    if r["impl"] not in ("gptd", "pytorch"):
        continue
    vs = "%.2fx" % (r["tokens_per_s"] / ref[True]) if True in ref else "-"
    print("| %s | %s | %.2f | %.0f%% | %s |" % (
        r["impl"], "yes" if r["kv_cache"] else "no", r["tokens_per_s"],
        100 * r["tokens_per_s"] / bound, vs))
PY

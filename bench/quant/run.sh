#!/bin/sh
# run.sh: speed and quality of bf16 and q8 weights against fp32.
#
#   bench/quant/run.sh BUILDDIR [MODEL_DIR] [THREADS] [REPEAT]
#
# Speed: bench/generate/bench-generate with the gpt2-small shape (random
# weights), 200 new tokens, batch 1, the three formats interleaved in one run
# (REPEAT runs each, default 3; THREADS default 2), against each format's
# bandwidth bound.
#
# Quality: bench/quant/bench-quant on a trained float32 model: MODEL_DIR, or,
# when it is not given, the quickstart pipeline trained for 400 steps into a
# temporary directory (a byte-level model trained on README.md and docs/).
# The held-out text is bench/RESULTS.md and bench/generate/RESULTS.md (not in
# the quickstart corpus), and $GPTD_DATA_DIR/the-verdict.txt when set.
#
# Prints JSON lines.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build=${1:?usage: run.sh BUILDDIR [MODEL_DIR] [THREADS] [REPEAT]}
model=${2:-}
threads=${3:-2}
repeat=${4:-3}
if [ -z "${GOMP_SPINCOUNT:-}" ]; then export OMP_WAIT_POLICY=passive; fi

"$build/bench/generate/bench-generate" --threads "$threads" --repeat "$repeat" \
  --skip-no-cache --weights fp32,bf16,q8

if [ -z "$model" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && "$build/daemon/gptd" run "$src/pipelines/quickstart.pipeline" \
     --set train.max-steps=400 --set train.eval-freq=200 >"$tmp/train.log" 2>&1)
  model=$(ls -d "$tmp"/runs/quickstart-2*/checkpoint 2>/dev/null | head -n 1)
  [ -n "$model" ] || { echo "no checkpoint from the quickstart run" >&2; cat "$tmp/train.log" >&2; exit 1; }
fi
set -- --text "$src/bench/RESULTS.md" --text "$src/bench/generate/RESULTS.md"
if [ -n "${GPTD_DATA_DIR:-}" ] && [ -f "$GPTD_DATA_DIR/the-verdict.txt" ]; then
  set -- "$@" --text "$GPTD_DATA_DIR/the-verdict.txt"
fi
"$build/bench/quant/bench-quant" --model "$model" --threads "$threads" "$@"

#!/bin/sh
# bench/run-all.sh: runs every benchmark of gptd next to its peer, one after the
# other (never at the same time: each uses both cores), and leaves their logs and
# Markdown tables in OUTDIR. The figures in bench/RESULTS.md come from this script.
#
#   bench/run-all.sh BUILDDIR [OUTDIR]
#
# Needs: the benchmarks built (make -C BUILDDIR bench/train/bench-train
# bench/tokenizer/bench-tokenizer bench/generate/bench-generate
# bench/classify/bench-classify, bench/instruct/bench-instruct, bench/lora/bench-lora), Debian's
# python3-torch for the PyTorch peers, npm's tiktoken in $TIKTOKEN_DIR for the
# tokenizer peer, and $GPTD_DATA_DIR for the tokenizer corpus, the instruction
# fine-tuning steps (instruction-data.json) and the verdict-pretrain comparison (about 15 minutes; VERDICT=0 leaves it out).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-.}" && pwd)
out=${2:-/tmp/gptd-bench}
mkdir -p "$out"
echo "# gptd benchmarks, $(date -u +%FT%TZ), $(nproc) CPUs, OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}" | tee "$out/summary.md"
(cd "$out" && LOG="$out/train.log" "$here/train/run.sh" "$build" "${REPEATS:-3}") > "$out/train.md" 2>&1 || echo "train benchmark failed: see $out/train.md"
"$here/tokenizer/bench-tokenizer.sh" "$build" > "$out/tokenizer.md" 2>&1 || echo "tokenizer benchmark failed: see $out/tokenizer.md"
"$here/generate/bench-generate.sh" "$build" 2 "${REPEATS:-3}" > "$out/generate.md" 2>&1 || echo "generate benchmark failed: see $out/generate.md"
"$here/generate/bench-serve.sh" "$build" 2 "${REPEATS:-3}" > "$out/serve.md" 2>&1 || echo "serving benchmark failed: see $out/serve.md"
(cd "$out" && LOG="$out/classify.log" "$here/classify/run.sh" "$build" "${REPEATS:-3}") > "$out/classify.md" 2>&1 || echo "classify benchmark failed: see $out/classify.md"
(cd "$out" && LOG="$out/instruct.log" "$here/instruct/run.sh" "$build" "${REPEATS:-3}") > "$out/instruct.md" 2>&1 || echo "instruct benchmark failed: see $out/instruct.md"
(cd "$out" && LOG="$out/lora.log" "$here/lora/run.sh" "$build" "${REPEATS:-3}") > "$out/lora.md" 2>&1 || echo "lora benchmark failed: see $out/lora.md"
benches="train tokenizer generate serve classify instruct lora"
if [ "${VERDICT:-1}" != 0 ]; then
  "$here/train/bench-verdict.sh" "$build" 2 > "$out/verdict.md" 2>&1 || echo "verdict benchmark failed: see $out/verdict.md"
  benches="$benches verdict"
fi
for f in $benches; do
  printf '\n## %s\n\n' "$f" >> "$out/summary.md"
  cat "$out/$f.md" >> "$out/summary.md"
done
echo "results in $out/summary.md"

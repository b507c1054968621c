#!/bin/sh
# bench-tokenizer.sh: the tokenizer benchmark. Builds a ~25 MB varied corpus (once,
# outside the repository), encodes it with tiktoken (npm "tiktoken", WASM, one
# thread) and with gptd (one thread, two threads), checks that all ids are
# identical, times vocabulary loading, and trains a vocabulary with gptd's trainer
# and with the straightforward one. Prints a Markdown table for RESULTS.md.
# gptd's one-thread and two-thread runs use the same two CPUs (see
# bench-tokenizer.c), so the one-thread figure is the mean over those CPUs.
#
#   mkdir -p /tmp/tk && (cd /tmp/tk && npm install tiktoken)
#   GPTD_DATA_DIR=/path/to/data TIKTOKEN_DIR=/tmp/tk/node_modules \
#       bench/tokenizer/bench-tokenizer.sh BUILDDIR
#
# Environment: CORPUS (default /tmp/gptd-bench-corpus.txt), RUNS (default 5),
# TRAIN_MB (default 1), TRAIN_VOCAB (default 1000).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
builddir=${1:-.}
bench="$builddir/bench/tokenizer/bench-tokenizer"
corpus=${CORPUS:-/tmp/gptd-bench-corpus.txt}
runs=${RUNS:-5}
tmp=$(mktemp -d /tmp/gptd-bench-tok-XXXXXX)
trap 'rm -rf "$tmp"' EXIT

[ -x "$bench" ] || { echo "build $bench first (make bench/tokenizer/bench-tokenizer)" >&2; exit 1; }
[ -f "$corpus" ] || python3 "$here/make-corpus.py" "$corpus" >&2

echo "machine: $(nproc) cores, $(uname -m), load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
if [ -n "${TIKTOKEN_DIR:-}" ]; then
  TIKTOKEN_DIR=$TIKTOKEN_DIR node "$here/tiktoken-bench.mjs" "$corpus" "$tmp/tiktoken.ids" "$runs" > "$tmp/tiktoken.txt"
else
  echo "TIKTOKEN_DIR not set: no tiktoken comparison" >&2
  : > "$tmp/tiktoken.txt"
fi
"$bench" --runs "$runs" --train-mb "${TRAIN_MB:-1}" --train-vocab "${TRAIN_VOCAB:-1000}" \
  --ids-out "$tmp/gptd.ids" "$corpus" > "$tmp/gptd.txt"

same=n/a
[ -s "$tmp/tiktoken.txt" ] && { cmp -s "$tmp/gptd.ids" "$tmp/tiktoken.ids" && same=yes || same=NO; }
cat "$tmp/tiktoken.txt" "$tmp/gptd.txt" >&2
echo "ids_identical_to_tiktoken $same" >&2

get () { awk -v k="$1" '$1 == k { print $2 }' "$tmp/tiktoken.txt" "$tmp/gptd.txt"; }
tk=$(get tiktoken_mb_per_s); g1=$(get encode_1t_mb_per_s); g2=$(get encode_2t_mb_per_s)
tkc=$(get tiktoken_mb_per_cpu_s); g1c=$(get encode_1t_mb_per_cpu_s); g2c=$(get encode_2t_mb_per_cpu_s)
# "cpuA a / b; cpuB c / d": one thread / two threads, MB per CPU-second, per CPU.
percpu=$(awk '$1 ~ /^encode_1t_cpu[0-9]+_mb_per_cpu_s$/ { c = $1; sub(/^encode_1t_/, "", c); sub(/_mb.*/, "", c); one[c] = $2; order[++n] = c }
              $1 ~ /^encode_2t_cpu[0-9]+_mb_per_cpu_s$/ { c = $1; sub(/^encode_2t_/, "", c); sub(/_mb.*/, "", c); two[c] = $2 }
              END { for (i = 1; i <= n; i++) printf "%s%s %s / %s", (i > 1 ? "; " : ""), order[i], one[order[i]], two[order[i]] }' "$tmp/gptd.txt")
ratio () { [ -n "$1" ] && [ -n "$2" ] && awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1fx", a / b }' || echo "-"; }
cat <<EOT
| measure | value |
| --- | --- |
| corpus | $(get corpus_bytes) bytes, $(get tokens) GPT-2 tokens |
| tiktoken (npm, WASM), 1 thread | ${tk:--} MB/s (${tkc:--} MB per CPU-second) |
| gptd, 1 thread (mean over the two CPUs) | $g1 MB/s ($(ratio "$g1" "$tk") tiktoken); $g1c MB per CPU-second ($(ratio "$g1c" "$tkc")) |
| gptd, 2 threads | $g2 MB/s ($(ratio "$g2" "$g1") one thread; ids identical: $(get encode_2t_ids_identical)); $g2c MB per CPU-second of both workers |
| gptd per CPU, MB per CPU-second: 1 thread / 2 threads | ${percpu:-not pinned} |
| ids identical to tiktoken | $same |
| GPT-2 vocabulary load | $(get load_ms) ms ($(get load_cpu_ms) ms of CPU time) |
| training, $(get train_bytes) bytes to $(get train_vocab) tokens | gptd $(get train_gptd_s) s, straightforward $(get train_naive_s) s ($(ratio "$(get train_naive_s)" "$(get train_gptd_s)")); identical: $(get train_identical) |
EOT

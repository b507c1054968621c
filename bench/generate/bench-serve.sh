#!/bin/sh
# bench-serve.sh: aggregate generation speed through a real daemon with 1, 4
# and 8 concurrent `gptctl generate` clients of one model, which its serving
# worker decodes together (serve-batch=, docs/architecture.md "Serving").
#
#   bench/generate/bench-serve.sh [BUILDDIR] [THREADS] [REPEAT] [WEIGHTS]
#
# The model has gpt2-small's shape and random weights (bench-generate
# --save-model; GPT-2's tokenizer from $GPTD_DATA_DIR/gpt2). Each client asks
# for 200 new tokens (greedy; eos never comes), from a prompt of its own. The
# worker computes with THREADS threads (default 2); WEIGHTS is fp32 (default),
# bf16 or q8. Aggregate tokens/s is all clients' tokens over the wall time
# from the first client's start to the last one's end, the median of REPEAT
# (default 3) runs, interleaved; the ratio is against one client. Prints the CPU's flags and
# a Markdown table.
set -eu
build=$(cd "${1:-.}" && pwd)
threads=${2:-2}
repeat=${3:-3}
weights=${4:-fp32}
new=${NEW_TOKENS:-200}
: "${GPTD_DATA_DIR:?bench-serve.sh needs GPTD_DATA_DIR (GPT-2 tokenizer files)}"
tmp=$(mktemp -d)
trap 'kill $dpid 2>/dev/null; wait $dpid 2>/dev/null; rm -rf "$tmp"' EXIT
sock=$tmp/gptd.sock

echo "# CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs"
echo "# flags: $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|fma|f16c|avx512f|avx512bw|avx512vl|avx512_vnni)$' | tr '\n' ' ')"
echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

"$build/bench/generate/bench-generate" --save-model "$tmp/model"
if [ -z "${GOMP_SPINCOUNT:-}" ]; then export OMP_WAIT_POLICY=passive; fi
"$build/daemon/gptd" --socket "$sock" --state-dir "$tmp/state" --generate-threads "$threads" \
  > "$tmp/daemon.log" 2>&1 &
dpid=$!
i=0
until "$build/daemon/gptctl" --socket "$sock" ping > /dev/null 2>&1; do
  i=$((i + 1)); [ $i -lt 200 ] || { echo "gptd did not start" >&2; exit 1; }; sleep 0.1
done
ctl () { "$build/daemon/gptctl" --socket "$sock" "$@"; }
# The model loaded once before the runs.
ctl generate --model "$tmp/model" --weights "$weights" --max-new-tokens 1 "warm" > /dev/null

# run N: the wall time in seconds of N clients at once; checks every client
# got all its tokens.
run () {
  n=$1
  t0=$(date +%s.%N)
  pids=
  for c in $(seq 1 "$n"); do
    ctl --json generate --model "$tmp/model" --weights "$weights" --max-new-tokens "$new" \
      "Client $c asks about the weather in city number $c" > "$tmp/out.$c" &
    pids="$pids $!"
  done
  for p in $pids; do wait "$p"; done
  t1=$(date +%s.%N)
  for c in $(seq 1 "$n"); do
    tail -n 1 "$tmp/out.$c" | grep -q "\"tokens\":$new" \
      || { echo "client $c did not get $new tokens" >&2; exit 1; }
  done
  echo "$t0 $t1" | awk '{ printf "%.3f\n", $2 - $1 }'
}

median () { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

# The runs interleaved (1, 4, 8, 1, 4, 8, ...), so that a busy moment of a
# shared machine falls on every client count alike.
for r in $(seq 1 "$repeat"); do
  for n in 1 4 8; do echo "$n $(run "$n")" >> "$tmp/times"; done
done
echo "| clients | aggregate tokens/s | per client tokens/s | ratio to 1 client | runs (s) |"
echo "|---:|---:|---:|---:|---|"
base=
for n in 1 4 8; do
  t=$(awk -v n="$n" '$1 == n { print $2 }' "$tmp/times" | median)
  runs=$(awk -v n="$n" '$1 == n { printf "%s ", $2 }' "$tmp/times")
  agg=$(echo "$n $new $t" | awk '{ printf "%.1f", $1 * $2 / $3 }')
  per=$(echo "$new $t" | awk '{ printf "%.1f", $1 / $2 }')
  [ -n "$base" ] || base=$agg
  ratio=$(echo "$agg $base" | awk '{ printf "%.2f", $1 / $2 }')
  echo "| $n | $agg | $per | ${ratio}x | $runs|"
done
grep -o "decoded in steps of up to [0-9]* generation" "$tmp/daemon.log" | sort | uniq -c | sed 's/^/# /'
echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"

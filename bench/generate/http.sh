#!/bin/sh
# http.sh: aggregate generation speed through the HTTP API (gptd --http) with 1,
# 4 and 8 concurrent clients, against the same requests sent by gptctl over the
# control socket, and one client's generations in one process (no daemon).
#
#   bench/generate/http.sh BUILDDIR [MODEL_DIR] [TOKENS] [REQUESTS]
#
# A daemon and its gateway start on a temporary socket and port. Each client
# (curl, in parallel) sends REQUESTS completions (default 8) of TOKENS new tokens
# (default 100: with the 12-token prompt they stay within the default model's
# context of 128, past which every token recomputes the whole window;
# temperature 1, a seed per request, no stop, ignore_eos as gptctl has no eos
# token by default) for one model, one
# after the other; the figure is every client's generated tokens divided by the
# wall time from the first request to the last answer. The same requests then go
# through gptctl generate. MODEL_DIR defaults to the quickstart pipeline's model
# (4 layers, 128 wide, byte-level) trained for 20 steps into a temporary
# directory: speed does not depend on the weights. A serving worker decodes up to
# serve-batch= requests of one model together; more queue (gptd_http_queue_depth).
# The figures show what the HTTP layer costs next to gptctl. The serving
# worker computes with THREADS threads (default 1: the model is small, and on a
# shared machine OpenMP barriers cost more than a second thread gains).
#
# Prints JSON lines, then a Markdown table.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build=$(cd "${1:?usage: http.sh BUILDDIR [MODEL_DIR] [TOKENS] [REQUESTS]}" && pwd)
model=${2:-}
tokens=${3:-100}
requests=${4:-8}
command -v curl > /dev/null || { echo "http.sh: curl is needed" >&2; exit 1; }

tmp=$(mktemp -d)
dpid=
cleanup () {
  [ -n "$dpid" ] && kill "$dpid" 2>/dev/null && wait "$dpid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
GPTD_PLUGIN_PATH="$build/plugins/core/.libs:$build/plugins/bpe/.libs:$build/plugins/train/.libs:$build/plugins/generate/.libs"
export GPTD_PLUGIN_PATH

if [ -z "$model" ]; then
  (cd "$tmp" && "$build/daemon/gptd" run "$src/pipelines/quickstart.pipeline" \
     --set train.max-steps=20 --set train.eval-freq=0 > "$tmp/train.log" 2>&1)
  model=$(ls -d "$tmp"/runs/quickstart-2*/checkpoint 2>/dev/null | head -n 1)
  [ -n "$model" ] || { echo "no checkpoint from the quickstart run" >&2; cat "$tmp/train.log" >&2; exit 1; }
fi
mkdir "$tmp/models"
ln -s "$(cd "$model" && pwd)" "$tmp/models/m"

port=
for i in 1 2 3 4 5 6 7 8 9 10; do
  p=$((20000 + ($$ * 13 + i * 7919) % 30000))
  if curl -s -m 2 -o /dev/null "http://127.0.0.1:$p/"; then :; elif [ $? = 7 ]; then port=$p; break; fi
done
[ -n "$port" ] || { echo "no free port" >&2; exit 1; }
printf '[gptd]\nhttp=127.0.0.1:%s\nmodels=%s\ngenerate-threads=%s\n' "$port" "$tmp/models" \
  "${THREADS:-1}" > "$tmp/gptd.conf"
"$build/daemon/gptd" --config "$tmp/gptd.conf" --socket "$tmp/sock" --state-dir "$tmp/state" \
  > "$tmp/daemon.log" 2>&1 &
dpid=$!
i=0
until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health")" = 200 ]; do
  i=$((i + 1)); [ "$i" -lt 200 ] || { cat "$tmp/daemon.log" >&2; exit 1; }; sleep 0.1
done

now () { date +%s.%N; }

# client VIA N: one client's REQUESTS requests; its generated tokens go to $tmp/tok.VIA.N.
client () {
  via=$1 n=$2 total=0 r=0
  while [ "$r" -lt "$requests" ]; do
    seed=$((n * 1000 + r))
    if [ "$via" = http ]; then
      got=$(curl -s -m 600 "http://127.0.0.1:$port/v1/completions" -d "{\"model\":\"m\",
        \"prompt\":\"The pipeline\",\"max_tokens\":$tokens,\"temperature\":1,\"seed\":$seed,\"ignore_eos\":true}" |
        sed -n 's/.*"completion_tokens":\([0-9]*\).*/\1/p')
    else
      "$build/daemon/gptctl" --socket "$tmp/sock" generate --model "$tmp/models/m" \
        --max-new-tokens "$tokens" --temperature 1 --seed "$seed" "The pipeline" > /dev/null
      got=$tokens
    fi
    total=$((total + ${got:-0}))
    r=$((r + 1))
  done
  echo "$total" > "$tmp/tok.$via.$n"
}

# A warm-up loads the model.
requests_saved=$requests; requests=1; client http 0; requests=$requests_saved

for via in http gptctl; do
  for clients in 1 4 8; do
    rm -f "$tmp"/tok.*
    t0=$(now)
    n=1
    while [ "$n" -le "$clients" ]; do client "$via" "$n" & n=$((n + 1)); done
    wait  # the clients: this loop runs in a subshell, of which the daemon is no child
    t1=$(now)
    sum=$(cat "$tmp"/tok.* | awk '{ s += $1 } END { print s }')
    echo "{\"via\":\"$via\",\"clients\":$clients,\"requests\":$((clients * requests)),\"tokens\":$sum,\"seconds\":$(echo "$t1 $t0" | awk '{ printf "%.3f", $1 - $2 }'),\"tokens_per_s\":$(echo "$sum $t1 $t0" | awk '{ printf "%.1f", $1 / ($2 - $3) }')}"
  done
done | tee "$tmp/results.jsonl"

curl -s "http://127.0.0.1:$port/metrics" | grep -E '^gptd_http_(generated_tokens_total|requests_total\{endpoint="/v1/completions")' >&2

echo
echo "| clients | HTTP tokens/s | gptctl tokens/s | HTTP / gptctl |"
echo "|---:|---:|---:|---:|"
awk -F'[:,}]' '{ for (i = 1; i < NF; i++) { if ($i ~ /"via"/) via = $(i + 1); if ($i ~ /"clients"/) c = $(i + 1); if ($i ~ /"tokens_per_s"/) t = $(i + 1) }
  gsub(/"/, "", via); v[via, c] = t; cs[c] = 1 }
  END { for (c = 1; c <= 8; c++) if (c in cs) printf "| %d | %.1f | %.1f | %.2f |\n", c, v["http", c], v["gptctl", c], v["http", c] / v["gptctl", c] }' "$tmp/results.jsonl"

#!/bin/sh
# tests/e2e/http.sh: the OpenAI-style HTTP API (gptd --http) with real HTTP
# requests through curl. The daemon starts the gateway from gptd.conf (http=,
# models=, http-token-file=) and starts it again when it dies. With the tiny
# model of tests/golden/generate/model: /v1/models lists the models and their
# kinds; a completion, whole and streamed as server-sent events read to [DONE],
# has the text `gptctl generate` gives for the same prompt (greedy and seeded);
# a chat is the Alpaca-formatted prompt's generation (another template when the
# model directory names one); a tiny classifier answers /v1/classify as gptctl
# classify does. Bad JSON, bad fields, unknown and unfit models, a missing or
# wrong token, an oversized body, unknown paths and methods get the API's error
# objects with their status codes; /metrics counts requests and tokens; a client
# that hangs up, mid-stream or waiting for a whole answer, cancels its
# generation; stop strings and weight formats reach the serving worker; without
# a daemon the gateway answers 503; a public address without a token is refused.
. "${GPTD_SRCDIR:-.}/tests/e2e/lib.sh"

GPTD_PLUGIN_PATH="$GPTD_BUILDDIR/plugins/bpe/.libs:$GPTD_BUILDDIR/plugins/train/.libs:$GPTD_BUILDDIR/plugins/generate/.libs:$GPTD_PLUGIN_PATH"
export GPTD_PLUGIN_PATH
GPTD_NN_THREADS=1
export GPTD_NN_THREADS

if ! command -v curl > /dev/null 2>&1; then
  echo "1..0 # SKIP curl is not installed"
  exit 0
fi

plan 52

JSON="$GPTD_BUILDDIR/tests/e2e/e2e-json"
LM="$GPTD_SRCDIR/tests/golden/generate/model"
T1="win a free prize now"
T2="see you at lunch"
TOKEN=e2e-token-$$

# A port nothing listens on (curl: 7, cannot connect).
PORT=
for i in 1 2 3 4 5 6 7 8 9 10; do
  p=$((20000 + ($$ * 7 + i * 7919) % 30000))
  curl -s -m 2 -o /dev/null "http://127.0.0.1:$p/"
  if [ $? = 7 ]; then
    PORT=$p
    break
  fi
done
[ -n "$PORT" ] || { echo "Bail out! no free port found"; exit 99; }
URL="http://127.0.0.1:$PORT"

# http OUT METHOD PATH [CURL ARGS...]: a request with the token; the body goes
# to OUT, the headers to OUT.h; prints the status code.
http () {
  out=$1 method=$2 path=$3
  shift 3
  curl -s -m 60 -X "$method" -H "Authorization: Bearer $TOKEN" -D "$out.h" -o "$out" \
    -w '%{http_code}' "$@" "$URL$path"
}
# post OUT PATH JSON: a POST of a JSON body; prints the status code.
post () { http "$1" POST "$2" -H 'Content-Type: application/json' -d "$3"; }
# field FILE PATH: a value of the JSON in FILE.
field () { "$JSON" "$2" < "$1"; }
# error_is FILE TYPE PARAM CODE: FILE holds the API's error object.
error_is () {
  [ "$(field "$1" error.type)" = "$2" ] && [ "$(field "$1" error.param)" = "$3" ] &&
    [ "$(field "$1" error.code)" = "$4" ] && [ -n "$(field "$1" error.message)" ]
}
# wait_health SECONDS: until /health answers 200.
wait_health () {
  i=0
  while [ "$(curl -s -m 2 -o /dev/null -w '%{http_code}' "$URL/health")" != 200 ]; do
    i=$((i + 1))
    [ "$i" -gt $(($1 * 10)) ] && return 1
    sleep 0.1
  done
  return 0
}
gateway_pid () { pgrep -f -- "--http 127.0.0.1:$PORT" | head -n 1; }

# ---- models: the tiny language model, another with the Phi-3 template, and a
# tiny classifier trained here (train_tiny_classifier, lib.sh), linked -----------------
mkdir -p "$TMP/models" && cp -r "$LM" "$TMP/models/tiny" && cp -r "$LM" "$TMP/models/tiny-phi3" ||
  exit 99
echo phi3 > "$TMP/models/tiny-phi3/prompt-template"
train_tiny_classifier http-e2e "$TMP/train"
# The trainer's checkpoint root, linked: a model stands for its latest checkpoint.
[ -f "$TMP/train/checkpoint/checkpoint.json" ] && ln -s "$TMP/train/checkpoint" "$TMP/models/clf"
ok $? "a tiny classifier trains; its checkpoint root is linked into the models directory"

printf '%s\n' "$TOKEN" > "$TMP/token" && chmod 600 "$TMP/token"
printf '[gptd]\nhttp=127.0.0.1:%s\nmodels=%s\nhttp-token-file=%s\n' "$PORT" "$TMP/models" \
  "$TMP/token" > "$TMP/gptd.conf"
check "gptd starts with http= in gptd.conf" start_daemon --config "$TMP/gptd.conf"
wait_health 20
ok $? "the daemon starts the gateway: /health answers 200"
[ "$(curl -s "$URL/health")" = '{"status":"ok"}' ]
ok $? "/health says {\"status\":\"ok\"} without a token"

# ---- the token --------------------------------------------------------------------
st=$(curl -s -m 10 -o "$TMP/noauth" -w '%{http_code}' "$URL/v1/models")
[ "$st" = 401 ] && error_is "$TMP/noauth" authentication_error "" invalid_api_key
ok $? "no token: 401 and an authentication_error ($st)"
st=$(curl -s -m 10 -o "$TMP/badauth" -w '%{http_code}' -H "Authorization: Bearer x$TOKEN" \
  "$URL/v1/models")
[ "$st" = 401 ] && error_is "$TMP/badauth" authentication_error "" invalid_api_key
ok $? "a wrong token: 401 ($st)"

# ---- /v1/models ------------------------------------------------------------------------
st=$(http "$TMP/models.json" GET /v1/models)
[ "$st" = 200 ] && [ "$(field "$TMP/models.json" object)" = list ] &&
  [ "$(field "$TMP/models.json" data.0.id)" = clf ] &&
  [ "$(field "$TMP/models.json" data.0.kind)" = classifier ] &&
  [ "$(field "$TMP/models.json" data.1.id)" = tiny ] &&
  [ "$(field "$TMP/models.json" data.1.kind)" = language ] &&
  [ "$(field "$TMP/models.json" data.1.object)" = model ] &&
  [ "$(field "$TMP/models.json" data.2.id)" = tiny-phi3 ] &&
  ! field "$TMP/models.json" data.3 > /dev/null
ok $? "/v1/models lists clf (classifier), tiny and tiny-phi3 (language): $(cat "$TMP/models.json")"
st=$(http "$TMP/model.json" GET /v1/models/tiny)
[ "$st" = 200 ] && [ "$(field "$TMP/model.json" id)" = tiny ]
ok $? "/v1/models/tiny describes one model"

# ---- completions: the text gptctl generate gives -----------------------------------------
# The tiny config.json has no eos_token_id: the gateway stops at the
# vocabulary's <|endoftext|>, which gptctl is told.
EOS=$(grep -o '"<|endoftext|>": *[0-9]*' "$LM/vocab.json" | grep -o '[0-9]*$')
gen_ctl () { ctl generate --eos-id "${EOS:--1}" "$@"; }
gen_ctl --model "$TMP/models/tiny" --max-new-tokens 24 "hello world" > "$TMP/greedy.ctl"
st=$(post "$TMP/greedy.json" /v1/completions \
  '{"model":"tiny","prompt":"hello world","max_tokens":24,"temperature":0}')
[ "$st" = 200 ]
ok $? "a completion answers 200 ($st)"
{ field "$TMP/greedy.json" choices.0.text; echo; } > "$TMP/greedy.http"
[ -s "$TMP/greedy.ctl" ] && cmp -s "$TMP/greedy.http" "$TMP/greedy.ctl"
ok $? "greedy: the completion's text equals gptctl generate's"
[ "$(field "$TMP/greedy.json" object)" = text_completion ] &&
  [ "$(field "$TMP/greedy.json" model)" = tiny ] &&
  [ "$(field "$TMP/greedy.json" choices.0.finish_reason)" = length ] &&
  [ "$(field "$TMP/greedy.json" usage.completion_tokens)" = 24 ] &&
  [ "$(field "$TMP/greedy.json" usage.prompt_tokens)" -gt 0 ] &&
  [ "$(field "$TMP/greedy.json" usage.total_tokens)" = \
    $(($(field "$TMP/greedy.json" usage.prompt_tokens) + 24)) ] &&
  field "$TMP/greedy.json" id | grep -q '^cmpl-' && [ "$(field "$TMP/greedy.json" created)" -gt 0 ]
ok $? "a text_completion object: id, created, model, finish_reason length, usage"

gen_ctl --model "$TMP/models/tiny" --max-new-tokens 30 --temperature 1.2 --top-k 50 \
  --top-p 0.9 --seed 7 "The daemon" > "$TMP/seeded.ctl"
post "$TMP/seeded.json" /v1/completions '{"model":"tiny","prompt":"The daemon","max_tokens":30,
  "temperature":1.2,"top_k":50,"top_p":0.9,"seed":7}' > /dev/null
{ field "$TMP/seeded.json" choices.0.text; echo; } > "$TMP/seeded.http"
cmp -s "$TMP/seeded.http" "$TMP/seeded.ctl"
ok $? "seeded sampling (temperature, top_k, top_p, seed): the text equals gptctl generate's"

post "$TMP/two.json" /v1/completions \
  '{"model":"tiny","prompt":["hello world","The daemon"],"max_tokens":24,"temperature":0}' > /dev/null
{ field "$TMP/two.json" choices.0.text; echo; } | cmp -s - "$TMP/greedy.ctl" &&
  [ "$(field "$TMP/two.json" choices.1.index)" = 1 ] &&
  [ "$(field "$TMP/two.json" usage.completion_tokens)" = 48 ]
ok $? "an array of prompts: a choice per prompt, in order"

# ---- stop strings and weight formats (carried to the serving worker) ---------------------
STOP=$(grep -o '[a-z]\{2,\}' "$TMP/greedy.ctl" | head -n 1)
[ -n "$STOP" ] || STOP=G
gen_ctl --model "$TMP/models/tiny" --max-new-tokens 24 --stop "$STOP" "hello world" \
  > "$TMP/stop.ctl"
st=$(post "$TMP/stop.json" /v1/completions "{\"model\":\"tiny\",\"prompt\":\"hello world\",
  \"max_tokens\":24,\"temperature\":0,\"stop\":[\"never here\",\"$STOP\"]}")
{ field "$TMP/stop.json" choices.0.text; echo; } > "$TMP/stop.http"
[ "$st" = 200 ] && cmp -s "$TMP/stop.http" "$TMP/stop.ctl" &&
  [ "$(field "$TMP/stop.json" choices.0.finish_reason)" = stop ] &&
  ! grep -q "$STOP" "$TMP/stop.http" && ! cmp -s "$TMP/stop.http" "$TMP/greedy.ctl"
ok $? "stop ('$STOP'): the text gptctl generate --stop gives, cut before it, finish_reason stop"
post "$TMP/stop.stream" /v1/completions "{\"model\":\"tiny\",\"prompt\":\"hello world\",
  \"max_tokens\":24,\"temperature\":0,\"stop\":\"$STOP\",\"stream\":true}" > /dev/null
{ "$JSON" --sse choices.0.text < "$TMP/stop.stream"; echo; } | cmp -s - "$TMP/stop.ctl" &&
  [ "$("$JSON" --sse choices.0.finish_reason < "$TMP/stop.stream")" = stop ]
ok $? "a streamed completion with a stop string: the same text, finish_reason stop"
gen_ctl --model "$TMP/models/tiny" --max-new-tokens 24 --weights bf16 "hello world" \
  > "$TMP/bf16.ctl"
st=$(post "$TMP/bf16.json" /v1/completions \
  '{"model":"tiny","prompt":"hello world","max_tokens":24,"temperature":0,"weights":"bf16"}')
{ field "$TMP/bf16.json" choices.0.text; echo; } | cmp -s - "$TMP/bf16.ctl" && [ "$st" = 200 ] &&
  grep -q "started for the model $TMP/models/tiny.*bf16" "$TMP/daemon.log"
ok $? "weights bf16: the text gptctl generate --weights bf16 gives, from a bf16 serving worker"

# ---- streaming ------------------------------------------------------------------------------
st=$(post "$TMP/stream" /v1/completions \
  '{"model":"tiny","prompt":"hello world","max_tokens":24,"temperature":0,"stream":true}')
[ "$st" = 200 ] && grep -qi '^content-type: text/event-stream' "$TMP/stream.h"
ok $? "a stream answers 200 with text/event-stream"
{ "$JSON" --sse choices.0.text < "$TMP/stream"; echo; } > "$TMP/stream.text"
ok $? "the stream is data: events read to its end, data: [DONE]"
cmp -s "$TMP/stream.text" "$TMP/greedy.ctl"
ok $? "the streamed text equals gptctl generate's"
n=$("$JSON" --count < "$TMP/stream")
[ "$n" -ge 3 ] && [ "$("$JSON" --sse choices.0.finish_reason < "$TMP/stream")" = length ]
ok $? "a chunk per TextChunk ($n events), the last with finish_reason length"

# ---- chat: the Alpaca format ----------------------------------------------------------------
ALPACA='Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\nSay hi\n\n### Response:\n'
printf "$ALPACA" | gen_ctl --model "$TMP/models/tiny" --max-new-tokens 12 - > "$TMP/chat.ctl"
st=$(post "$TMP/chat.json" /v1/chat/completions \
  '{"model":"tiny","messages":[{"role":"user","content":"Say hi"}],"max_tokens":12,"temperature":0}')
{ field "$TMP/chat.json" choices.0.message.content; echo; } > "$TMP/chat.http"
[ "$st" = 200 ] && [ -s "$TMP/chat.ctl" ] && cmp -s "$TMP/chat.http" "$TMP/chat.ctl"
ok $? "a chat's answer is the generation from the Alpaca-formatted prompt"
[ "$(field "$TMP/chat.json" object)" = chat.completion ] &&
  [ "$(field "$TMP/chat.json" choices.0.message.role)" = assistant ] &&
  field "$TMP/chat.json" id | grep -q '^chatcmpl-' &&
  [ "$(field "$TMP/chat.json" usage.prompt_tokens)" -gt 30 ]
ok $? "a chat.completion object: the assistant's message, usage counting the template's tokens"

post "$TMP/chat.stream" /v1/chat/completions '{"model":"tiny","messages":[{"role":"user",
  "content":"Say hi"}],"max_tokens":12,"temperature":0,"stream":true}' > /dev/null
{ "$JSON" --sse choices.0.delta.content < "$TMP/chat.stream"; echo; } > "$TMP/chat.stream.text" &&
  cmp -s "$TMP/chat.stream.text" "$TMP/chat.ctl" &&
  head -n 1 "$TMP/chat.stream" | "$JSON" --sse choices.0.delta.role | grep -q assistant &&
  grep -q '"object":"chat.completion.chunk"' "$TMP/chat.stream"
ok $? "a streamed chat: chat.completion.chunk deltas (the role first) to [DONE], the same text"

MULTI='{"model":"tiny","max_tokens":8,"temperature":0,"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Say hi"},{"role":"assistant","content":"Hi."},{"role":"user","content":"Again"}]}'
printf "Be brief.\n\n${ALPACA}Hi.\n\n" > "$TMP/multi.prompt"
printf 'Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\nAgain\n\n### Response:\n' >> "$TMP/multi.prompt"
gen_ctl --model "$TMP/models/tiny" --max-new-tokens 8 - < "$TMP/multi.prompt" > "$TMP/multi.ctl"
post "$TMP/multi.json" /v1/chat/completions "$MULTI" > /dev/null
{ field "$TMP/multi.json" choices.0.message.content; echo; } | cmp -s - "$TMP/multi.ctl"
ok $? "a conversation: the system text, each earlier turn as instruction and response, then the last"

printf '<|user|>\nSay hi\n<|assistant|>:\n' |
  gen_ctl --model "$TMP/models/tiny-phi3" --max-new-tokens 12 - > "$TMP/phi3.ctl"
post "$TMP/phi3.json" /v1/chat/completions \
  '{"model":"tiny-phi3","messages":[{"role":"user","content":"Say hi"}],"max_tokens":12,"temperature":0}' > /dev/null
{ field "$TMP/phi3.json" choices.0.message.content; echo; } | cmp -s - "$TMP/phi3.ctl" &&
  ! cmp -s "$TMP/phi3.ctl" "$TMP/chat.ctl"
ok $? "a model directory's prompt-template file (phi3) picks its chat template"

# ---- classify ---------------------------------------------------------------------------------
ctl classify --model "$TMP/models/clf" "$T1" "$T2" > "$TMP/classify.ctl"
st=$(post "$TMP/classify.json" /v1/classify "{\"model\":\"clf\",\"input\":[\"$T1\",\"$T2\"]}")
printf '%s  %.4f\n%s  %.4f\n' "$(field "$TMP/classify.json" data.0.label)" \
  "$(field "$TMP/classify.json" data.0.probability)" "$(field "$TMP/classify.json" data.1.label)" \
  "$(field "$TMP/classify.json" data.1.probability)" > "$TMP/classify.http"
[ "$st" = 200 ] && awk '{ print $1 "  " $2 }' "$TMP/classify.ctl" | cmp -s - "$TMP/classify.http"
ok $? "/v1/classify: the labels and probabilities gptctl classify gives ($(cat "$TMP/classify.http" | tr '\n' ' '))"
st=$(post "$TMP/lmclf.json" /v1/classify "{\"model\":\"tiny\",\"input\":\"$T1\"}")
[ "$st" = 400 ] && error_is "$TMP/lmclf.json" invalid_request_error model model_not_supported
ok $? "a language model asked to classify: 400 model_not_supported"
st=$(post "$TMP/clfgen.json" /v1/completions '{"model":"clf","prompt":"hi"}')
[ "$st" = 400 ] && error_is "$TMP/clfgen.json" invalid_request_error model model_not_supported
ok $? "a classifier asked to complete: 400 model_not_supported"

# ---- errors -------------------------------------------------------------------------------
st=$(post "$TMP/e1" /v1/completions '{"model": "tiny", "prompt": ')
[ "$st" = 400 ] && error_is "$TMP/e1" invalid_request_error "" invalid_json
ok $? "bad JSON: 400 invalid_json ($(cat "$TMP/e1"))"
st=$(post "$TMP/e2" /v1/completions '[1, 2]')
[ "$st" = 400 ] && error_is "$TMP/e2" invalid_request_error "" invalid_json
ok $? "JSON that is not an object: 400"
st=$(post "$TMP/e3" /v1/completions '{"model":"tiny","prompt":"x","temperature":"hot"}')
[ "$st" = 400 ] && error_is "$TMP/e3" invalid_request_error temperature invalid_type
ok $? "a field of the wrong type: 400 naming it (temperature)"
st=$(post "$TMP/e4" /v1/completions '{"model":"tiny","prompt":"x","top_p":1.5}')
[ "$st" = 400 ] && error_is "$TMP/e4" invalid_request_error top_p invalid_value &&
  field "$TMP/e4" error.message | grep -q '1.5'
ok $? "a value out of range: 400 naming the field and the value (top_p 1.5)"
st=$(post "$TMP/e5" /v1/chat/completions '{"model":"tiny","messages":[{"role":"robot","content":"x"}]}')
[ "$st" = 400 ] && error_is "$TMP/e5" invalid_request_error "messages[0]" invalid_value
ok $? "a chat message with a bad role: 400 naming messages[0]"
st=$(post "$TMP/e6" /v1/completions '{"model":"nothing-here","prompt":"x"}')
[ "$st" = 404 ] && error_is "$TMP/e6" not_found_error model model_not_found
ok $? "an unknown model: 404 model_not_found"
st=$(post "$TMP/e7" /v1/completions '{"model":"../models/tiny","prompt":"x"}')
[ "$st" = 400 ] && [ "$(field "$TMP/e7" error.param)" = model ]
ok $? "a model id with '/' or '..' is refused (400), never a path"
mkdir "$TMP/models/broken" && cp "$LM"/*.json "$LM"/merges.txt "$TMP/models/broken/" &&
  head -c 1000 "$LM/model.safetensors" > "$TMP/models/broken/model.safetensors"
st=$(post "$TMP/e13" /v1/completions '{"model":"broken","prompt":"x","stream":true}')
[ "$st" = 400 ] && grep -qi '^content-type: application/json' "$TMP/e13.h" &&
  field "$TMP/e13" error.message | grep -q "broken/model.safetensors"
ok $? "a model the daemon cannot load, streamed: 400 and an error object naming the file ($st)"
head -c 1100000 /dev/zero | tr '\0' a > "$TMP/big"
st=$(http "$TMP/e8" POST /v1/completions --data-binary @"$TMP/big")
[ "$st" = 413 ] && error_is "$TMP/e8" invalid_request_error "" request_too_large
ok $? "a body over the limit (Content-Length): 413 ($st)"
st=$(http "$TMP/e9" POST /v1/completions -H 'Transfer-Encoding: chunked' --data-binary @"$TMP/big")
[ "$st" = 413 ] && error_is "$TMP/e9" invalid_request_error "" request_too_large
ok $? "a chunked body over the limit: 413 ($st)"
st=$(http "$TMP/e10" GET /v1/nothing)
[ "$st" = 404 ] && error_is "$TMP/e10" not_found_error "" unknown_url
ok $? "an unknown path: 404"
st=$(http "$TMP/e11" GET /v1/completions)
[ "$st" = 405 ] && grep -qi '^allow: POST' "$TMP/e11.h" &&
  error_is "$TMP/e11" invalid_request_error "" method_not_allowed
ok $? "a wrong method: 405 with Allow: POST"

# ---- /metrics --------------------------------------------------------------------------------
metric () { sed -n "s/^$1 //p" "$2"; }
http "$TMP/m1" GET /metrics > /dev/null
post "$TMP/one.json" /v1/completions '{"model":"tiny","prompt":"hello","max_tokens":5,"temperature":0}' > /dev/null
http "$TMP/m2" GET /metrics > /dev/null
C='gptd_http_requests_total{endpoint="\/v1\/completions",code="200"}'
[ "$(metric "$C" "$TMP/m2")" = $(($(metric "$C" "$TMP/m1") + 1)) ] &&
  [ "$(metric gptd_http_generated_tokens_total "$TMP/m2")" = \
    $(($(metric gptd_http_generated_tokens_total "$TMP/m1") + 5)) ] &&
  [ "$(metric gptd_http_prompt_tokens_total "$TMP/m2")" -gt \
    "$(metric gptd_http_prompt_tokens_total "$TMP/m1")" ]
ok $? "/metrics: a completion adds one request with code 200, its 5 tokens and its prompt tokens"
grep -q '^gptd_http_requests_total{endpoint="/v1/completions",code="400"} [1-9]' "$TMP/m2" &&
  grep -q '^gptd_http_requests_total{endpoint="/v1/models",code="401"} 2' "$TMP/m2" &&
  grep -q '^# TYPE gptd_http_requests_total counter' "$TMP/m2" &&
  grep -q '^# HELP gptd_http_tokens_per_second ' "$TMP/m2" &&
  grep -q '^# TYPE gptd_http_queue_depth gauge' "$TMP/m2" &&
  grep -q '^gptd_http_requests_in_flight 0$' "$TMP/m2" &&
  awk '/^gptd_http_tokens_per_second / { exit !($2 > 0) }' "$TMP/m2"
ok $? "/metrics: requests by endpoint and code, HELP and TYPE lines, in flight, tokens/s"

# ---- a client that hangs up cancels ----------------------------------------------------------
: > "$TMP/hang"
curl -s -N -m 60 -H "Authorization: Bearer $TOKEN" -d '{"model":"tiny","prompt":"hello",
  "max_tokens":1000000,"temperature":1,"ignore_eos":true,"stream":true}' "$URL/v1/completions" > "$TMP/hang" &
CP=$!
i=0
while [ "$(wc -c < "$TMP/hang")" -lt 2000 ] && [ "$i" -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
kill "$CP" 2>/dev/null
wait "$CP" 2>/dev/null
i=0
until grep -q 'tokens (cancelled) from [^ ]*/models/tiny' "$TMP/daemon.log"; do
  i=$((i + 1))
  [ "$i" -gt 100 ] && break
  sleep 0.1
done
grep -q 'tokens (cancelled) from [^ ]*/models/tiny' "$TMP/daemon.log"
ok $? "a client that hangs up mid-stream cancels its generation in the daemon"
curl -s -m 60 -H "Authorization: Bearer $TOKEN" -d '{"model":"tiny","prompt":"hello",
  "max_tokens":1000000,"temperature":1,"ignore_eos":true}' "$URL/v1/completions" > /dev/null &
CP=$!
sleep 1
kill "$CP" 2>/dev/null
wait "$CP" 2>/dev/null
i=0
until [ "$(grep -c 'tokens (cancelled) from [^ ]*/models/tiny' "$TMP/daemon.log")" = 2 ]; do
  i=$((i + 1))
  [ "$i" -gt 100 ] && break
  sleep 0.1
done
[ "$(grep -c 'tokens (cancelled) from [^ ]*/models/tiny' "$TMP/daemon.log")" = 2 ]
ok $? "a client that hangs up while its whole answer is made cancels it too"
http "$TMP/m3" GET /metrics > /dev/null
grep -q '^gptd_http_requests_in_flight 0$' "$TMP/m3" && wait_health 5
ok $? "the gateway goes on: nothing left in flight, /health 200"

# ---- supervision ---------------------------------------------------------------------------------
GW=$(gateway_pid)
[ -n "$GW" ] && kill -KILL "$GW" && sleep 0.5 && wait_health 20 && [ "$(gateway_pid)" != "$GW" ]
ok $? "a gateway that dies is started again by the daemon"
# A reload that changes http= moves the gateway.
PORT2=
for i in 11 12 13 14 15 16 17 18 19 20; do
  p=$((20000 + ($$ * 7 + i * 7919) % 30000))
  curl -s -m 2 -o /dev/null "http://127.0.0.1:$p/"
  if [ $? = 7 ] && [ "$p" != "$PORT" ]; then
    PORT2=$p
    break
  fi
done
sed -i "s/^http=.*/http=127.0.0.1:$PORT2/" "$TMP/gptd.conf"
kill -HUP "$DPID"
i=0
until [ "$(curl -s -m 2 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT2/health")" = 200 ]; do
  i=$((i + 1))
  [ "$i" -gt 100 ] && break
  sleep 0.1
done
[ -n "$PORT2" ] && [ "$i" -le 100 ] && ! curl -s -m 2 -o /dev/null "$URL/health" &&
  grep -q "reloaded: http: 127.0.0.1:$PORT -> 127.0.0.1:$PORT2" "$TMP/daemon.log"
ok $? "a reload that changes http= restarts the gateway on the new address"
PORT=$PORT2
URL="http://127.0.0.1:$PORT"
GW=$(gateway_pid)
check "gptd stops" stop_daemon
[ -n "$GW" ] && wait_gone "$GW" 10
ok $? "the gateway stops with the daemon"

# ---- without a daemon; a public address ------------------------------------------------------------
"$GPTD" --http "127.0.0.1:$PORT" --socket "$TMP/no-daemon.sock" --models "$TMP/models" \
  > "$TMP/gw.log" 2>&1 &
GW=$!
i=0
until [ "$(curl -s -m 2 -o /dev/null -w '%{http_code}' "$URL/health")" = 503 ]; do
  i=$((i + 1))
  [ "$i" -gt 100 ] && break
  sleep 0.1
done
st=$(post "$TMP/e12" /v1/completions '{"model":"tiny","prompt":"x"}')
[ "$st" = 503 ] && [ "$(field "$TMP/e12" error.code)" = daemon_unavailable ] &&
  [ "$(curl -s -m 5 -o /dev/null -w '%{http_code}' "$URL/health")" = 503 ]
ok $? "no daemon: /health and completions answer 503 ($st)"
kill "$GW" && wait "$GW"
ok $? "the gateway exits 0 on SIGTERM"
"$GPTD" --http "0.0.0.0:$PORT" --socket "$SOCK" > "$TMP/public.out" 2>&1
st=$?
[ "$st" = 2 ] && grep -q "not a loopback address" "$TMP/public.out"
ok $? "a public address without a token is refused (exit $st)"

[ "$tap_failed" = 0 ]

#!/bin/sh
# tests/e2e/generate.sh: text generation served by gptd, on the tiny model of
# tests/golden/generate/model. gptctl generate streams the same text as the
# generation library gives for the same parameters (greedy and seeded
# sampling; tests/e2e/e2e-generate calls the library directly); seeded requests
# repeat; --json shows the text chunks, the end (stop reason, token count) and
# the model cache's counters; two concurrent requests both complete; the daemon
# answers other requests while a generation runs, and a client that hangs up
# cancels its generation; bad parameters, a missing model directory and a bad
# model file get errors naming the problem; a model written again is loaded
# again; with --model-cache 1 (GPTD_MODEL_CACHE=1) the least recently used model
# is unloaded; a daemon stopping cancels the generations it serves.
. "${GPTD_SRCDIR:-.}/tests/e2e/lib.sh"

plan 33

# One thread per generation (the daemon and the library alike): the tiny model
# gains nothing from more, and a busy machine is not slowed further.
GPTD_NN_THREADS=1
export GPTD_NN_THREADS

MODEL="$GPTD_SRCDIR/tests/golden/generate/model"
LIBGEN="$GPTD_BUILDDIR/tests/e2e/e2e-generate"
# Copies: other model directories with the same weights.
cp -r "$MODEL" "$TMP/m2" && cp -r "$MODEL" "$TMP/m3" || exit 99
mkdir "$TMP/bad" && cp "$MODEL"/*.json "$MODEL"/merges.txt "$TMP/bad/" || exit 99
head -c 1000 "$MODEL/model.safetensors" > "$TMP/bad/model.safetensors"

# gen OUT ARGS...: gptctl generate, its output in OUT and errors in OUT.err.
gen () {
  out=$1
  shift
  ctl generate "$@" > "$out" 2> "$out.err"
}

check "gptd starts" start_daemon

# --- the library's text ------------------------------------------------------------
gen "$TMP/greedy" --model "$MODEL" --max-new-tokens 24 "hello world"
ok $? "greedy generation exits 0"
"$LIBGEN" "$MODEL" "hello world" 24 0 0 1 123 -1 > "$TMP/greedy.lib"
[ -s "$TMP/greedy.lib" ] && cmp -s "$TMP/greedy" "$TMP/greedy.lib"
ok $? "greedy: the streamed text equals the library's"

gen "$TMP/sampled" --model "$MODEL" --max-new-tokens 40 --temperature 1.2 --top-k 50 \
  --top-p 0.9 --seed 7 "The daemon"
ok $? "seeded sampling exits 0"
"$LIBGEN" "$MODEL" "The daemon" 40 1.2 50 0.9 7 -1 > "$TMP/sampled.lib"
cmp -s "$TMP/sampled" "$TMP/sampled.lib"
ok $? "seeded sampling: the streamed text equals the library's"
gen "$TMP/sampled2" --model "$MODEL" --max-new-tokens 40 --temperature 1.2 --top-k 50 \
  --top-p 0.9 --seed 7 "The daemon"
cmp -s "$TMP/sampled" "$TMP/sampled2"
ok $? "the same seeded request gives the same text again"
gen "$TMP/sampled3" --model "$MODEL" --max-new-tokens 40 --temperature 1.2 --top-k 50 \
  --top-p 0.9 --seed 8 "The daemon"
! cmp -s "$TMP/sampled" "$TMP/sampled3"
ok $? "another seed gives another text"

gen "$TMP/eos" --model "$MODEL" --max-new-tokens 24 --eos-id 269 "hello world"
"$LIBGEN" "$MODEL" "hello world" 24 0 0 1 123 269 > "$TMP/eos.lib"
cmp -s "$TMP/eos" "$TMP/eos.lib"
ok $? "--eos-id: the text equals the library's"

# --- JSON: chunks, the end, the cache ------------------------------------------------
gen "$TMP/json" --json --model "$MODEL" --max-new-tokens 24 "hello world"
ok $? "generate --json exits 0"
[ "$(grep -c '"text":{"text":' "$TMP/json")" -ge 2 ]
ok $? "the text comes in several chunks"
tail -n 1 "$TMP/json" | grep '"done":true' | grep '"stop_reason":"length"' | grep -q '"tokens":24'
ok $? "the last event says done, why (length) and how many tokens (24)"
grep -q '"message":"model [^"]*: cached (models cached: 1; loads: 1, hits: [1-9]' "$TMP/json"
ok $? "the model stayed loaded: cached, with one load for every request so far"
gen "$TMP/json-eos" --json --model "$MODEL" --max-new-tokens 24 --eos-id 269 "hello world"
tail -n 1 "$TMP/json-eos" | grep -q '"stop_reason":"eos"'
ok $? "a generation that meets the eos token says so"

# --- concurrency --------------------------------------------------------------------
gen "$TMP/c1" --model "$TMP/m2" --max-new-tokens 200 --temperature 1 --seed 1 "one" &
P1=$!
gen "$TMP/c2" --model "$MODEL" --max-new-tokens 200 --temperature 1 --seed 2 "two" &
P2=$!
gen "$TMP/c3" --model "$MODEL" --max-new-tokens 200 --temperature 1 --seed 3 "three" &
P3=$!
wait $P1 && wait $P2 && wait $P3
ok $? "three concurrent requests (two for one model) all complete"
"$LIBGEN" "$MODEL" "one" 200 1 0 1 1 -1 > "$TMP/c1.lib"
"$LIBGEN" "$MODEL" "two" 200 1 0 1 2 -1 > "$TMP/c2.lib"
"$LIBGEN" "$MODEL" "three" 200 1 0 1 3 -1 > "$TMP/c3.lib"
cmp -s "$TMP/c1" "$TMP/c1.lib" && cmp -s "$TMP/c2" "$TMP/c2.lib" && cmp -s "$TMP/c3" "$TMP/c3.lib"
ok $? "each got the library's text for its own parameters"

# A generation that would run for minutes: the daemon goes on answering, and a
# client that hangs up cancels it.
"$GPTCTL" --socket "$SOCK" generate --model "$MODEL" --max-new-tokens 1000000 "long" \
  > "$TMP/long" 2>&1 &
LONG=$!
i=0
while [ ! -s "$TMP/long" ] && [ "$i" -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
[ -s "$TMP/long" ] && alive "$LONG"
ok $? "a long generation streams"
timeout 10 "$GPTCTL" --socket "$SOCK" ping > /dev/null
ok $? "the daemon answers ping meanwhile"
gen "$TMP/during" --model "$TMP/m3" --max-new-tokens 24 "hello world"
cmp -s "$TMP/during" "$TMP/greedy"
ok $? "and serves another model meanwhile"
kill -KILL "$LONG"
wait "$LONG" 2>/dev/null
i=0
while ! grep -q 'tokens (cancelled) from' "$TMP/daemon.log" && [ "$i" -lt 200 ]; do
  sleep 0.1
  i=$((i + 1))
done
grep -q 'tokens (cancelled) from' "$TMP/daemon.log"
ok $? "the client hanging up cancels its generation"

# --- errors -------------------------------------------------------------------------
gen "$TMP/e1" --model "$MODEL" --top-p 1.5 "hello"
[ $? -eq 2 ] && grep -q 'top-p must be in (0, 1], not 1.5' "$TMP/e1.err"
ok $? "top-p 1.5: exit 2 and an error naming top-p"
gen "$TMP/e2" --model "$MODEL" --top-p 0 "hello"
[ $? -eq 2 ] && grep -q 'top-p' "$TMP/e2.err"
ok $? "top-p 0: an error naming top-p"
gen "$TMP/e3" --model "$MODEL" --temperature -1 "hello"
[ $? -eq 2 ] && grep -q 'temperature must be finite and >= 0' "$TMP/e3.err"
ok $? "temperature -1: an error naming the temperature"
gen "$TMP/e4" --model "$TMP/nowhere" "hello"
[ $? -eq 4 ] && grep -q "model directory $TMP/nowhere does not exist" "$TMP/e4.err"
ok $? "a missing model directory: exit 4, saying so"
gen "$TMP/e5" --model "$TMP/bad" "hello"
[ $? -eq 2 ] && grep -q "$TMP/bad/model.safetensors" "$TMP/e5.err"
ok $? "a bad model file: exit 2 and an error naming the file"
gen "$TMP/e6" --model "$MODEL" ""
[ $? -eq 2 ] && grep -q 'prompt is empty' "$TMP/e6.err"
ok $? "an empty prompt: an error"

# --- the cache ----------------------------------------------------------------------
(cd "$TMP" && gen "$TMP/rel" --json --model m2 --max-new-tokens 4 "hello")
grep -q "model $TMP/m2: " "$TMP/rel"
ok $? "a relative model directory is taken from the client's working directory"
gen "$TMP/again" --json --model "$TMP/m2" --max-new-tokens 4 "hello"
grep -q "model $TMP/m2: cached" "$TMP/again"
ok $? "asked for again, it is cached"
touch -d '2001-01-01' "$TMP/m2/model.safetensors"
gen "$TMP/touched" --json --model "$TMP/m2" --max-new-tokens 4 "hello"
grep -q "model $TMP/m2: loaded" "$TMP/touched"
ok $? "a model file written again is loaded again"

check "gptd stops" stop_daemon
export GPTD_MODEL_CACHE=1
check "gptd starts keeping one model" start_daemon
unset GPTD_MODEL_CACHE
gen "$TMP/l1" --json --model "$MODEL" --max-new-tokens 4 "hello"
gen "$TMP/l2" --json --model "$TMP/m3" --max-new-tokens 4 "hello"
gen "$TMP/l3" --json --model "$TMP/m3" --max-new-tokens 4 "hello"
gen "$TMP/l4" --json --model "$MODEL" --max-new-tokens 4 "hello"
grep -q ': cached' "$TMP/l3" && grep -q ': loaded' "$TMP/l4" \
  && grep -q "unloading the model .*generate/model (least recently used" "$TMP/daemon.log"
ok $? "with room for one model, the least recently used one is unloaded"

# --- stopping -----------------------------------------------------------------------
"$GPTCTL" --socket "$SOCK" generate --model "$MODEL" --max-new-tokens 1000000 "long" \
  > "$TMP/long2" 2>&1 &
LONG=$!
i=0
while [ ! -s "$TMP/long2" ] && [ "$i" -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
stop_daemon
ok $? "gptd stops (exit 0) while a generation runs"
wait "$LONG"
ok $(( $? == 1 ? 0 : 1 )) "the generation ends cancelled: gptctl exits 1"

#!/bin/sh
# tests/e2e/stop-weights.sh: stop strings and weight formats of generate and
# classify requests, on the tiny model of tests/golden/generate/model. With
# --stop, gptctl generate prints the library's text up to the first stop string
# (tests/e2e/e2e-generate runs the library with the same stop strings), which is
# the unstopped text cut before it; no streamed chunk holds any part of the stop
# string, even one that spans several tokens; the end says "stop". With
# --weights bf16 and q8 the text equals the library's in that format, the
# formats get workers of their own, and an unknown format or a bad stop string
# is an error naming it.
. "${GPTD_SRCDIR:-.}/tests/e2e/lib.sh"

plan 17

GPTD_NN_THREADS=1
export GPTD_NN_THREADS

MODEL="$GPTD_SRCDIR/tests/golden/generate/model"
LIBGEN="$GPTD_BUILDDIR/tests/e2e/e2e-generate"

gen () {
  out=$1
  shift
  ctl generate "$@" > "$out" 2> "$out.err"
}

# prefix_before FILE STOP: FILE's text up to the first occurrence of STOP.
prefix_before () {
  python3 -c 'import sys; t = open(sys.argv[1], encoding="utf-8").read().rstrip("\n"); print(t[:t.index(sys.argv[2])] if sys.argv[2] in t else "NOT FOUND")' "$1" "$2"
}

check "gptd starts" start_daemon

# The unstopped text, and two stop strings from its middle: one character, and
# six characters (which span several tokens of the tiny vocabulary).
"$LIBGEN" "$MODEL" "the cat" 40 1 0 1 5 -1 > "$TMP/full.lib" || exit 99
STOP1=$(python3 -c 'import sys; t = open(sys.argv[1], encoding="utf-8").read().rstrip("\n"); print(t[len(t) // 2])' "$TMP/full.lib")
STOP6=$(python3 -c 'import sys; t = open(sys.argv[1], encoding="utf-8").read().rstrip("\n"); print(t[len(t) // 2:len(t) // 2 + 6])' "$TMP/full.lib")
diag "stop strings: '$STOP1' and '$STOP6'"

gen "$TMP/s6" --model "$MODEL" --max-new-tokens 40 --temperature 1 --seed 5 \
  --stop "$STOP6" "the cat"
ok $? "generate --stop exits 0"
"$LIBGEN" "$MODEL" "the cat" 40 1 0 1 5 -1 "" "$STOP6" > "$TMP/s6.lib"
[ -s "$TMP/s6.lib" ] && cmp -s "$TMP/s6" "$TMP/s6.lib"
ok $? "--stop: the streamed text equals the library's"
[ "$(cat "$TMP/s6")" = "$(prefix_before "$TMP/full.lib" "$STOP6")" ]
ok $? "and is the unstopped text cut before the stop string"

gen "$TMP/s6.json" --json --model "$MODEL" --max-new-tokens 40 --temperature 1 --seed 5 \
  --stop "$STOP6" "the cat"
python3 - "$TMP/s6.json" "$TMP/s6" "$STOP6" <<'PY'
import json, sys
events = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
chunks = [e["text"] for e in events if "text" in e]
sent = "".join(c.get("text", "") for c in chunks)
expected = open(sys.argv[2], encoding="utf-8").read().rstrip("\n")
stop = sys.argv[3]
assert sent == expected, (sent, expected)
# Nothing past the cut went out: no chunk holds a start of the stop string
# beyond the expected text.
assert stop not in sent
last = chunks[-1]
assert last.get("done") and last.get("stopReason", last.get("stop_reason")) == "stop", last
PY
ok $? "--json: the chunks add up to the cut text, none holds the stop string, the end says stop"

gen "$TMP/s2" --model "$MODEL" --max-new-tokens 40 --temperature 1 --seed 5 \
  --stop "never-in-this-text" --stop "$STOP1" "the cat"
"$LIBGEN" "$MODEL" "the cat" 40 1 0 1 5 -1 "" "never-in-this-text" "$STOP1" > "$TMP/s2.lib"
cmp -s "$TMP/s2" "$TMP/s2.lib" \
  && [ "$(cat "$TMP/s2")" = "$(prefix_before "$TMP/full.lib" "$STOP1")" ]
ok $? "two stop strings: the text ends before the first that appears"

gen "$TMP/none" --model "$MODEL" --max-new-tokens 40 --temperature 1 --seed 5 \
  --stop "never-in-this-text" "the cat"
cmp -s "$TMP/none" "$TMP/full.lib"
ok $? "a stop string that never appears changes nothing"

gen "$TMP/e1" --model "$MODEL" --stop "" "hello"
[ $? -eq 2 ] && grep -q 'stop string 1 is empty' "$TMP/e1.err"
ok $? "an empty stop string: exit 2 and an error saying so"

# --- weight formats -------------------------------------------------------------------
for f in bf16 q8; do
  gen "$TMP/w-$f" --json --model "$MODEL" --max-new-tokens 24 --weights $f "hello world"
  grep -q "model [^\"]*, $f weights: loaded" "$TMP/w-$f"
  ok $? "--weights $f: the model is loaded in $f"
  gen "$TMP/w-$f.txt" --model "$MODEL" --max-new-tokens 24 --weights $f "hello world"
  "$LIBGEN" "$MODEL" "hello world" 24 0 0 1 123 -1 $f > "$TMP/w-$f.lib"
  cmp -s "$TMP/w-$f.txt" "$TMP/w-$f.lib"
  ok $? "--weights $f: the text equals the library's in $f"
done
ctl status > "$TMP/status"
grep -q "bf16 weights" "$TMP/status" && grep -q "q8 weights" "$TMP/status"
ok $? "each format has a worker of its own (status lists them)"
gen "$TMP/w-fp32" --model "$MODEL" --max-new-tokens 24 --weights fp32 "hello world"
"$LIBGEN" "$MODEL" "hello world" 24 0 0 1 123 -1 > "$TMP/w-fp32.lib"
cmp -s "$TMP/w-fp32" "$TMP/w-fp32.lib"
ok $? "--weights fp32 is the float32 text"

gen "$TMP/e2" --model "$MODEL" --weights fp16 "hello"
[ $? -eq 2 ] && grep -q 'weights' "$TMP/e2.err" && grep -q 'fp16' "$TMP/e2.err"
ok $? "an unknown weight format: exit 2 and an error naming it"
ctl classify --model "$MODEL" --weights int4 "some text" > "$TMP/e3" 2> "$TMP/e3.err"
[ $? -eq 2 ] && grep -q 'int4' "$TMP/e3.err"
ok $? "classify with an unknown weight format: exit 2 and an error naming it"

check "gptd stops" stop_daemon

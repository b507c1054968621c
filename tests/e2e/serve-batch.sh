#!/bin/sh
# tests/e2e/serve-batch.sh: a serving worker decodes concurrent generate
# requests together (serve.h), on the tiny model of tests/golden/generate/model.
# Requests sent at once, greedy and seeded samples of different lengths (one
# with a stop string, one with eos), each stream exactly the library's text
# for their own parameters (tests/e2e/e2e-generate), and the worker's log shows
# they shared decoding steps; short requests joining a long one mid-way and
# leaving before it ends change nothing in any text; a client that hangs up
# mid-way cancels its generation only; with serve-batch=1 requests are
# decoded one at a time and give the same texts; a worker killed mid-way fails
# every request it was serving, with an error saying so.
. "${GPTD_SRCDIR:-.}/tests/e2e/lib.sh"
PIDS=

plan 14

# One thread: the tiny model gains nothing from more.
GPTD_NN_THREADS=1
GPTD_GENERATE_THREADS=1
export GPTD_NN_THREADS GPTD_GENERATE_THREADS

MODEL="$GPTD_SRCDIR/tests/golden/generate/model"
LIBGEN="$GPTD_BUILDDIR/tests/e2e/e2e-generate"

# req NAME N T SEED EOS PROMPT [STOP]: one request in the background, its text in
# $TMP/NAME; the command that gives the library's text for the same parameters
# in $TMP/NAME.cmd (run by same, once the requests are all sent).
req () {
  name=$1 n=$2 t=$3 seed=$4 eos=$5 prompt=$6 stop=${7:-}
  if [ -n "$stop" ]; then
    ctl generate --model "$MODEL" --max-new-tokens "$n" --temperature "$t" --seed "$seed" \
      --eos-id "$eos" --stop "$stop" "$prompt" > "$TMP/$name" 2> "$TMP/$name.err" &
    LAST=$!
    printf '"$LIBGEN" "$MODEL" '"'"'%s'"'"' %s %s 0 1 %s %s "" '"'"'%s'"'"'\n' "$prompt" "$n" "$t" \
      "$seed" "$eos" "$stop" > "$TMP/$name.cmd"
  else
    ctl generate --model "$MODEL" --max-new-tokens "$n" --temperature "$t" --seed "$seed" \
      --eos-id "$eos" "$prompt" > "$TMP/$name" 2> "$TMP/$name.err" &
    LAST=$!
    printf '"$LIBGEN" "$MODEL" '"'"'%s'"'"' %s %s 0 1 %s %s\n' "$prompt" "$n" "$t" "$seed" \
      "$eos" > "$TMP/$name.cmd"
  fi
  PIDS="$PIDS $LAST"
}

# wait_reqs: waits for the requests started since the last call; fails if one did.
wait_reqs () {
  st=0
  for p in $PIDS; do wait "$p" || st=1; done
  PIDS=
  return $st
}

# same NAME...: each request's text equals the library's.
same () {
  for name in "$@"; do
    eval "$(cat "$TMP/$name.cmd")" > "$TMP/$name.lib"
    if ! [ -s "$TMP/$name.lib" ] || ! cmp -s "$TMP/$name" "$TMP/$name.lib"; then
      diag "$name differs from the library's text:" "$(cat "$TMP/$name")" "$(cat "$TMP/$name.lib")"
      return 1
    fi
  done
}

serving_pids () {
  for d in /proc/[0-9]*; do
    [ "$(awk '{ print $4 }' "$d/stat" 2>/dev/null)" = "$DPID" ] || continue
    tr '\0' ' ' < "$d/cmdline" 2>/dev/null | grep -q -- '--serve ' && basename "$d"
  done
}

# Prompts fed 4 tokens a step (the window of the tiny model, 16 positions, is
# fed again each step once a generation passes it): chunked prefill throughout.
printf '[gptd]\nprefill-chunk=4\n' > "$TMP/chunk.conf"
check "gptd starts" start_daemon --config "$TMP/chunk.conf"
# The model loaded first, so that the requests below arrive together.
ctl generate --model "$MODEL" --max-new-tokens 1 "warm" > /dev/null 2>&1

# --- requests sent at once -------------------------------------------------------------
req a 1500 0 1 -1 "hello world"
req b 1200 1.0 7 -1 "the cat and the dog"
req c 900 1.3 9 -1 "a"
req d 100 0.8 3 269 "the dog"
req e 80 1.0 11 -1 "$(printf 'caf\303\251')" "e"
req f 70 0.7 5 -1 "one two three four five six seven eight nine ten eleven twelve thirteen"
wait_reqs
ok $? "six concurrent requests complete"
same a b c d e f
ok $? "each streams exactly the library's text for its parameters"
# Whether two of them shared a decoding step depends on when each client got
# through on a busy machine: a few more rounds of the same requests if not.
together () { grep -q "decoded in steps of up to [2-9] generation" "$TMP/daemon.log"; }
round=0
while ! together && [ "$round" -lt 4 ]; do
  round=$((round + 1))
  req a 1500 0 1 -1 "hello world"
  req b 1200 1.0 7 -1 "the cat and the dog"
  req c 900 1.3 9 -1 "a"
  req d 100 0.8 3 269 "the dog"
  req f 70 0.7 5 -1 "one two three four five six seven eight nine ten eleven twelve thirteen"
  wait_reqs && same a b c d f || break
done
together
ok $? "the worker decoded them together"

# --- joining and leaving ---------------------------------------------------------------
req long 5000 1.0 21 -1 "the long one"
LONG=$LAST
PIDS=
i=0
while [ ! -s "$TMP/long" ] && [ "$i" -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
req s1 20 0 1 -1 "short one"
req s2 35 1.1 4 -1 "short two"
wait_reqs && alive $LONG
ok $? "short requests join a long one and finish before it"
wait $LONG
ok $? "the long one completes"
same long s1 s2
ok $? "and every text equals the library's"

# --- a client that hangs up ------------------------------------------------------------
"$GPTCTL" --socket "$SOCK" generate --model "$MODEL" --max-new-tokens 100000 "gone" \
  > "$TMP/gone" 2>&1 &
GONE=$!
i=0
while [ ! -s "$TMP/gone" ] && [ "$i" -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
req k1 150 1.0 31 -1 "kept one"
req k2 150 0 1 -1 "kept two"
sleep 0.5
kill -KILL $GONE
wait $GONE 2>/dev/null
wait_reqs && same k1 k2
ok $? "a client hanging up mid-way leaves the others' texts exact"
i=0
while ! grep -q 'tokens (cancelled) from' "$TMP/daemon.log" && [ "$i" -lt 200 ]; do
  sleep 0.1
  i=$((i + 1))
done
grep -q 'tokens (cancelled) from' "$TMP/daemon.log"
ok $? "and cancels its own generation"

# --- a worker that dies ----------------------------------------------------------------
for n in 1 2 3; do
  "$GPTCTL" --socket "$SOCK" generate --model "$MODEL" --max-new-tokens 100000 "crash $n" \
    > "$TMP/crash$n" 2> "$TMP/crash$n.err" &
  PIDS="$PIDS $!"
done
i=0
while { [ ! -s "$TMP/crash1" ] || [ ! -s "$TMP/crash2" ] || [ ! -s "$TMP/crash3" ]; } \
  && [ "$i" -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
SP=$(serving_pids)
kill -KILL $SP
failed=0
wait_reqs
for n in 1 2 3; do
  grep -q "The serving worker of the model $MODEL (pid $SP) killed by signal 9" \
    "$TMP/crash$n.err" && failed=$((failed + 1))
done
[ "$failed" -eq 3 ]
ok $? "a worker killed mid-way fails all three requests it served, saying so"
check "gptd stops" stop_daemon

# --- one at a time -----------------------------------------------------------------------
printf '[gptd]\nserve-batch=1\n' > "$TMP/one.conf"
LINES=$(wc -l < "$TMP/daemon.log")
check "gptd starts with serve-batch=1" start_daemon --config "$TMP/one.conf"
req o1 60 1.0 7 -1 "the cat and the dog"
req o2 60 0 1 -1 "hello world"
wait_reqs
tail -n +$((LINES + 1)) "$TMP/daemon.log" > "$TMP/one.log"
same o1 o2 && [ "$(grep -c "decoded in steps of up to 1 generation" "$TMP/one.log")" -eq 2 ] \
  && ! grep -q "decoded in steps of up to [2-9]" "$TMP/one.log"
ok $? "serve-batch=1: the same texts, one generation at a time"
check "gptd stops" stop_daemon

#!/bin/sh
# tests/e2e/serve.sh: generation in serving workers. The daemon process holds no
# model: after generations it has a handful of threads (no OpenMP team) and
# little memory, and `gptctl status` names the model loaded in its serving
# worker. A serving worker killed with SIGKILL in the middle of a generation
# fails that request only, with an error saying so: the daemon answers, a
# training run going on meanwhile succeeds, and the next generate starts a new
# worker and succeeds.
. "${GPTD_SRCDIR:-.}/tests/e2e/lib.sh"

GPTD_PLUGIN_PATH="$GPTD_BUILDDIR/plugins/bpe/.libs:$GPTD_BUILDDIR/plugins/train/.libs:$GPTD_PLUGIN_PATH"
export GPTD_PLUGIN_PATH

plan 15

MODEL="$GPTD_SRCDIR/tests/golden/generate/model"

# serving_pids: the daemon's children that are serving workers.
serving_pids () {
  for d in /proc/[0-9]*; do
    [ "$(awk '{ print $4 }' "$d/stat" 2>/dev/null)" = "$DPID" ] || continue
    tr '\0' ' ' < "$d/cmdline" 2>/dev/null | grep -q -- '--serve ' && basename "$d"
  done
}
proc_field () { sed -n "s/^$2:[[:space:]]*\([0-9]*\).*/\1/p" "/proc/$1/status"; }

check "gptd starts" start_daemon

ctl generate --model "$MODEL" --max-new-tokens 24 "hello world" > "$TMP/first.out"
ok $? "a generation succeeds"
SP=$(serving_pids)
[ -n "$SP" ] && [ "$(echo "$SP" | wc -w)" = 1 ]
ok $? "it ran in one serving worker, a child of the daemon ($SP)"
ctl status > "$TMP/status.out"
grep -q "^models: *1 loaded" "$TMP/status.out" && grep -q "$MODEL (uid [0-9]*, pid $SP)" "$TMP/status.out"
ok $? "gptctl status names the model loaded and its worker"
THREADS=$(proc_field "$DPID" Threads)
RSS_KB=$(proc_field "$DPID" VmRSS)
diag "the daemon after a generation: $THREADS thread(s), $RSS_KB kB resident"
[ "$THREADS" -le 4 ]
ok $? "the daemon runs no numeric threads ($THREADS threads)"
! grep -q "$MODEL" "/proc/$DPID/maps" && ! grep -q libgomp "/proc/$DPID/maps" \
  || [ "$(ls "/proc/$DPID/task" | wc -l)" -le 4 ]
ok $? "the daemon maps no model file"

# A training run goes on meanwhile.
ticker_pipeline "$TMP/ticks.pipeline" ticks count=40 interval-ms=100
RUN=$(ctl run "$TMP/ticks.pipeline")
wait_state "$RUN" running 20

"$GPTCTL" --socket "$SOCK" generate --model "$MODEL" --max-new-tokens 1000000 "long" \
  > "$TMP/long.out" 2> "$TMP/long.err" &
LONG=$!
i=0
while [ ! -s "$TMP/long.out" ] && [ "$i" -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
SP=$(serving_pids)
kill -KILL $SP
wait "$LONG"
st=$?
[ "$st" -ne 0 ] && grep -q "The serving worker of the model $MODEL (pid $SP) killed by signal 9" "$TMP/long.err"
ok $? "the generation whose worker was killed fails, saying why (exit $st)"
ctl ping > /dev/null
ok $? "the daemon answers"
grep -q "serving worker $SP ($MODEL) killed by signal 9 (Killed) while serving request" "$TMP/daemon.log"
ok $? "and logs the worker's death"
[ "$(run_state "$RUN")" = running ]
ok $? "the training run goes on"
ctl generate --model "$MODEL" --max-new-tokens 24 "hello world" > "$TMP/next.out"
ok $? "the next generate succeeds"
cmp -s "$TMP/first.out" "$TMP/next.out"
ok $? "with the same text as before"
NEW=$(serving_pids)
[ -n "$NEW" ] && [ "$NEW" != "$SP" ]
ok $? "in a new serving worker ($NEW)"
wait_state "$RUN" succeeded 30
ok $? "the training run succeeds"
check "gptd stops" stop_daemon

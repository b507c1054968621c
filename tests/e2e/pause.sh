#!/bin/sh
# tests/e2e/pause.sh: scheduling, pause and the end of a cancel. With max-runs=1,
# three runs submitted together run one after the other in the order they came,
# the waiting ones shown queued with their place; a queued run that is cancelled
# or paused never starts. gptctl pause stops a training run mid-way with a
# checkpoint (state paused) and gptctl resume continues it exactly: the same
# losses, step for step, as an uninterrupted run. A cancel that cannot finish
# (text-source blocked opening a FIFO nobody writes) is escalated to SIGKILL
# after cancel-timeout, which the run's log and error say.
. "${GPTD_SRCDIR:-.}/tests/e2e/lib.sh"

GPTD_PLUGIN_PATH="$GPTD_BUILDDIR/plugins/bpe/.libs:$GPTD_BUILDDIR/plugins/train/.libs:$GPTD_PLUGIN_PATH"
export GPTD_PLUGIN_PATH

plan 24

cat > "$TMP/gptd.conf" <<CONF
[gptd]
max-runs=1
cancel-timeout=2
CONF

# started RUN: the start time status.json records.
started () { sed -n 's/^ *"started" *: *\([0-9.e+]*\).*/\1/p' "$STATE/runs/$1/status.json"; }
finished () { sed -n 's/^ *"finished" *: *\([0-9.e+]*\).*/\1/p' "$STATE/runs/$1/status.json"; }
# never_started RUN: status.json has no start time (0 is left out).
never_started () { awk -v s="$(started "$1")" 'BEGIN { exit !(s + 0 == 0) }'; }
# before A B: whether time A <= time B.
before () { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 <= b + 0) }'; }

check "gptd starts with max-runs=1" start_daemon --config "$TMP/gptd.conf"

# --- queueing ------------------------------------------------------------------------
ticker_pipeline "$TMP/q.pipeline" q count=10 interval-ms=100
A=$(ctl run "$TMP/q.pipeline")
B=$(ctl run "$TMP/q.pipeline")
C=$(ctl run "$TMP/q.pipeline")
D=$(ctl run "$TMP/q.pipeline")
[ "$(run_state "$A")" = running ] && [ "$(run_state "$B")" = queued ] \
  && [ "$(run_state "$C")" = queued ]
ok $? "the first run runs, the others wait queued"
ctl status "$C" | grep -q '^queue: *number 2'
ok $? "status shows a queued run's place in the queue"
ctl ps | grep -q "^$B  *queued .*waiting: number 1 in the queue"
ok $? "ps shows it too"
ctl cancel "$D" > /dev/null && [ "$(run_state "$D")" = cancelled ]
ok $? "a queued run that is cancelled ends cancelled at once"
wait_state "$C" succeeded 30
ok $? "the queue drains: the last run succeeds"
[ "$(run_state "$A")" = succeeded ] && [ "$(run_state "$B")" = succeeded ]
ok $? "every run succeeded"
before "$(finished "$A")" "$(started "$B")" && before "$(finished "$B")" "$(started "$C")"
ok $? "one after the other, in the order submitted (B started after A ended, C after B)"
never_started "$D"
ok $? "the cancelled run never started"
grep -q "run $B: queued (position 1; 1 run(s) running, at most 1)" "$TMP/daemon.log"
ok $? "the daemon logs why a run waits"

# --- pause and resume: exactly as an uninterrupted run ---------------------------------
tiny_train_pipeline "$TMP/train.pipeline"

ID=$(ctl run "$TMP/train.pipeline")
RUNDIR="$STATE/runs/$ID"
i=0
while [ "$(wc -l < "$RUNDIR/metrics.csv" 2>/dev/null || echo 0)" -lt 150 ] && [ "$i" -lt 600 ]; do
  sleep 0.1
  i=$((i + 1))
done
Q=$(ctl run "$TMP/q.pipeline")
ctl pause "$Q" > "$TMP/pause-queued.out"
[ $? -eq 0 ] && [ "$(run_state "$Q")" = paused ] && never_started "$Q"
ok $? "a queued run that is paused leaves the queue without starting"
ctl pause "$ID" > "$TMP/pause.out"
ok $? "gptctl pause exits 0"
grep -q "^run $ID paused" "$TMP/pause.out" && [ "$(run_state "$ID")" = paused ]
ok $? "the run is paused"
STEPS_BEFORE=$(tail -n 1 "$RUNDIR/metrics.csv" | cut -d, -f1)
[ -n "$STEPS_BEFORE" ] && [ "$STEPS_BEFORE" -lt 1499 ] && [ -s "$RUNDIR/checkpoint/checkpoint.json" ] \
  && [ -z "$(worker_pids)" ]
ok $? "mid-training (step $STEPS_BEFORE), with a checkpoint written and no worker left"
ctl ps | grep -q "^$ID  *paused "
ok $? "ps lists it as paused"
ctl resume "$ID" > /dev/null && ctl watch "$ID" > /dev/null
ok $? "gptctl resume continues it; watching it to its end exits 0"
[ "$(run_state "$ID")" = succeeded ] && [ "$(tail -n 1 "$RUNDIR/metrics.csv" | cut -d, -f1)" = 1499 ]
ok $? "it succeeds, having trained to the last step"
ctl logs "$ID" | grep -q 'resuming from the last checkpoint (the run had been paused)'
ok $? "its log says it was resumed after a pause"
ctl run "$TMP/train.pipeline" --wait > "$TMP/straight.out"
ID2=$(head -n 1 "$TMP/straight.out")
cut -d, -f1,4 "$RUNDIR/metrics.csv" > "$TMP/resumed.loss"
cut -d, -f1,4 "$STATE/runs/$ID2/metrics.csv" > "$TMP/straight.loss"
[ "$(wc -l < "$TMP/straight.loss")" -gt 1000 ] && cmp -s "$TMP/resumed.loss" "$TMP/straight.loss"
ok $? "the paused and resumed run's losses equal an uninterrupted run's, step for step"
cmp -s "$RUNDIR/eval.csv" "$STATE/runs/$ID2/eval.csv"
ok $? "and so do its evaluations"

# --- a cancel that cannot finish: SIGKILL after cancel-timeout ---------------------------
mkfifo "$TMP/fifo"
cat > "$TMP/fifo.pipeline" <<PIPE
[pipeline]
name=blocked

[stage corpus]
type=text-source
path=$TMP/fifo

[stage out]
type=dump
input=corpus
PIPE
F=$(ctl run "$TMP/fifo.pipeline")
wait_state "$F" running 20
sleep 0.5
t0=$(date +%s)
ctl cancel "$F" > "$TMP/cancel.out"
t1=$(date +%s)
[ "$(run_state "$F")" = cancelled ] && [ $((t1 - t0)) -le 8 ]
ok $? "a run blocked opening a FIFO is cancelled all the same ($((t1 - t0)) s)"
grep -q "the worker did not stop within 2 s of the cancel and was killed" "$TMP/cancel.out"
ok $? "gptctl says it was killed after the grace period"
ctl logs "$F" | grep -q 'did not stop within 2 s of the cancel: killing it (SIGKILL)' \
  && grep -q "run $F: worker [0-9]* did not stop within 2 s of the cancel; killing it" "$TMP/daemon.log"
ok $? "the run's log and the daemon's log say so"

check "gptd stops" stop_daemon

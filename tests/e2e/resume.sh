#!/bin/sh
# tests/e2e/resume.sh: gptctl resume. A tiny training run (text-source,
# bpe-tokenizer, token-windows, gpt-trainer) is cancelled through gptctl
# mid-training, which writes a checkpoint; gptctl resume continues it in its
# run directory from that checkpoint to the end (state succeeded), with the
# same losses as an uninterrupted run of the same pipeline. A run interrupted
# by the daemon stopping resumes after a restart; a failed run can be resumed
# (and fails again the same way). Resuming a running or succeeded run is
# refused (exit 5), an unknown run is not found (exit 4), and so is pausing a
# run that has ended (pause itself: tests/e2e/pause.sh).
. "${GPTD_SRCDIR:-.}/tests/e2e/lib.sh"

GPTD_PLUGIN_PATH="$GPTD_BUILDDIR/plugins/bpe/.libs:$GPTD_BUILDDIR/plugins/train/.libs:$GPTD_PLUGIN_PATH"
export GPTD_PLUGIN_PATH

plan 24

# 1500 steps of a 2-layer, 32-wide GPT on the README's bytes: a few seconds.
tiny_train_pipeline "$TMP/train.pipeline"

check "gptd starts" start_daemon

# --- cancel mid-training, then resume -------------------------------------------------
ID=$(ctl run "$TMP/train.pipeline")
ok $? "a training run is submitted"
RUNDIR="$STATE/runs/$ID"
i=0
while [ "$(wc -l < "$RUNDIR/metrics.csv" 2>/dev/null || echo 0)" -lt 150 ] && [ "$i" -lt 600 ]; do
  sleep 0.1
  i=$((i + 1))
done
[ "$(run_state "$ID")" = running ]
ok $? "it trains"
ctl resume "$ID" > /dev/null 2> "$TMP/running.err"
[ $? -eq 5 ] && grep -q "Run $ID is running" "$TMP/running.err"
ok $? "resuming a running run is refused (exit 5)"
ctl cancel "$ID" > "$TMP/cancel.out"
ok $? "gptctl cancel stops it"
grep -q "run $ID cancelled" "$TMP/cancel.out"
ok $? "it ends cancelled"
STEPS_BEFORE=$(tail -n 1 "$RUNDIR/metrics.csv" | cut -d, -f1)
[ -n "$STEPS_BEFORE" ] && [ "$STEPS_BEFORE" -lt 1499 ] && [ -s "$RUNDIR/checkpoint/checkpoint.json" ]
ok $? "mid-training (step $STEPS_BEFORE), with a checkpoint written"

ctl resume "$ID" > "$TMP/resume.out"
ok $? "gptctl resume exits 0"
grep -q "run $ID: resuming in $RUNDIR" "$TMP/resume.out"
ok $? "it says the run resumes in its run directory"
st=$(run_state "$ID")
[ "$st" = queued ] || [ "$st" = running ] || [ "$st" = succeeded ]
ok $? "the run is going again ($st)"
ctl watch "$ID" > "$TMP/watch.out"
ok $? "watching it to its end exits 0 (it succeeded)"
[ "$(run_state "$ID")" = succeeded ]
ok $? "its state is succeeded"
[ "$(tail -n 1 "$RUNDIR/metrics.csv" | cut -d, -f1)" = 1499 ]
ok $? "training went on to the last step"
ctl logs "$ID" > "$TMP/logs.out"
grep -q 'resuming from the last checkpoint (the run had been cancelled)' "$TMP/logs.out" \
  && grep -q 'train: resumed from' "$TMP/logs.out"
ok $? "its log says it was resumed, and the trainer that it resumed from the checkpoint"
grep -q '"state" : "succeeded"' "$RUNDIR/status.json" && grep -q '"error" : ""' "$RUNDIR/status.json"
ok $? "status.json says succeeded, with no error left"

# The same pipeline without interruption: the same losses, step for step.
ctl run "$TMP/train.pipeline" --wait > "$TMP/straight.out"
ID2=$(head -n 1 "$TMP/straight.out")
[ "$(run_state "$ID2")" = succeeded ]
ok $? "an uninterrupted run of the same pipeline succeeds"
cut -d, -f1,4 "$RUNDIR/metrics.csv" > "$TMP/resumed.loss"
cut -d, -f1,4 "$STATE/runs/$ID2/metrics.csv" > "$TMP/straight.loss"
cmp -s "$TMP/resumed.loss" "$TMP/straight.loss"
ok $? "the resumed run's training losses equal the uninterrupted run's"
cmp -s "$RUNDIR/eval.csv" "$STATE/runs/$ID2/eval.csv"
ok $? "and so do its evaluations (eval.csv)"

ctl resume "$ID" 2> "$TMP/succeeded.err"
[ $? -eq 5 ] && grep -q "Run $ID has succeeded; there is nothing to resume" "$TMP/succeeded.err"
ok $? "resuming a succeeded run is refused (exit 5)"
ctl resume 999 2> /dev/null
ok $(( $? == 4 ? 0 : 1 )) "resuming an unknown run: exit 4"

# --- interrupted by the daemon stopping, resumed after a restart -------------------------
ticker_pipeline "$TMP/ticks.pipeline" ticks count=40 interval-ms=50
IDT=$(ctl run "$TMP/ticks.pipeline")
wait_state "$IDT" running 20
stop_daemon
start_daemon
[ "$(run_state "$IDT")" = interrupted ] && ctl resume "$IDT" --wait > "$TMP/ticks.out"
ok $? "a run interrupted by a daemon stop is resumed after a restart (resume --wait exits 0)"
tail -n 1 "$TMP/ticks.out" | grep -q "^run $IDT succeeded"
ok $? "and succeeds"

# --- failed, resumed: fails the same way again ---------------------------------------------
ticker_pipeline "$TMP/fail.pipeline" fail count=10 interval-ms=10 fail-at=3
ctl run "$TMP/fail.pipeline" --wait > "$TMP/fail.out"
IDF=$(head -n 1 "$TMP/fail.out")
[ "$(run_state "$IDF")" = failed ] && ctl resume "$IDF" --wait > /dev/null
[ $? -eq 1 ] && [ "$(run_state "$IDF")" = failed ]
ok $? "a failed run can be resumed (it fails again: resume --wait exits 1)"

ctl pause "$IDF" 2> "$TMP/pause-ended.err"
[ $? -eq 5 ] && grep -q "Run $IDF is failed; only a running or queued run can be paused" \
  "$TMP/pause-ended.err"
ok $? "pausing a run that has ended is refused (exit 5)"

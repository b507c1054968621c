#!/bin/sh
# tests/e2e/basic.sh: gptd and gptctl end to end: submit pipelines/hello.pipeline,
# watch it to the end, read its logs, ps and status (text and JSON); invalid
# pipelines, failing runs, a worker that dies, cancel, plugins; a clean stop on
# SIGTERM and gptctl's message when no daemon runs.
. "${GPTD_SRCDIR:-.}/tests/e2e/lib.sh"

plan 42

HELLO=$(realpath -s "${E2E_HELLO_PIPELINE:-$GPTD_SRCDIR/pipelines/hello.pipeline}")

check "gptd starts and answers ping" start_daemon
[ "$(stat -c %a "$SOCK" 2>/dev/null)" = 660 ]
ok $? "the socket is created 0660"

# --- hello.pipeline, watched to its end ------------------------------------------
ctl run "$HELLO" --wait > "$TMP/hello.out" 2> "$TMP/hello.err"
ok $? "gptctl run hello.pipeline --wait exits 0"
[ "$(head -n 1 "$TMP/hello.out")" = 1 ] && tail -n 1 "$TMP/hello.out" | grep -q '^run 1 succeeded'
ok $? "it prints the run ID, then the events, then 'run 1 succeeded'"
grep -q 'running' "$TMP/hello.out"
ok $? "the watch shows the run starting"

ctl ps > "$TMP/ps.out"
ok $? "gptctl ps exits 0"
grep -q "^1  *succeeded  *$(id -un)  *hello" "$TMP/ps.out"
ok $? "ps lists run 1 as succeeded, with its owner"
ctl ps --json | grep -q '"state" : "succeeded"'
ok $? "ps --json gives the RunList"

ctl status 1 > "$TMP/status.out"
ok $? "gptctl status 1 exits 0"
grep -q '^state: *succeeded' "$TMP/status.out" && grep -q "^pipeline: *$HELLO" "$TMP/status.out"
ok $? "status shows the state and the pipeline file"
ctl status 1 --json | grep -q '"id" : "1"'
ok $? "status --json gives the RunInfo"

ctl logs 1 > "$TMP/logs.out"
ok $? "gptctl logs 1 exits 0"
grep -q 'succeeded' "$TMP/logs.out" && [ "$(wc -l < "$TMP/logs.out")" -ge 3 ]
ok $? "logs holds the run's log lines and state changes"
ctl logs 1 --json | head -n 1 | grep -q '"run_id":"1"'
ok $? "logs --json gives one event per line"

ctl watch 1 --from-start > "$TMP/watch.out"
ok $? "watching a finished run from the start exits 0"
tail -n 1 "$TMP/watch.out" | grep -q '^run 1 succeeded'
ok $? "the replay ends with the final state"

RUNDIR="$STATE/runs/1"
[ -f "$RUNDIR/pipeline.pipeline" ] && cmp -s "$RUNDIR/pipeline.pipeline" "$HELLO" \
  && [ -s "$RUNDIR/events.log" ] && grep -q '"succeeded"' "$RUNDIR/status.json" \
  && grep -q '"filename"' "$RUNDIR/run.json"
ok $? "the run directory holds the pipeline as submitted, run.json, the event log and the status"
[ "$(wc -l < "$RUNDIR/events.jsonl")" -ge 3 ] && tail -n 1 "$RUNDIR/events.jsonl" | grep -q '"succeeded"'
ok $? "events.jsonl holds the events as JSON lines"
[ -s "$RUNDIR/output.log" ] && grep -q '"text"' "$RUNDIR/output.log"
ok $? "dump's output went to the run's output.log"

# --- validation -------------------------------------------------------------------
write_pipeline "$TMP/bad.pipeline" <<'EOF'
[pipeline]
name=bad

[stage ticks]
type=e2e-ticker
cuont=3

[stage out]
type=dump
input=nowhere
EOF
ctl run "$TMP/bad.pipeline" > /dev/null 2> "$TMP/bad.err"
ok $(( $? == 1 ? 0 : 1 )) "running an invalid pipeline exits 1"
grep -q 'stage ticks' "$TMP/bad.err" && grep -q 'cuont' "$TMP/bad.err" \
  && grep -q 'nowhere' "$TMP/bad.err"
ok $? "every problem is printed, naming the stage and the key"
ctl ps | grep -q '^2 '
ok $(( $? == 0 ? 1 : 0 )) "no run was created for it"
ctl validate "$TMP/bad.pipeline" > /dev/null 2>&1
ok $(( $? == 1 ? 0 : 1 )) "gptctl validate exits 1 on an invalid pipeline"
ctl validate "$HELLO" | grep -q ': valid$'
ok $? "gptctl validate accepts hello.pipeline"
{ cat "$HELLO"; printf '\0[stage x]\ntype=nope\n'; } > "$TMP/nul.pipeline"
ctl validate "$TMP/nul.pipeline" 2>&1 | grep -q 'contains a NUL byte'
ok $? "gptctl refuses a pipeline holding a NUL byte instead of sending it cut short"

# --- failing runs -----------------------------------------------------------------
ticker_pipeline "$TMP/fail.pipeline" fail count=5 interval-ms=10 fail-at=2
ctl run "$TMP/fail.pipeline" --wait > "$TMP/fail.out" 2>&1
ok $(( $? == 1 ? 0 : 1 )) "a run whose stage fails: run --wait exits 1"
ID=$(head -n 1 "$TMP/fail.out")
ctl status "$ID" > "$TMP/fail.status"
grep -q '^state: *failed' "$TMP/fail.status" \
  && grep -q '^error: *stage ticks: .*failing at tick 2' "$TMP/fail.status"
ok $? "its status names the failing stage and the error"

ticker_pipeline "$TMP/die.pipeline" die count=100 interval-ms=10 die-at=3
ctl run "$TMP/die.pipeline" --wait > "$TMP/die.out" 2>&1
ok $(( $? == 1 ? 0 : 1 )) "a run whose worker is killed: run --wait exits 1"
ID=$(head -n 1 "$TMP/die.out")
ctl status "$ID" | grep -q '^error: *worker died: signal 9'
ok $? "its status says the worker died, with the signal"

# --- cancel -----------------------------------------------------------------------
ticker_pipeline "$TMP/long.pipeline" long count=100000 interval-ms=20
ID=$(ctl run "$TMP/long.pipeline")
wait_state "$ID" running 20
ok $? "a long run is running"
ctl cancel "$ID" > /dev/null
ok $? "gptctl cancel waits for it and exits 0"
[ "$(run_state "$ID")" = cancelled ]
ok $? "the run is cancelled"
ctl cancel "$ID" > /dev/null 2>&1
ok $(( $? == 5 ? 0 : 1 )) "cancelling it again is refused (exit 5)"
ctl status 999 > /dev/null 2> "$TMP/nf.err"
ok $(( $? == 4 ? 0 : 1 )) "status of an unknown run exits 4"

# --- plugins ------------------------------------------------------------------------
ctl plugins | grep -q 'e2e-ticker'
ok $? "gptctl plugins lists the stage types"
ctl plugins e2e-ticker | grep -q 'interval-ms'
ok $? "gptctl plugins TYPE describes one, with its parameters"
ctl plugins no-such-type > /dev/null 2>&1
ok $(( $? == 4 ? 0 : 1 )) "an unknown stage type exits 4"

# --- SIGHUP ------------------------------------------------------------------------
kill -HUP "$DPID"
sleep 0.5
alive "$DPID" && ctl plugins | grep -q 'e2e-ticker' && grep -q 'rescanning the plugins' "$TMP/daemon.log"
ok $? "SIGHUP rescans the plugins and the daemon serves on"

# --- stopping ---------------------------------------------------------------------
stop_daemon
ok $? "SIGTERM stops gptd with exit status 0"
[ ! -e "$SOCK" ]
ok $? "the socket file is removed"
ctl ps > /dev/null 2> "$TMP/down.err"
status=$?
[ $status -eq 3 ] && grep -q "gptd is not running at $SOCK: start it with" "$TMP/down.err"
ok $? "gptctl without a daemon says so and exits 3"

# A daemon's run directory is one `gptd run --resume` understands.
timeout 60 "$GPTD" run --resume "$RUNDIR" --quiet > /dev/null 2> "$TMP/resume.err"
ok $? "gptd run --resume runs a daemon run directory again"

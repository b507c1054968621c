#!/bin/sh
# tests/e2e/restart.sh: the daemon dies and comes back. gptd is killed with
# SIGKILL during a run and started again: the stale socket is replaced, the run
# table is rebuilt from disk and the run is listed as interrupted (and its worker
# has stopped); new runs get new IDs. Then SIGTERM during a run: the worker is
# told to stop, the run is marked interrupted, gptd exits 0 and removes its
# socket. A second daemon on the same state directory is refused. A worker that
# does not stop within --stop-timeout is killed.
. "${GPTD_SRCDIR:-.}/tests/e2e/lib.sh"

plan 23

ticker_pipeline "$TMP/long.pipeline" long count=100000 interval-ms=20

check "gptd starts" start_daemon
ID=$(ctl run "$TMP/long.pipeline")
ok $? "a long run is submitted"
wait_state "$ID" running 20
ok $? "it runs"
WPID=$(worker_pids)
[ -n "$WPID" ] && alive "$WPID"
ok $? "its worker process is alive"

# --- kill -9 ----------------------------------------------------------------------
kill -KILL "$DPID"
wait "$DPID" 2>/dev/null
DPID=
[ -S "$SOCK" ]
ok $? "gptd killed with SIGKILL leaves its socket file behind"
wait_gone "$WPID" 20
ok $? "the orphaned worker stops by itself"

check "gptd starts again on the stale socket" start_daemon
[ "$(run_state "$ID")" = interrupted ]
ok $? "the run is listed as interrupted"
ctl ps | grep -q "^$ID  *interrupted  *$(id -un)  *long"
ok $? "ps shows it interrupted"
grep -q '"state" : "interrupted"' "$STATE/runs/$ID/status.json"
ok $? "and that was written back to its status.json"
ctl logs "$ID" | tail -n 1 | grep -q 'interrupted'
ok $? "its log ends with the interruption"

# --- a second daemon ---------------------------------------------------------------
timeout 20 "$GPTD" --socket "$SOCK" --state-dir "$TMP/other-state" > "$TMP/second.log" 2>&1
ok $(( $? == 1 ? 0 : 1 )) "a second gptd on a live socket exits 1"
grep -q "Another gptd is already running at $SOCK" "$TMP/second.log"
ok $? "saying another gptd is running there"
timeout 20 "$GPTD" --socket "$TMP/third.sock" --state-dir "$STATE" > "$TMP/third.log" 2>&1
ok $(( $? == 1 ? 0 : 1 )) "a second gptd on the same state directory exits 1"
grep -q 'Another gptd is using the state directory' "$TMP/third.log"
ok $? "saying another gptd uses it"

# --- SIGTERM during a run ----------------------------------------------------------
ID2=$(ctl run "$TMP/long.pipeline")
[ "$ID2" -gt "$ID" ] && wait_state "$ID2" running 20
ok $? "a new run gets a new ID and runs"
stop_daemon
ok $? "SIGTERM during a run: gptd exits 0"
grep -q '"state" : "interrupted"' "$STATE/runs/$ID2/status.json" && [ ! -e "$SOCK" ]
ok $? "the run was stopped and marked interrupted, and the socket removed"

# --- a worker that does not stop when told to ----------------------------------------
ticker_pipeline "$TMP/stubborn.pipeline" stubborn count=100000 interval-ms=20 stubborn=true
check "gptd starts with a 1 s stop timeout" start_daemon --stop-timeout 1
ID3=$(ctl run "$TMP/stubborn.pipeline")
wait_state "$ID3" running 20
ok $? "a run that ignores cancellation is running"
WPID=$(worker_pids)
kill -TERM "$DPID"
wait_gone "$DPID" 15
ok $? "SIGTERM: gptd stops within the timeout though the worker does not"
wait "$DPID"
ok $? "and exits 0"
DPID=
! alive "$WPID" && grep -q 'did not stop in time and was killed' "$STATE/runs/$ID3/status.json"
ok $? "the worker was killed and its run marked interrupted, saying so"

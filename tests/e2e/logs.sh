#!/bin/sh
# tests/e2e/logs.sh: the logs of a run with a long event log are read in slices
# between the daemon's other work: a ping sent while the logs answer is being
# made is answered first, and the answer still ends with the run's last lines.
. "${GPTD_SRCDIR:-.}/tests/e2e/lib.sh"

plan 5

check "gptd starts" start_daemon

# 60,000 log lines of 400 bytes (a 31 MB event log, read in some 30 slices,
# half a second in all here).
ticker_pipeline "$TMP/long.pipeline" long count=60000 interval-ms=0 log=true log-bytes=400
ID=$(ctl run "$TMP/long.pipeline")
wait_state "$ID" succeeded 240
ok $? "a run logging 60000 lines succeeds (run $ID: $(run_state "$ID"))"

out=$(timeout 60 "$RAW" "$SOCK" logs-race "$ID" 2>"$TMP/race.err")
[ "$out" = "ping_first=1 logs_ok=1" ]
ok $? "a ping on another connection is answered while the logs are read ($out $(cat "$TMP/race.err"))"

ctl logs "$ID" > "$TMP/logs.out"
grep -q 'tick 59999 ' "$TMP/logs.out" && tail -n 1 "$TMP/logs.out" | grep -q succeeded
ok $? "the logs end with the last tick and the final state"

stop_daemon
ok $? "gptd stops cleanly"

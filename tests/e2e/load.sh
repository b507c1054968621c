#!/bin/sh
# tests/e2e/load.sh: load beside a run. While an e2e-ticker run logs events, 200
# clients connected at once send 2,000 mixed requests (ping, ps, status, validate,
# logs, plugins); every one is answered, and the daemon's memory (VmRSS) and open
# files are the same afterwards as after a warm-up round, within a small margin.
. "${GPTD_SRCDIR:-.}/tests/e2e/lib.sh"

plan 7

check "gptd starts" start_daemon

# Its log stays small: logs answers carry the whole log, so a log that grows
# between the rounds would grow the daemon's peak memory with it.
ticker_pipeline "$TMP/ticks.pipeline" ticks count=100000 interval-ms=5
ID=$(ctl run "$TMP/ticks.pipeline")
wait_state "$ID" running 20
ok $? "a run is running"
ticker_pipeline "$TMP/check.pipeline" check count=1

rss () { awk '$1 == "VmRSS:" { print $2 }' "/proc/$DPID/status"; }
fds () { ls "/proc/$DPID/fd" | wc -l; }

# A warm-up round as large as the measured one: the checking threads and their
# allocator arenas are made, and grow, there.
timeout 60 "$RAW" "$SOCK" load 200 2000 "$ID" "$TMP/check.pipeline" > /dev/null 2>&1
sleep 1
rss0=$(rss)
fds0=$(fds)
start=$(date +%s)
out=$(timeout 60 "$RAW" "$SOCK" load 200 2000 "$ID" "$TMP/check.pipeline" 2>"$TMP/load.err")
status=$?
took=$(($(date +%s) - start))
diag "200 clients, 2000 requests: $out in ${took} s; before: ${rss0} kB, ${fds0} files"
[ $status -eq 0 ] && echo "$out" | grep -q '^answered=2000 errors=0 '
ok $? "2,000 requests from 200 clients beside the run: all answered ($out)"
[ "$took" -le 45 ]
ok $? "within 45 s (${took} s)"
sleep 1
rss1=$(rss)
fds1=$(fds)
diag "after: ${rss1} kB, ${fds1} files"
[ "$fds1" -le $((fds0 + 2)) ]
ok $? "open files flat ($fds0 -> $fds1)"
[ "$rss1" -le $((rss0 + rss0 / 5 + 4096)) ]
ok $? "memory flat ($rss0 -> $rss1 kB)"
ctl cancel "$ID" > /dev/null
check "gptd stops cleanly" stop_daemon

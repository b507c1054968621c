#!/bin/sh
# tests/e2e/limits.sh: the bounds on connections. A request frame over the request
# limit (1 MiB by default, under the 16 MiB of answers) is refused; a partial
# frame that stalls past read-timeout= and a connection idle past idle-timeout=
# get an error and are closed, while a watcher waiting on a run is not; past
# max-connections-per-user= and max-connections= (changed by SIGHUP) a new
# connection is told why and closed; the daemon keeps serving throughout.
. "${GPTD_SRCDIR:-.}/tests/e2e/lib.sh"

plan 13

CONF="$TMP/gptd.conf"
printf '[gptd]\nread-timeout=1\nidle-timeout=2\nmax-connections-per-user=5\n' > "$CONF"
check "gptd starts with small limits" start_daemon --config "$CONF"

# --- the request frame limit ---------------------------------------------------------
out=$(timeout 30 "$RAW" "$SOCK" big-request 2>"$TMP/big.err")
[ "$out" = "error=4 closed=1" ] && grep -q 'limit of 1048576 bytes' "$TMP/big.err"
ok $? "a 2 MiB request: an error naming the 1 MiB limit, then closed ($out)"

# --- timeouts --------------------------------------------------------------------------
start=$(date +%s)
out=$(timeout 30 "$RAW" "$SOCK" stall 2>"$TMP/stall.err")
took=$(($(date +%s) - start))
[ "$out" = "error=13 closed=1" ] && [ "$took" -le 5 ]
ok $? "a partial frame that stalls: timed out and closed after read-timeout= ($out, ${took} s)"
grep -q 'read-timeout=' "$TMP/stall.err"
ok $? "the error names read-timeout= ($(cat "$TMP/stall.err"))"
start=$(date +%s)
out=$(timeout 30 "$RAW" "$SOCK" idle 2>"$TMP/idle.err")
took=$(($(date +%s) - start))
[ "$out" = "error=13 closed=1" ] && [ "$took" -ge 1 ] && [ "$took" -le 6 ]
ok $? "an idle connection: closed after idle-timeout= ($out, ${took} s)"
grep -q 'idle-timeout=' "$TMP/idle.err"
ok $? "the error names idle-timeout= ($(cat "$TMP/idle.err"))"
ticker_pipeline "$TMP/slow.pipeline" slow count=40 interval-ms=100
ctl run "$TMP/slow.pipeline" --wait > "$TMP/slow.out" 2>&1 && tail -n 1 "$TMP/slow.out" | grep -q succeeded
ok $? "a watch longer than idle-timeout= is not cut ($(tail -n 1 "$TMP/slow.out"))"

# --- caps ------------------------------------------------------------------------------
out=$(timeout 30 "$RAW" "$SOCK" hold 7 2>"$TMP/hold.err")
[ "$out" = "answered=5 refused=2" ]
ok $? "seven connections of one user: five served, two refused ($out)"
grep -q 'max-connections-per-user=5' "$TMP/hold.err"
ok $? "the refusal names max-connections-per-user= ($(cat "$TMP/hold.err"))"
printf '[gptd]\nread-timeout=1\nidle-timeout=2\nmax-connections=3\n' > "$CONF"
kill -HUP "$DPID"
i=0
while ! grep -q 'max-connections: (default) -> 3' "$TMP/daemon.log" && [ $i -lt 50 ]; do
  sleep 0.1; i=$((i + 1))
done
out=$(timeout 30 "$RAW" "$SOCK" hold 5 2>"$TMP/hold.err")
[ "$out" = "answered=3 refused=2" ]
ok $? "after SIGHUP, max-connections=3: three of five served ($out)"
grep -q 'max-connections=3' "$TMP/hold.err"
ok $? "the refusal names max-connections= ($(cat "$TMP/hold.err"))"
ctl ping > /dev/null
ok $? "the daemon still answers"
check "gptd stops cleanly" stop_daemon

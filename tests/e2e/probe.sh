#!/bin/sh
# tests/e2e/probe.sh: the plugin probe never stalls the daemon. With a plugin that
# takes 1.5 s to load, a SIGHUP starts a probe in a child and a scan on a thread;
# meanwhile another client's pings, 20 ms apart, are each answered within 100 ms,
# and a SIGHUP that comes during the probe queues one more round. The stage types
# are there again afterwards, and a run submitted meanwhile succeeds.
. "${GPTD_SRCDIR:-.}/tests/e2e/lib.sh"

plan 9

GPTD_E2E_SLOW_LOAD="$TMP/slow"
export GPTD_E2E_SLOW_LOAD

check "gptd starts" start_daemon
touch "$TMP/slow"
kill -HUP "$DPID"
# The probe child and the scan each take 1.5 s: ping all along.
out=$(timeout 30 "$RAW" "$SOCK" pings 100 20)
ok $? "100 pings during the probe are all answered ($out)"
max=$(echo "$out" | sed -n 's/.*max_ms=\([0-9]*\).*/\1/p')
[ -n "$max" ] && [ "$max" -le 100 ]
ok $? "each within 100 ms (the longest: $max ms)"
grep -q 'SIGHUP received: rescanning the plugins (clients are answered meanwhile)' "$TMP/daemon.log"
ok $? "the daemon logs the rescan"
i=0
while [ "$(grep -c 'stage type(s) loaded' "$TMP/daemon.log")" -lt 1 ] && [ "$i" -lt 100 ]; do
  sleep 0.1
  i=$((i + 1))
done
grep -q '[1-9][0-9]* stage type(s) loaded' "$TMP/daemon.log"
ok $? "and when it is over, how many stage types it loaded"

# A SIGHUP during the probe: one more round follows.
kill -HUP "$DPID"
sleep 0.3
kill -HUP "$DPID"
i=0
while [ "$(grep -c 'stage type(s) loaded' "$TMP/daemon.log")" -lt 3 ] && [ "$i" -lt 150 ]; do
  sleep 0.1
  i=$((i + 1))
done
grep -q 'SIGHUP received while the plugins are being probed' "$TMP/daemon.log" \
  && [ "$(grep -c 'stage type(s) loaded' "$TMP/daemon.log")" -eq 3 ]
ok $? "a SIGHUP during a probe is followed by one more round"
rm -f "$TMP/slow"
ctl plugins e2e-ticker > /dev/null
ok $? "the stage types are there"
ticker_pipeline "$TMP/t.pipeline" t count=3 interval-ms=10
ctl run "$TMP/t.pipeline" --wait > /dev/null
ok $? "a run succeeds"
check "gptd stops" stop_daemon

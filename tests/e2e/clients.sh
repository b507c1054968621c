#!/bin/sh
# tests/e2e/clients.sh: many and misbehaving clients. Ten clients submit and watch
# runs at once; garbage, an oversized frame, a malformed frame, half a frame, an
# empty request and a classify request without text each get an error (and, for bad frames, a
# closed connection) while the daemon keeps serving; a watcher that stops
# reading is dropped once it falls behind, without holding up anybody else; a
# pipeline slow to load does not hold up the daemon's other clients.
. "${GPTD_SRCDIR:-.}/tests/e2e/lib.sh"

plan 24

# A small client queue limit, so the stuck watcher is dropped quickly.
check "gptd starts" start_daemon --client-queue-limit 65536

# --- ten clients at once ----------------------------------------------------------
ticker_pipeline "$TMP/short.pipeline" short count=5 interval-ms=20
pids=
i=1
while [ $i -le 10 ]; do
  ( ctl run "$TMP/short.pipeline" --set ticks.count=$((i + 2)) --wait \
      > "$TMP/client$i.out" 2>&1
    echo $? > "$TMP/client$i.rc" ) &
  pids="$pids $!"
  i=$((i + 1))
done
# (A bare wait would also wait for the daemon.)
for pid in $pids; do wait "$pid"; done
good=0
i=1
while [ $i -le 10 ]; do
  [ "$(cat "$TMP/client$i.rc")" = 0 ] && tail -n 1 "$TMP/client$i.out" | grep -q 'succeeded' \
    && good=$((good + 1))
  i=$((i + 1))
done
[ $good -eq 10 ]
ok $? "ten clients submit and watch runs at once; all ten succeed ($good)"
[ "$(ctl ps | grep -c ' succeeded ')" -eq 10 ]
ok $? "ps lists ten succeeded runs"
ids=$(for i in 1 2 3 4 5 6 7 8 9 10; do head -n 1 "$TMP/client$i.out"; done | sort -n | tr '\n' ' ')
[ "$ids" = "1 2 3 4 5 6 7 8 9 10 " ]
ok $? "each got its own run ID ($ids)"
# The --set reached each run: client i's run emitted i+2 ticks.
ID=$(head -n 1 "$TMP/client7.out")
[ "$(grep -c '"text"' "$STATE/runs/$ID/output.log")" -eq 9 ]
ok $? "each run got its client's settings"

# --- bad frames -----------------------------------------------------------------------
out=$(timeout 30 "$RAW" "$SOCK" garbage 2>/dev/null)
[ "$out" = "error=4 closed=1" ]
ok $? "garbage: an error (frame too large), then the connection is closed ($out)"
ctl ping > /dev/null
ok $? "the daemon still answers"
out=$(timeout 30 "$RAW" "$SOCK" oversized 2>/dev/null)
[ "$out" = "error=4 closed=1" ]
ok $? "a frame over 16 MiB: an error, then the connection is closed ($out)"
out=$(timeout 30 "$RAW" "$SOCK" malformed 2>/dev/null)
[ "$out" = "error=5 closed=1" ]
ok $? "an unpackable frame: a malformed error, then the connection is closed ($out)"
out=$(timeout 30 "$RAW" "$SOCK" truncated 2>/dev/null)
ok $? "half a frame and a hang-up"
out=$(timeout 30 "$RAW" "$SOCK" empty 2>/dev/null)
[ "$out" = "id=7 error=1 ok=0" ]
ok $? "a request without a body: a bad-request error with its id ($out)"
out=$(timeout 30 "$RAW" "$SOCK" no-text 2>/dev/null)
[ "$out" = "id=7 error=1 ok=0" ]
ok $? "a classify request without text: a bad-request error with its id ($out)"
out=$(timeout 30 "$RAW" "$SOCK" ping 2>/dev/null)
[ "$out" = "id=7 error=0 ok=1" ]
ok $? "after all that, a raw ping is answered ($out)"
alive "$DPID"
ok $? "the daemon is still running"

# --- a watcher that stops reading ---------------------------------------------------
ticker_pipeline "$TMP/flood.pipeline" flood count=100000 interval-ms=1 log=true log-bytes=1000
FID=$(ctl run "$TMP/flood.pipeline")
wait_state "$FID" running 20
ok $? "a run flooding events is running"
timeout 60 "$RAW" "$SOCK" slow-watch "$FID" 3 > "$TMP/slow.out" 2>/dev/null &
SLOW=$!
sleep 1
# While the stuck watcher's queue is full, others are served without delay.
timeout 5 "$GPTCTL" --socket "$SOCK" ping > /dev/null
ok $? "others are answered while a watcher is stuck"
wait "$SLOW"
ok $? "the stuck watcher's connection ends"
grep -q 'end=0 .*closed=1' "$TMP/slow.out"
ok $? "it was dropped before the run ended ($(cat "$TMP/slow.out"))"
grep -q 'lagged behind run' "$TMP/daemon.log"
ok $? "the daemon logged that it lagged"
ctl cancel "$FID" > /dev/null
ok $? "the flooding run is cancelled"

# --- a pipeline slow to load ------------------------------------------------------------
# Its stage's check takes 4 s; meanwhile the loop answers others at once.
ticker_pipeline "$TMP/slow-check.pipeline" slow-check count=1 check-delay-ms=4000
start=$(date +%s)
ctl validate "$TMP/slow-check.pipeline" > "$TMP/slow-check.out" 2>&1 &
VPID=$!
sleep 0.5
timeout 2 "$GPTCTL" --socket "$SOCK" ping > /dev/null
ok $? "others are answered while a pipeline is being loaded"
timeout 2 "$GPTCTL" --socket "$SOCK" validate "$TMP/slow-check.pipeline" --set ticks.check-delay-ms=0 > /dev/null
ok $? "another pipeline is validated meanwhile"
wait "$VPID"
ok $? "the slow pipeline is valid ($(cat "$TMP/slow-check.out"))"
[ $(($(date +%s) - start)) -ge 3 ]
ok $? "its answer came once it was loaded"
stop_daemon

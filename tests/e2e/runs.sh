#!/bin/sh
# tests/e2e/runs.sh: run management. gptctl output prints a run's output.log
# (hello's dump output, the same as dump writes to a file; a long one streamed
# in several chunks; nothing for a run without output). gptctl rm removes an
# ended run from the table and deletes its directory without following a link
# out of it; a running run is refused, and so is another user's (as root). A
# watcher replaying a run that is removed gets its end, and the daemon goes on
# serving. gptctl prune removes ended runs by state and by age, never a running
# one, and a removed run's ID is not given again, even after a restart. With
# keep-cancelled-checkpoints=false (set by a reload) a cancelled training run's
# checkpoint/ is deleted and resume says why it cannot continue.
. "${GPTD_SRCDIR:-.}/tests/e2e/lib.sh"

GPTD_PLUGIN_PATH="$GPTD_BUILDDIR/plugins/bpe/.libs:$GPTD_BUILDDIR/plugins/train/.libs:$GPTD_PLUGIN_PATH"
export GPTD_PLUGIN_PATH

plan 33

HELLO=$(realpath -s "$GPTD_SRCDIR/pipelines/hello.pipeline")
CONF="$TMP/gptd.conf"
printf '[gptd]\n' > "$CONF"
# A small client queue: a replay of a long log waits on the watcher.
check "gptd starts" start_daemon --config "$CONF" --client-queue-limit 4096

# --- output ------------------------------------------------------------------------
ID1=$(ctl run "$HELLO" --wait | head -n 1)
ID2=$(ctl run "$HELLO" --set "out=$TMP/dump.out" --wait | head -n 1)
[ "$(run_state "$ID1")" = succeeded ] && [ "$(run_state "$ID2")" = succeeded ]
ok $? "two hello runs succeed, one dumping to standard output, one to a file"
ctl output "$ID1" > "$TMP/output1"
ok $? "gptctl output exits 0"
[ -s "$TMP/output1" ] && cmp -s "$TMP/output1" "$TMP/dump.out"
ok $? "the run's output equals what dump writes to a file"
ctl output "$ID2" > "$TMP/output2"
[ $? -eq 0 ] && [ ! -s "$TMP/output2" ]
ok $? "a run without output prints nothing"

# A long output: several chunks, in order.
i=0
while [ "$i" -lt 3000 ]; do
  echo "line $i of a text long enough to need several output chunks to send"
  i=$((i + 1))
done > "$TMP/long.txt"
ID3=$(ctl run "$HELLO" --set "input=$TMP/long.txt" --wait | head -n 1)
ctl output "$ID3" > "$TMP/output3"
[ "$(wc -c < "$TMP/output3")" -gt 200000 ] && cmp -s "$TMP/output3" "$STATE/runs/$ID3/output.log"
ok $? "a long output ($(wc -c < "$TMP/output3") bytes) comes whole, in order"
ctl --json output "$ID2" | grep -q '^{'
ok $? "output --json prints the chunks as JSON"
ctl output 999 2> /dev/null
ok $(( $? == 4 ? 0 : 1 )) "output of an unknown run: exit 4"

# --- rm ------------------------------------------------------------------------------
ticker_pipeline "$TMP/long.pipeline" long count=600 interval-ms=100
IDL=$(ctl run "$TMP/long.pipeline")
wait_state "$IDL" running 20
ctl rm "$IDL" > /dev/null 2> "$TMP/rm-running.err"
[ $? -eq 5 ] && grep -q "Run $IDL is running; cancel it first" "$TMP/rm-running.err" \
  && [ -d "$STATE/runs/$IDL" ]
ok $? "rm of a running run is refused (exit 5, cancel it first)"
ctl cancel "$IDL" > /dev/null

ctl rm "$ID1" > "$TMP/rm.out"
ok $? "rm of a finished run exits 0"
grep -q "^run $ID1 removed (hello, succeeded)" "$TMP/rm.out"
ok $? "it says what it removed"
[ ! -e "$STATE/runs/$ID1" ] && ! ls -a "$STATE/runs" | grep -q "removed-$ID1"
ok $? "its run directory is gone"
ctl status "$ID1" > /dev/null 2>&1
[ $? -eq 4 ] && ! ctl ps | grep -q "^$ID1 "
ok $? "it is gone from the table (status: exit 4, not in ps)"
ctl rm "$ID1" 2> /dev/null
ok $(( $? == 4 ? 0 : 1 )) "removing it again: exit 4"

# A link in the run directory is removed, not followed.
mkdir "$TMP/outside" && echo keep > "$TMP/outside/keep"
ln -s "$TMP/outside" "$STATE/runs/$ID2/link"
ln -s "$TMP/outside/keep" "$STATE/runs/$ID2/file-link"
ctl rm "$ID2" > /dev/null
[ $? -eq 0 ] && [ ! -e "$STATE/runs/$ID2" ] && [ "$(cat "$TMP/outside/keep")" = keep ]
ok $? "rm does not follow links out of the run directory"

if [ "$(id -u)" -eq 0 ] && command -v useradd > /dev/null && command -v runuser > /dev/null; then
  U=gptdrm-$$
  G=gptdrmg-$$
  groupadd "$G" && useradd -M -N -g "$G" -s /bin/sh "$U"
  trap 'cleanup; userdel "$U" 2>/dev/null; groupdel "$G" 2>/dev/null' EXIT
  chmod 0755 "$TMP"
  chgrp "$G" "$SOCK"
  runuser -u "$U" -- timeout 60 "$GPTCTL" --socket "$SOCK" rm "$ID3" > /dev/null \
    2> "$TMP/rm-other.err"
  [ $? -eq 5 ] && grep -q "only its owner or root may remove it" "$TMP/rm-other.err" \
    && [ -d "$STATE/runs/$ID3" ]
  ok $? "rm of another user's run is refused (exit 5)"
  runuser -u "$U" -- timeout 60 "$GPTCTL" --socket "$SOCK" prune > "$TMP/prune-other.out"
  [ $? -eq 0 ] && grep -q "No run removed" "$TMP/prune-other.out" && [ -d "$STATE/runs/$ID3" ]
  ok $? "prune by another user removes none of root's runs"
else
  ok 0 "# SKIP rm of another user's run (needs root, useradd and runuser)"
  ok 0 "# SKIP prune by another user (needs root, useradd and runuser)"
fi

# A watcher replaying a run's long log while the run is removed.
ticker_pipeline "$TMP/many.pipeline" many count=20000 interval-ms=0
IDW=$(ctl run "$TMP/many.pipeline")
wait_state "$IDW" succeeded 60
NEV=$(wc -l < "$STATE/runs/$IDW/events.jsonl")
[ "$(run_state "$IDW")" = succeeded ] && [ "$(wc -c < "$STATE/runs/$IDW/events.log")" -gt 100000 ]
ok $? "a run with a long event log ($NEV events) succeeds"
"$RAW" "$SOCK" slow-replay "$IDW" 2 > "$TMP/replay.out" &
RAWPID=$!
sleep 1
ctl rm "$IDW" > /dev/null
ok $? "it is removed while a watcher replays it"
wait "$RAWPID"
[ $? -eq 0 ] && grep -q "end=1 error=0" "$TMP/replay.out" \
  && [ "$(sed 's/^events=\([0-9]*\).*/\1/' "$TMP/replay.out")" -lt "$NEV" ]
ok $? "the watcher, cut short in its replay, gets its end ($(cat "$TMP/replay.out"))"
ctl ping > /dev/null && alive "$DPID"
ok $? "gptd goes on serving"

# --- prune -----------------------------------------------------------------------------
ticker_pipeline "$TMP/fail.pipeline" fail count=10 interval-ms=10 fail-at=3
IDF=$(ctl run "$TMP/fail.pipeline" --wait | head -n 1)
[ "$(run_state "$IDL")" = cancelled ] && [ "$(run_state "$IDF")" = failed ]
ok $? "a cancelled and a failed run"
ctl prune --state failed > "$TMP/prune-failed.out"
[ $? -eq 0 ] && [ "$(cat "$TMP/prune-failed.out")" = "run $IDF removed (fail, failed)" ] \
  && [ ! -e "$STATE/runs/$IDF" ] && [ "$(run_state "$IDL")" = cancelled ] \
  && [ "$(run_state "$ID3")" = succeeded ]
ok $? "prune --state failed removes the failed run only"
ctl prune --state running 2> "$TMP/prune-running.err"
[ $? -eq 2 ] && grep -q "wants an ended state" "$TMP/prune-running.err"
ok $? "prune --state running is a usage error"
ctl prune --older-than 3x 2> /dev/null
ok $(( $? == 2 ? 0 : 1 )) "a bad --older-than is a usage error"

# An old run: its status says it finished in 2001.
stop_daemon
sed -i 's/"finished" : [0-9.e+]*/"finished" : 1000000000.0/' "$STATE/runs/$IDL/status.json"
start_daemon --config "$CONF" --client-queue-limit 4096
ctl --json prune --older-than 7d > "$TMP/prune-old.json"
[ $? -eq 0 ] && grep -q "\"id\" : \"$IDL\"" "$TMP/prune-old.json" \
  && [ "$(grep -c '"id"' "$TMP/prune-old.json")" -eq 1 ] && [ ! -e "$STATE/runs/$IDL" ] \
  && [ "$(run_state "$ID3")" = succeeded ]
ok $? "prune --older-than 7d removes the old run only (--json: the RunList)"

IDR=$(ctl run "$TMP/long.pipeline")
wait_state "$IDR" running 20
ctl prune > "$TMP/prune-all.out"
[ $? -eq 0 ] && grep -q "^run $ID3 removed" "$TMP/prune-all.out" \
  && [ "$(run_state "$IDR")" = running ] && [ "$(ctl ps | grep -c '^[0-9]')" -eq 1 ]
ok $? "prune removes every ended run and leaves the running one"
ctl cancel "$IDR" > /dev/null
ctl rm "$IDR" > /dev/null
ok $? "once cancelled, it can be removed"
stop_daemon
start_daemon --config "$CONF" --client-queue-limit 4096
IDN=$(ctl run "$HELLO" --set "out=$TMP/dump2.out")
[ "$IDN" -gt "$IDR" ]
ok $? "a removed run's ID is not given again after a restart ($IDN after $IDR)"

# --- keep-cancelled-checkpoints=false ----------------------------------------------------
cat > "$TMP/train.pipeline" <<PIPE
[pipeline]
name=tiny-train

[stage corpus]
type=text-source
path=$GPTD_SRCDIR/README.md

[stage tokens]
type=bpe-tokenizer
input=corpus
vocab=$GPTD_SRCDIR/pipelines/vocab/bytes

[stage windows]
type=token-windows
input=tokens
context-length=32
stride=32
batch-size=4
split=0.9,0.1
separator=256

[stage train]
type=gpt-trainer
input=windows
model=custom
n-layer=2
n-head=2
n-embd=32
context-length=32
vocab-size=257
lr=0.003
max-steps=100000
eval-freq=100
eval-iter=2
checkpoint-every=50
seed=1
threads=1
vocab=$GPTD_SRCDIR/pipelines/vocab/bytes
PIPE
printf '[gptd]\nkeep-cancelled-checkpoints=false\n' > "$CONF"
kill -HUP "$DPID"
i=0
until grep -q "keep-cancelled-checkpoints: (default) -> false" "$TMP/daemon.log" \
      || [ "$i" -gt 100 ]; do
  sleep 0.1
  i=$((i + 1))
done
grep -q "keep-cancelled-checkpoints: (default) -> false" "$TMP/daemon.log"
ok $? "keep-cancelled-checkpoints=false is taken on reload"
IDT=$(ctl run "$TMP/train.pipeline")
RUNDIR="$STATE/runs/$IDT"
i=0
while [ ! -s "$RUNDIR/checkpoint/checkpoint.json" ] && [ "$i" -lt 600 ]; do
  sleep 0.1
  i=$((i + 1))
done
[ -s "$RUNDIR/checkpoint/checkpoint.json" ]
ok $? "a training run writes a checkpoint"
ctl cancel "$IDT" > /dev/null
[ "$(run_state "$IDT")" = cancelled ] && [ ! -e "$RUNDIR/checkpoint" ] \
  && [ -e "$RUNDIR/checkpoint.removed" ]
ok $? "cancelled, its checkpoint/ is deleted"
ctl resume "$IDT" 2> "$TMP/resume.err"
[ $? -eq 5 ] && grep -q "its checkpoints were deleted (keep-cancelled-checkpoints=false" \
  "$TMP/resume.err"
ok $? "resume says it cannot continue, and why (exit 5)"

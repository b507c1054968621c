#!/bin/sh
# tests/e2e/ranks.sh: a pipeline with ranks=2 through the daemon. Its worker
# starts the rank group under mpirun and relays rank 0's events: the run succeeds
# with the group's figures (the whole batch's tokens) in its metrics; a rank
# killed with SIGKILL fails the run within seconds, with mpirun's line naming the
# rank as its error. A gptd built without MPI refuses ranks= when the pipeline is
# validated, naming the key; without mpirun the rest is skipped.
. "${GPTD_SRCDIR:-.}/tests/e2e/lib.sh"

GPTD_PLUGIN_PATH="$GPTD_BUILDDIR/plugins/bpe/.libs:$GPTD_BUILDDIR/plugins/train/.libs:$GPTD_PLUGIN_PATH"
export GPTD_PLUGIN_PATH
: "${GPTD_MPIRUN_ARGS=--oversubscribe --mca btl self,vader}"
export GPTD_MPIRUN_ARGS

# train_pipeline FILE STEPS: a 2-layer, 32-wide GPT on the README's bytes, 2 ranks.
train_pipeline () {
  cat > "$1" <<PIPE
[pipeline]
name=tiny-ranks
ranks=2

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
context-length=16
batch-size=4

[stage train]
type=gpt-trainer
input=windows
model=custom
n-layer=2
n-head=2
n-embd=32
context-length=16
vocab-size=257
dropout=0
max-steps=$2
eval-freq=50
eval-iter=2
checkpoint-every=50
sample-tokens=0
threads=1
PIPE
}
train_pipeline "$TMP/short.pipeline" 20
train_pipeline "$TMP/long.pipeline" 5000

if "$GPTD" validate "$TMP/short.pipeline" > "$TMP/validate.out" 2>&1; then
  :
elif grep -q "built with MPI" "$TMP/validate.out"; then
  plan 1
  grep -q "short.pipeline:3: key ranks: 2 ranks need a gptd built with MPI" "$TMP/validate.out"
  ok $? "without MPI, ranks=2 is refused on its line"
  exit "$tap_failed"
else
  plan 1
  ok 1 "the pipeline is valid"
  diag "$(cat "$TMP/validate.out")"
  exit 1
fi
if ! command -v mpirun > /dev/null 2>&1; then
  echo "1..0 # SKIP mpirun is not installed (openmpi-bin)"
  exit 0
fi

plan 7
check "gptd starts" start_daemon

ctl run "$TMP/short.pipeline" --wait > "$TMP/short.out" 2>&1
ok $? "a ranks=2 run succeeds"
ID=$(sed -n 's/^run \([0-9]*\) succeeded$/\1/p' "$TMP/short.out")
RUNDIR="$STATE/runs/$ID"
# 20 rows; the last counts the whole batch: 20 steps x 4 rows x 16 tokens.
[ "$(wc -l < "$RUNDIR/metrics.csv")" -eq 21 ] &&
  [ "$(tail -n 1 "$RUNDIR/metrics.csv" | cut -d, -f3)" = 1280 ]
ok $? "rank 0 wrote the group's metrics"
grep -q "2 ranks under" "$RUNDIR/output.log"
ok $? "the worker started mpirun"

ID=$(ctl run "$TMP/long.pipeline")
RUNDIR="$STATE/runs/$ID"
i=0
while [ ! -f "$RUNDIR/checkpoint/checkpoint.json" ] && [ "$i" -lt 600 ]; do
  sleep 0.1
  i=$((i + 1))
done
# Rank 1: the gptd in the run directory whose environment says so.
VICTIM=
for env in /proc/[0-9]*/environ; do
  pid=${env#/proc/}
  pid=${pid%/environ}
  if [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "$RUNDIR" ] &&
     tr '\0' '\n' < "$env" 2>/dev/null | grep -qx OMPI_COMM_WORLD_RANK=1; then
    VICTIM=$pid
  fi
done
[ -n "$VICTIM" ] && kill -KILL "$VICTIM"
ok $? "rank 1 is killed mid-run"
wait_state "$ID" failed 15
ok $? "the run fails within seconds"
ctl status "$ID" > "$TMP/status.out" 2>&1
grep -q "rank 1" "$TMP/status.out"
ok $? "its error names rank 1"
diag "$(grep -i error "$TMP/status.out")"

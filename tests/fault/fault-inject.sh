#!/bin/sh
# tests/fault/fault-inject.sh: what a small training run and a sharded tokenization
# leave behind when a write, a flush to disk or a rename fails (ENOSPC, EIO) or
# the process is killed with SIGKILL at that point, through the LD_PRELOAD shim
# tests/fault/fault-inject.c. A clean run first counts the operations on each kind of
# file (checkpoints, metrics, token shards, the event log); then the run is
# repeated with one of them failing: the first, the last and a few between, and
# every rename and flush of a checkpoint.
#
# After a failure: gptd run exits nonzero and names the error ("No space left on
# device", "Input/output error"), the checkpoint root still names a complete
# checkpoint of an earlier step (loadable by gptd generate), no temporary file is
# left, metrics.csv keeps every row written before, and complete shards stay.
# After SIGKILL at a checkpoint commit: gptd run --resume finishes the run with
# the losses of the uninterrupted one.
set -u

: "${GPTD_BUILDDIR:?run through make check}"
: "${GPTD_SRCDIR:?run through make check}"
GPTD="$GPTD_BUILDDIR/daemon/gptd"
SHIM="$GPTD_BUILDDIR/tests/fault/.libs/libfault-inject.so"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/gptd-fault.XXXXXX") || exit 99
trap 'rm -rf "$TMP"' EXIT
n=0
failed=0
ok () {
  n=$((n + 1))
  if [ "$1" -eq 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; failed=$((failed + 1)); fi
}

# A sanitizer runtime must come first in a process: no preloading there.
if ldd "$GPTD_BUILDDIR/daemon/.libs/gptd" 2>/dev/null | grep -q 'libasan'; then
  echo "1..0 # SKIP the shim cannot be preloaded into a sanitizer build"
  exit 0
fi
[ -f "$SHIM" ] || { echo "1..0 # SKIP $SHIM was not built"; exit 0; }

VOCAB="$GPTD_SRCDIR/pipelines/vocab/bytes"
cat > "$TMP/train.pipeline" <<PIPE
[pipeline]
name=fault
[stage corpus]
type=text-source
path=$GPTD_SRCDIR/README.md
[stage tokens]
type=bpe-tokenizer
input=corpus
vocab=$VOCAB
[stage windows]
type=token-windows
input=tokens
context-length=16
stride=16
batch-size=2
split=0.9,0.1
[stage train]
type=gpt-trainer
input=windows
model=custom
n-layer=1
n-head=1
n-embd=16
context-length=16
vocab-size=257
lr=0.003
max-steps=12
eval-freq=4
eval-iter=1
checkpoint-every=4
seed=1
threads=1
vocab=$VOCAB
PIPE
cat > "$TMP/shards.pipeline" <<PIPE
[pipeline]
name=shards
[stage corpus]
type=text-source
path=$GPTD_SRCDIR/README.md
[stage tokens]
type=bpe-tokenizer
input=corpus
vocab=$VOCAB
[stage write]
type=token-writer
input=tokens
path=$TMP/RUN/train.bin
shard-tokens=2000
PIPE

# run NAME PIPELINE [VAR=VALUE...]: gptd run in $TMP/NAME, under the shim with
# the given settings; output in $TMP/NAME.out; returns its exit status.
run () {
  name=$1 pipeline=$2
  shift 2
  rm -rf "$TMP/$name" "$TMP/$name.out"
  mkdir -p "$TMP/$name"
  sed "s|$TMP/RUN|$TMP/$name|" "$TMP/$pipeline" > "$TMP/$name/p.pipeline"
  env OMP_NUM_THREADS=1 LD_PRELOAD="$SHIM" "$@" \
    timeout 120 "$GPTD" run --run-dir "$TMP/$name/run" "$TMP/$name/p.pipeline" \
    > "$TMP/$name.out" 2>&1
}

# count PIPELINE OP PATTERN: how many matching operations a clean run makes.
count () {
  rm -f "$TMP/count.log"
  run count "$1" GPTD_FAULT_OP="$2" GPTD_FAULT_PATTERN="$3" GPTD_FAULT_NTH=0 \
    GPTD_FAULT_LOG="$TMP/count.log" || { cat "$TMP/count.out" >&2; echo 0; return; }
  wc -l < "$TMP/count.log" | tr -d ' '
}

# picks TOTAL [ALL]: the operation numbers to fail: all of them, or the first,
# the last and four between.
picks () {
  if [ "${2:-}" = all ] || [ "$1" -le 6 ]; then seq 1 "$1"; return; fi
  { echo 1; echo "$1"; for k in 1 2 3 4; do echo $(( $1 * k / 5 )); done; } | sort -nu
}

# A checkpoint root is whole: checkpoint.json names a directory that gptd
# generate loads (model, config, tokenizer), and no temporary file is left.
checkpoint_whole () {
  root=$1/run/checkpoint
  [ -f "$root/checkpoint.json" ] || return 0    # none yet: nothing to lose
  latest=$(sed -n 's/.*"latest" *: *"\([^"]*\)".*/\1/p' "$root/checkpoint.json")
  [ -n "$latest" ] && [ -d "$root/$latest" ] || { echo "# bad index: $latest" >&2; return 1; }
  timeout 60 "$GPTD" generate -m "$root" -p "a" -n 1 > /dev/null 2> "$1.gen" \
    || { cat "$1.gen" >&2; return 1; }
  ! find "$root" -name '.*.tmp-*' | grep -q .
}

# The reference: a clean run's metrics.
run ref train.pipeline || { cat "$TMP/ref.out"; exit 1; }
ref_rows=$(wc -l < "$TMP/ref/run/metrics.csv")

echo "1..8"

# 1-3. ENOSPC or EIO at writes, flushes and renames of checkpoint files.
for op in write fsync rename; do
  total=$(count train.pipeline $op '*/checkpoint/*')
  bad=0 tried=0
  for k in $(picks "$total" $([ $op = write ] || echo all)); do
    err=ENOSPC msg="No space left on device"
    [ $((k % 2)) -eq 0 ] && err=EIO msg="Input/output error"
    tried=$((tried + 1))
    if run f train.pipeline GPTD_FAULT_OP=$op GPTD_FAULT_PATTERN='*/checkpoint/*' \
         GPTD_FAULT_NTH="$k" GPTD_FAULT_ERRNO=$err; then
      # Only the directory flush after the rename may be lost without failing.
      grep -q "$msg" "$TMP/f.out" || { echo "# $op $k of $total: succeeded silently" >&2; bad=1; }
      continue
    fi
    grep -q "$msg" "$TMP/f.out" || { echo "# $op $k: error not named:" >&2; tail -n 3 "$TMP/f.out" >&2; bad=1; }
    checkpoint_whole "$TMP/f" || { echo "# $op $k: checkpoint damaged" >&2; bad=1; }
  done
  ok $(( bad || tried == 0 )) "checkpoints: $tried of $total ${op}s failed, each reported, the last checkpoint whole"
done

# 4. ENOSPC at each flush of metrics.csv: the run fails naming the file, and the
#    rows written before are kept.
total=$(count train.pipeline write '*metrics.csv')
bad=0
for k in $(picks "$total"); do
  run f train.pipeline GPTD_FAULT_OP=write GPTD_FAULT_PATTERN='*metrics.csv' GPTD_FAULT_NTH="$k" \
    && { echo "# metrics write $k: succeeded" >&2; bad=1; continue; }
  grep -q 'metrics.csv.*No space left on device' "$TMP/f.out" || { tail -n 3 "$TMP/f.out" >&2; bad=1; }
  # The header and the k-1 rows before the failed one.
  rows=$(wc -l < "$TMP/f/run/metrics.csv")
  [ "$rows" -ge "$k" ] || { echo "# metrics write $k: $rows lines left" >&2; bad=1; }
  head -n "$k" "$TMP/ref/run/metrics.csv" | cut -d, -f1-5 > "$TMP/want"
  head -n "$k" "$TMP/f/run/metrics.csv" | cut -d, -f1-5 > "$TMP/got"
  cmp -s "$TMP/want" "$TMP/got" || { echo "# metrics write $k: earlier rows differ" >&2; bad=1; }
done
ok $bad "metrics.csv: each of $total row writes failed in turn, reported, earlier rows kept"

# 5. The run's own event log (events.jsonl): a failed write is reported.
total=$(count train.pipeline write '*events.jsonl')
bad=0
for k in $(picks "$total"); do
  if run f train.pipeline GPTD_FAULT_OP=write GPTD_FAULT_PATTERN='*events.jsonl' GPTD_FAULT_NTH="$k"; then
    grep -q 'events.jsonl.*No space left on device' "$TMP/f.out" \
      || { echo "# events write $k: not reported" >&2; tail -n 3 "$TMP/f.out" >&2; bad=1; }
  fi
  checkpoint_whole "$TMP/f" || bad=1
done
ok $bad "events.jsonl: each of $total writes failed in turn and was reported"

# 6-7. Token shards: every write, flush and rename failing in turn keeps the
#      complete shards before it and leaves no temporary file.
for op in write rename; do
  total=$(count shards.pipeline $op '*train*.bin*')
  bad=0
  for k in $(picks "$total" all); do
    run f shards.pipeline GPTD_FAULT_OP=$op GPTD_FAULT_PATTERN='*train*.bin*' GPTD_FAULT_NTH="$k" \
      && { echo "# shards $op $k: succeeded" >&2; bad=1; continue; }
    grep -q 'No space left on device' "$TMP/f.out" || { tail -n 3 "$TMP/f.out" >&2; bad=1; }
    find "$TMP/f" -name '.*.tmp-*' | grep -q . && { echo "# shards $op $k: temporary file left" >&2; bad=1; }
    for s in "$TMP"/f/train_*.bin; do
      [ -f "$s" ] || continue
      cmp -s "$s" "$TMP/count/$(basename "$s")" || { echo "# shards $op $k: $s differs" >&2; bad=1; }
    done
  done
  ok $bad "token shards: each of $total ${op}s failed in turn, complete shards kept"
done

# 8. SIGKILL at every rename in the checkpoint root (the commit points): the run
#    resumes to the end with the uninterrupted run's losses.
total=$(count train.pipeline rename '*/checkpoint/*')
bad=0
for k in $(seq 1 "$total"); do
  run f train.pipeline GPTD_FAULT_OP=rename GPTD_FAULT_PATTERN='*/checkpoint/*' \
    GPTD_FAULT_NTH="$k" GPTD_FAULT_ACTION=kill && { echo "# kill $k: not killed" >&2; bad=1; continue; }
  env OMP_NUM_THREADS=1 timeout 120 "$GPTD" run --resume "$TMP/f/run" > "$TMP/f.resume" 2>&1 \
    || { echo "# kill $k: resume failed" >&2; tail -n 3 "$TMP/f.resume" >&2; bad=1; continue; }
  cut -d, -f1-5 "$TMP/ref/run/metrics.csv" > "$TMP/want"
  cut -d, -f1-5 "$TMP/f/run/metrics.csv" > "$TMP/got"
  cmp -s "$TMP/want" "$TMP/got" || { echo "# kill $k: losses differ after resume" >&2; diff "$TMP/want" "$TMP/got" | head -n 5 >&2; bad=1; }
done
ok $bad "SIGKILL at each of $total checkpoint renames: resumed to the same $ref_rows metrics lines"

[ "$failed" -eq 0 ]

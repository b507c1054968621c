# tests/e2e/lib.sh: shared by the end-to-end tests (sourced, not run). Sets up a
# temporary directory with a socket and a state directory, starts and stops gptd,
# runs gptctl against it with a time limit, and prints TAP. Every test script
# ends, whatever happens, by killing what it started and removing its directory.
#
# Variables for the scripts: GPTD GPTCTL RAW (programs), TMP SOCK STATE (paths),
# DPID (the daemon's pid while it runs).

set -u

: "${GPTD_BUILDDIR:?run the end-to-end tests through make check}"
: "${GPTD_SRCDIR:?run the end-to-end tests through make check}"
# Without symbolic parts ("BUILD/.." in make distcheck), as the daemon names the
# paths it canonicalizes.
GPTD_SRCDIR=$(cd "$GPTD_SRCDIR" && pwd -P)
GPTD_BUILDDIR=$(cd "$GPTD_BUILDDIR" && pwd -P)

GPTD="$GPTD_BUILDDIR/daemon/gptd"
GPTCTL="$GPTD_BUILDDIR/daemon/gptctl"
RAW="$GPTD_BUILDDIR/tests/e2e/e2e-raw"
GPTD_PLUGIN_PATH="$GPTD_BUILDDIR/tests/e2e/.libs:$GPTD_BUILDDIR/plugins/core/.libs${GPTD_PLUGIN_PATH:+:$GPTD_PLUGIN_PATH}"
export GPTD_PLUGIN_PATH
unset GPTD_SOCKET GPTD_STATE_DIR

TMP=$(mktemp -d "${TMPDIR:-/tmp}/gptd-e2e.XXXXXX") || exit 99
SOCK="$TMP/gptd.sock"
STATE="$TMP/state"
DPID=
tap_n=0
tap_failed=0

plan () { echo "1..$1"; }
diag () { printf '%s\n' "$@" | sed 's/^/# /'; }

# ok STATUS DESCRIPTION: one TAP line; STATUS 0 passes.
ok () {
  tap_n=$((tap_n + 1))
  if [ "$1" -eq 0 ]; then
    echo "ok $tap_n - $2"
  else
    echo "not ok $tap_n - $2"
    tap_failed=$((tap_failed + 1))
  fi
}

# check DESCRIPTION COMMAND...: runs the command, passes when it exits 0.
check () {
  desc=$1
  shift
  "$@"
  ok $? "$desc"
}

# ctl ARGS...: gptctl against this test's daemon, given 60 s at most.
ctl () { timeout 60 "$GPTCTL" --socket "$SOCK" "$@"; }

# install_into DESTDIR LOG: the build tree installed into DESTDIR. Under make check
# it is a copy of the install made before the tests started ($GPTD_STAGED_INSTALL,
# see e2e.mk): make install relinks the plugins in place under .libs, which the
# tests running beside this one load. Run alone, the test installs (one at a time:
# flock on the build tree's Makefile, which nothing else locks), with a make of
# its own, outside the jobs of a make running the tests.
install_into () {
  if [ -n "${GPTD_STAGED_INSTALL:-}" ] && [ -d "$GPTD_STAGED_INSTALL" ]; then
    mkdir -p "$1" && cp -a "$GPTD_STAGED_INSTALL/." "$1" \
      && echo "copied from $GPTD_STAGED_INSTALL" > "$2"
  elif command -v flock > /dev/null 2>&1; then
    env -u MAKEFLAGS -u MFLAGS flock "$GPTD_BUILDDIR/Makefile" \
      make -C "$GPTD_BUILDDIR" install DESTDIR="$1" > "$2" 2>&1
  else
    make -C "$GPTD_BUILDDIR" install DESTDIR="$1" > "$2" 2>&1
  fi
}

# write_pipeline FILE: the pipeline text on standard input.
write_pipeline () { cat > "$1"; }

# train_tiny_classifier NAME RUN_DIR: trains a 1-layer, 8-wide ham/spam classifier
# for 3 steps on ten messages (byte-level vocabulary) with `gptd run`, into
# RUN_DIR; its output goes to $TMP/train.out and $TMP/train.err. Returns gptd's
# exit status; the model is RUN_DIR/checkpoint (its latest step-* directory).
train_tiny_classifier () {
  printf 'ham\thello there friend\nspam\twin a prize now\nham\tsee you at lunch\nspam\tfree cash call now\nham\tok thanks\nspam\tclaim your reward\nham\tlate again sorry\nspam\turgent prize waiting\nham\twhere are you\nspam\tyou won cash\n' \
    > "$TMP/sms.tsv"
  write_pipeline "$TMP/train.pipeline" <<PIPE
[pipeline]
name=$1

[stage messages]
type=table-source
path=$TMP/sms.tsv
labels=ham,spam

[stage tokens]
type=bpe-tokenizer
input=messages
vocab=$GPTD_SRCDIR/pipelines/vocab/bytes

[stage data]
type=classification-dataset
input=tokens
labels=ham,spam
split=0.6,0.2,0.2
pad-id=0
batch-size=2
seed=1

[stage train]
type=classifier-trainer
input=data
model=custom
n-layer=1
n-head=1
n-embd=8
context-length=32
vocab-size=300
vocab=$GPTD_SRCDIR/pipelines/vocab/bytes
pooling=last-token
trainable=all
max-steps=3
eval-freq=0
threads=1
PIPE
  "$GPTD" run "$TMP/train.pipeline" --run-dir "$2" > "$TMP/train.out" 2> "$TMP/train.err"
}

# tiny_train_pipeline FILE: 1500 steps of a 2-layer, 32-wide GPT on the README's
# bytes (a few seconds), evaluated and checkpointed every 100 steps.
tiny_train_pipeline () {
  write_pipeline "$1" <<PIPE
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
dropout=0.1
lr=0.003
max-steps=1500
eval-freq=100
eval-iter=2
checkpoint-every=100
seed=1
threads=1
vocab=$GPTD_SRCDIR/pipelines/vocab/bytes
PIPE
}

# ticker_pipeline FILE NAME KEY=VALUE...: an e2e-ticker run feeding dump.
ticker_pipeline () {
  file=$1
  name=$2
  shift 2
  {
    printf '[pipeline]\nname=%s\n\n[stage ticks]\ntype=e2e-ticker\n' "$name"
    for kv in "$@"; do printf '%s\n' "$kv"; done
    printf '\n[stage out]\ntype=dump\ninput=ticks\n'
  } > "$file"
}

# alive PID: whether the process exists.
alive () { kill -0 "$1" 2>/dev/null; }

# wait_gone PID SECONDS: waits for a process to end; fails on time out.
wait_gone () {
  i=0
  while alive "$1"; do
    i=$((i + 1))
    [ "$i" -gt $(($2 * 10)) ] && return 1
    sleep 0.1
  done
  return 0
}

# start_daemon [OPTIONS...]: starts gptd in the background and waits (20 s at
# most) until it answers. Its output goes to $TMP/daemon.log.
start_daemon () {
  "$GPTD" --socket "$SOCK" --state-dir "$STATE" --stop-timeout 10 "$@" \
    >> "$TMP/daemon.log" 2>&1 &
  DPID=$!
  i=0
  while [ "$i" -lt 200 ]; do
    if "$GPTCTL" --socket "$SOCK" ping > /dev/null 2>&1; then
      return 0
    fi
    alive "$DPID" || break
    i=$((i + 1))
    sleep 0.1
  done
  diag "gptd did not start; its log:"
  diag "$(cat "$TMP/daemon.log")"
  return 1
}

# stop_daemon: SIGTERM, then waits (30 s at most); returns gptd's exit status.
stop_daemon () {
  [ -n "$DPID" ] || return 0
  kill -TERM "$DPID" 2>/dev/null
  if ! wait_gone "$DPID" 30; then
    diag "gptd did not stop within 30 s"
    kill -KILL "$DPID" 2>/dev/null
  fi
  wait "$DPID"
  status=$?
  DPID=
  return $status
}

# run_state ID: the run's state as gptctl status shows it ("succeeded", ...).
run_state () { ctl status "$1" 2>/dev/null | sed -n 's/^state: *//p'; }

# wait_state ID STATE SECONDS: polls until the run is in STATE.
wait_state () {
  i=0
  while [ "$(run_state "$1")" != "$2" ]; do
    i=$((i + 1))
    [ "$i" -gt $(($3 * 10)) ] && return 1
    sleep 0.1
  done
  return 0
}

# The pids of the workers the state directory says are running.
worker_pids () {
  cat "$STATE"/runs/*/status.json 2>/dev/null | sed -n 's/^ *"pid" *: *\([1-9][0-9]*\).*/\1/p'
}

cleanup () {
  if [ -n "$DPID" ] && alive "$DPID"; then
    kill -KILL "$DPID" 2>/dev/null
    wait "$DPID" 2>/dev/null
  fi
  for pid in $(worker_pids); do
    kill -KILL "$pid" 2>/dev/null
  done
  if [ "$tap_failed" -gt 0 ] && [ -f "$TMP/daemon.log" ]; then
    diag "gptd's log:"
    diag "$(cat "$TMP/daemon.log")"
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 99' INT TERM HUP

#!/bin/sh
# test-pipeline-cli.sh: `gptd validate`, `gptd plugins` and `gptd run` as a user runs
# them — output, run directory, exit statuses (0, 1, 2, 130) and SIGINT. Prints TAP.
set -u

builddir=${GPTD_BUILDDIR:-$(pwd)}
srcdir=${GPTD_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
gptd="$builddir/daemon/gptd"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/gptd-cli-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1

n=0
failed=0
ok () { n=$((n + 1)); echo "ok $n - $1"; }
not_ok () { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"; }
check () {   # check DESCRIPTION COMMAND...
  desc=$1; shift
  if "$@"; then ok "$desc"; else not_ok "$desc"; fi
}
status_is () {   # status_is WANT DESCRIPTION: compares with $rc
  if [ "$rc" -eq "$1" ]; then ok "$2 (exit $rc)"; else not_ok "$2 (exit $rc, wanted $1)"; fi
}

echo "1..24"

if [ ! -x "$gptd" ]; then
  for i in $(seq 1 24); do echo "ok $i # SKIP $gptd is not built"; done
  exit 0
fi

# ---- validate -------------------------------------------------------------------
"$gptd" validate "$srcdir/pipelines/hello.pipeline" > out.txt 2> err.txt; rc=$?
status_is 0 "validate hello.pipeline"
check "validate says it is valid" grep -q "valid: pipeline hello, 2 stages" out.txt

cat > bad.pipeline <<'EOF'
[pipeline]
name=bad
[stage read]
type=text-sorce
[stage print]
type=dump
input=raed
EOF
"$gptd" validate bad.pipeline > out.txt 2> err.txt; rc=$?
status_is 1 "validate a pipeline with two problems"
check "the unknown type is named with its line and a suggestion" \
  grep -q "^bad.pipeline:4: stage read: key type: unknown stage type 'text-sorce' (did you mean 'text-source'?)" out.txt
check "the dangling input is named too" \
  grep -q "^bad.pipeline:7: stage print: key input: no stage is called 'raed' (did you mean 'read'?)" out.txt
"$gptd" validate --json bad.pipeline > out.json 2> err.txt; rc=$?
status_is 1 "validate --json"
check "--json says valid: false and lists the problems" \
  sh -c 'grep -q "\"valid\" : false" out.json && grep -q "text-sorce" out.json'

# ---- plugins ---------------------------------------------------------------------
"$gptd" plugins > out.txt 2> err.txt; rc=$?
status_is 0 "plugins"
check "plugins lists text-source and dump" \
  sh -c 'grep -q "^core: *text-source: " out.txt && grep -q "^core: *dump: " out.txt'
check "plugins names the skipped wrong-ABI plugin" grep -q "testplugin-wrong-abi.* ABI 99" out.txt
"$gptd" plugins text-source > out.txt 2> err.txt; rc=$?
check "plugins text-source describes its keys" \
  sh -c 'grep -q "chunk-size  int        default 1048576, range \[16, 1073741824\]" out.txt'
"$gptd" plugins no-such-type > out.txt 2> err.txt; rc=$?
status_is 1 "plugins with an unknown type"

# ---- run ------------------------------------------------------------------------
"$gptd" run "$srcdir/pipelines/hello.pipeline" --run-dir hello-run > out.jsonl 2> err.txt; rc=$?
status_is 0 "run hello.pipeline"
check "it printed Documents as JSON lines" grep -q '"source":".*README.md","text":"# gptd' out.jsonl
check "the run directory holds the pipeline as submitted" \
  cmp -s hello-run/pipeline.pipeline "$srcdir/pipelines/hello.pipeline"
check "the event log ends with success" sh -c 'tail -n 1 hello-run/events.jsonl | grep -q '"succeeded"''

"$gptd" run "$srcdir/pipelines/hello.pipeline" --set read.chunk-size=64 --set input="$tmp/bad.pipeline" \
  --run-dir set-run > out.jsonl 2> err.txt; rc=$?
check "--set overrides a variable and a stage key" \
  sh -c '[ $(wc -l < out.jsonl) -eq 2 ] && grep -q "bad.pipeline" out.jsonl'

cat > fail.pipeline <<'EOF'
[pipeline]
name=fail
[stage c]
type=test-counter
count=10
[stage f]
type=test-fail
input=c
fail-at=3
[stage s]
type=test-sink
input=f
EOF
"$gptd" run fail.pipeline --run-dir fail-run > out.txt 2> err.txt; rc=$?
status_is 1 "run a pipeline whose stage fails"
check "the failure names its stage" grep -q "^gptd: stage f: bad document 3" err.txt

"$gptd" run bad.pipeline > out.txt 2> err.txt; rc=$?
status_is 2 "run an invalid pipeline"

cat > endless.pipeline <<'EOF'
[pipeline]
name=endless
[stage src]
type=test-endless
[stage s]
type=test-sink
input=src
delay-ms=1
EOF
"$gptd" run endless.pipeline --run-dir endless-run > out.txt 2> err.txt &
pid=$!
# Wait (up to 20 s) until the run is under way, then interrupt it.
for i in $(seq 1 200); do
  grep -q '"running"' endless-run/events.jsonl 2>/dev/null && break
  sleep 0.1
done
sleep 0.2
kill -INT "$pid"
wait "$pid"; rc=$?
status_is 130 "SIGINT cancels a run"
check "the event log ends with cancelled" \
  sh -c 'tail -n 1 endless-run/events.jsonl | grep -q '"cancelled"''

# ---- resume from a run directory whose run.json nests too deep --------------------
mkdir -p deep-run
head -c 100000 /dev/zero | tr '\0' '[' > deep-run/run.json
"$gptd" run --resume deep-run > out.txt 2> err.txt; rc=$?
status_is 2 "resume refuses a deeply nested run.json"
check "the error names run.json and the nesting" \
  grep -q "cannot resume deep-run: deep-run/run.json: arrays and objects nested deeper than 64 levels" err.txt

exit 0

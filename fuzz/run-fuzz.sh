#!/bin/sh
# fuzz/run-fuzz.sh: runs libFuzzer targets one after the other, each for a
# number of seconds, from its seed corpus (fuzz/corpus/NAME, never written) and
# its dictionary (fuzz/NAME.dict). New inputs go to BUILDDIR/fuzz/work/NAME,
# crashes and leaks to BUILDDIR/fuzz/findings/NAME/. Prints one line per target:
#
#   TARGET  SECONDS  EXECUTIONS  FINDINGS
#
# and exits nonzero when a target found something (the input is kept there).
#
# Usage: run-fuzz.sh [--seconds N] [--builddir DIR] [--srcdir DIR] TARGET...
#   TARGET is fuzz/fuzz-NAME (relative to the build directory).
set -u

seconds=10
builddir=$(pwd)
srcdir=$(cd "$(dirname "$0")/.." && pwd)
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --builddir) builddir=$2; shift 2 ;;
    --srcdir) srcdir=$2; shift 2 ;;
    --) shift; break ;;
    -*) echo "run-fuzz.sh: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || { echo "usage: run-fuzz.sh [--seconds N] TARGET..." >&2; exit 2; }

# Leaks are findings too; UBSan stops at the first report (the build makes it
# fatal), with a stack.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export OMP_NUM_THREADS=1

status=0
printf '%-24s %8s %12s %9s\n' target seconds executions findings
for target in "$@"; do
  name=$(basename "$target")
  work="$builddir/fuzz/work/$name"
  findings="$builddir/fuzz/findings/$name"
  seeds="$srcdir/fuzz/corpus/$name"
  dict="$srcdir/fuzz/$name.dict"
  log="$builddir/fuzz/$name.log"
  mkdir -p "$work" "$findings"
  set -- -max_total_time="$seconds" -timeout=25 -rss_limit_mb=4096 -print_final_stats=1 \
    -artifact_prefix="$findings/"
  [ -f "$dict" ] && set -- "$@" -dict="$dict"
  "$builddir/$target" "$@" "$work" "$seeds" > "$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  found=$(find "$findings" -type f | wc -l)
  printf '%-24s %8s %12s %9s\n' "$name" "$seconds" "${execs:-?}" "$found"
  if [ "$rc" -ne 0 ] || [ "$found" -ne 0 ]; then
    echo "  $name: exit status $rc; see $log and $findings/" >&2
    tail -n 30 "$log" >&2
    status=1
  fi
done
exit $status

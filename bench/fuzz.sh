#!/bin/sh
# bench/fuzz.sh: runs every fuzz target for MINUTES minutes (default 10) in a
# build configured with --enable-fuzzing CC=clang, and appends what it ran to
# bench/RESULTS.md: the date, the commit, and per target the seconds, the
# executions and the findings (inputs that crashed, leaked or broke a check;
# kept under BUILDDIR/fuzz/findings/).
#
# Usage: bench/fuzz.sh [MINUTES] [BUILDDIR]
#   GPTD_DATA_DIR, when set, gives fuzz-bpe GPT-2's vocabulary.
set -eu

minutes=${1:-10}
srcdir=$(cd "$(dirname "$0")/.." && pwd)
builddir=$(cd "${2:-$srcdir}" && pwd)
if ! grep -q '^enable_fuzzing = yes' "$builddir/Makefile" 2>/dev/null; then
  echo "bench/fuzz.sh: $builddir is not configured with --enable-fuzzing CC=clang" >&2
  exit 2
fi
targets=
for f in "$srcdir"/fuzz/fuzz-*.c; do
  targets="$targets fuzz/$(basename "$f" .c)"
done
make -C "$builddir" $targets >/dev/null
seconds=$((minutes * 60))
out=$(mktemp)
rc=0
"$srcdir/fuzz/run-fuzz.sh" --seconds "$seconds" --builddir "$builddir" --srcdir "$srcdir" \
  $targets > "$out" || rc=$?
cat "$out"
{
  echo
  echo "## Fuzzing, $(date -u +%Y-%m-%d), $(git -C "$srcdir" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo
  echo "\`bench/fuzz.sh $minutes\` on $(nproc) CPUs ($(uname -m)), $(${CC:-clang} --version 2>/dev/null | head -n 1)."
  echo "GPT-2 vocabulary for fuzz-bpe: $([ -n "${GPTD_DATA_DIR:-}" ] && [ -f "$GPTD_DATA_DIR/gpt2/encoder.json" ] && echo yes || echo no, the byte-level one)."
  echo
  echo "| target | seconds | executions | findings |"
  echo "|---|---:|---:|---:|"
  tail -n +2 "$out" | awk '{ printf "| %s | %s | %s | %s |\n", $1, $2, $3, $4 }'
} >> "$srcdir/bench/RESULTS.md"
rm -f "$out"
exit $rc

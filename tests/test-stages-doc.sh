#!/bin/sh
# tests/test-stages-doc.sh: docs/stages.md is what tools/stages-doc.py makes of
# `gptd plugins --json` for the plugins of this build: a stage type, key, default,
# range or pad changed without `make stages-doc` fails here, with the difference.
# Skipped without python3.
echo "1..1"
srcdir=${GPTD_SRCDIR:-.}
builddir=${GPTD_BUILDDIR:-.}
if ! command -v python3 > /dev/null 2>&1; then
  echo "ok 1 # SKIP python3 is not installed"
  exit 0
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/gptd-stages-XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
# The build tree's gptd, without GPTD_PLUGIN_PATH, loads the plugins built beside it
# (and not the test plugins).
if env -u GPTD_PLUGIN_PATH -u GPTD_PLUGIN_EXCLUDE "$builddir/daemon/gptd" plugins --json \
     > "$tmp/stages.json" 2> "$tmp/err" &&
   python3 "$srcdir/tools/stages-doc.py" "$tmp/stages.json" > "$tmp/stages.md" &&
   grep -q '^## text-source$' "$tmp/stages.md"; then
  if diff -u "$srcdir/docs/stages.md" "$tmp/stages.md" > "$tmp/diff"; then
    echo "ok 1 - docs/stages.md is current"
  else
    sed 's/^/# /' "$tmp/diff" | head -n 60
    echo "# run make stages-doc"
    echo "not ok 1 - docs/stages.md is current"
  fi
else
  sed 's/^/# /' "$tmp/err"
  echo "not ok 1 - gptd plugins --json and tools/stages-doc.py make a stage reference"
fi

#!/bin/sh
# test-doc-examples.sh: every whole pipeline shown in the documentation (an ```ini
# block of README.md or docs/*.md holding a [pipeline] group) is valid as written.
# Each is checked with `gptd validate` from a copy of the source tree's layout, so its
# relative paths mean what they mean beside the shipped pipelines; one that reads
# ${GPTD_DATA_DIR} is skipped when that is not set. Prints TAP.
set -u

builddir=${GPTD_BUILDDIR:-$(pwd)}
srcdir=${GPTD_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
gptd="$builddir/daemon/gptd"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/gptd-docs-XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# The examples, one file each, named after their document and position.
mkdir -p "$tmp/pipelines"
ln -s "$srcdir/README.md" "$tmp/README.md"
ln -s "$srcdir/docs" "$tmp/docs"
ln -s "$srcdir/pipelines/vocab" "$tmp/pipelines/vocab"
for doc in "$srcdir/README.md" "$srcdir"/docs/*.md; do
  base=$(basename "$doc" .md)
  awk -v out="$tmp/pipelines/$base" '
    /^```ini/ { inb = 1; n++; buf = ""; next }
    /^```/ { if (inb && buf ~ /\[pipeline\]/) { f = out "-" n ".pipeline"; printf "%s", buf > f; close (f) }
             inb = 0; next }
    inb { buf = buf $0 "\n" }' "$doc"
done

files=$(ls "$tmp"/pipelines/*.pipeline 2>/dev/null)
count=$(printf '%s\n' $files | grep -c . )
echo "1..$count"
n=0
for f in $files; do
  n=$((n + 1))
  name=$(basename "$f" .pipeline)
  if grep -q 'GPTD_DATA_DIR' "$f" && [ -z "${GPTD_DATA_DIR:-}" ]; then
    echo "ok $n - $name # SKIP it reads \${GPTD_DATA_DIR}, which is not set"
    continue
  fi
  if (cd "$tmp" && "$gptd" validate "$f" > "$tmp/out" 2>&1); then
    echo "ok $n - $name is a valid pipeline"
  else
    echo "not ok $n - $name is a valid pipeline"
    sed 's/^/# /' "$tmp/out"
  fi
done

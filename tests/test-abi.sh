#!/bin/sh
# tests/test-abi.sh: the plugin SDK's ABI has not changed by accident. The built
# libgptd is dumped with abidw (the installed headers mark what is public) and
# compared with abidiff against abi/libgptd.abi, the ABI of the last release; the
# GPTD_PRIVATE functions are left out (abi/private.suppr). Any difference fails,
# and abidiff's report says what changed: restore it, or, for a deliberate change,
# follow abi/README.md. Then the check is shown to catch a break: against a copy of
# the current ABI in which GptdPadSpec is smaller, as if the struct had grown since
# the release, it must fail. Skipped without abigail-tools.
set -u
echo "1..3"
srcdir=${GPTD_SRCDIR:-.}
builddir=${GPTD_BUILDDIR:-.}
lib=$builddir/lib/.libs/libgptd.so
if ! command -v abidw >/dev/null 2>&1 || ! command -v abidiff >/dev/null 2>&1; then
  for i in 1 2 3; do echo "ok $i # SKIP abidw and abidiff (abigail-tools) are not installed"; done
  exit 0
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/gptd-abi-XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

# The installed headers, as `make install` lays them out.
mkdir -p "$tmp/include/gptd"
for h in ${GPTD_SDK_HEADERS:?}; do cp "$srcdir/$h" "$tmp/include/gptd/" || exit 1; done
for h in ${GPTD_SDK_NODIST_HEADERS:?}; do cp "$builddir/$h" "$tmp/include/gptd/" || exit 1; done

# 1: the library's ABI is the release's.
if abidw --headers-dir "$tmp/include" --no-show-locs --no-corpus-path --no-comp-dir-path "$lib" > "$tmp/current.abi"; then
  abidiff --suppressions "$srcdir/abi/private.suppr" --redundant \
    "$srcdir/abi/libgptd.abi" "$tmp/current.abi" > "$tmp/report" 2>&1
  rc=$?
  if [ $rc -eq 0 ]; then
    echo "ok 1 - libgptd's public ABI matches abi/libgptd.abi"
  else
    sed 's/^/# /' "$tmp/report"
    echo "# abidiff exited with $rc: the public ABI changed (see abi/README.md)"
    echo "not ok 1 - libgptd's public ABI matches abi/libgptd.abi"
  fi
else
  echo "not ok 1 - abidw could not read $lib"
fi

# 2: a public struct that changes size is caught.
awk '
  /<class-decl name=.GptdPadSpec. / { inpad = 1; sub(/size-in-bits=.[0-9]+./, "size-in-bits=\"192\"") }
  inpad && /<data-member .*layout-offset-in-bits=.192./ { skip = 1 }
  skip { if (/<\/data-member>/) skip = 0; next }
  inpad && /<\/class-decl>/ { inpad = 0 }
  { print }
' "$tmp/current.abi" > "$tmp/altered.abi"
if cmp -s "$tmp/current.abi" "$tmp/altered.abi"; then
  echo "not ok 2 - the altered copy differs (GptdPadSpec not found in the dump)"
else
  abidiff --suppressions "$srcdir/abi/private.suppr" --redundant \
    "$tmp/altered.abi" "$tmp/current.abi" > "$tmp/report2" 2>&1
  rc=$?
  if [ $((rc & 4)) -ne 0 ] && grep -q "GptdPadSpec" "$tmp/report2"; then
    echo "ok 2 - a change of GptdPadSpec's size fails the check"
  else
    sed 's/^/# /' "$tmp/report2"
    echo "not ok 2 - a change of GptdPadSpec's size fails the check (abidiff exited $rc)"
  fi
fi

# 3: a change to a host-only (GPTD_PRIVATE) function does not: the same alteration
# of a private type is suppressed. GptdRegistry's functions are private; drop one.
awk '
  /<function-decl name=.gptd_registry_scan_dir. / { skip = 1 }
  skip { if (/<\/function-decl>/) skip = 0; next }
  { print }
' "$tmp/current.abi" > "$tmp/private.abi"
if cmp -s "$tmp/current.abi" "$tmp/private.abi"; then
  echo "not ok 3 - the private function was found in the dump"
else
  abidiff --suppressions "$srcdir/abi/private.suppr" \
    "$tmp/current.abi" "$tmp/private.abi" > "$tmp/report3" 2>&1
  rc=$?
  if [ $((rc & 12)) -eq 0 ]; then
    echo "ok 3 - a change among the GPTD_PRIVATE functions is not an ABI change"
  else
    sed 's/^/# /' "$tmp/report3"
    echo "not ok 3 - a change among the GPTD_PRIVATE functions is not an ABI change (abidiff exited $rc)"
  fi
fi

#!/bin/sh
# tests/test-sdk-symbols.sh: the plugin SDK as installed. Every function an installed
# header declares is exported under the GPTD_1 symbol version; every GPTD_1 symbol
# is declared by an installed header; libgptd exports nothing outside GPTD_1 and the
# host-only GPTD_PRIVATE, and no installed header declares a GPTD_PRIVATE function;
# each installed header compiles alone with the flags gptd-plugin.pc gives (so none
# includes a header that is not installed).
set -u
echo "1..4"
srcdir=${GPTD_SRCDIR:-.}
builddir=${GPTD_BUILDDIR:-.}
lib=$builddir/lib/.libs/libgptd.so
tmp=$(mktemp -d "${TMPDIR:-/tmp}/gptd-sdk-XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/include/gptd"
for h in ${GPTD_SDK_HEADERS:?}; do cp "$srcdir/$h" "$tmp/include/gptd/" || exit 1; done
for h in ${GPTD_SDK_NODIST_HEADERS:?}; do cp "$builddir/$h" "$tmp/include/gptd/" || exit 1; done

# Function and variable names declared by the installed headers: gptd_x ( and the
# protobuf-c functions and descriptors of gptd.pb-c.h.
cat "$tmp"/include/gptd/*.h | sed 's,/\*.*\*/,,' |
  grep -oE '\bgptd_[a-z0-9_]+ \(|\bgptd__[a-z0-9_]+__[a-z_]+\b' | sed 's/ ($//' |
  LC_ALL=C sort -u > "$tmp/declared"
nm -D --defined-only "$lib" | awk '{ print $3 }' > "$tmp/exported"
grep '@@GPTD_1$' "$tmp/exported" | sed 's/@@.*//' | LC_ALL=C sort -u > "$tmp/public"
grep '@@GPTD_PRIVATE$' "$tmp/exported" | sed 's/@@.*//' | LC_ALL=C sort -u > "$tmp/private"

missing=$(LC_ALL=C comm -23 "$tmp/declared" "$tmp/public")
extra=$(LC_ALL=C comm -13 "$tmp/declared" "$tmp/public")
if [ -z "$missing$extra" ]; then
  echo "ok 1 - GPTD_1 is exactly what the installed headers declare ($(wc -l < "$tmp/public") symbols)"
else
  for s in $missing; do echo "# declared by an installed header, not exported as GPTD_1: $s"; done
  for s in $extra; do echo "# exported as GPTD_1, declared by no installed header: $s"; done
  echo "# fix lib/libgptd.sym"
  echo "not ok 1 - GPTD_1 is exactly what the installed headers declare"
fi

others=$(grep -v -e '@@GPTD_1$' -e '@@GPTD_PRIVATE$' -e '^GPTD_1$' -e '^GPTD_PRIVATE$' \
  -e '^_init$' -e '^_fini$' "$tmp/exported")
if [ -z "$others" ]; then
  echo "ok 2 - nothing is exported outside GPTD_1 and GPTD_PRIVATE"
else
  for s in $others; do echo "# exported: $s"; done
  echo "not ok 2 - nothing is exported outside GPTD_1 and GPTD_PRIVATE"
fi

both=$(LC_ALL=C comm -12 "$tmp/declared" "$tmp/private")
if [ -z "$both" ]; then
  echo "ok 3 - no installed header declares a GPTD_PRIVATE function"
else
  for s in $both; do echo "# GPTD_PRIVATE but installed: $s"; done
  echo "not ok 3 - no installed header declares a GPTD_PRIVATE function"
fi

cflags=$(pkg-config --cflags glib-2.0 gmodule-2.0 json-glib-1.0 libprotobuf-c)
failed=
for h in "$tmp"/include/gptd/*.h; do
  name=gptd/$(basename "$h")
  printf '#include <%s>\n' "$name" > "$tmp/one.c"
  # shellcheck disable=SC2086
  if ! ${CC:-cc} -fsyntax-only -Wall -Wextra -Werror -I"$tmp/include" $cflags "$tmp/one.c" \
      > "$tmp/cc.log" 2>&1; then
    sed 's/^/# /' "$tmp/cc.log"
    failed="$failed $name"
  fi
done
if [ -z "$failed" ]; then
  echo "ok 4 - each installed header compiles alone"
else
  echo "not ok 4 - each installed header compiles alone:$failed"
fi

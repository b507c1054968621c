#!/bin/sh
# tests/e2e/sdk.sh: the plugin SDK as a plugin author meets it. gptd is installed
# into a temporary prefix (DESTDIR); the example plugin (examples/plugin/, copied out
# of the tree) is built with its own Makefile against the installed headers and
# library, found through pkg-config alone; its unit tests pass under the installed
# test harness; the installed gptd lists its stage types (also as JSON) and runs a
# pipeline through them. Skipped without a C compiler or pkg-config.
. "${GPTD_SRCDIR:-.}/tests/e2e/lib.sh"

plan 8

# ok_log RC DESCRIPTION LOG: ok, with the log shown when it failed.
ok_log () {
  [ "$1" -eq 0 ] || sed 's/^/# /' "$3" | tail -n 30
  ok "$1" "$2"
}

if ! command -v "${CC:-cc}" > /dev/null 2>&1 || ! command -v pkg-config > /dev/null 2>&1; then
  for i in 1 2 3 4 5 6 7 8; do echo "ok $i # SKIP needs a C compiler and pkg-config"; done
  exit 0
fi

DEST="$TMP/dest"
if ! install_into "$DEST" "$TMP/install.log"; then
  tail -n 20 "$TMP/install.log" | sed 's/^/# /'
  echo "Bail out! make install DESTDIR failed"
  exit 1
fi
BIN=$(find "$DEST" -path '*/bin/gptd' -type f | head -n 1)
PCDIR=$(dirname "$(find "$DEST" -name gptd-plugin.pc | head -n 1)")
LIBDIR=$(dirname "$PCDIR")
INCDIR=$(dirname "$(find "$DEST" -path '*/include/gptd/plugin.h' | head -n 1)")

# Only the SDK's headers are installed.
installed=$(cd "$INCDIR" && ls | sort | tr '\n' ' ')
[ "$installed" = "bpe.h gptd.pb-c.h harness.h message-json.h plugin.h stage.h " ]
ok $? "the installed headers are the SDK's: $installed"

# pkg-config of the installed tree: the .pc, its prefix moved into DESTDIR (all its
# other paths derive from it), found through PKG_CONFIG_PATH.
PREFIX=$(sed -n 's/^prefix=//p' "$PCDIR/gptd-plugin.pc")
mkdir -p "$TMP/pc"
sed "s|^prefix=.*|prefix=$DEST$PREFIX|" "$PCDIR/gptd-plugin.pc" > "$TMP/pc/gptd-plugin.pc"
export PKG_CONFIG_PATH="$TMP/pc${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
cflags=$(pkg-config --cflags gptd-plugin)
[ "$(pkg-config --variable=abi gptd-plugin)" = 2 ] && \
  echo " $cflags " | grep -q " -I$DEST[^ ]*/include " && \
  ! echo " $cflags " | grep -q "/include/gptd "
ok $? "gptd-plugin.pc gives the include directory above gptd/ and ABI 2 (cflags: $cflags)"

cp -R "$GPTD_SRCDIR/examples/plugin" "$TMP/example"
chmod -R u+w "$TMP/example"
rm -f "$TMP/example/example.so" "$TMP/example/test-example"
make -C "$TMP/example" CFLAGS="-O2 -g -Werror" > "$TMP/build.log" 2>&1
ok_log $? "the example builds with its own Makefile against the installed SDK, without warnings" \
  "$TMP/build.log"

exported=$(nm -D --defined-only "$TMP/example/example.so" | awk '{ print $3 }' | tr '\n' ' ')
[ "$exported" = "gptd_plugin_descriptor " ]
ok $? "the example plugin exports its descriptor only ($exported)"

LD_LIBRARY_PATH="$LIBDIR" make -C "$TMP/example" check CFLAGS="-O2 -g -Werror" \
  > "$TMP/check.log" 2>&1
ok_log $? "the example's unit tests pass under the installed harness (make check)" "$TMP/check.log"

igptd () {
  (cd "$TMP/example" && env -u GPTD_DATA_DIR GPTD_PLUGIN_PATH="$TMP/example" \
    LD_LIBRARY_PATH="$LIBDIR" timeout 120 "$BIN" "$@")
}
igptd plugins > "$TMP/plugins.out" 2>&1 && grep -q '^example: *upper: ' "$TMP/plugins.out" \
  && grep -q '^example: *word-count: ' "$TMP/plugins.out" \
  && grep -q '^core: *text-source: ' "$TMP/plugins.out"
ok_log $? "the installed gptd lists the example's stage types beside its own" "$TMP/plugins.out"

igptd plugins --json word-count > "$TMP/wc.json" 2>&1 && grep -q '"min-length"' "$TMP/wc.json" \
  && grep -q '"plugin" *: *"example"' "$TMP/wc.json"
ok_log $? "gptd plugins --json word-count describes it" "$TMP/wc.json"

printf 'one two three\nfour five\n' > "$TMP/example/words.txt"
igptd run example.pipeline --set text=words.txt -q > "$TMP/run.out" 2>&1 \
  && grep -q '5 words in 1 documents' "$TMP/run.out"
ok_log $? "gptd run example.pipeline runs the example's stages in a pipeline" "$TMP/run.out"

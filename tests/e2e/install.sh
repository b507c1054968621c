#!/bin/sh
# tests/e2e/install.sh: gptd as a user meets it after `make install`: installed into
# a temporary prefix (DESTDIR), it runs the shipped pipelines by name (hello, a
# shortened quickstart) from another directory, keeps runs/NAME-latest, generates
# from that run with `gptd generate`, reads a pipeline from standard input, and the
# installed tree holds no libtool archives among the plugins and the documentation.
# The same commands are checked from the build tree.
. "${GPTD_SRCDIR:-.}/tests/e2e/lib.sh"

plan 16

DEST="$TMP/dest"
if ! install_into "$DEST" "$TMP/install.log"; then
  cat "$TMP/install.log" | tail -n 20 | sed 's/^/# /'
  echo "Bail out! make install DESTDIR failed"
  exit 1
fi
BIN=$(find "$DEST" -path '*/bin/gptd' -type f | head -n 1)
LIBDIR=$(dirname "$(find "$DEST" -name 'libgptd.so*' | head -n 1)")
PREFIX=$(dirname "$(dirname "$BIN")")
[ -x "$BIN" ] && [ -n "$LIBDIR" ]
ok $? "make install DESTDIR puts gptd and libgptd under the prefix"

# The installed gptd, away from the build tree, with none of its settings.
igptd () {
  (cd "$TMP/work" && env -u GPTD_PLUGIN_PATH -u GPTD_DATA_DIR LD_LIBRARY_PATH="$LIBDIR" \
    timeout 300 "$BIN" "$@")
}
mkdir -p "$TMP/work"

[ -z "$(find "$DEST" -path '*/gptd/plugins/*.la')" ] && [ -n "$(find "$DEST" -path '*/gptd/plugins/*.so')" ] \
  && [ -z "$(find "$DEST" -path '*/gptd/plugins/*' -name 'lib*')" ] \
  && [ -f "$PREFIX/lib/gptd/plugins/core.so" ] && [ -f "$PREFIX/lib/gptd/plugins/bpe.so" ]
ok $? "the plugin directory holds the plugins, named alike (core.so, bpe.so, ...), and no libtool archives"
[ -f "$PREFIX/share/doc/gptd/README.md" ] && [ -f "$PREFIX/share/doc/gptd/docs/pipeline-format.md" ]
ok $? "the documentation is installed in the doc directory"

igptd plugins > "$TMP/plugins.out" 2>&1 && grep -q 'gpt-trainer' "$TMP/plugins.out"
ok $? "the installed gptd finds its installed plugins"

igptd run hello --set out="$TMP/hello.jsonl" -q > "$TMP/hello.out" 2>&1 && grep -q '"text"' "$TMP/hello.jsonl"
ok $? "gptd run hello runs the installed hello pipeline"

igptd run quickstart --set train.max-steps=4 --set train.eval-freq=2 --set train.eval-iter=1 \
  --set train.sample-tokens=5 -q > "$TMP/qs.out" 2>&1
ok $? "gptd run quickstart (shortened) runs from the prefix with its installed corpus and vocabulary"
[ -L "$TMP/work/runs/quickstart-latest" ] && [ -f "$TMP/work/runs/quickstart-latest/checkpoint/checkpoint.json" ]
ok $? "runs/quickstart-latest points at the run just made"

igptd generate -m runs/quickstart-latest/checkpoint -n 8 -q "The pipeline" > "$TMP/gen.out" 2> "$TMP/gen.err"
ok $? "gptd generate -m runs/quickstart-latest/checkpoint exits 0"
[ -s "$TMP/gen.out" ]
ok $? "it prints the generated text"
igptd generate -m runs/quickstart-latest/checkpoint -n 8 "The pipeline" > "$TMP/gen2.out" 2>&1
head -c 12 "$TMP/gen2.out" | grep -q '^The pipeline$' && [ "$(tail -c +13 "$TMP/gen2.out")" = "$(cat "$TMP/gen.out")" ]
ok $? "without --quiet the prompt comes first, then the same greedy continuation"
igptd generate -m "$TMP/nowhere" "x" > /dev/null 2> "$TMP/gen-bad.err"
[ $? -eq 1 ] && grep -q "$TMP/nowhere" "$TMP/gen-bad.err"
ok $? "a missing model directory is exit 1 naming it"
igptd generate "x" > /dev/null 2>&1
[ $? -eq 2 ]
ok $? "no -m is a usage error (exit 2)"

printf '[pipeline]\nname=stdin\n\n[stage a]\ntype=text-source\npath=in.txt\n\n[stage d]\ntype=dump\ninput=a\n' \
  > "$TMP/stdin.pipeline"
printf 'from standard input' > "$TMP/work/in.txt"
igptd run - -q < "$TMP/stdin.pipeline" > "$TMP/stdin.out" 2>&1 && grep -q 'from standard input' "$TMP/stdin.out"
ok $? "gptd run - reads the pipeline from standard input, paths relative to the current directory"

igptd run no-such-pipeline > /dev/null 2> "$TMP/nosuch.err"
[ $? -eq 2 ] && grep -q 'no-such-pipeline.pipeline' "$TMP/nosuch.err" && grep -q 'share/gptd/pipelines' "$TMP/nosuch.err"
ok $? "an unknown pipeline name is a usage error naming the places searched"

# From the build tree, the same names resolve to the source tree's pipelines.
(cd "$TMP/work" && timeout 120 "$GPTD" validate quickstart > "$TMP/tree-validate.out" 2>&1) \
  && grep -q "$GPTD_SRCDIR/pipelines/quickstart.pipeline: valid" "$TMP/tree-validate.out"
ok $? "gptd validate quickstart from the build tree finds the source tree's pipeline"
(cd "$TMP/work" && timeout 120 "$GPTD" validate - < "$TMP/stdin.pipeline" > "$TMP/tree-stdin.out" 2>&1) \
  && grep -q '<stdin>: valid' "$TMP/tree-stdin.out"
ok $? "gptd validate - reads standard input"


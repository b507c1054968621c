#!/bin/sh
# tests/e2e/quantize.sh: gptd quantize and gptd generate --weights on the tiny
# model of tests/golden/generate/model: a saved q8 (and bf16) directory
# generates exactly the text of the same format converted when loading; a
# quantized directory is refused in another format and as the input of
# another conversion; bad formats and arguments are usage errors; a truncated
# quantized file is a load error.
. "${GPTD_SRCDIR:-.}/tests/e2e/lib.sh"

plan 12

GPTD_NN_THREADS=1
export GPTD_NN_THREADS
MODEL="$GPTD_SRCDIR/tests/golden/generate/model"

"$GPTD" quantize "$MODEL" "$TMP/q8" --weights q8 > "$TMP/q.out" 2> "$TMP/q.err"
ok $? "gptd quantize --weights q8 exits 0"
[ -s "$TMP/q8/model.safetensors" ] && [ -s "$TMP/q8/config.json" ] &&
  [ -s "$TMP/q8/vocab.json" ] && [ -s "$TMP/q8/merges.txt" ]
ok $? "the q8 directory has the weights, configuration and tokenizer"

"$GPTD" generate -q -m "$TMP/q8" -n 24 "hello world" > "$TMP/saved" 2> "$TMP/saved.err"
ok $? "gptd generate on the q8 directory exits 0"
"$GPTD" generate -q -m "$MODEL" --weights q8 -n 24 "hello world" > "$TMP/onload" 2>&1
[ -s "$TMP/saved" ] && cmp -s "$TMP/saved" "$TMP/onload"
ok $? "saved q8 gives the text of q8 converted on load"

"$GPTD" quantize "$MODEL" "$TMP/bf16" -w bf16 > /dev/null 2>&1 &&
  "$GPTD" generate -q -m "$TMP/bf16" -n 24 "hello world" > "$TMP/bsaved" 2>&1 &&
  "$GPTD" generate -q -m "$MODEL" -w bf16 -n 24 "hello world" > "$TMP/bonload" 2>&1 &&
  cmp -s "$TMP/bsaved" "$TMP/bonload"
ok $? "saved bf16 gives the text of bf16 converted on load"

"$GPTD" generate -q -m "$TMP/q8" --weights bf16 -n 4 "hello" > /dev/null 2> "$TMP/other.err"
[ $? -eq 1 ] && grep -q "holds q8 weights" "$TMP/other.err"
ok $? "a q8 directory asked for bf16 is refused, naming its format"

"$GPTD" quantize "$TMP/q8" "$TMP/again" -w q8 > /dev/null 2> "$TMP/again.err"
[ $? -eq 1 ] && grep -q "already holds q8" "$TMP/again.err"
ok $? "a quantized directory is not converted again"

"$GPTD" quantize "$MODEL" "$TMP/x" -w q4 > /dev/null 2> "$TMP/fmt.err"
[ $? -eq 2 ] && grep -q "unknown weight format" "$TMP/fmt.err"
ok $? "an unknown format is a usage error"

"$GPTD" quantize "$MODEL" > /dev/null 2>&1
[ $? -eq 2 ]
ok $? "a missing OUT_DIR is a usage error"

"$GPTD" generate -m "$MODEL" --weights q4 -n 4 "hello" > /dev/null 2> "$TMP/gfmt.err"
[ $? -eq 2 ] && grep -q "unknown weight format" "$TMP/gfmt.err"
ok $? "generate --weights with an unknown format is a usage error"

mkdir "$TMP/bad" && cp "$TMP/q8"/*.json "$TMP/q8"/merges.txt "$TMP/bad/" || exit 99
head -c 2000 "$TMP/q8/model.safetensors" > "$TMP/bad/model.safetensors"
"$GPTD" generate -m "$TMP/bad" -n 4 "hello" > /dev/null 2> "$TMP/bad.err"
[ $? -eq 1 ] && grep -q "model.safetensors" "$TMP/bad.err"
ok $? "a truncated quantized file is a load error naming the file"

"$GPTD" quantize "$MODEL" "$TMP/none" -w fp32 > /dev/null 2>&1
[ $? -eq 2 ]
ok $? "--weights fp32 converts nothing: a usage error"

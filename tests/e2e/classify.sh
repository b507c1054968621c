#!/bin/sh
# tests/e2e/classify.sh: classification through the daemon. A tiny classifier is
# trained here with `gptd run` (table-source, bpe-tokenizer, classification-dataset,
# classifier-trainer); `gptctl classify` answers two texts with label names from
# the model, probabilities summing to 1 and the same predictions as the
# `classifier` stage; --json prints the PredictionList and `-` reads standard
# input. A language model asked to classify, a classifier asked to generate and a
# missing directory are refused with errors naming the directory; the serving
# worker is started once and reused by the next request.
. "${GPTD_SRCDIR:-.}/tests/e2e/lib.sh"

GPTD_PLUGIN_PATH="$GPTD_BUILDDIR/plugins/bpe/.libs:$GPTD_BUILDDIR/plugins/train/.libs:$GPTD_BUILDDIR/plugins/generate/.libs:$GPTD_PLUGIN_PATH"
export GPTD_PLUGIN_PATH

plan 17

LM="$GPTD_SRCDIR/tests/golden/generate/model"
T1="win a free prize now"
T2="see you at lunch"

serving_pids () {
  for d in /proc/[0-9]*; do
    [ "$(awk '{ print $4 }' "$d/stat" 2>/dev/null)" = "$DPID" ] || continue
    tr '\0' ' ' < "$d/cmdline" 2>/dev/null | grep -q -- '--serve ' && basename "$d"
  done
}

# ---- a tiny classifier, trained here --------------------------------------------
train_tiny_classifier classify-e2e "$TMP/train"
ok $? "a tiny classifier trains"
MODEL=$(ls -d "$TMP"/train/checkpoint/step-* 2>/dev/null | tail -n 1)
[ -n "$MODEL" ] && grep -q '"GPT2ForSequenceClassification"' "$MODEL/config.json"
ok $? "it is a classifier directory ($MODEL)"

# The classifier stage's answer for one text: "LABEL PROBABILITY" (4 decimals).
stage_predict () {
  printf '[pipeline]\nname=c\n[stage c]\ntype=classifier\nmodel=%s\ntext=%s\noutput=%s\n' \
    "$MODEL" "$1" "$TMP/stage.jsonl" > "$TMP/stage.pipeline"
  rm -f "$TMP/stage.jsonl"
  "$GPTD" run "$TMP/stage.pipeline" --run-dir "$TMP/stage-run" > /dev/null 2>&1 || return 1
  sed -n 's/.*"label":\([0-9]*\),"label_name":"\([^"]*\)","probabilities":\[\([^]]*\)\].*/\1 \2 \3/p' \
    "$TMP/stage.jsonl" |
    awk '{ split($3, p, ","); printf "%s  %.4f\n", $2, p[$1 + 1] }'
}
{ stage_predict "$T1" && stage_predict "$T2"; } > "$TMP/stage.out"
[ "$(wc -l < "$TMP/stage.out")" = 2 ]
ok $? "the classifier stage predicts both texts"

check "gptd starts" start_daemon

ctl classify --model "$MODEL" "$T1" "$T2" > "$TMP/classify.out" 2> "$TMP/classify.err"
ok $? "gptctl classify answers two texts"
diag "$(cat "$TMP/classify.out")"
[ "$(wc -l < "$TMP/classify.out")" = 2 ] &&
  sed -n 1p "$TMP/classify.out" | grep -q "^\(ham\|spam\)  [01]\.[0-9]\{4\}  $T1\$" &&
  sed -n 2p "$TMP/classify.out" | grep -q "^\(ham\|spam\)  [01]\.[0-9]\{4\}  $T2\$"
ok $? "a line per text, in order: the model's label name, its probability, the text"
[ -s "$TMP/stage.out" ] && awk '{ print $1 "  " $2 }' "$TMP/classify.out" | cmp -s - "$TMP/stage.out"
ok $? "the same labels and probabilities as the classifier stage"

ctl --json classify --model "$MODEL" "$T1" "$T2" > "$TMP/classify.json"
ok $? "gptctl --json classify succeeds"
tr -d ' \n' < "$TMP/classify.json" > "$TMP/flat.json"
diag "$(cat "$TMP/flat.json")"
[ "$(grep -o '"label_name":"\(ham\|spam\)"' "$TMP/flat.json" | wc -l)" = 2 ] &&
  grep -q '^{"predictions":\[' "$TMP/flat.json"
ok $? "--json prints the PredictionList with a prediction per text"
grep -o '"probabilities":\[[^]]*\]' "$TMP/flat.json" | sed 's/.*\[\(.*\)\]/\1/' |
  awk -F, '{ s = 0; for (i = 1; i <= NF; i++) s += $i; if (NF != 2 || s < 0.9999 || s > 1.0001) bad = 1; n++ }
           END { exit (bad || n != 2) }'
ok $? "each prediction has two probabilities summing to 1"

SP=$(serving_pids)
printf '%s\n\n%s\n' "$T2" "$T1" | ctl classify --model "$MODEL" - > "$TMP/stdin.out"
[ "$(wc -l < "$TMP/stdin.out")" = 2 ] && sed -n 1p "$TMP/stdin.out" | grep -q "  $T2\$" &&
  [ "$(awk '{ print $1 "  " $2 }' "$TMP/stdin.out")" = "$(sed -n 2p "$TMP/stage.out"; sed -n 1p "$TMP/stage.out")" ]
ok $? "- reads one text per line from standard input"
[ -n "$SP" ] && [ "$(serving_pids)" = "$SP" ] &&
  [ "$(grep -c "serving worker [0-9]* started for the model $MODEL " "$TMP/daemon.log")" = 1 ]
ok $? "the serving worker ($SP) is started once and reused"

ctl classify --model "$LM" "$T1" > /dev/null 2> "$TMP/lm.err"
st=$?
[ "$st" = 2 ] && grep -q "The model in $LM is a language model, not a classifier" "$TMP/lm.err"
ok $? "a language model asked to classify is refused (exit $st: $(cat "$TMP/lm.err"))"
ctl generate --model "$MODEL" --max-new-tokens 2 "hello" > /dev/null 2> "$TMP/gen.err"
st=$?
[ "$st" = 2 ] && grep -q "The model in $MODEL is a classifier (its config.json names GPT2ForSequenceClassification), not a language model" "$TMP/gen.err"
ok $? "a classifier asked to generate is refused (exit $st: $(cat "$TMP/gen.err"))"
ctl classify --model "$TMP/no-such-model" "$T1" > /dev/null 2> "$TMP/missing.err"
st=$?
[ "$st" = 4 ] && grep -q "The model directory $TMP/no-such-model does not exist" "$TMP/missing.err"
ok $? "a missing directory is refused (exit $st: $(cat "$TMP/missing.err"))"
ctl classify --model "$MODEL" "" > /dev/null 2> "$TMP/empty.err"
st=$?
[ "$st" = 2 ] && grep -q "text 1 is empty" "$TMP/empty.err"
ok $? "an empty text is refused (exit $st)"

check "gptd stops" stop_daemon

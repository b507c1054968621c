#!/bin/sh
# test-classify-pipeline.sh: classification fine-tuning through `gptd run`, as a user
# runs it. Prints TAP.
#
#  - Bad input, each a failed run whose message names what and where: a label not in
#    labels= (file and line), a row with too few columns, an empty text, a class with
#    no example, num-classes smaller than the input's classes, an init= classifier
#    with a head of other classes, and one whose score.weight has the wrong shape
#    (file and tensor). These use the byte-level vocabulary shipped in pipelines/.
#  - LoRA: lora-rank with trainable= is refused; a LoRA run delivers a merged model
#    directory, or with lora-save=adapter a PEFT adapter directory, which the
#    classifier stage loads.
#  - pipelines/sms-spam-small.pipeline, shortened to 20 steps (needs GPTD_DATA_DIR,
#    else skipped): accuracy.json, metrics.csv's columns, the model directory in
#    Hugging Face's GPT2ForSequenceClassification layout (score.weight, num_labels,
#    id2label, sequence_length), the accuracy plot, and the classifier stage's
#    predictions for the two example messages.
set -u

builddir=${GPTD_BUILDDIR:-$(pwd)}
srcdir=${GPTD_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
gptd="$builddir/daemon/gptd"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/gptd-classify-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1

total=25
n=0
ok () { n=$((n + 1)); echo "ok $n - $1"; }
not_ok () { n=$((n + 1)); echo "not ok $n - $1"; }
check () {   # check DESCRIPTION COMMAND...
  desc=$1; shift
  if "$@"; then ok "$desc"; else not_ok "$desc"; fi
}
skip_rest () {
  while [ "$n" -lt "$total" ]; do n=$((n + 1)); echo "ok $n # SKIP $1"; done
  exit 0
}

echo "1..$total"
[ -x "$gptd" ] || skip_rest "$gptd is not built"

# ---- bad input ----------------------------------------------------------------------
printf 'ham\thello there friend\nspam\twin a prize now\nham\tsee you at lunch\nspam\tfree cash call now\nham\tok thanks\nspam\tclaim your reward\nham\tlate again sorry\nspam\turgent prize waiting\nham\twhere are you\nspam\tyou won cash\n' > good.tsv
printf 'ham\thello there\nspam\twin now\neggs\tspam and eggs\nham\tok\nspam\tprize\neggs\tbacon eggs\nham\tsee you\nspam\tcash\neggs\tfried eggs\nham\tlate\n' > three.tsv
printf 'ham\thello\nspam\twin\neggs\tspam and eggs\n' > unknown.tsv
printf 'ham\thello\nspam\n' > short.tsv
printf 'ham\thello\nspam\t\n' > empty.tsv
printf 'ham\thello\nham\tthere\nham\tfriend\nham\tagain\nham\tand again\n' > oneclass.tsv

# A tiny classifier from scratch (model=custom), or from init=${init}.
pipeline () {   # pipeline TRAIN-KEYS
  cat <<PIPE
[pipeline]
name=classify-test
table=good.tsv
labels=ham,spam
init=none

[stage messages]
type=table-source
path=\${table}
labels=\${labels}

[stage tokens]
type=bpe-tokenizer
input=messages
vocab=$srcdir/pipelines/vocab/bytes

[stage data]
type=classification-dataset
input=tokens
labels=\${labels}
split=0.6,0.2,0.2
pad-id=0
batch-size=2
seed=1

[stage train]
type=classifier-trainer
input=data
trainable=all
max-steps=2
eval-freq=0
threads=1
$1
PIPE
}
pipeline "model=custom
n-layer=1
n-head=1
n-embd=8
context-length=32
vocab-size=300" > scratch.pipeline
pipeline 'init=${init}' > init.pipeline

fails_with () {   # fails_with DESCRIPTION PATTERN PIPELINE ARGS...
  desc=$1; pattern=$2; shift 2
  "$gptd" run "$@" > out.txt 2> err.txt; rc=$?
  if [ "$rc" -eq 1 ] && grep -q -- "$pattern" err.txt; then
    ok "$desc"
  else
    not_ok "$desc (exit $rc)"; sed 's/^/# /' err.txt | tail -n 3
  fi
}

"$gptd" run scratch.pipeline --run-dir ok-run > out.txt 2> err.txt
check "a good table trains" grep -q "succeeded" err.txt
fails_with "a label not in labels= names the file, the line and the label" \
  "stage messages: $tmp/unknown.tsv:3: label \"eggs\" is not one of labels=ham,spam" \
  scratch.pipeline --set table=unknown.tsv --run-dir r1
fails_with "a row with too few columns names the file and the line" \
  "stage messages: $tmp/short.tsv:2: 1 column (tab-separated), but the label is column 1 and the text column 2" \
  scratch.pipeline --set table=short.tsv --run-dir r2
fails_with "an empty text names the file and the line" \
  "stage messages: $tmp/empty.tsv:2: the text (column 2) is empty" \
  scratch.pipeline --set table=empty.tsv --run-dir r3
fails_with "a class with no example is named" \
  "stage data: class \"spam\" has no example (labels=ham,spam; 5 examples read)" \
  scratch.pipeline --set table=oneclass.tsv --run-dir r4
fails_with "num-classes smaller than the input's classes" \
  "stage train: num-classes: 1 is smaller than the 2 classes of the input (ham, spam)" \
  scratch.pipeline --set train.num-classes=1 --run-dir r5

"$gptd" run scratch.pipeline --set table=three.tsv --set labels=ham,spam,eggs \
  --run-dir three > out.txt 2> err.txt
three=$(ls -d "$tmp"/three/checkpoint/step-* | tail -n 1)
fails_with "an init= classifier of 3 classes for 2 labels" \
  "stage train: init: $three holds a classifier head of 3 classes, but 2 are wanted" \
  init.pipeline --set init="$three" --run-dir r6
# The same directory, its config.json saying 2 classes: score.weight is [3, 8].
mkdir bad-head && cp "$three"/* bad-head/
sed -i -e 's/"num_labels": 3/"num_labels": 2/' -e 's/"n_out": 3/"n_out": 2/' \
  -e 's/"id2label": {[^}]*}/"id2label": {"0": "ham", "1": "spam"}/' \
  -e 's/"label2id": {[^}]*}/"label2id": {"ham": 0, "spam": 1}/' bad-head/config.json
fails_with "an init= head of the wrong shape names the file and the tensor" \
  "stage train: init: $tmp/bad-head/model.safetensors: tensor “score.weight” has shape \[3, 8\], but the configuration gives it \[2, 8\]" \
  init.pipeline --set init="$tmp/bad-head" --run-dir r7
"$gptd" run init.pipeline --set init="$three" --set table=three.tsv \
  --set labels=ham,spam,eggs --run-dir again > out.txt 2> err.txt
check "an init= classifier of the same classes trains further" \
  grep -q "is a classifier of 3 classes; its head is trained further" err.txt

# ---- LoRA ------------------------------------------------------------------------------
"$gptd" run scratch.pipeline --set train.lora-rank=2 --run-dir r8 > out.txt 2> err.txt
check "lora-rank with trainable= is refused when the pipeline loads, by name" \
  grep -q "stage train: trainable: with lora-rank the adapters and the head train" err.txt
sed '/^trainable=all$/d' scratch.pipeline > scratch-lora.pipeline
sed '/^trainable=all$/d' init.pipeline > init-lora.pipeline
"$gptd" run scratch-lora.pipeline --set train.lora-rank=2 --set train.lora-alpha=4 \
  --run-dir lora > out.txt 2> err.txt
check "a LoRA classifier run delivers a merged model directory" \
  sh -c "grep -q 'LoRA: merged model in lora/merged' lora/events.jsonl &&
         test -s lora/merged/model.safetensors && ! grep -q lora_rank lora/merged/config.json"
"$gptd" run init-lora.pipeline --set init="$three" --set table=three.tsv \
  --set labels=ham,spam,eggs --set train.lora-rank=2 --set train.lora-save=adapter \
  --run-dir lora-ad > out.txt 2> err.txt
check "lora-save=adapter writes PEFT's adapter_config.json and tensors" \
  sh -c "grep -q '\"r\" : 2' lora-ad/adapter/adapter_config.json &&
         grep -q '\"base_model_name_or_path\" : \"$three\"' lora-ad/adapter/adapter_config.json &&
         head -c 4096 lora-ad/adapter/adapter_model.safetensors |
           grep -q 'base_model.model.transformer.h.0.attn.c_attn.lora_A.weight' &&
         head -c 4096 lora-ad/adapter/adapter_model.safetensors | grep -q 'base_model.model.score.weight'"
# (The stage then stops at the tiny byte vocabulary's missing padding id; loading
# is what is checked here.)
printf '[pipeline]\nname=c\n[stage c]\ntype=classifier\nmodel=%s\nvocab=%s\ntext=hello\noutput=%s\n' \
  "$tmp/lora-ad/adapter" "$srcdir/pipelines/vocab/bytes" "$tmp/ad.jsonl" > ad.pipeline
"$gptd" run ad.pipeline --run-dir ad-run > out.txt 2> err.txt
check "the classifier stage loads the adapter directory onto its base" \
  grep -q "loaded $tmp/lora-ad/adapter (3 classes: ham, spam, eggs" err.txt

# ---- sms-spam-small, shortened ----------------------------------------------------------
data=${GPTD_DATA_DIR:-}
[ -n "$data" ] && [ -f "$data/sms-spam-collection/SMSSpamCollection" ] ||
  skip_rest "GPTD_DATA_DIR with sms-spam-collection/ is not set"

"$gptd" run "$srcdir/pipelines/sms-spam-small.pipeline" --set train.max-steps=20 \
  --set train.eval-freq=10 --run-dir sms > out.txt 2> err.txt; rc=$?
if [ "$rc" -eq 0 ]; then ok "sms-spam-small runs (20 steps)"; else
  not_ok "sms-spam-small runs (exit $rc)"; sed 's/^/# /' err.txt | tail -n 5; fi
check "the log has the book's three accuracies" \
  grep -q "Training accuracy: [0-9.]*%, Validation accuracy: [0-9.]*%, Test accuracy: [0-9.]*%" err.txt
check "accuracy.json has the accuracies and losses of the three splits" \
  sh -c 'for k in train_accuracy validation_accuracy test_accuracy train_loss validation_loss test_loss; do
           grep -q "\"$k\": [0-9]" sms/accuracy.json || exit 1; done'
check "metrics.csv has the accuracy columns" \
  sh -c 'head -n 1 sms/metrics.csv | grep -qx "step,epoch,tokens_seen,train_loss,val_loss,lr,tokens_per_s,elapsed_s,train_acc,val_acc"'
check "metrics.csv fills them at evaluations (steps 0, 10)" \
  sh -c 'grep -c ",[0-9][0-9.]*,[0-9][0-9.]*$" sms/metrics.csv | grep -qx 2'
check "the accuracy plot is labelled accuracy" grep -q ">Validation accuracy<" sms/accuracy.svg
model=$(ls -d sms/checkpoint/step-* | tail -n 1)
check "the model directory holds score.weight and score.bias" \
  sh -c "head -c 4096 '$model/model.safetensors' | grep -q '\"score.weight\":{\"dtype\":\"F32\",\"shape\":\[2,64\]' &&
         head -c 4096 '$model/model.safetensors' | grep -q '\"score.bias\"'"
check "config.json is a GPT2ForSequenceClassification with num_labels and id2label" \
  sh -c "grep -q '\"GPT2ForSequenceClassification\"' '$model/config.json' &&
         grep -q '\"num_labels\": 2' '$model/config.json' &&
         grep -q '\"id2label\": {\"0\": \"ham\", \"1\": \"spam\"}' '$model/config.json' &&
         grep -q '\"pooling\": \"last-token\"' '$model/config.json' &&
         grep -q '\"sequence_length\": [0-9]' '$model/config.json'"
check "the tokenizer files are in the model directory" \
  test -s "$model/vocab.json" -a -s "$model/merges.txt"
check "the classifier stage wrote a prediction per example" \
  sh -c '[ $(grep -c "\"label_name\":\"\(ham\|spam\)\",\"probabilities\":\[[0-9.e-]*,[0-9.e-]*\]" sms/predictions.jsonl) -eq 2 ]'
check "the classifier stage counted the labelled examples" \
  grep -q "of 2 labelled texts predicted as labelled" err.txt
check "the classifier loads the checkpoint root too" \
  sh -c "printf '[pipeline]\nname=c\n[stage c]\ntype=classifier\nmodel=$tmp/sms/checkpoint\ntext=Free entry! Win cash now\noutput=$tmp/one.jsonl\n' > c.pipeline &&
         '$gptd' run c.pipeline --run-dir c-run > /dev/null 2>&1 && grep -q label_name one.jsonl"
[ "$n" -eq "$total" ] || echo "# ran $n checks, planned $total"

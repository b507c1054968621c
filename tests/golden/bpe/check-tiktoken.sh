#!/bin/sh
# check-tiktoken.sh: compares gptd's GPT-2 ids with tiktoken's (npm "tiktoken")
# id for id on every data file in $GPTD_DATA_DIR and on a text that puts every
# Unicode code point (one in 64 in the unassigned planes 4-13) in the contexts the
# pre-tokenizer distinguishes (after a letter, a digit, a space, punctuation, a
# tab, itself). The committed goldens (ids.json, data-ids.json) check the same in
# `make check` without npm; this script checks whole files and all code points.
#
#   mkdir -p /tmp/tk && (cd /tmp/tk && npm install tiktoken)
#   GPTD_DATA_DIR=../shared/data TIKTOKEN_DIR=/tmp/tk/node_modules \
#       tests/golden/bpe/check-tiktoken.sh BUILDDIR
set -eu
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../../.." && pwd)
builddir=${1:-.}
bench="$builddir/bench/tokenizer/bench-tokenizer"
: "${GPTD_DATA_DIR:?set GPTD_DATA_DIR}" "${TIKTOKEN_DIR:?set TIKTOKEN_DIR}"
tmp=$(mktemp -d /tmp/gptd-check-tk-XXXXXX)
trap 'rm -rf "$tmp"' EXIT

TIKTOKEN_DIR=$TIKTOKEN_DIR node -e '
const fs = require("fs");
let parts = [];
for (let cp = 0; cp < 0x110000; cp++) {
  if (cp >= 0xd800 && cp <= 0xdfff) continue;
  if (cp >= 0x40000 && cp < 0xe0000 && cp % 64 != 0) continue;
  const c = String.fromCodePoint(cp);
  parts.push("a" + c + "a1" + c + "1 " + c + "!" + c + " " + c + "\t" + c + c + "\n");
}
fs.writeFileSync(process.argv[1], parts.join(""));
' "$tmp/unicode.txt"

status=0
for f in the-verdict.txt tinyshakespeare.txt instruction-data.json \
         sms-spam-collection/SMSSpamCollection gpt2/encoder.json gpt2/vocab.bpe README.md \
         "$tmp/unicode.txt"; do
  case $f in /*) path=$f ;; *) path=$GPTD_DATA_DIR/$f ;; esac
  [ -f "$path" ] || { echo "skip $f (missing)"; continue; }
  TIKTOKEN_DIR=$TIKTOKEN_DIR node "$top/bench/tokenizer/tiktoken-bench.mjs" "$path" "$tmp/tk.ids" 1 > /dev/null
  "$bench" --runs 1 --train-mb 0 --ids-out "$tmp/gptd.ids" "$path" > /dev/null
  n=$(($(wc -c < "$tmp/tk.ids") / 4))
  if cmp -s "$tmp/tk.ids" "$tmp/gptd.ids"; then
    echo "ok   $f: $n ids identical"
  else
    echo "FAIL $f: ids differ ($(cmp "$tmp/tk.ids" "$tmp/gptd.ids" 2>&1 | head -1))"
    status=1
  fi
done
exit $status

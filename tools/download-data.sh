#!/bin/sh
# Downloads the public data files gptd's pipelines and optional tests use, into
# DIR (default: ./data), and checks each against its published SHA-256.
# Then: export GPTD_DATA_DIR=DIR
set -e
dir=${1:-data}
mkdir -p "$dir/gpt2" "$dir/sms-spam-collection"

fetch() { # url dest sha256
  if [ -f "$2" ] && echo "$3  $2" | sha256sum -c --status; then
    echo "ok      $2"; return
  fi
  echo "fetch   $1"
  curl -fsSL -o "$2.part" "$1"
  if ! echo "$3  $2.part" | sha256sum -c --status; then
    echo "error: $2: checksum mismatch (expected $3)" >&2
    rm -f "$2.part"; exit 1
  fi
  mv "$2.part" "$2"
}

fetch https://openaipublic.blob.core.windows.net/gpt-2/models/124M/encoder.json \
  "$dir/gpt2/encoder.json" 196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783
fetch https://openaipublic.blob.core.windows.net/gpt-2/models/124M/vocab.bpe \
  "$dir/gpt2/vocab.bpe" 1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5
fetch https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/main/ch02/01_main-chapter-code/the-verdict.txt \
  "$dir/the-verdict.txt" b41e41a68f0398a3154ae69e2e4c0e2694e17fe0d66730536837f1b01935b31f
fetch https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/main/ch07/01_main-chapter-code/instruction-data.json \
  "$dir/instruction-data.json" 7e09a9af353722ca15c18bc580f093f9c39d3178335a75177319cb1e1d163944
fetch https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt \
  "$dir/tinyshakespeare.txt" 86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed

# The SMS Spam Collection comes inside a zip archive from the UCI repository.
spam="$dir/sms-spam-collection/SMSSpamCollection"
if ! { [ -f "$spam" ] && echo "7d039a24a6083ed9ef0f806ebad56bbb976e3aeb8de05669173bfdc4996c239d  $spam" | sha256sum -c --status; }; then
  echo "fetch   https://archive.ics.uci.edu/static/public/228/sms+spam+collection.zip"
  curl -fsSL -o "$dir/sms.zip" https://archive.ics.uci.edu/static/public/228/sms+spam+collection.zip
  unzip -o -q "$dir/sms.zip" SMSSpamCollection -d "$dir/sms-spam-collection"
  rm -f "$dir/sms.zip"
  echo "7d039a24a6083ed9ef0f806ebad56bbb976e3aeb8de05669173bfdc4996c239d  $spam" | sha256sum -c --status ||
    { echo "error: $spam: checksum mismatch" >&2; exit 1; }
fi
echo "done: export GPTD_DATA_DIR=$(cd "$dir" && pwd)"

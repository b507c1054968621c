#!/bin/sh
# Downloads one of OpenAI's GPT-2 models as Hugging Face publishes it
# (config.json, model.safetensors, vocab.json, merges.txt) into DIR, checks
# the files (sizes, and that the safetensors header parses and holds the
# model's tensors), and prints the init= line a pipeline uses to start from it,
# e.g. classifier-trainer's in pipelines/sms-spam.pipeline.
#
# Usage: tools/download-model.sh gpt2|gpt2-medium|gpt2-large|gpt2-xl DIR
set -e
usage() {
  echo "usage: $0 gpt2|gpt2-medium|gpt2-large|gpt2-xl DIR" >&2
  exit 2
}
[ $# -eq 2 ] || usage
case "$1" in
  gpt2|gpt2-medium|gpt2-large|gpt2-xl) name=$1 ;;
  *) echo "error: unknown model \"$1\"" >&2; usage ;;
esac
dir=$2
base=https://huggingface.co/openai-community/$name/resolve/main
mkdir -p "$dir"

for f in config.json vocab.json merges.txt model.safetensors; do
  if [ -s "$dir/$f" ]; then
    echo "ok      $dir/$f"
    continue
  fi
  echo "fetch   $base/$f"
  curl -fSL --retry 3 -o "$dir/$f.part" "$base/$f"
  mv "$dir/$f.part" "$dir/$f"
done

# The safetensors header: an 8-byte little-endian length, then that much JSON
# naming every tensor with its offsets, which must end inside the file.
python3 - "$dir" <<'PY' || { echo "error: $dir/model.safetensors is damaged; delete it and run again" >&2; exit 1; }
import json, os, struct, sys
d = sys.argv[1]
path = os.path.join(d, "model.safetensors")
size = os.path.getsize(path)
with open(path, "rb") as f:
    (n,) = struct.unpack("<Q", f.read(8))
    if n > size - 8:
        sys.exit("header length %d exceeds the file" % n)
    header = json.loads(f.read(n))
end = max(t["data_offsets"][1] for k, t in header.items() if k != "__metadata__")
if 8 + n + end != size:
    sys.exit("tensor data ends at %d, the file has %d bytes" % (8 + n + end, size))
cfg = json.load(open(os.path.join(d, "config.json")))
if "h.%d.mlp.c_proj.weight" % (cfg["n_layer"] - 1) not in header:
    sys.exit("the last block's tensors are missing")
print("checked %s: %d tensors, %d layers, width %d" % (path, len(header) - 1, cfg["n_layer"], cfg["n_embd"]))
PY

echo "init=$(cd "$dir" && pwd)"

#!/bin/sh
# bench-verdict.sh: wall time of the book's chapter 5 pretraining run,
# pipelines/verdict-pretrain.pipeline through `gptd run`, next to the same
# training in PyTorch (verdict_torch.py), one after the other in the same run.
#
#   GPTD_DATA_DIR=/path/to/data bench/train/bench-verdict.sh [BUILDDIR] [THREADS]
#
# BUILDDIR is the build tree holding daemon/gptd (default: the current
# directory); THREADS defaults to 2.  GPTD_DATA_DIR must hold the-verdict.txt
# and gpt2/ (tools/download-data.sh).  Needs /usr/bin/python3 with PyTorch
# (PYTHON overrides).  The wall times cover everything each program does:
# loading the data, building the model, training, evaluations, samples and
# the saved state (gptd's checkpoints every 30 steps and at the end; PyTorch's
# torch.save of the model and optimizer at the end).  Prints both programs'
# output, then a Markdown table.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build=$(cd "${1:-.}" && pwd)
threads=${2:-2}
python=${PYTHON:-/usr/bin/python3}
data=${GPTD_DATA_DIR:?set GPTD_DATA_DIR to the directory holding the-verdict.txt and gpt2/}
if [ ! -f "$data/the-verdict.txt" ] || [ ! -f "$data/gpt2/encoder.json" ]; then
  echo "bench-verdict: $data lacks the-verdict.txt or gpt2/encoder.json" >&2
  exit 1
fi
"$python" -c 'import torch' 2>/dev/null || {
  echo "bench-verdict: $python has no PyTorch" >&2
  exit 1
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
now() { date +%s.%N; }

# gptd: the pipeline as shipped.
t0=$(now)
"$build/daemon/gptd" run "$src/pipelines/verdict-pretrain.pipeline" \
  --run-dir "$tmp/run" --set train.threads="$threads" | tee "$tmp/gptd.out"
t1=$(now)

# The same token ids for PyTorch, written by gptd's own tokenizer stages.
cat > "$tmp/tokens.pipeline" <<EOF
[pipeline]
name=verdict-tokens

[stage corpus]
type=text-source
path=$data/the-verdict.txt

[stage tokens]
type=bpe-tokenizer
input=corpus
vocab=gpt2

[stage shard]
type=token-writer
input=tokens
path=$tmp/verdict.bin
format=llmc
EOF
"$build/daemon/gptd" run "$tmp/tokens.pipeline" --run-dir "$tmp/tok-run" >/dev/null

# PyTorch in its best setting here (see bench/train/run.sh).
t2=$(now)
OMP_WAIT_POLICY=passive MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000 \
  "$python" "$here/verdict_torch.py" --tokens "$tmp/verdict.bin" \
  --threads "$threads" | tee "$tmp/torch.out"
t3=$(now)

"$python" - "$tmp" "$t0" "$t1" "$t2" "$t3" "$threads" <<'PY'
import csv, sys
tmp, t0, t1, t2, t3, threads = sys.argv[1:]
gptd_s, torch_s = float(t1) - float(t0), float(t3) - float(t2)
steps = max(int(r["step"]) for r in csv.DictReader(open(tmp + "/run/metrics.csv"))) + 1
ev = list(csv.DictReader(open(tmp + "/run/eval.csv")))
g_train, g_val = float(ev[-1]["train_loss"]), float(ev[-1]["val_loss"])
kv = dict(p.split("=") for p in open(tmp + "/torch.out").read().split("\n")[-2].split())
print()
print("| program | threads | steps | wall time (s) | last evaluation: train / val loss | gptd / PyTorch |")
print("|---|---:|---:|---:|---|---:|")
print("| gptd (`gptd run`) | %s | %d | %.1f | %.3f / %.3f | **%.2fx** |"
      % (threads, steps, gptd_s, g_train, g_val, torch_s / gptd_s))
print("| PyTorch %s | %s | %s | %.1f | %s / %s | |"
      % ("(verdict_torch.py)", threads, kv["steps"], torch_s, kv["train_loss"], kv["val_loss"]))
PY

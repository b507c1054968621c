#!/usr/bin/python3
"""The PyTorch side of bench/instruct: the book's instruction fine-tuning steps
(chapter 7's train_model_simple with calc_loss_batch: forward, cross-entropy
that ignores -100, backward, AdamW lr 5e-5 weight decay 0.1, no clipping) on
the gpt2-small shape with random weights, dropout 0 and a qkv bias as OpenAI's
GPT-2, over the batches bench-instruct dumped (--dump): identical inputs and
targets, collated as the book's custom_collate_fn.

    bench_instruct_torch.py BATCHES [--warmup W] [--threads N]

The first W batches warm up, the rest are timed. Prints one line of key=value
pairs in bench-instruct's format. The model is bench/train/bench_torch.py's
GPT (the book's GPTModel layout).
"""

import argparse
import os
import resource
import struct
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "train"))
from bench_torch import GPT  # noqa: E402


def read_batches(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<i", f.read(4))
        out = []
        for _ in range(n):
            B, T = struct.unpack("<ii", f.read(8))
            x = torch.frombuffer(bytearray(f.read(4 * B * T)), dtype=torch.int32)
            y = torch.frombuffer(bytearray(f.read(4 * B * T)), dtype=torch.int32)
            out.append((x.view(B, T).long(), y.view(B, T).long()))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("batches")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    batches = read_batches(a.batches)
    model = GPT(12, 768, 12, 1024, 50257, 0.0)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.1)
    total = tokens = 0.0
    first = last = 0.0
    lens = []
    for i, (x, y) in enumerate(batches):
        t = time.perf_counter()
        opt.zero_grad()
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        loss.backward()
        opt.step()
        t = time.perf_counter() - t
        if i == 0:
            first = loss.item()
        last = loss.item()
        if i >= a.warmup:
            total += t
            tokens += x.numel()
            lens.append(str(x.shape[1]))
    steps = len(batches) - a.warmup
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print("impl=torch-%s preset=gpt2-small threads=%d steps=%d warmup=%d seq_lens=%s "
          "tokens=%.0f time_s=%.3f step_s=%.4f tokens_per_s=%.1f peak_rss_mib=%.0f "
          "loss_first=%.4f loss_last=%.4f"
          % (torch.__version__, a.threads, steps, a.warmup, ",".join(lens), tokens, total,
             total / steps, tokens / total, rss, first, last))


if __name__ == "__main__":
    main()

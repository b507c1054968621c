#!/usr/bin/python3
"""The PyTorch side of bench/train: the same GPT-2 training step as
bench-train (forward, cross-entropy, backward, clip_grad_norm_ 1.0, AdamW),
written as the book writes its GPTModel (fused qkv projection with bias, tied
head, dropout on embeddings, attention weights and residual branches).

    bench_torch.py [--preset gpt2-small | --layers L --embd C --heads H]
                   [--batch B] [--context T] [--steps N] [--warmup W]
                   [--threads N] [--dropout P]

Prints one line of key=value pairs in bench-train's format.  Run it with
OMP_WAIT_POLICY=passive MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000
(run.sh does), which is PyTorch's best setting on these machines.
"""

import argparse
import math
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, C, H, T, p):
        super().__init__()
        self.H = H
        self.ln_1 = nn.LayerNorm(C)
        self.c_attn = nn.Linear(C, 3 * C, bias=True)
        self.c_proj = nn.Linear(C, C)
        self.ln_2 = nn.LayerNorm(C)
        self.c_fc = nn.Linear(C, 4 * C)
        self.mlp_proj = nn.Linear(4 * C, C)
        self.drop = nn.Dropout(p)
        self.register_buffer("mask", torch.triu(torch.ones(T, T, dtype=torch.bool), 1))

    def forward(self, x):
        B, T, C = x.shape
        hd = C // self.H
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q = q.view(B, T, self.H, hd).transpose(1, 2)
        k = k.view(B, T, self.H, hd).transpose(1, 2)
        v = v.view(B, T, self.H, hd).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)).masked_fill(self.mask[:T, :T], float("-inf"))
        att = self.drop(torch.softmax(att / math.sqrt(hd), dim=-1))
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + self.drop(self.c_proj(y))
        h = F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh")
        return x + self.drop(self.mlp_proj(h))


class GPT(nn.Module):
    def __init__(self, L, C, H, T, V, p):
        super().__init__()
        self.wte = nn.Embedding(V, C)
        self.wpe = nn.Embedding(T, C)
        self.drop = nn.Dropout(p)
        self.h = nn.Sequential(*[Block(C, H, T, p) for _ in range(L)])
        self.ln_f = nn.LayerNorm(C)
        self.head = nn.Linear(C, V, bias=False)
        self.head.weight = self.wte.weight
        for n, w in self.named_parameters():
            if w.dim() == 2:
                nn.init.normal_(w, std=0.02)

    def forward(self, idx):
        T = idx.shape[1]
        x = self.drop(self.wte(idx) + self.wpe(torch.arange(T)))
        return self.head(self.ln_f(self.h(x)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset")
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--embd", type=int, default=384)
    ap.add_argument("--heads", type=int, default=6)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--context", type=int, default=256)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dropout", type=float, default=0.1)
    a = ap.parse_args()
    if a.preset:
        a.layers, a.heads, a.embd = {"gpt2-small": (12, 12, 768),
                                     "gpt2-medium": (24, 16, 1024)}[a.preset]
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    V = 50257
    model = GPT(a.layers, a.embd, a.heads, a.context, V, a.dropout)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)
    g = torch.Generator().manual_seed(12345)
    data = torch.randint(0, V, (a.batch * a.context + 1,), generator=g)
    x = data[:-1].view(a.batch, a.context)
    y = data[1:].view(a.batch, a.context)
    times, cpus = [], []
    first = last = 0.0
    for it in range(a.warmup + a.steps):
        t, c = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        t, c = time.perf_counter() - t, time.process_time() - c
        if it == 0:
            first = loss.item()
        last = loss.item()
        if it >= a.warmup:
            times.append(t)
            cpus.append(c)
    times.sort()
    cpus.sort()
    cpu = cpus[len(cpus) // 2]
    med = times[len(times) // 2]
    n = sum(p.numel() for p in model.parameters())
    flops_tok = 6.0 * n + 12.0 * a.layers * a.context * a.embd
    tps = a.batch * a.context / med
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print("impl=torch-%s layers=%d embd=%d heads=%d batch=%d context=%d params=%d "
          "threads=%d dropout=%g step_s=%.4f min_step_s=%.4f tokens_per_s=%.1f "
          "gflops=%.1f cpu_s=%.3f gflops_per_cpu_s=%.1f peak_rss_mib=%.0f "
          "loss_first=%.4f loss_last=%.4f"
          % (torch.__version__, a.layers, a.embd, a.heads, a.batch, a.context, n,
             a.threads, a.dropout, med, times[0], tps, tps * flops_tok / 1e9, cpu,
             a.batch * a.context * flops_tok / cpu / 1e9, rss, first, last))


if __name__ == "__main__":
    main()

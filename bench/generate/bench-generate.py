#!/usr/bin/env python3
"""PyTorch reference for bench/generate: greedy generation with a GPT-2 model
of a given shape and random weights, batch 1, with and without a KV cache.

    /usr/bin/python3 bench/generate/bench-generate.py --threads 2 \
        [--model gpt2-small] [--prompt-tokens 16] [--new-tokens 200] [--repeat 3]

Prints one JSON object per line: {"impl": "pytorch", "kv_cache": bool,
"tokens_per_s": ..., "seconds": [...]} (tokens/s is new tokens over the median
wall time of the whole generation, prompt included).

Without a cache the loop is the book's generate_text_simple: the whole window
goes through the model at each step and the logits of the last position are
used.  With a cache, the prompt is fed once and each step feeds one token,
keys and values kept in preallocated tensors (the usual KV-cache GPT-2); only
the last position's logits are computed.
"""
import argparse
import json
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

PRESETS = {
    "gpt2-small": (12, 12, 768),
    "gpt2-medium": (24, 16, 1024),
    "gpt2-large": (36, 20, 1280),
    "gpt2-xl": (48, 25, 1600),
}


class Block(nn.Module):
    def __init__(self, C, nh, ctx):
        super().__init__()
        self.nh, self.hd = nh, C // nh
        self.ln_1 = nn.LayerNorm(C)
        self.c_attn = nn.Linear(C, 3 * C)
        self.c_proj = nn.Linear(C, C)
        self.ln_2 = nn.LayerNorm(C)
        self.c_fc = nn.Linear(C, 4 * C)
        self.mlp_proj = nn.Linear(4 * C, C)
        self.register_buffer("mask", torch.triu(torch.ones(ctx, ctx, dtype=torch.bool), 1),
                             persistent=False)
        self.k_cache = None
        self.v_cache = None

    def attend(self, x, cache_pos):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.nh, self.hd).transpose(1, 2)
        k = k.view(B, T, self.nh, self.hd).transpose(1, 2)
        v = v.view(B, T, self.nh, self.hd).transpose(1, 2)
        if cache_pos is not None:
            self.k_cache[:, :, cache_pos:cache_pos + T] = k
            self.v_cache[:, :, cache_pos:cache_pos + T] = v
            k = self.k_cache[:, :, :cache_pos + T]
            v = self.v_cache[:, :, :cache_pos + T]
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.hd))
        if T > 1:
            S = k.shape[2]
            att = att.masked_fill(self.mask[S - T:S, :S], float("-inf"))
        att = F.softmax(att, dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)

    def forward(self, x, cache_pos=None):
        x = x + self.attend(self.ln_1(x), cache_pos)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, n_layer, nh, C, vocab=50257, ctx=1024):
        super().__init__()
        self.ctx = ctx
        self.wte = nn.Embedding(vocab, C)
        self.wpe = nn.Embedding(ctx, C)
        self.h = nn.ModuleList([Block(C, nh, ctx) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(C)

    def forward(self, idx, cache_pos=None, last_only=False):
        T = idx.shape[1]
        start = 0 if cache_pos is None else cache_pos
        x = self.wte(idx) + self.wpe(torch.arange(start, start + T))
        for b in self.h:
            x = b(x, cache_pos)
        x = self.ln_f(x)
        if last_only:
            x = x[:, -1:, :]
        return F.linear(x, self.wte.weight)  # tied head

    def reset_cache(self):
        for b in self.h:
            shape = (1, b.nh, self.ctx, b.hd)
            b.k_cache = torch.zeros(shape)
            b.v_cache = torch.zeros(shape)


def generate_text_simple(model, idx, max_new_tokens, context_size):
    """The book's loop: the whole window through the model at each step."""
    for _ in range(max_new_tokens):
        idx_cond = idx[:, -context_size:]
        logits = model(idx_cond)[:, -1, :]
        idx_next = torch.argmax(logits, dim=-1, keepdim=True)
        idx = torch.cat((idx, idx_next), dim=1)
    return idx


def generate_cached(model, idx, max_new_tokens):
    model.reset_cache()
    logits = model(idx, cache_pos=0, last_only=True)[:, -1, :]
    pos = idx.shape[1]
    out = [idx]
    for i in range(max_new_tokens):
        nxt = torch.argmax(logits, dim=-1, keepdim=True)
        out.append(nxt)
        if i + 1 == max_new_tokens:
            break
        logits = model(nxt, cache_pos=pos)[:, -1, :]
        pos += 1
    return torch.cat(out, dim=1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--model", default="gpt2-small", choices=sorted(PRESETS))
    ap.add_argument("--prompt-tokens", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-cache-repeat", type=int, default=1)
    ap.add_argument("--skip-no-cache", action="store_true")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(123)
    n_layer, nh, C = PRESETS[a.model]
    model = GPT(n_layer, nh, C)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.02)
    model.eval()
    prompt = torch.randint(0, 50257, (1, a.prompt_tokens))

    runs = [(True, a.repeat)]
    if not a.skip_no_cache:
        runs.append((False, a.no_cache_repeat))
    with torch.inference_mode():
        generate_cached(model, prompt, 4)  # warm up
        for kv, repeat in runs:
            secs = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                if kv:
                    out = generate_cached(model, prompt, a.new_tokens)
                else:
                    out = generate_text_simple(model, prompt, a.new_tokens, model.ctx)
                secs.append(time.perf_counter() - t0)
                assert out.shape[1] == a.prompt_tokens + a.new_tokens
            print(json.dumps({"impl": "pytorch", "model": a.model, "kv_cache": kv,
                              "threads": a.threads, "torch": torch.__version__,
                              "new_tokens": a.new_tokens,
                              "tokens_per_s": a.new_tokens / statistics.median(secs),
                              "seconds": secs}), flush=True)


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""The PyTorch side of bench/train/bench-verdict.sh: the book's chapter 5
pretraining run (train_model_simple on "The Verdict"), the same training as
pipelines/verdict-pretrain.pipeline.

    verdict_torch.py --tokens FILE [--threads N] [--epochs 10]

FILE holds the GPT-2 token ids of the-verdict.txt in llm.c's shard layout (a
header of 256 int32, then uint16 ids), as gptd's token-writer writes it; the
ids are tiktoken's (gptd's encoder is checked against tiktoken), so the
script needs no tokenizer of its own.

The model is the book's GPTModel: GPT-2 124M shape with context 256, separate
query/key/value projections without bias, dropout 0.1 on the embeddings,
attention weights and residual branches, an untied output head without bias.
Its LayerNorm and GELU are PyTorch's own modules, which compute what the
book's hand-written classes compute (a biased variance, eps 1e-5; the tanh
GELU) in fewer kernels.  The data follow GPTDatasetV1 (windows of 256 tokens,
stride 256) with the train loader shuffled and dropping its last batch;
the split is 90/10 by token position, as gptd's token-windows makes it (the
book splits the characters of the text).  AdamW lr 4e-4, weight decay 0.1,
batch 2, 10 epochs, the train and validation losses over 5 batches every 5
steps, a greedy 50-token sample from "Every effort moves you" after each
epoch, seed 123; at the end the model and optimizer state are saved, as the
book's section 5.4 does.

Prints the evaluations as the book does, then one line of key=value pairs.
"""

import argparse
import math
import os
import tempfile
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# "Every effort moves you" in GPT-2's encoding (the book prints these ids).
START_IDS = [6109, 3626, 6100, 345]


class MultiHeadAttention(nn.Module):
    def __init__(self, C, H, T, p, qkv_bias):
        super().__init__()
        self.H = H
        self.W_query = nn.Linear(C, C, bias=qkv_bias)
        self.W_key = nn.Linear(C, C, bias=qkv_bias)
        self.W_value = nn.Linear(C, C, bias=qkv_bias)
        self.out_proj = nn.Linear(C, C)
        self.dropout = nn.Dropout(p)
        self.register_buffer("mask", torch.triu(torch.ones(T, T), diagonal=1))

    def forward(self, x):
        b, T, C = x.shape
        hd = C // self.H
        q = self.W_query(x).view(b, T, self.H, hd).transpose(1, 2)
        k = self.W_key(x).view(b, T, self.H, hd).transpose(1, 2)
        v = self.W_value(x).view(b, T, self.H, hd).transpose(1, 2)
        att = q @ k.transpose(2, 3)
        att.masked_fill_(self.mask.bool()[:T, :T], -torch.inf)
        att = self.dropout(torch.softmax(att / hd ** 0.5, dim=-1))
        y = (att @ v).transpose(1, 2).contiguous().view(b, T, C)
        return self.out_proj(y)


class TransformerBlock(nn.Module):
    def __init__(self, C, H, T, p, qkv_bias):
        super().__init__()
        self.att = MultiHeadAttention(C, H, T, p, qkv_bias)
        self.ff = nn.Sequential(nn.Linear(C, 4 * C), nn.GELU(approximate="tanh"),
                                nn.Linear(4 * C, C))
        self.norm1 = nn.LayerNorm(C, eps=1e-5)
        self.norm2 = nn.LayerNorm(C, eps=1e-5)
        self.drop_shortcut = nn.Dropout(p)

    def forward(self, x):
        x = x + self.drop_shortcut(self.att(self.norm1(x)))
        return x + self.drop_shortcut(self.ff(self.norm2(x)))


class GPTModel(nn.Module):
    def __init__(self, V=50257, T=256, C=768, H=12, L=12, p=0.1, qkv_bias=False):
        super().__init__()
        self.tok_emb = nn.Embedding(V, C)
        self.pos_emb = nn.Embedding(T, C)
        self.drop_emb = nn.Dropout(p)
        self.trf_blocks = nn.Sequential(
            *[TransformerBlock(C, H, T, p, qkv_bias) for _ in range(L)])
        self.final_norm = nn.LayerNorm(C, eps=1e-5)
        self.out_head = nn.Linear(C, V, bias=False)

    def forward(self, idx):
        T = idx.shape[1]
        x = self.tok_emb(idx) + self.pos_emb(torch.arange(T))
        x = self.trf_blocks(self.drop_emb(x))
        return self.out_head(self.final_norm(x))


def read_tokens(path):
    with open(path, "rb") as f:
        header = torch.frombuffer(bytearray(f.read(256 * 4)), dtype=torch.int32)
        if header[0].item() != 20240520:
            raise SystemExit("%s: not an llm.c token shard" % path)
        n = header[2].item()
        ids = torch.frombuffer(bytearray(f.read(2 * n)), dtype=torch.int16)
    return (ids.to(torch.int64) & 0xFFFF).tolist()


def windows(ids, T, stride):
    xs, ys = [], []
    for i in range(0, len(ids) - T, stride):
        xs.append(torch.tensor(ids[i:i + T]))
        ys.append(torch.tensor(ids[i + 1:i + T + 1]))
    return torch.stack(xs), torch.stack(ys)


def batches(x, y, batch, shuffle, drop_last, gen):
    order = torch.randperm(len(x), generator=gen) if shuffle else torch.arange(len(x))
    for i in range(0, len(x), batch):
        idx = order[i:i + batch]
        if drop_last and len(idx) < batch:
            break
        yield x[idx], y[idx]


def calc_loss_batch(model, x, y):
    logits = model(x)
    return F.cross_entropy(logits.flatten(0, 1), y.flatten())


def calc_loss_loader(model, loader, num_batches):
    total, n = 0.0, 0
    for i, (x, y) in enumerate(loader):
        if i >= num_batches:
            break
        total += calc_loss_batch(model, x, y).item()
        n += 1
    return total / n if n else float("nan")


def generate_greedy(model, ids, new_tokens, T):
    for _ in range(new_tokens):
        with torch.no_grad():
            logits = model(ids[:, -T:])[:, -1, :]
        ids = torch.cat((ids, torch.argmax(logits, dim=-1, keepdim=True)), dim=1)
    return ids


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()

    T, batch, eval_freq, eval_iter = 256, 2, 5, 5
    ids = read_tokens(args.tokens)
    split = int(0.9 * len(ids))
    train_x, train_y = windows(ids[:split], T, T)
    val_x, val_y = windows(ids[split:], T, T)

    torch.manual_seed(123)
    model = GPTModel()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0004, weight_decay=0.1)
    gen = torch.Generator().manual_seed(123)

    train_start = time.perf_counter()
    tokens_seen, step = 0, -1
    last_train = last_val = float("nan")
    for epoch in range(args.epochs):
        model.train()
        for x, y in batches(train_x, train_y, batch, True, True, gen):
            optimizer.zero_grad()
            loss = calc_loss_batch(model, x, y)
            loss.backward()
            optimizer.step()
            tokens_seen += x.numel()
            step += 1
            if step % eval_freq == 0:
                model.eval()
                with torch.no_grad():
                    last_train = calc_loss_loader(
                        model, batches(train_x, train_y, batch, False, True, gen), eval_iter)
                    last_val = calc_loss_loader(
                        model, batches(val_x, val_y, batch, False, False, gen), eval_iter)
                model.train()
                print("Ep %d (Step %06d): Train loss %.3f, Val loss %.3f"
                      % (epoch + 1, step, last_train, last_val), flush=True)
        model.eval()
        out = generate_greedy(model, torch.tensor([START_IDS]), 50, T)
        print("sample ids:", out[0, len(START_IDS):].tolist(), flush=True)
        model.train()
    train_s = time.perf_counter() - train_start

    with tempfile.TemporaryDirectory() as d:
        torch.save({"model_state_dict": model.state_dict(),
                    "optimizer_state_dict": optimizer.state_dict()},
                   os.path.join(d, "model_and_optimizer.pth"))
    total_s = time.perf_counter() - start
    print("impl=pytorch threads=%d steps=%d tokens_seen=%d train_s=%.1f total_s=%.1f "
          "train_loss=%.3f val_loss=%.3f tokens_per_s=%.1f"
          % (args.threads, step + 1, tokens_seen, train_s, total_s, last_train,
             last_val, tokens_seen / train_s))


if __name__ == "__main__":
    main()

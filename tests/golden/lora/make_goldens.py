#!/usr/bin/python3
"""Reference values for LoRA (tests/test-lora.c), computed by PyTorch in float64
following the book's appendix E (LoRALayer, LinearWithLoRA).

Run from the repository root with Debian's python3-torch:

    /usr/bin/python3 tests/golden/lora/make_goldens.py

It writes tests/golden/lora/tiny.bin (the GPTDGLD1 format of
tests/golden/nn/make_goldens.py) for a tiny GPT-2 model whose base weights
both sides compute from make_goldens.py's init_tensor, and with adapters on
the four linear layers of each block (c_attn, attn.c_proj, c_fc,
mlp.c_proj):

  config, lora          model shape; rank, alpha, lr, weight decay
  tokens, targets       one batch
  <layer>.lora_A/_B     the adapters: A from torch's kaiming_uniform_(a=sqrt(5))
                        as the book draws it, B nonzero (so that A gets a
                        gradient and the adapters change the logits)
  logits, loss          the adapted forward
  grad.<adapter>        d loss / d A and d B with the base frozen
  step_losses           the losses of two AdamW steps (adapters only)
  after.<adapter>       the adapters after them

Scale: the book's LoRALayer computes alpha * (x @ A @ B); gptd, like PEFT,
computes (alpha / rank) * (x @ A @ B), and so does this reference.
"""

import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "nn"))
from make_goldens import Golden, init_tensor, param_specs  # noqa: E402

SITES = ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"]


class LoRALayer(torch.nn.Module):
    """The book's LoRALayer, scaled by alpha / rank."""

    def __init__(self, in_dim, out_dim, rank, alpha):
        super().__init__()
        self.A = torch.nn.Parameter(torch.empty(in_dim, rank, dtype=torch.float64))
        torch.nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        self.B = torch.nn.Parameter(torch.zeros(rank, out_dim, dtype=torch.float64))
        self.scale = alpha / rank

    def forward(self, x):
        return self.scale * (x @ self.A @ self.B)


def linear(P, lora, name, x, bias=True):
    """A Conv1D layer (input-major weight) plus its adapter."""
    y = x @ P[name + ".weight"]
    if bias:
        y = y + P[name + ".bias"]
    return y + lora[name](x)


def forward(P, lora, cfg, tokens):
    B, T = tokens.shape
    C, nh, L = cfg["n_embd"], cfg["n_head"], cfg["n_layer"]
    hd = C // nh
    eps = cfg["layer_norm_epsilon"]
    x = P["wte.weight"][tokens] + P["wpe.weight"][:T]
    mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
    for l in range(L):
        p = "h.%d." % l
        h = F.layer_norm(x, (C,), P[p + "ln_1.weight"], P[p + "ln_1.bias"], eps)
        qkv = linear(P, lora, p + "attn.c_attn", h, cfg["qkv_bias"])
        q, k, v = qkv.split(C, dim=2)
        q = q.view(B, T, nh, hd).transpose(1, 2)
        k = k.view(B, T, nh, hd).transpose(1, 2)
        v = v.view(B, T, nh, hd).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(hd)
        att = att.masked_fill(~mask, float("-inf"))
        att = torch.softmax(att, dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + linear(P, lora, p + "attn.c_proj", y)
        h = F.layer_norm(x, (C,), P[p + "ln_2.weight"], P[p + "ln_2.bias"], eps)
        h = F.gelu(linear(P, lora, p + "mlp.c_fc", h), approximate="tanh")
        x = x + linear(P, lora, p + "mlp.c_proj", h)
    x = F.layer_norm(x, (C,), P["ln_f.weight"], P["ln_f.bias"], eps)
    return x @ P["lm_head.weight"].t()


def main():
    cfg = dict(n_layer=2, n_head=2, n_embd=16, context_length=72, vocab_size=50,
               n_out=0, qkv_bias=True, tie_embeddings=False, head_bias=False,
               layer_norm_epsilon=1e-5)
    seed, rank, alpha, lr, wd = 7, 4, 8.0, 1e-2, 0.1
    B, T = 2, 9
    torch.manual_seed(123)
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, cfg["vocab_size"], size=(B, T)).astype(np.int64)
    targets = rng.integers(0, cfg["vocab_size"], size=(B, T)).astype(np.int64)
    targets[0, :2] = -100

    # The frozen base.
    P = {n: torch.tensor(init_tensor(n, s, seed), dtype=torch.float64)
         for n, s in param_specs(cfg)}
    C = cfg["n_embd"]
    dims = {"attn.c_attn": (C, 3 * C), "attn.c_proj": (C, C),
            "mlp.c_fc": (C, 4 * C), "mlp.c_proj": (4 * C, C)}
    lora = {}
    for l in range(cfg["n_layer"]):
        for site in SITES:
            layer = LoRALayer(*dims[site], rank, alpha)
            with torch.no_grad():
                # Values both sides hold exactly: round to float32.
                layer.A.copy_(layer.A.float().double())
                layer.B.copy_((0.2 * torch.rand(layer.B.shape) - 0.1).float().double())
            lora["h.%d.%s" % (l, site)] = layer
    adapters = [(n + ".lora_A", m.A) for n, m in lora.items()] + \
               [(n + ".lora_B", m.B) for n, m in lora.items()]
    adapters.sort(key=lambda a: a[0])

    g = Golden()
    g.add("config", np.array([cfg["n_layer"], cfg["n_head"], cfg["n_embd"],
                              cfg["context_length"], cfg["vocab_size"],
                              int(cfg["qkv_bias"]), B, T, seed], dtype=np.int32))
    g.add("lora", np.array([rank, alpha, lr, wd], dtype=np.float32))
    g.add("tokens", tokens.astype(np.int32))
    g.add("targets", targets.astype(np.int32))
    for n, p in adapters:
        g.add(n, p.detach().numpy())

    tok_t, tgt_t = torch.tensor(tokens), torch.tensor(targets)
    logits = forward(P, lora, cfg, tok_t)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt_t.reshape(-1),
                           ignore_index=-100)
    loss.backward()
    g.add("logits", logits.detach().numpy())
    g.add("loss", np.array([loss.item()]))
    for n, p in adapters:
        g.add("grad." + n, p.grad.numpy())

    # Two AdamW steps on the adapters alone (the base has requires_grad off).
    opt = torch.optim.AdamW([p for _, p in adapters], lr=lr, weight_decay=wd)
    losses = []
    for _ in range(2):
        opt.zero_grad()
        logits = forward(P, lora, cfg, tok_t)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                               tgt_t.reshape(-1), ignore_index=-100)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    g.add("step_losses", np.array(losses))
    for n, p in adapters:
        g.add("after." + n, p.detach().numpy())
    g.write(os.path.join(HERE, "tiny.bin"))
    print("tiny.bin: loss %.6f, %d records" % (losses[0], len(g.records)))


if __name__ == "__main__":
    main()

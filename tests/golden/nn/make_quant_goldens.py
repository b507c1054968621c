#!/usr/bin/python3
"""Reference logits of tiny GPT-2 models with bf16 and q8 weights, for
tests/test-quant.c, computed by PyTorch in float64.

Run from the repository root with Debian's python3-torch:

    /usr/bin/python3 tests/golden/nn/make_quant_goldens.py

It writes tests/golden/nn/quant-<variant>.bin (the file format and the
deterministic weights of make_goldens.py) holding the tokens and the logits
of every position for fp32, bf16 and q8 weights.

The formats, as gptd's inference path uses them (lib/nn/quant-private.h):

  bf16  every linear weight and the head rounded to bfloat16 (nearest even);
        activations unchanged.
  q8    llama.cpp's Q8_0: each output row of a weight cut into blocks of 32
        inputs, d = amax / 127 in float32, q = round-half-even (w / d) with
        1 / d in float32, the weight becoming q * half(d).  The activation
        row entering each product is quantized the same way (scale kept in
        float32), so the product is sum over blocks of dw * dx * (qw . qx).

With a tied head the token embedding rows are the converted head rows.
"""

import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_goldens import Golden, base_cfg, make_params  # noqa: E402

BLOCK = 32


def q8_blocks(a):
    """(rows, K) float32 array -> q (int), d (float32) per block, as the C
    code computes them in float32."""
    a = np.asarray(a, dtype=np.float32)
    rows, K = a.shape
    b = a.reshape(rows, K // BLOCK, BLOCK)
    amax = np.abs(b).max(axis=2).astype(np.float32)
    d = (amax / np.float32(127.0)).astype(np.float32)
    with np.errstate(divide="ignore"):
        inv = np.where(d != 0, np.float32(1.0) / d, np.float32(0.0)).astype(np.float32)
    q = np.rint((b * inv[:, :, None]).astype(np.float32))
    q = np.clip(q, -127, 127)
    return q, d


def q8_weight(w_out_major):
    """The float64 weights q * half(d) of an (N, K) matrix."""
    q, d = q8_blocks(w_out_major)
    d16 = d.astype(np.float16).astype(np.float64)
    return (q.astype(np.float64) * d16[:, :, None]).reshape(w_out_major.shape)


def bf16(w):
    return torch.tensor(np.asarray(w, dtype=np.float32)).to(torch.bfloat16).double().numpy()


def product(x, w_conv1d, fmt):
    """x (T, K) float64 times a Conv1D weight (K, N) in the format."""
    w = w_conv1d.detach().numpy()
    if fmt == "fp32":
        return x @ w_conv1d.detach()
    if fmt == "bf16":
        return x @ torch.tensor(bf16(w))
    wq = q8_weight(w.T.astype(np.float32))  # (N, K)
    # Activations quantized per row in float32, as the C side sees them.
    q, d = q8_blocks(x.numpy().astype(np.float32))
    xq = q.astype(np.float64) * d.astype(np.float64)[:, :, None]
    return torch.tensor(xq.reshape(x.shape)) @ torch.tensor(wq).t()


def forward(P, cfg, tokens, fmt):
    T = len(tokens)
    C, nh, L = cfg["n_embd"], cfg["n_head"], cfg["n_layer"]
    hd = C // nh
    eps = cfg["layer_norm_epsilon"]
    head = P["wte.weight"] if cfg["tie_embeddings"] else P["lm_head.weight"]
    head_t = head.detach().t()  # as a (C, V) "Conv1D" weight
    if fmt == "fp32" or not cfg["tie_embeddings"]:
        te = P["wte.weight"].detach()
    elif fmt == "bf16":
        te = torch.tensor(bf16(P["wte.weight"].detach().numpy()))
    else:
        te = torch.tensor(q8_weight(P["wte.weight"].detach().numpy()))
    x = te[tokens] + P["wpe.weight"].detach()[:T]
    mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
    for l in range(L):
        p = "h.%d." % l
        h = F.layer_norm(x, (C,), P[p + "ln_1.weight"].detach(),
                         P[p + "ln_1.bias"].detach(), eps)
        qkv = product(h, P[p + "attn.c_attn.weight"], fmt)
        if cfg["qkv_bias"]:
            qkv = qkv + P[p + "attn.c_attn.bias"].detach()
        q, k, v = qkv.split(C, dim=1)
        q = q.view(T, nh, hd).transpose(0, 1)
        k = k.view(T, nh, hd).transpose(0, 1)
        v = v.view(T, nh, hd).transpose(0, 1)
        att = (q @ k.transpose(-2, -1)) / np.sqrt(hd)
        att = att.masked_fill(~mask, float("-inf"))
        att = torch.softmax(att, dim=-1)
        y = (att @ v).transpose(0, 1).reshape(T, C)
        x = x + product(y, P[p + "attn.c_proj.weight"], fmt) + P[p + "attn.c_proj.bias"].detach()
        h = F.layer_norm(x, (C,), P[p + "ln_2.weight"].detach(),
                         P[p + "ln_2.bias"].detach(), eps)
        h = F.gelu(product(h, P[p + "mlp.c_fc.weight"], fmt) + P[p + "mlp.c_fc.bias"].detach(),
                   approximate="tanh")
        x = x + product(h, P[p + "mlp.c_proj.weight"], fmt) + P[p + "mlp.c_proj.bias"].detach()
    x = F.layer_norm(x, (C,), P["ln_f.weight"].detach(), P["ln_f.bias"].detach(), eps)
    logits = product(x, head_t, fmt)
    if cfg["head_bias"]:
        logits = logits + P["lm_head.bias"].detach()
    return logits


def make_variant(name, cfg, T, seed):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, cfg["vocab_size"], size=(T,)).astype(np.int64)
    P = make_params(cfg, seed)
    g = Golden()
    g.add("config", np.array([cfg["n_layer"], cfg["n_head"], cfg["n_embd"],
                              cfg["context_length"], cfg["vocab_size"],
                              int(cfg["qkv_bias"]), int(cfg["tie_embeddings"]),
                              int(cfg["head_bias"]), seed], dtype=np.int32))
    g.add("tokens", tokens.astype(np.int32))
    for fmt in ("fp32", "bf16", "q8"):
        with torch.no_grad():
            g.add("logits." + fmt, forward(P, cfg, torch.tensor(tokens), fmt).numpy())
    g.write(os.path.join(HERE, "quant-%s.bin" % name))


def main():
    torch.manual_seed(0)
    make_variant("tied", base_cfg(n_embd=64, n_head=4, tie_embeddings=True,
                                  qkv_bias=True, vocab_size=70), 12, 11)
    make_variant("untied", base_cfg(n_embd=96, n_head=3, n_layer=3,
                                    head_bias=True, vocab_size=45), 10, 12)


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Reference values for tests/test-nn-golden.c, computed by PyTorch in float64.

Run from the repository root with Debian's python3-torch:

    /usr/bin/python3 tests/golden/nn/make_goldens.py

It writes, for several tiny GPT-2 models with deterministic weights:

  tests/golden/nn/tiny-<variant>.bin   config, tokens, targets, logits, loss,
                                        every parameter gradient, and after
                                        three AdamW steps (warmup + cosine
                                        schedule, global-norm clipping) the
                                        losses and every parameter.

and a Hugging Face-layout model directory for the loader's tests:

  tests/golden/nn/hf-tiny/config.json
  tests/golden/nn/hf-tiny/model.safetensors   ("transformer." prefix,
                                               h.N.attn.bias buffers, tied
                                               head, F32)
  tests/golden/nn/hf-tiny-expected.json       tokens and reference logits

Weights are not stored in the .bin files: both sides compute them from a hash
of the tensor name and element index (see init_tensor), so the files hold
only results.

Golden file format (little-endian): the 8 bytes "GPTDGLD1", a u32 record
count, then records of u32 name length, name bytes, u32 dtype (0 float32,
1 int32), u32 ndim, ndim u32 dims, and the data.
"""

import json
import math
import os
import struct

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))


def hash32(key, i):
    """The mixer shared with the C side: murmur3's finaliser of i*phi ^ key."""
    with np.errstate(over="ignore"):
        h = (i.astype(np.uint32) * np.uint32(0x9E3779B1)) ^ np.uint32(key)
        h ^= h >> np.uint32(16)
        h *= np.uint32(0x85EBCA6B)
        h ^= h >> np.uint32(13)
        h *= np.uint32(0xC2B2AE35)
        h ^= h >> np.uint32(16)
    return h


def fnv1a(name):
    h = 0x811C9DC5
    for b in name.encode():
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def init_tensor(name, shape, seed):
    """center + scale * (2u - 1), u = hash(fnv1a(name) ^ seed, index) / 2^32,
    rounded to float32."""
    n = int(np.prod(shape))
    u = hash32((fnv1a(name) ^ seed) & 0xFFFFFFFF, np.arange(n, dtype=np.uint32))
    u = u.astype(np.float64) / 4294967296.0
    if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name == "ln_f.weight":
        center, scale = 1.0, 0.1
    elif len(shape) == 1:
        center, scale = 0.0, 0.1
    elif name in ("wte.weight", "wpe.weight"):
        center, scale = 0.0, 0.5
    else:
        center, scale = 0.0, 0.3
    v = (center + scale * (2.0 * u - 1.0)).astype(np.float32)
    return v.reshape(shape)


def param_specs(cfg):
    """(name, shape) in gptd's buffer order."""
    C, V, L = cfg["n_embd"], cfg["vocab_size"], cfg["n_layer"]
    n_out = cfg["n_out"] or V
    specs = [("wte.weight", (V, C)), ("wpe.weight", (cfg["context_length"], C))]
    for l in range(L):
        p = "h.%d." % l
        specs += [(p + "ln_1.weight", (C,)), (p + "ln_1.bias", (C,)),
                  (p + "attn.c_attn.weight", (C, 3 * C))]
        if cfg["qkv_bias"]:
            specs.append((p + "attn.c_attn.bias", (3 * C,)))
        specs += [(p + "attn.c_proj.weight", (C, C)), (p + "attn.c_proj.bias", (C,)),
                  (p + "ln_2.weight", (C,)), (p + "ln_2.bias", (C,)),
                  (p + "mlp.c_fc.weight", (C, 4 * C)), (p + "mlp.c_fc.bias", (4 * C,)),
                  (p + "mlp.c_proj.weight", (4 * C, C)), (p + "mlp.c_proj.bias", (C,))]
    specs += [("ln_f.weight", (C,)), ("ln_f.bias", (C,))]
    if not cfg["tie_embeddings"]:
        specs.append(("lm_head.weight", (n_out, C)))
    if cfg["head_bias"]:
        specs.append(("lm_head.bias", (n_out,)))
    return specs


def make_params(cfg, seed, dtype=torch.float64):
    return {name: torch.tensor(init_tensor(name, shape, seed), dtype=dtype,
                               requires_grad=True)
            for name, shape in param_specs(cfg)}


def forward(P, cfg, tokens, last_only=False):
    """The GPT-2 forward of the book / Hugging Face, in PyTorch."""
    B, T = tokens.shape
    C, nh, L = cfg["n_embd"], cfg["n_head"], cfg["n_layer"]
    hd = C // nh
    eps = cfg["layer_norm_epsilon"]
    x = P["wte.weight"][tokens] + P["wpe.weight"][:T]
    mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
    for l in range(L):
        p = "h.%d." % l
        h = F.layer_norm(x, (C,), P[p + "ln_1.weight"], P[p + "ln_1.bias"], eps)
        qkv = h @ P[p + "attn.c_attn.weight"]
        if cfg["qkv_bias"]:
            qkv = qkv + P[p + "attn.c_attn.bias"]
        q, k, v = qkv.split(C, dim=2)
        q = q.view(B, T, nh, hd).transpose(1, 2)
        k = k.view(B, T, nh, hd).transpose(1, 2)
        v = v.view(B, T, nh, hd).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(hd)
        att = att.masked_fill(~mask, float("-inf"))
        att = torch.softmax(att, dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + y @ P[p + "attn.c_proj.weight"] + P[p + "attn.c_proj.bias"]
        h = F.layer_norm(x, (C,), P[p + "ln_2.weight"], P[p + "ln_2.bias"], eps)
        h = F.gelu(h @ P[p + "mlp.c_fc.weight"] + P[p + "mlp.c_fc.bias"],
                   approximate="tanh")
        x = x + h @ P[p + "mlp.c_proj.weight"] + P[p + "mlp.c_proj.bias"]
    x = F.layer_norm(x, (C,), P["ln_f.weight"], P["ln_f.bias"], eps)
    if last_only:
        x = x[:, -1:, :]
    head = P["wte.weight"] if cfg["tie_embeddings"] else P["lm_head.weight"]
    logits = x @ head.t()
    if cfg["head_bias"]:
        logits = logits + P["lm_head.bias"]
    return logits


def loss_of(logits, targets):
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                           ignore_index=-100)


def lr_at(s, step):
    """The book's appendix D schedule (gptd_lr_schedule_get)."""
    if step < s["warmup"]:
        return s["initial_lr"] + step * (s["peak_lr"] - s["initial_lr"]) / s["warmup"]
    progress = (step - s["warmup"]) / (s["total"] - s["warmup"])
    progress = min(max(progress, 0.0), 1.0)
    return s["min_lr"] + (s["peak_lr"] - s["min_lr"]) * 0.5 * (1 + math.cos(math.pi * progress))


class Golden:
    def __init__(self):
        self.records = []

    def add(self, name, array):
        a = np.asarray(array)
        if a.dtype.kind in "iu":
            a = a.astype("<i4")
            dtype = 1
        else:
            a = a.astype("<f4")
            dtype = 0
        self.records.append((name, dtype, a))

    def write(self, path):
        with open(path, "wb") as f:
            f.write(b"GPTDGLD1")
            f.write(struct.pack("<I", len(self.records)))
            for name, dtype, a in self.records:
                nb = name.encode()
                f.write(struct.pack("<I", len(nb)))
                f.write(nb)
                f.write(struct.pack("<II", dtype, a.ndim))
                f.write(struct.pack("<%dI" % a.ndim, *a.shape))
                f.write(a.tobytes())


def make_variant(name, cfg, B, T, last_only, seed):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, cfg["vocab_size"], size=(B, T)).astype(np.int64)
    n_out = cfg["n_out"] or cfg["vocab_size"]
    if last_only:
        targets = rng.integers(0, n_out, size=(B,)).astype(np.int64)
    else:
        targets = rng.integers(0, n_out, size=(B, T)).astype(np.int64)
        targets[rng.random((B, T)) < 0.15] = -100
    sched = dict(initial_lr=1e-3, peak_lr=1e-2, min_lr=1e-3, warmup=2, total=3)
    adam = dict(beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1)
    max_norm = 0.5

    tok_t = torch.tensor(tokens)
    tgt_t = torch.tensor(targets)
    P = make_params(cfg, seed)
    logits = forward(P, cfg, tok_t, last_only)
    loss = loss_of(logits, tgt_t)
    loss.backward()

    g = Golden()
    g.add("config", np.array([cfg["n_layer"], cfg["n_head"], cfg["n_embd"],
                              cfg["context_length"], cfg["vocab_size"], cfg["n_out"],
                              int(cfg["qkv_bias"]), int(cfg["tie_embeddings"]),
                              int(cfg["head_bias"]), B, T, int(last_only), seed],
                             dtype=np.int32))
    g.add("hparams", np.array([cfg["layer_norm_epsilon"], sched["initial_lr"],
                               sched["peak_lr"], sched["min_lr"], sched["warmup"],
                               sched["total"], adam["beta1"], adam["beta2"], adam["eps"],
                               adam["weight_decay"], max_norm], dtype=np.float32))
    g.add("tokens", tokens.astype(np.int32))
    g.add("targets", targets.astype(np.int32))
    g.add("logits", logits.detach().numpy())
    g.add("loss", np.array([loss.item()]))
    for pname, _ in param_specs(cfg):
        g.add("grad." + pname, P[pname].grad.numpy())

    # Three training steps from fresh weights.
    P = make_params(cfg, seed)
    params = [P[n] for n, _ in param_specs(cfg)]
    opt = torch.optim.AdamW(params, lr=sched["initial_lr"],
                            betas=(adam["beta1"], adam["beta2"]), eps=adam["eps"],
                            weight_decay=adam["weight_decay"])
    losses, norms = [], []
    for step in range(3):
        opt.zero_grad()
        loss = loss_of(forward(P, cfg, tok_t, last_only), tgt_t)
        loss.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(params, max_norm)))
        for group in opt.param_groups:
            group["lr"] = lr_at(sched, step)
        opt.step()
        losses.append(loss.item())
    g.add("step_losses", np.array(losses))
    g.add("step_norms", np.array(norms))
    for pname, _ in param_specs(cfg):
        g.add("after." + pname, P[pname].detach().numpy())
    g.write(os.path.join(HERE, "tiny-%s.bin" % name))
    print("tiny-%s.bin: loss %.6f, %d records" % (name, losses[0], len(g.records)))


def base_cfg(**kw):
    cfg = dict(n_layer=2, n_head=2, n_embd=16, context_length=72, vocab_size=50,
               n_out=0, qkv_bias=False, tie_embeddings=False, head_bias=False,
               layer_norm_epsilon=1e-5)
    cfg.update(kw)
    return cfg


def write_hf_tiny():
    """A Hugging Face GPT-2 directory as old checkpoints have it."""
    cfg = base_cfg(context_length=32, qkv_bias=True, tie_embeddings=True)
    seed = 7
    out = os.path.join(HERE, "hf-tiny")
    os.makedirs(out, exist_ok=True)
    config = {
        "activation_function": "gelu_new",
        "architectures": ["GPT2LMHeadModel"],
        "attn_pdrop": 0.1,
        "bos_token_id": cfg["vocab_size"] - 1,
        "embd_pdrop": 0.1,
        "eos_token_id": cfg["vocab_size"] - 1,
        "initializer_range": 0.02,
        "layer_norm_epsilon": cfg["layer_norm_epsilon"],
        "model_type": "gpt2",
        "n_ctx": cfg["context_length"],
        "n_embd": cfg["n_embd"],
        "n_head": cfg["n_head"],
        "n_inner": None,
        "n_layer": cfg["n_layer"],
        "n_positions": cfg["context_length"],
        "resid_pdrop": 0.1,
        "vocab_size": cfg["vocab_size"],
    }
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")

    tensors = []
    for name, shape in param_specs(cfg):
        tensors.append(("transformer." + name, init_tensor(name, shape, seed)))
    n = cfg["context_length"]
    for l in range(cfg["n_layer"]):
        tril = np.tril(np.ones((n, n), dtype=np.float32)).reshape(1, 1, n, n)
        tensors.append(("transformer.h.%d.attn.bias" % l, tril))
        tensors.append(("transformer.h.%d.attn.masked_bias" % l,
                        np.array(-1e4, dtype=np.float32)))
    header, offset, blobs = {}, 0, []
    for name, a in tensors:
        b = np.ascontiguousarray(a, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    header["__metadata__"] = {"format": "pt"}
    hj = json.dumps(header, separators=(",", ":")).encode()
    hj += b" " * ((8 - len(hj) % 8) % 8)
    with open(os.path.join(out, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for b in blobs:
            f.write(b)

    tokens = np.array([[3, 14, 15, 9, 26, 5, 35, 8, 49, 0, 31, 27]], dtype=np.int64)
    P = make_params(cfg, seed)
    with torch.no_grad():
        logits = forward(P, cfg, torch.tensor(tokens))
    with open(os.path.join(HERE, "hf-tiny-expected.json"), "w") as f:
        json.dump({"tokens": tokens[0].tolist(),
                   "logits": [[float(np.float32(v)) for v in row]
                              for row in logits[0].numpy()]}, f)
        f.write("\n")
    print("hf-tiny: %d tensors, %d bytes of data" % (len(tensors), offset))


def main():
    torch.manual_seed(0)
    make_variant("untied", base_cfg(), 2, 66, False, 11)
    make_variant("tied-qkvbias", base_cfg(qkv_bias=True, tie_embeddings=True), 2, 66,
                 False, 12)
    make_variant("untied-qkvbias", base_cfg(qkv_bias=True), 2, 66, False, 13)
    make_variant("tied", base_cfg(tie_embeddings=True), 2, 66, False, 14)
    make_variant("classifier", base_cfg(qkv_bias=True, n_out=3, head_bias=True), 3, 20,
                 True, 15)
    write_hf_tiny()


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Reference values for tests/test-classify-golden.c: the book's classification
fine-tuning (chapter 6) on a tiny GPT-2, computed by PyTorch in float64.

Run from the repository root with Debian's python3-torch:

    /usr/bin/python3 tests/golden/classify/make_goldens.py

The model's weights come from tests/golden/nn/make_goldens.py's init_tensor
(a hash of name and index, so the C side computes the same ones); the head is
a 2-class nn.Linear with a bias (lm_head.*, Hugging Face's score.*). As the
book: token lists of different lengths padded to the longest with the pad id,
everything frozen but the last block, the final LayerNorm and the head, the
cross-entropy of the last position's logits, AdamW (weight decay 0.1).

It writes tests/golden/classify/tiny.bin (the format of the nn goldens) with:
padded inputs, labels and lengths; the logits and loss with pooling "last"
(the last position, padding included) and "last-token" (the last real token);
every trainable gradient of the "last" loss; the accuracy of the first logits;
the losses of two AdamW steps and the loss after them; and every parameter
after the two steps (the frozen ones must be bitwise unchanged).
"""

import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "nn"))
import make_goldens as nn  # noqa: E402

SEED = 21
LR = 1e-3
WEIGHT_DECAY = 0.1
PAD = 49


def pooled_logits(P, cfg, tokens, positions):
    """The head at one position per row: forward all positions, then gather."""
    full_cfg = dict(cfg)
    logits = nn.forward(P, full_cfg, tokens, last_only=False)
    return logits[torch.arange(tokens.shape[0]), positions]


def main():
    cfg = nn.base_cfg(qkv_bias=True, n_out=2, head_bias=True, context_length=16)
    texts = [[5, 17, 3, 9, 22, 41, 8], [12, 30, 2], [7, 7, 19, 33, 1], [44, 6, 28, 15]]
    labels = np.array([1, 0, 1, 0], dtype=np.int64)
    T = max(len(t) for t in texts)
    B = len(texts)
    inputs = np.full((B, T), PAD, dtype=np.int64)
    for i, t in enumerate(texts):
        inputs[i, :len(t)] = t
    lengths = np.array([len(t) for t in texts], dtype=np.int64)
    tok = torch.tensor(inputs)
    lab = torch.tensor(labels)
    last = torch.full((B,), T - 1, dtype=torch.long)
    last_token = torch.tensor(lengths - 1)

    L = cfg["n_layer"]
    trainable = [n for n, _ in nn.param_specs(cfg)
                 if n.startswith("h.%d." % (L - 1)) or n.startswith("ln_f.")
                 or n.startswith("lm_head.")]

    g = nn.Golden()
    g.add("config", np.array([cfg["n_layer"], cfg["n_head"], cfg["n_embd"],
                              cfg["context_length"], cfg["vocab_size"], cfg["n_out"],
                              B, T, SEED, PAD], dtype=np.int32))
    g.add("inputs", inputs.astype(np.int32))
    g.add("labels", labels.astype(np.int32))
    g.add("lengths", lengths.astype(np.int32))

    P = nn.make_params(cfg, SEED)
    logits = pooled_logits(P, cfg, tok, last)
    loss = F.cross_entropy(logits, lab)
    loss.backward()
    g.add("logits.last", logits.detach().numpy())
    g.add("loss.last", np.array([loss.item()]))
    for name in trainable:
        g.add("grad." + name, P[name].grad.numpy())
    correct = (logits.argmax(dim=-1) == lab).sum().item()
    g.add("accuracy.last", np.array([correct / B]))

    P = nn.make_params(cfg, SEED)
    logits_t = pooled_logits(P, cfg, tok, last_token)
    g.add("logits.last-token", logits_t.detach().numpy())
    g.add("loss.last-token", np.array([F.cross_entropy(logits_t, lab).item()]))

    # Two AdamW steps on the trainable tensors only, as the book's optimizer
    # over model.parameters() with requires_grad False elsewhere.
    P = nn.make_params(cfg, SEED)
    for name, t in P.items():
        t.requires_grad_(name in trainable)
    opt = torch.optim.AdamW([P[n] for n in trainable], lr=LR, weight_decay=WEIGHT_DECAY)
    losses = []
    for _ in range(2):
        opt.zero_grad()
        loss = F.cross_entropy(pooled_logits(P, cfg, tok, last), lab)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        losses.append(F.cross_entropy(pooled_logits(P, cfg, tok, last), lab).item())
    g.add("step_losses", np.array(losses))
    for name, _ in nn.param_specs(cfg):
        g.add("after." + name, P[name].detach().numpy())
    g.write(os.path.join(HERE, "tiny.bin"))
    print("tiny.bin: loss %.6f -> %.6f, %d records" % (losses[0], losses[-1], len(g.records)))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Makes the generator's golden files: a tiny GPT-2 model directory in Hugging
Face's layout and the greedy continuations the book's reference code produces
from it.

    /usr/bin/python3 tests/golden/generate/make_golden.py   # needs PyTorch

Writes, next to this script:
  model/config.json        Hugging Face GPT-2 configuration
  model/model.safetensors  the weights, Hugging Face names (Conv1D input-major)
  model/vocab.json         a tiny byte-level BPE vocabulary (256 bytes, 31
  model/merges.txt         merges, <|endoftext|>), so the directory is complete
  greedy.json              prompts and the reference greedy continuations

The reference model is the book's GPTModel (chapter 4) with qkv_bias=True and
the output head tied to the token embedding, and the continuation comes from
the book's generate_text_simple (chapter 4): at each step the last
context_size tokens go through the model and the argmax of the last logits is
appended.  Weights are drawn with a larger spread than GPT-2's initialisation
so that the largest logit is well apart from the second (the script checks
the margin), making the greedy path robust to float rounding.
"""
import json
import os
import struct

import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 1234
CFG = {
    "vocab_size": 288,
    "context_length": 16,
    "emb_dim": 32,
    "n_heads": 4,
    "n_layers": 2,
    "drop_rate": 0.0,
    "qkv_bias": True,
}
MIN_MARGIN = 2e-3

# ---- The book's model (chapter 4), unchanged but for the tied head --------


class MultiHeadAttention(nn.Module):
    def __init__(self, d_in, d_out, context_length, dropout, num_heads, qkv_bias=False):
        super().__init__()
        self.d_out = d_out
        self.num_heads = num_heads
        self.head_dim = d_out // num_heads
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.out_proj = nn.Linear(d_out, d_out)
        self.dropout = nn.Dropout(dropout)
        self.register_buffer(
            "mask", torch.triu(torch.ones(context_length, context_length), diagonal=1))

    def forward(self, x):
        b, num_tokens, d_in = x.shape
        keys = self.W_key(x)
        queries = self.W_query(x)
        values = self.W_value(x)
        keys = keys.view(b, num_tokens, self.num_heads, self.head_dim).transpose(1, 2)
        values = values.view(b, num_tokens, self.num_heads, self.head_dim).transpose(1, 2)
        queries = queries.view(b, num_tokens, self.num_heads, self.head_dim).transpose(1, 2)
        attn_scores = queries @ keys.transpose(2, 3)
        mask_bool = self.mask.bool()[:num_tokens, :num_tokens]
        attn_scores.masked_fill_(mask_bool, -torch.inf)
        attn_weights = torch.softmax(attn_scores / keys.shape[-1] ** 0.5, dim=-1)
        attn_weights = self.dropout(attn_weights)
        context_vec = (attn_weights @ values).transpose(1, 2)
        context_vec = context_vec.contiguous().view(b, num_tokens, self.d_out)
        return self.out_proj(context_vec)


class LayerNorm(nn.Module):
    def __init__(self, emb_dim):
        super().__init__()
        self.eps = 1e-5
        self.scale = nn.Parameter(torch.ones(emb_dim))
        self.shift = nn.Parameter(torch.zeros(emb_dim))

    def forward(self, x):
        mean = x.mean(dim=-1, keepdim=True)
        var = x.var(dim=-1, keepdim=True, unbiased=False)
        norm_x = (x - mean) / torch.sqrt(var + self.eps)
        return self.scale * norm_x + self.shift


class GELU(nn.Module):
    def forward(self, x):
        return 0.5 * x * (1 + torch.tanh(
            torch.sqrt(torch.tensor(2.0 / torch.pi)) * (x + 0.044715 * torch.pow(x, 3))))


class FeedForward(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(cfg["emb_dim"], 4 * cfg["emb_dim"]), GELU(),
            nn.Linear(4 * cfg["emb_dim"], cfg["emb_dim"]))

    def forward(self, x):
        return self.layers(x)


class TransformerBlock(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.att = MultiHeadAttention(
            d_in=cfg["emb_dim"], d_out=cfg["emb_dim"], context_length=cfg["context_length"],
            num_heads=cfg["n_heads"], dropout=cfg["drop_rate"], qkv_bias=cfg["qkv_bias"])
        self.ff = FeedForward(cfg)
        self.norm1 = LayerNorm(cfg["emb_dim"])
        self.norm2 = LayerNorm(cfg["emb_dim"])
        self.drop_shortcut = nn.Dropout(cfg["drop_rate"])

    def forward(self, x):
        shortcut = x
        x = self.norm1(x)
        x = self.att(x)
        x = self.drop_shortcut(x)
        x = x + shortcut
        shortcut = x
        x = self.norm2(x)
        x = self.ff(x)
        x = self.drop_shortcut(x)
        x = x + shortcut
        return x


class GPTModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.tok_emb = nn.Embedding(cfg["vocab_size"], cfg["emb_dim"])
        self.pos_emb = nn.Embedding(cfg["context_length"], cfg["emb_dim"])
        self.drop_emb = nn.Dropout(cfg["drop_rate"])
        self.trf_blocks = nn.Sequential(*[TransformerBlock(cfg) for _ in range(cfg["n_layers"])])
        self.final_norm = LayerNorm(cfg["emb_dim"])
        self.out_head = nn.Linear(cfg["emb_dim"], cfg["vocab_size"], bias=False)

    def forward(self, in_idx):
        batch_size, seq_len = in_idx.shape
        tok_embeds = self.tok_emb(in_idx)
        pos_embeds = self.pos_emb(torch.arange(seq_len, device=in_idx.device))
        x = tok_embeds + pos_embeds
        x = self.drop_emb(x)
        x = self.trf_blocks(x)
        x = self.final_norm(x)
        return self.out_head(x)


def generate_text_simple(model, idx, max_new_tokens, context_size):
    """The book's generate_text_simple, also returning each step's margin."""
    margins = []
    for _ in range(max_new_tokens):
        idx_cond = idx[:, -context_size:]
        with torch.no_grad():
            logits = model(idx_cond)
        logits = logits[:, -1, :]
        probas = torch.softmax(logits, dim=-1)
        idx_next = torch.argmax(probas, dim=-1, keepdim=True)
        top2 = torch.topk(logits, 2, dim=-1).values
        margins.append(float(top2[0, 0] - top2[0, 1]))
        idx = torch.cat((idx, idx_next), dim=1)
    return idx, margins


# ---- Weights in Hugging Face's GPT-2 layout --------------------------------


def hf_tensors(model):
    """Maps the book's parameters to Hugging Face GPT-2 names and layouts."""
    t = {}
    t["wte.weight"] = model.tok_emb.weight
    t["wpe.weight"] = model.pos_emb.weight
    for i, b in enumerate(model.trf_blocks):
        p = f"h.{i}."
        t[p + "ln_1.weight"] = b.norm1.scale
        t[p + "ln_1.bias"] = b.norm1.shift
        # Conv1D weights are input-major: the transpose of nn.Linear's.
        t[p + "attn.c_attn.weight"] = torch.cat(
            [b.att.W_query.weight.T, b.att.W_key.weight.T, b.att.W_value.weight.T], dim=1)
        t[p + "attn.c_attn.bias"] = torch.cat(
            [b.att.W_query.bias, b.att.W_key.bias, b.att.W_value.bias])
        t[p + "attn.c_proj.weight"] = b.att.out_proj.weight.T
        t[p + "attn.c_proj.bias"] = b.att.out_proj.bias
        t[p + "ln_2.weight"] = b.norm2.scale
        t[p + "ln_2.bias"] = b.norm2.shift
        t[p + "mlp.c_fc.weight"] = b.ff.layers[0].weight.T
        t[p + "mlp.c_fc.bias"] = b.ff.layers[0].bias
        t[p + "mlp.c_proj.weight"] = b.ff.layers[2].weight.T
        t[p + "mlp.c_proj.bias"] = b.ff.layers[2].bias
    t["ln_f.weight"] = model.final_norm.scale
    t["ln_f.bias"] = model.final_norm.shift
    return {k: v.detach().contiguous().float() for k, v in t.items()}


def write_safetensors(path, tensors):
    header = {}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        data = tensors[name].numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


# ---- A tiny byte-level BPE vocabulary --------------------------------------


def bytes_to_unicode():
    """GPT-2's byte-to-character table (openai/gpt-2 encoder.py)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


MERGES = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("e", "r"), ("Ġ", "a"),
          ("o", "n"), ("Ġ", "s"), ("r", "e"), ("Ġ", "w"), ("a", "t"), ("e", "n"),
          ("o", "u"), ("Ġ", "h"), ("e", "d"), ("i", "s"), ("Ġ", "o"), ("Ġ", "b"),
          ("Ġ", "c"), ("Ġ", "m"), ("n", "d"), ("Ġ", "f"), ("i", "t"), ("Ġ", "p"),
          ("e", "s"), ("o", "r"), ("Ġa", "nd"), ("in", "g"), ("Ġ", "i"), ("Ġ", "d"),
          ("l", "l")]


def write_vocab(dirname):
    b2u = bytes_to_unicode()
    vocab = {}
    for b in range(256):
        vocab[b2u[b]] = len(vocab)
    for a, b in MERGES:
        assert a in vocab and b in vocab, (a, b)
        vocab[a + b] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    assert len(vocab) == CFG["vocab_size"], len(vocab)
    with open(os.path.join(dirname, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(dirname, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in MERGES:
            f.write(f"{a} {b}\n")


def main():
    torch.manual_seed(SEED)
    model = GPTModel(CFG)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("scale",)):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif name.endswith(("shift", "bias")):
                p.copy_(0.1 * torch.randn_like(p))
            else:
                p.copy_(0.3 * torch.randn_like(p))
        model.out_head.weight = model.tok_emb.weight  # tied, as GPT-2
    model.eval()

    mdir = os.path.join(HERE, "model")
    os.makedirs(mdir, exist_ok=True)
    write_safetensors(os.path.join(mdir, "model.safetensors"), hf_tensors(model))
    config = {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": CFG["vocab_size"],
        "n_positions": CFG["context_length"],
        "n_ctx": CFG["context_length"],
        "n_embd": CFG["emb_dim"],
        "n_head": CFG["n_heads"],
        "n_layer": CFG["n_layers"],
        "layer_norm_epsilon": 1e-5,
        "activation_function": "gelu_new",
        "tie_word_embeddings": True,
    }
    with open(os.path.join(mdir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    write_vocab(mdir)

    gen = torch.Generator().manual_seed(SEED + 1)
    cases = [
        # A short prompt whose continuation runs past the context (the window
        # slides for the last 14 steps).
        ("slides", 6, 24, CFG["context_length"]),
        # A prompt longer than the context: truncated from the left.
        ("truncated", 21, 8, CFG["context_length"]),
        # A window shorter than the model's context (the generator's
        # context-length parameter).
        ("short-window", 5, 12, 8),
        # One token of prompt.
        ("one-token", 1, 10, CFG["context_length"]),
    ]
    out = {"seed": SEED, "torch": torch.__version__, "cases": []}
    for name, n_prompt, n_new, ctx in cases:
        prompt = torch.randint(0, CFG["vocab_size"] - 1, (1, n_prompt), generator=gen)
        idx, margins = generate_text_simple(model, prompt, n_new, ctx)
        assert min(margins) >= MIN_MARGIN, (name, min(margins))
        out["cases"].append({
            "name": name,
            "prompt": prompt[0].tolist(),
            "max_new_tokens": n_new,
            "context_length": ctx,
            "continuation": idx[0, n_prompt:].tolist(),
            "min_margin": min(margins),
        })
    with open(os.path.join(HERE, "greedy.json"), "w") as f:
        f.write('{"seed": %d, "torch": %s, "cases": [\n' % (SEED, json.dumps(torch.__version__)))
        f.write(",\n".join(json.dumps(c) for c in out["cases"]))
        f.write("\n]}\n")
    print("wrote", mdir, "and greedy.json;",
          "min margins:", [round(c["min_margin"], 4) for c in out["cases"]])


if __name__ == "__main__":
    main()

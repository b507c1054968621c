#!/usr/bin/env python3
"""fuzz/make-seeds.py: writes the seed corpora of the fuzz targets into
fuzz/corpus/TARGET/ (small inputs that reach each parser's main paths; the
fuzzer grows its own corpus from them elsewhere). Run from the source tree:
python3 fuzz/make-seeds.py. The output is committed."""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
SEP = b"\x01"


def put(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


# ---- fuzz-pipeline: a pipeline file, 0x01, settings -------------------------
put("fuzz-pipeline", "hello", "[pipeline]\nname=hello\n[stage src]\ntype=text-source\n"
    "path=README.md\n[stage out]\ntype=dump\ninput=src\n")
put("fuzz-pipeline", "vars", b"[pipeline]\nname=v-${who}\nwho=me\ndir=${base}/x\nbase=/tmp\n"
    b"[stage src]\ntype=text-source\npath=${dir}/a.txt\nchunk-size=${n}\n"
    b"[stage tok]\ntype=bpe-tokenizer\ninput=src\nvocab=gpt2\n"
    b"[stage w]\ntype=token-writer\ninput=tok\npath=out.bin\nformat=u16\n"
    + SEP + b"n=4096\nwho=you\nw.shard-tokens=100\n")
put("fuzz-pipeline", "train", "[pipeline]\nname=t\n[stage r]\ntype=token-reader\npath=a_*.bin\n"
    "[stage w]\ntype=token-windows\ninput=r\ncontext-length=16\nbatch-size=2\nsplit=0.9,0.1\n"
    "[stage g]\ntype=gpt-trainer\ninput=w\nmodel=custom\nn-layer=1\nn-head=1\nn-embd=8\n"
    "context-length=16\nvocab-size=50257\nlr=4e-4\nepochs=1\n")
put("fuzz-pipeline", "loop", "[pipeline]\nname=${a}\na=${b}${b}\nb=${a}\n[stage s]\ntype=text-source\n"
    "path=x\n")

# ---- fuzz-frame: first byte = cut, then frames (4-byte big-endian length + payload)


def frame(payload):
    return struct.pack(">I", len(payload)) + payload


def varint(n):
    out = b""
    while True:
        b = n & 0x7f
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field(num, wire, value):
    key = varint(num << 3 | wire)
    if wire == 2:
        return key + varint(len(value)) + value
    return key + varint(value)


setting = field(1, 2, b"n") + field(2, 2, b"4")
run = (field(1, 2, b"[pipeline]\nname=x\n[stage a]\ntype=text-source\npath=a\n")
       + field(2, 2, b"x.pipeline") + field(3, 2, setting) + field(4, 2, b"/tmp"))
put("fuzz-frame", "run", b"\x00" + frame(field(1, 0, 1) + field(10, 2, run)))
put("fuzz-frame", "validate-status", b"\x09" + frame(field(1, 0, 2) + field(11, 2, run))
    + frame(field(1, 0, 3) + field(13, 2, field(1, 2, b"12"))))
put("fuzz-frame", "empty", b"\x02" + frame(b""))
put("fuzz-frame", "torn", b"\x03" + frame(b"abcdef")[:7])

# ---- fuzz-safetensors: one file ---------------------------------------------


def safetensors(header, payload=b""):
    h = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(h)) + h + payload


put("fuzz-safetensors", "one", safetensors(
    {"__metadata__": {"format": "pt"}, "w": {"dtype": "F32", "shape": [2],
                                              "data_offsets": [0, 8]}},
    struct.pack("<2f", 1.0, -2.0)))
put("fuzz-safetensors", "f16-bf16", safetensors(
    {"a": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]},
     "b": {"dtype": "BF16", "shape": [1, 2], "data_offsets": [4, 8]}}, b"\x00\x3c" * 4))
put("fuzz-safetensors", "state", safetensors(
    {"__metadata__": {"format": "gptd-training-state", "version": "1", "step": "3",
                      "epoch": "0", "batch_index": "3", "rng_seed": "1", "rng_counter": "2",
                      "adamw.step": "3", "adamw.beta1": "0.9", "adamw.beta2": "0.999",
                      "adamw.eps": "1e-8", "adamw.weight_decay": "0.1",
                      "adamw.decay_1d": "true", "hparams.lr": "0.0004"},
     "adamw.m.wte.weight": {"dtype": "F32", "shape": [5, 8], "data_offsets": [0, 160]}},
    b"\x00" * 160))
put("fuzz-safetensors", "nan", safetensors(
    {"wte.weight": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}},
    struct.pack("<f", float("nan"))))

# ---- fuzz-json: first byte picks the reader ----------------------------------
put("fuzz-json", "config", b"\x00" + json.dumps(
    {"model_type": "gpt2", "n_layer": 2, "n_head": 2, "n_embd": 8, "n_positions": 16,
     "vocab_size": 50, "n_inner": None, "activation_function": "gelu_new",
     "qkv_bias": True, "tie_word_embeddings": True, "resid_pdrop": 0.1,
     "id2label": {"0": "ham", "1": "spam"}}).encode())
put("fuzz-json", "checkpoint", b"\x01" + json.dumps(
    {"format": "gptd-checkpoint", "version": 1, "latest": "step-00000008"}).encode())
put("fuzz-json", "nested", b"\x02" + b"[" * 70 + b"]" * 70)
put("fuzz-json", "instruction", b"\x02" + json.dumps(
    [{"instruction": "Say hi.", "input": "", "output": "Hi."}]).encode())

# ---- fuzz-vocab: encoder.json, 0x01, vocab.bpe -------------------------------


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) \
        + list(range(ord("\xae"), ord("\xff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


b2u = bytes_to_unicode()
enc = {b2u[b]: i for i, b in enumerate(sorted(b2u))}
merges = [("h", "e"), ("l", "l"), ("he", "ll"), ("\u0120", "w")]
for a, b in merges:
    enc[a + b] = len(enc)
enc["<|endoftext|>"] = len(enc)
put("fuzz-vocab", "small", json.dumps(enc).encode() + SEP
    + ("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges)).encode())
put("fuzz-vocab", "empty", b"{}" + SEP + b"#version: 0.2\n")

# ---- fuzz-bpe: text ----------------------------------------------------------
put("fuzz-bpe", "english", "Hello, world! It's 2024 and the model's loss fell to 3.14.\n")
put("fuzz-bpe", "unicode", "caf\u00e9 \u65e5\u672c\u8a9e \U0001F600  \t\n\u00a0x\u2028y")
put("fuzz-bpe", "nul", b"ab\x00cd\n")
put("fuzz-bpe", "special", "a<|endoftext|>b<|endoftext|>")

# ---- fuzz-table: first byte = mode bits (1 csv, 2 header, 4 names, 8 labels, 16 replace)
put("fuzz-table", "tsv", b"\x00ham\tGo until jurong point\nspam\tFree entry in 2 a wkly comp\n")
put("fuzz-table", "csv-header", b"\x0f" + b'label,text\nham,"a ""quoted"" field"\n'
    b'spam,"two\nlines"\n')
put("fuzz-table", "bad-utf8", b"\x18ham\tcaf\xe9\n")

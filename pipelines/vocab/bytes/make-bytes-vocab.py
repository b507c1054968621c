#!/usr/bin/env python3
"""Writes the byte-level vocabulary used by pipelines/quickstart.pipeline.

Its 257 tokens are the 256 bytes, numbered in GPT-2's byte order (the printable
characters first, as GPT-2's bytes_to_unicode() lists them), and <|endoftext|>;
there are no merges. It is what gptd's own BPE trainer makes when asked for 257
tokens, in GPT-2's file format (encoder.json + vocab.bpe), so any text can be
tokenized without downloading a vocabulary.

    python3 make-bytes-vocab.py [DIR]
"""
import json
import os
import sys


def bytes_to_unicode():
    """GPT-2's mapping from bytes to printable characters (encoder.py)."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    mapping = bytes_to_unicode()
    encoder = {mapping[b]: i for i, b in enumerate(mapping)}
    encoder["<|endoftext|>"] = 256
    with open(os.path.join(out, "encoder.json"), "w", encoding="utf-8") as f:
        f.write(json.dumps(encoder, ensure_ascii=False, separators=(",", ":")))
    with open(os.path.join(out, "vocab.bpe"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")


if __name__ == "__main__":
    main()

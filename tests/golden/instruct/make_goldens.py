#!/usr/bin/python3
"""Reference values for tests/test-instruct-collate.c, computed by PyTorch
following the book's chapter 7 (format_input, custom_collate_fn, the masking
collate function of exercise 7.2, calc_loss_batch).

Run from the repository root with Debian's python3-torch:

    /usr/bin/python3 tests/golden/instruct/make_goldens.py

It writes:

  tests/golden/instruct/alpaca.json   a few made-up records with the text of
                                      the book's format_input (the prompt), the
                                      full training text (prompt + response) and
                                      the Phi-3 prompt and text of exercise 7.1
  tests/golden/instruct/collate.bin   token sequences of mixed lengths and
                                      their collated inputs and targets: plain,
                                      with the prompt masked, and cut to an
                                      allowed maximum length; on the tiny model
                                      of tests/golden/nn (same deterministic
                                      weights) the loss of the collated batch
                                      (calc_loss_batch), the losses of two AdamW
                                      steps and the loss after them

The .bin file has the format of tests/golden/nn/make_goldens.py (GPTDGLD1).
"""

import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "nn"))
import make_goldens as nn  # noqa: E402  (the tiny model, its weights, Golden)


# ---- The book's functions ---------------------------------------------------

def format_input(entry):
    instruction_text = (
        f"Below is an instruction that describes a task. "
        f"Write a response that appropriately completes the request."
        f"\n\n### Instruction:\n{entry['instruction']}"
    )
    input_text = f"\n\n### Input:\n{entry['input']}" if entry["input"] else ""
    return instruction_text + input_text


def format_input_phi(entry):
    instruction_text = f"<|user|>\n{entry['instruction']}"
    input_text = f"\n{entry['input']}" if entry["input"] else ""
    return instruction_text + input_text


def collate(batch, pad_token_id, ignore_index=-100, allowed_max_length=None,
            instruction_lengths=None):
    """custom_collate_fn; with instruction_lengths, the masking variant of the
    book's exercise 7.2 (custom_collate_with_masking_fn)."""
    batch_max_length = max(len(item) + 1 for item in batch)
    inputs_lst, targets_lst = [], []
    for i, item in enumerate(batch):
        new_item = item.copy()
        new_item += [pad_token_id]
        padded = new_item + [pad_token_id] * (batch_max_length - len(new_item))
        inputs = torch.tensor(padded[:-1])
        targets = torch.tensor(padded[1:])
        mask = targets == pad_token_id
        indices = torch.nonzero(mask).squeeze()
        if indices.numel() > 1:
            targets[indices[1:]] = ignore_index
        if instruction_lengths is not None:
            targets[:instruction_lengths[i] - 1] = ignore_index
        if allowed_max_length is not None:
            inputs = inputs[:allowed_max_length]
            targets = targets[:allowed_max_length]
        inputs_lst.append(inputs)
        targets_lst.append(targets)
    return torch.stack(inputs_lst), torch.stack(targets_lst)


def calc_loss_batch(logits, targets):
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


# ---- Alpaca text ------------------------------------------------------------

RECORDS = [
    {"instruction": "Rewrite the sentence with a metaphor.",
     "input": "The river is very long.",
     "output": "The river is a silver ribbon without end."},
    {"instruction": "What is the capital of Norway?",
     "input": "",
     "output": "The capital of Norway is Oslo."},
    {"instruction": "Translate to German: \u00abgood morning\u00bb",
     "input": "Caf\u00e9 {menu} \u2014 \"quoted\"\nsecond line",
     "output": "Guten Morgen.\n"},
]


def write_alpaca():
    out = []
    for r in RECORDS:
        prompt = format_input(r)
        phi_prompt = format_input_phi(r)
        out.append({
            "record": r,
            "alpaca_prompt": prompt,
            "alpaca_text": prompt + f"\n\n### Response:\n{r['output']}",
            "phi3_prompt": phi_prompt,
            "phi3_text": phi_prompt + f"\n<|assistant|>:\n{r['output']}",
        })
    with open(os.path.join(HERE, "alpaca.json"), "w") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print("alpaca.json: %d records" % len(out))


# ---- Collation and loss -------------------------------------------------------

PAD = 49          # the tiny model's last id stands for <|endoftext|>
ALLOWED = 5


def write_collate():
    cfg = nn.base_cfg()
    seed = 21
    rng = np.random.default_rng(5)
    lengths = [6, 2, 9, 4]
    prompts = [3, 1, 5, 4]
    seqs = [rng.integers(0, PAD, size=n).tolist() for n in lengths]
    # The book masks every target equal to the pad id but the first: a pad id
    # inside a record is that first one, and its own end-of-text is ignored.
    seqs[3][1] = PAD

    g = nn.Golden()
    g.add("config", np.array([PAD, -100, ALLOWED, seed], dtype=np.int32))
    g.add("lengths", np.array(lengths, dtype=np.int32))
    g.add("prompts", np.array(prompts, dtype=np.int32))
    g.add("ids", np.array(sum(seqs, []), dtype=np.int32))

    plain_in, plain_tg = collate(seqs, PAD)
    mask_in, mask_tg = collate(seqs, PAD, instruction_lengths=prompts)
    cut_in, cut_tg = collate(seqs, PAD, allowed_max_length=ALLOWED,
                             instruction_lengths=prompts)
    cut_plain_in, cut_plain_tg = collate(seqs, PAD, allowed_max_length=ALLOWED)
    for name, t in (("plain.inputs", plain_in), ("plain.targets", plain_tg),
                    ("mask.inputs", mask_in), ("mask.targets", mask_tg),
                    ("cut.inputs", cut_in), ("cut.targets", cut_tg),
                    ("cut-plain.inputs", cut_plain_in),
                    ("cut-plain.targets", cut_plain_tg)):
        g.add(name, t.numpy())

    # The loss of the plain batch, then two AdamW steps (the book's optimizer:
    # AdamW, weight decay 0.1, on every parameter) and the loss after them.
    lr, wd = 5e-3, 0.1
    P = nn.make_params(cfg, seed)
    params = [P[n] for n, _ in nn.param_specs(cfg)]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    losses = []
    for step in range(2):
        opt.zero_grad()
        loss = calc_loss_batch(nn.forward(P, cfg, plain_in), plain_tg)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        losses.append(calc_loss_batch(nn.forward(P, cfg, plain_in), plain_tg).item())
    # The masked batch's loss counts only the responses' targets.
    with torch.no_grad():
        P0 = nn.make_params(cfg, seed)
        mask_loss = calc_loss_batch(nn.forward(P0, cfg, mask_in), mask_tg).item()
    g.add("hparams", np.array([lr, wd], dtype=np.float32))
    g.add("losses", np.array(losses))
    g.add("mask_loss", np.array([mask_loss]))
    g.write(os.path.join(HERE, "collate.bin"))
    print("collate.bin: losses %s, masked %.6f" % (losses, mask_loss))


def main():
    torch.manual_seed(0)
    write_alpaca()
    write_collate()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""make-corpus.py: builds the tokenizer benchmark's corpus (about 24 MB of UTF-8)
from text already on the machine, plus generated text:

  data        the data files in $GPTD_DATA_DIR (book texts, SMS, JSON)
  docs        Debian package documentation (/usr/share/doc, plain and gzipped)
  code        C headers (/usr/include)
  whitespace  the same kinds of text made whitespace-heavy (deep indentation,
              aligned columns, trailing blanks, CRLF line ends)
  scripts     generated text in Chinese, Japanese, Korean, Russian, Greek,
              Arabic, Persian, Hindi and Thai

The selection is deterministic (sorted paths, a fixed seed). The corpus is made
at run time and never committed.

usage: make-corpus.py OUTPUT [TOTAL_MB]
"""
import gzip
import os
import random
import sys

out_path = sys.argv[1]
total_mb = float(sys.argv[2]) if len(sys.argv) > 2 else 24.0
MB = 1 << 20
quota = {
    'data': 2.0 * MB,
    'docs': total_mb * 0.33 * MB,
    'code': total_mb * 0.30 * MB,
    'whitespace': total_mb * 0.10 * MB,
    'scripts': total_mb * 0.19 * MB,
}
rng = random.Random(20240520)


def read_text(path):
    try:
        if path.endswith('.gz'):
            with gzip.open(path, 'rb') as f:
                raw = f.read(4 * MB)
        else:
            with open(path, 'rb') as f:
                raw = f.read(4 * MB)
    except (OSError, EOFError, gzip.BadGzipFile):
        return None
    if b'\0' in raw:
        return None
    try:
        return raw.decode('utf-8')
    except UnicodeDecodeError:
        return None


def collect(roots, suffixes, limit):
    parts, size = [], 0
    paths = []
    for root in roots:
        for d, _, files in os.walk(root):
            for name in files:
                if name.endswith(suffixes):
                    paths.append(os.path.join(d, name))
    paths.sort()
    rng.shuffle(paths)
    for p in paths:
        if size >= limit:
            break
        t = read_text(p)
        if t and len(t) > 200:
            parts.append(t)
            size += len(t.encode())
    return parts, size


sections = {}

data_dir = os.environ.get('GPTD_DATA_DIR', '')
data = []
for name in ['tinyshakespeare.txt', 'the-verdict.txt', 'instruction-data.json',
             'sms-spam-collection/SMSSpamCollection']:
    t = read_text(os.path.join(data_dir, name)) if data_dir else None
    if t:
        data.append(t)
sections['data'] = data
quota['docs'] += quota['data'] - sum(len(t.encode()) for t in data)

sections['docs'], _ = collect(['/usr/share/doc'], ('.gz', 'README', 'copyright', '.txt', '.md', 'NEWS'), quota['docs'])
sections['code'], _ = collect(['/usr/include'], ('.h', '.hpp', '.c'), quota['code'])

# White-space heavy: re-indent and align lines of docs and code.
ws, size = [], 0
src_lines = [l for t in sections['docs'][:200] + sections['code'][:200] for l in t.split('\n')]
while size < quota['whitespace'] and src_lines:
    block = []
    for _ in range(200):
        line = rng.choice(src_lines).strip()
        style = rng.randrange(5)
        if style == 0:
            line = ' ' * (4 * rng.randrange(12)) + line
        elif style == 1:
            line = '\t' * rng.randrange(8) + line
        elif style == 2:
            cols = line.split()
            line = ''.join(c.ljust(rng.choice([8, 16, 24])) for c in cols)
        elif style == 3:
            line = line + ' ' * rng.randrange(1, 20)
        else:
            line = line + '\r'
        block.append(line)
        if rng.random() < 0.1:
            block.append('\n' * rng.randrange(1, 4))
    text = '\n'.join(block) + '\n'
    ws.append(text)
    size += len(text.encode())
sections['whitespace'] = ws

# Generated text in other scripts: words of characters from each script.
scripts = {
    'zh': (list(range(0x4E00, 0x4E00 + 3000)), 0, '\uff0c\u3002\uff1f\uff01'),
    'ja': (list(range(0x3041, 0x3097)) * 6 + list(range(0x30A1, 0x30FB)) * 2 + list(range(0x4E00, 0x4E00 + 2000)), 0, '\u3001\u3002'),
    'ko': (list(range(0xAC00, 0xAC00 + 2500)), 1, '.,'),
    'ru': (list(range(0x0430, 0x0450)) * 4 + list(range(0x0410, 0x0430)), 1, '.,!?'),
    'el': (list(range(0x03B1, 0x03CA)) * 4 + list(range(0x0391, 0x03AA)) + [0x03AC, 0x03AD, 0x03AE, 0x03AF, 0x03CC], 1, '.,;'),
    'ar': (list(range(0x0621, 0x063B)) + list(range(0x0641, 0x064B)) + [0x064E, 0x064F, 0x0650, 0x0651], 1, '\u060c.\u061f'),
    'fa': (list(range(0x0627, 0x063B)) + list(range(0x0641, 0x0649)) + [0x067E, 0x0686, 0x0698, 0x06A9, 0x06AF, 0x06CC, 0x200C], 1, '\u060c.\u061f'),
    'hi': (list(range(0x0915, 0x0939)) * 3 + list(range(0x093E, 0x094D)) * 2 + [0x094D, 0x0902, 0x0903], 1, '\u0964,'),
    'th': (list(range(0x0E01, 0x0E2F)) * 3 + list(range(0x0E30, 0x0E3A)) + list(range(0x0E47, 0x0E4E)), 0, ' '),
}
sc, size = [], 0
langs = sorted(scripts)
while size < quota['scripts']:
    lang = langs[len(sc) % len(langs)]
    chars, spaced, punct = scripts[lang]
    vocab = [''.join(chr(rng.choice(chars)) for _ in range(rng.randrange(1, 7))) for _ in range(800)]
    paras = []
    for _ in range(40):
        sent = []
        for _ in range(rng.randrange(3, 12)):
            words = [rng.choice(vocab[:rng.randrange(50, 800)]) for _ in range(rng.randrange(4, 16))]
            if rng.random() < 0.1:
                words.insert(rng.randrange(len(words)), str(rng.randrange(10000)))
            sent.append((' ' if spaced else '').join(words) + rng.choice(punct))
        paras.append(' '.join(sent) if spaced else ''.join(sent))
    text = '\n\n'.join(paras) + '\n'
    sc.append(text)
    size += len(text.encode())
sections['scripts'] = sc

# Interleave the sections' documents so that every part of the corpus is varied.
docs = [(name, t) for name in ['data', 'docs', 'code', 'whitespace', 'scripts'] for t in sections[name]]
rng.shuffle(docs)
with open(out_path, 'w', encoding='utf-8', newline='') as f:
    for _, t in docs:
        f.write(t)
        f.write('\n\n')
sizes = {name: sum(len(t.encode()) for t in sections[name]) for name in sections}
print(' '.join(f'{k}={v / MB:.1f}MB' for k, v in sizes.items()), f'total={os.path.getsize(out_path) / MB:.1f}MB')

// make-goldens.mjs: writes ids.json, the golden token ids of tests/test-bpe.c, with
// tiktoken's gpt2 encoding (npm package "tiktoken", its WASM build).
//
//   mkdir -p /tmp/tk && (cd /tmp/tk && npm install tiktoken)
//   TIKTOKEN_DIR=/tmp/tk/node_modules node tests/golden/bpe/make-goldens.mjs > tests/golden/bpe/ids.json
//
// Each case is {"text": ..., "mode": "text"|"allowed"|"error", "ids": [...]} or,
// for mode "error", {"error": true} when tiktoken refuses the text. Long texts are
// written as {"repeat": STRING, "count": N} and rebuilt by the test. Cases with
// more than 1000 ids keep the first 100 ("ids_head"), the count ("n_ids") and
// a 64-bit FNV-1a hash of all ids as little-endian uint32 ("ids_fnv1a", hex).
import { createRequire } from 'node:module';

const require = createRequire(process.env.TIKTOKEN_DIR
  ? process.env.TIKTOKEN_DIR.replace(/\/?$/, '/')
  : import.meta.url);
const { get_encoding } = require('tiktoken');
const enc = get_encoding('gpt2');

// A fixed pseudo-random sequence (mulberry32), so the goldens are reproducible.
let seed = 20240520;
function rand() {
  seed = (seed + 0x6D2B79F5) | 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = (a) => a[Math.floor(rand() * a.length)];

const cases = [];
const add = (text, mode = 'text') => cases.push({ text, mode });
const addRepeat = (repeat, count) => cases.push({ repeat, count, mode: 'text' });

// English prose and contractions.
[
  '', 'a', ' ', 'Hello, world!', 'Hello world', ' Hello world ', 'The quick brown fox jumps over the lazy dog.',
  'I HAD always thought Jack Gisburn rather a cheap genius--though a good fellow enough--so it was no great surprise to me to hear that, in the height of his glory, he had dropped his painting, married a rich widow, and established himself in a villa on the Riviera.',
  "It's a dog's life.", "don't won't can't shouldn't", "We're here, you've seen, I'm sure, they'll go, he'd know.",
  "DON'T WON'T I'M WE'RE YOU'VE THEY'LL HE'D IT'S", "Don't It'S We'Re You'Ve They'Ll He'D I'M",
  "'s 't 're 've 'm 'll 'd", "'S 'T 'RE 'VE 'M 'LL 'D", "'Re 'rE 'Ve 'vE 'Ll 'lL", "'sx 'tx 'rex 'vex 'mx 'llx 'dx",
  "''s ''t '''re", "'", "''", "'s", "s'", "y'all rock'n'roll o'clock", "the students' books", "'quoted' words",
  "It\u2019s curly\u2019s", "\u2018single\u2019 \u201cdouble\u201d", " 's", "  'll", "\t'd", "\n've", "a'b'c'd", "1's 2'd",
  "'ss 'tt 'mm 'dd", "'l 'v 'r", "can''t", "'\u00e9", "x'\u00e9", "Mr. O'Neil's", "rock 'n' roll",
].forEach((t) => add(t));

// White space: runs, tabs, newlines, CRLF, trailing white space, Unicode spaces.
const ws = [' ', '  ', '   ', '\t', '\t\t', '\n', '\n\n', '\r\n', '\r', ' \n', '\n ', ' \t ', '\u00a0', '\u3000', '\u2003', '\u0085', '\u000b', '\u000c', '\u2028', '\u200b', '\u180e', '\u1680', '\u202f', '\u205f', '\ufeff'];
for (const w of ws) {
  add(`a${w}b`); add(`a${w}`); add(`${w}b`); add(`a${w}${w}b`); add(`a ${w}b`); add(`a${w} b`); add(`${w}`);
}
[
  'hello   world', 'hello\t\tworld', 'hello\n\n\nworld', 'line one\r\nline two\r\n', 'trailing spaces   ', 'trailing\n\n',
  '   leading', '\n\n\nleading newlines', 'mixed \t \n \r\n white', 'end with space ', 'end with tab\t', '    indented code',
  '\tdef f():\n\t\treturn 1\n', 'a \n\tb', '  \n  \n  ', '\n \n \n', ' '.repeat(100), '\n'.repeat(50), 'x' + ' '.repeat(17) + 'y',
  'one\u00a0two', 'a \u00a0b', 'a\u00a0 b', '\u00a0\u00a0a', '1 2  3   4', '. , ; :', ' ! ?',
].forEach((t) => add(t));

// Numbers.
[
  '0', '123', '1234567890', ' 42', '3.14159', '1,000,000', '-17', '+3e10', '0x1F', '2024-05-20', '12:30:45', '$1.99', '99%',
  '\u0663\u0664\u0665', '\u06f1\u06f2\u06f3', '\u0967\u0968\u0969', 'x\u00b2 + y\u00b3', '\u216b \u2167', '\u00bd \u00be', '\u2460\u2461',
  'abc123def', '123abc', 'v1.2.3', 'a1b2c3', ' 1 2 3', '1\u00a02', '\uff11\uff12\uff13', '\u{1d7ce}\u{1d7cf}',
].forEach((t) => add(t));

// Code, markup, URLs.
[
  'int main(int argc, char **argv) {\n    return 0;\n}\n', 'for (i = 0; i < n; i++) { a[i] += b[i] * 2; }',
  'def foo(x):\n    """Docstring."""\n    return x ** 2  # square\n', 'import numpy as np\nx = np.zeros((3, 4))\n',
  '{"key": "value", "list": [1, 2, 3], "nested": {"a": null}}', '<html><body class="main">Hi &amp; bye</body></html>',
  '#!/bin/sh\nset -eu\necho "$HOME" | grep -q root && exit 1\n', 'SELECT * FROM users WHERE id = 42;',
  'https://example.com/path/to/page?query=1&x=y#frag', 'http://localhost:8080/', 'mailto:someone@example.org',
  'user@example.com', '/usr/include/stdio.h', 'C:\\Windows\\System32', '~/.config/gptd/gptd.conf', 'foo_bar_baz', 'fooBarBaz',
  'FOO_BAR', '__init__', 'a->b', 'a::b', 'x => x + 1', '!==', '...', '---', '***', '// comment', '/* block */', '#include <glib.h>',
  '@decorator', '`code`', '```\ncode\n```', '$$x^2$$', '\\n\\t', '\\\\', 'git commit -m "fix: things"', 'a&&b||c',
].forEach((t) => add(t));

// Emoji and symbols.
[
  '\u{1f600}', '\u{1f600}\u{1f601}\u{1f602}', 'hi \u{1f44b}', '\u{1f468}\u200d\u{1f469}\u200d\u{1f467}\u200d\u{1f466}',
  '\u{1f1fa}\u{1f1f8}\u{1f1ef}\u{1f1f5}', '\u{1f44d}\u{1f3fd}', '1\ufe0f\u20e3', '\u2764\ufe0f', '\u{1f3f3}\ufe0f\u200d\u{1f308}',
  '\u{1faf8}', '\u{1fae8}', '\u2603', '\u00a9 \u00ae \u2122', '\u20ac100', '\u00a3\u00a5', '\u2192\u2190\u2191', '\u221e \u2211 \u222b',
  '\u2605\u2606', '\u266a\u266b', '\u{1d11e}', '\u2500\u2502\u250c', 'a\u{1f600}b', ' \u{1f600}', '\u{1f600} ',
].forEach((t) => add(t));

// Scripts.
[
  '\u4f60\u597d\uff0c\u4e16\u754c\uff01', '\u6211\u7231\u81ea\u7136\u8bed\u8a00\u5904\u7406\u3002',
  '\u65e5\u672c\u8a9e\u306e\u6587\u7ae0\u3067\u3059\u3002\u30ab\u30bf\u30ab\u30ca\u3082\u3002', '\u3053\u3093\u306b\u3061\u306f',
  '\ud55c\uad6d\uc5b4 \ubb38\uc7a5\uc785\ub2c8\ub2e4.', '\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645',
  '\u0627\u0644\u0633\u0651\u064e\u0644\u0627\u0645\u064f \u0639\u064e\u0644\u064e\u064a\u0652\u0643\u064f\u0645',
  '\u0633\u0644\u0627\u0645 \u062f\u0646\u06cc\u0627', '\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645 \u06a9\u062a\u0627\u0628\u200c\u0647\u0627',
  '\u0646\u0627\u0645\u0647\u200c\u0627\u06cc', '\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e',
  '\u0939\u093f\u0928\u094d\u0926\u0940 \u092d\u093e\u0937\u093e', '\u0915\u094d\u0937\u0924\u094d\u0930\u093f\u092f',
  '\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd', '\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35\u0e04\u0e23\u0e31\u0e1a',
  '\u0393\u03b5\u03b9\u03ac \u03c3\u03bf\u03c5 \u039a\u03cc\u03c3\u03bc\u03b5', '\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440!',
  '\u10d2\u10d0\u10db\u10d0\u10e0\u10ef\u10dd\u10d1\u10d0', '\u0532\u0561\u0580\u0587', '\u1200\u1208\u121d', '\u0b9a\u0bc6\u0ba9\u0bcd\u0ba9\u0bc8',
  '\u0d2e\u0d32\u0d2f\u0d3e\u0d33\u0d02', 'Stra\u00dfe \u00fcber \u00e4rger', 'caf\u00e9 na\u00efve r\u00e9sum\u00e9', '\u0141\u00f3d\u017a',
  '\u1ee8ng d\u1ee5ng Vi\u1ec7t', '\u01c5 \u01c8 \u01cb', '\u02b0\u02b2\u02e0', '\u16a0\u16a2\u16a6', '\u{10330}\u{10331}',
  'mixed English \u4e2d\u6587 and \u0627\u0644\u0639\u0631\u0628\u064a\u0629 text',
].forEach((t) => add(t));

// Combining marks and other categories.
[
  'e\u0301', 'cafe\u0301', 'a\u0308\u0304', ' e\u0301', '\u0301', 'Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349\u035a\u032f\u031e\u0320\u034dA\u036b\u0357\u0334\u0362\u0335\u031c\u0330\u0354L\u0368\u0367\u0369\u0358\u0320G\u0311\u0357\u030e\u0305\u035b\u0341\u0334\u033b\u0348\u034d\u0354\u0339O\u0342\u030c\u030c\u0358\u0328\u0335\u0339\u033b\u031d\u0333',
  'a\u20dd', '\u200b', 'a\u200db', 'a\u200cb', '\ufeffBOM', '\ue000\uf8ff', '\u{f0000}', '\u0378', '\u{e0041}\u{e0042}',
  '\u0903\u093e', '\u0bcd', 'A\u030a', '\u1100\u1161\u11a8', '\u{11f04}\u{11f05}', '\u{1e4d0}\u{1e4d1}', '\u{31350}\u{31351}',
  '\u{2ebf0}\u{2ebf1}', '\u{1b132}', '\u{1e030}', '\u{10efd}', '\u{1f7d9}', '\u0c5d', '\u0cf3', '\u{11b00}', '\u{1df25}',
].forEach((t) => add(t));

// The special token in each mode.
const specialTexts = [
  '<|endoftext|>', 'Hello<|endoftext|>World', 'a <|endoftext|> b', '<|endoftext|><|endoftext|>', ' <|endoftext|>',
  '<|endoftext|> ', 'x<|endoftext|>\n', '<|endoftext', 'endoftext|>', '<|endoftext|', '<|ENDOFTEXT|>', '<| endoftext |>',
  'doc one.<|endoftext|>doc two.<|endoftext|>', '<<|endoftext|>>', '\n\n<|endoftext|>\n\n',
];
for (const t of specialTexts) for (const m of ['text', 'allowed', 'error']) add(t, m);

// Long words (10,000 characters).
addRepeat('a', 10000);
addRepeat('ab', 5000);
addRepeat('\u4e00', 10000);
addRepeat('7', 10000);
addRepeat(' ', 10000);
addRepeat('\n', 10000);
addRepeat('!', 10000);
addRepeat('\u{1f600}', 10000);
addRepeat('e\u0301', 5000);
{
  let w = '';
  for (let i = 0; i < 10000; i++) w += pick('abcdefghijklmnopqrstuvwxyz');
  add(w);
  w = '';
  for (let i = 0; i < 10000; i++) w += pick('etaoinshrdlu') + (rand() < 0.3 ? pick('bcdfghjkmnpqvwxyz') : '');
  add(w.slice(0, 10000));
  w = '';
  for (let i = 0; i < 10000; i++) w += String.fromCodePoint(0x4e00 + Math.floor(rand() * 0x5000));
  add(w);
}

// Random strings drawn from pools of characters of every class.
const pools = [
  'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ',
  '0123456789',
  ' \t\n\r',
  '\'"!#$%&()*+,-./:;<=>?@[\\]^_`{|}~',
  '\u00e9\u00fc\u00df\u00f1\u00e7\u00c5\u00f8',
  '\u4e00\u4e8c\u4e09\u56db\u4e94\u6c34\u706b\u3042\u3044\u30a2\u30a4\ud55c\uae00',
  '\u0627\u0628\u062a\u062b\u062c\u0645\u0646\u06cc\u06a9\u064e\u0651',
  '\u0915\u0916\u0917\u093e\u093f\u094d\u0966',
  '\u00a0\u3000\u2003\u0085\u200b\u200c\u200d',
  '\u0301\u0308\u20dd\u0903',
  '\u00b2\u00bd\u2160\u0663',
];
const poolChars = pools.map((p) => Array.from(p));
for (let i = 0; i < 250; i++) {
  const len = 1 + Math.floor(rand() * (i < 200 ? 40 : 400));
  const mine = poolChars.filter(() => rand() < 0.5);
  if (mine.length === 0) mine.push(poolChars[0]);
  let s = '';
  for (let k = 0; k < len; k++) {
    if (rand() < 0.15) s += pick(["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", ' ', '  ', '\n', '<|endoftext|>']);
    else s += pick(pick(mine));
  }
  add(s, i % 5 === 0 ? 'allowed' : 'text');
}
// Random code points from the whole range (no surrogates, no noncharacters needed).
for (let i = 0; i < 60; i++) {
  let s = '';
  const len = 1 + Math.floor(rand() * 30);
  for (let k = 0; k < len; k++) {
    let cp;
    const r = rand();
    if (r < 0.3) cp = 0x20 + Math.floor(rand() * 0x60);
    else if (r < 0.7) cp = 0x80 + Math.floor(rand() * (0x3400 - 0x80));
    else if (r < 0.9) cp = 0x3400 + Math.floor(rand() * (0x10000 - 0x3400));
    else cp = 0x10000 + Math.floor(rand() * 0x30000);
    if (cp >= 0xd800 && cp <= 0xdfff) cp = 0x41;
    s += String.fromCodePoint(cp);
  }
  add(s);
}

function fnv1a(ids) {
  let h = 0xcbf29ce484222325n;
  for (const id of ids) {
    for (let k = 0; k < 4; k++) {
      h ^= BigInt((id >>> (8 * k)) & 0xff);
      h = (h * 0x100000001b3n) & 0xffffffffffffffffn;
    }
  }
  return h.toString(16).padStart(16, '0');
}

function shrink(rec) {
  if (rec.ids && rec.ids.length > 1000) {
    rec.ids_head = rec.ids.slice(0, 100);
    rec.n_ids = rec.ids.length;
    rec.ids_fnv1a = fnv1a(rec.ids);
    delete rec.ids;
  }
  return rec;
}

const out = [];
for (const c of cases) {
  const text = c.repeat !== undefined ? c.repeat.repeat(c.count) : c.text;
  const rec = c.repeat !== undefined ? { repeat: c.repeat, count: c.count } : { text };
  rec.mode = c.mode;
  if (c.mode === 'text') rec.ids = Array.from(enc.encode_ordinary(text));
  else if (c.mode === 'allowed') rec.ids = Array.from(enc.encode(text, 'all'));
  else {
    try {
      rec.ids = Array.from(enc.encode(text));
    } catch (e) {
      rec.error = true;
    }
  }
  out.push(shrink(rec));
}
enc.free();
process.stdout.write('[\n' + out.map((r) => JSON.stringify(r)).join(',\n') + '\n]\n');

// make-data-hashes.mjs: writes data-ids.json, the number of tokens and a 64-bit
// FNV-1a hash (over the ids as little-endian uint32) of tiktoken's gpt2 encoding
// of each data file, for the corpus test in tests/test-bpe.c. The files
// themselves are third-party data and stay out of the repository.
//
//   mkdir -p /tmp/tk && (cd /tmp/tk && npm install tiktoken)
//   TIKTOKEN_DIR=/tmp/tk/node_modules node tests/golden/bpe/make-data-hashes.mjs \
//       ../shared/data > tests/golden/bpe/data-ids.json
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';

const require = createRequire(process.env.TIKTOKEN_DIR
  ? process.env.TIKTOKEN_DIR.replace(/\/?$/, '/')
  : import.meta.url);
const { get_encoding } = require('tiktoken');
const enc = get_encoding('gpt2');

const dir = process.argv[2];
// The files whose SHA-256 the data directory's README pins.
const files = [
  'the-verdict.txt', 'tinyshakespeare.txt', 'instruction-data.json',
  'sms-spam-collection/SMSSpamCollection', 'gpt2/encoder.json', 'gpt2/vocab.bpe',
];

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

const out = [];
for (const f of files) {
  const text = readFileSync(`${dir}/${f}`, 'utf8');
  const ids = enc.encode_ordinary(text);
  out.push({ file: f, bytes: Buffer.byteLength(text), n_ids: ids.length, ids_fnv1a: fnv1a(ids) });
}
enc.free();
process.stdout.write('[\n' + out.map((r) => JSON.stringify(r)).join(',\n') + '\n]\n');

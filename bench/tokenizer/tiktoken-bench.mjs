// tiktoken-bench.mjs: encodes the benchmark corpus with tiktoken's gpt2 encoding
// (npm "tiktoken", its WASM build), single thread, and reports MB/s; writes the
// ids (little-endian uint32) so that the benchmark can check gptd's are identical.
// Throughput is given per second of wall-clock time and per second of the
// process's CPU time.
//
//   TIKTOKEN_DIR=/tmp/tk/node_modules node tiktoken-bench.mjs CORPUS IDS_OUT [RUNS]
import { createRequire } from 'node:module';
import { readFileSync, writeFileSync } from 'node:fs';

const require = createRequire(process.env.TIKTOKEN_DIR
  ? process.env.TIKTOKEN_DIR.replace(/\/?$/, '/')
  : import.meta.url);
const { get_encoding } = require('tiktoken');

const [corpus, idsOut, runsArg] = process.argv.slice(2);
const runs = Number(runsArg || 3);
const buf = readFileSync(corpus);
const text = buf.toString('utf8');
const enc = get_encoding('gpt2');
const rates = [];
const cpuRates = [];
let ids;
for (let r = 0; r < runs; r++) {
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  ids = enc.encode_ordinary(text);
  const t1 = process.hrtime.bigint();
  const c1 = process.cpuUsage(c0);
  rates.push(buf.length / 1e6 / (Number(t1 - t0) / 1e9));
  cpuRates.push(buf.length / 1e6 / ((c1.user + c1.system) / 1e6));
}
rates.sort((a, b) => a - b);
cpuRates.sort((a, b) => a - b);
writeFileSync(idsOut, Buffer.from(ids.buffer, ids.byteOffset, ids.byteLength));
enc.free();
console.log(`tiktoken_mb_per_s ${rates[Math.floor(rates.length / 2)].toFixed(2)}`);
console.log(`tiktoken_mb_per_cpu_s ${cpuRates[Math.floor(cpuRates.length / 2)].toFixed(2)}`);
console.log(`tiktoken_runs ${rates.map((x) => x.toFixed(2)).join(',')}`);
console.log(`tiktoken_tokens ${ids.length}`);

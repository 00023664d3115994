/**
 * `npm run bench`: runs the benchmark suites, prints tables, writes bench/results/<suite>.json.
 *   npm run bench                      all suites
 *   npm run bench -- --only codec      one suite
 *   npm run bench -- --keep            keep generated models (under .bench/)
 *   npm run bench -- --repeat N        runs per measurement (median reported)
 *   npm run bench -- --threads N       onnxruntime intra-op threads for latency (default 1)
 * Figures are ratios against baselines measured in the same run; absolute numbers depend on the
 * machine (say which when you quote them).
 */
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { benchCodec } from './codec.js';
import { benchCompile } from './compile.js';
import { benchMerge } from './merge.js';
import { benchQuantFidelity } from './quant-fidelity.js';
import { writeResults } from './util.js';

const args = process.argv.slice(2);
const only = args.includes('--only') ? args[args.indexOf('--only') + 1] : undefined;
const keep = args.includes('--keep');
const repeat = args.includes('--repeat') ? Number(args[args.indexOf('--repeat') + 1]) : 3;
const dir = join(process.cwd(), '.bench');
const threads = args.includes('--threads') ? Number(args[args.indexOf('--threads') + 1]) : 1;

const SUITES: Record<string, () => unknown> = {
  // 5 interleaved rounds by default: this machine's I/O timings vary a lot from run to run.
  codec: () => benchCodec({ dir, keep, repeat: args.includes('--repeat') ? repeat : 5 }),
  compile: () => benchCompile({ dir, repeat: Math.max(repeat, 5) }),
  // ~0.95B parameters (3.6 GiB fp32): --small for a quick 0.1B run.
  merge: () =>
    args.includes('--small')
      ? benchMerge({ dir, keep, layers: 4, hidden: 1024, intermediate: 2816, vocab: 8000, rank: 16 })
      : benchMerge({ dir, keep, layers: 16, hidden: 2048, intermediate: 5632, vocab: 32000, rank: 16 }),
  // Perplexity of models/lm after each weight quantization, vs onnxruntime's own quantizer.
  'quant-fidelity': () => benchQuantFidelity({ dir, keep, repeat, threads }),
};

if (only !== undefined && !(only in SUITES)) {
  console.error(`unknown suite '${only}'; suites: ${Object.keys(SUITES).join(', ')}`);
  process.exit(2);
}
console.log(`peftc bench on ${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB RAM, node ${process.version}`);
for (const [name, run] of Object.entries(SUITES)) {
  if (only && only !== name) continue;
  const result = await run();
  const file = writeResults(name, { suite: name, date: new Date().toISOString(), machine: { cpus: cpus().length, cpu: cpus()[0]?.model, ramGiB: totalmem() / 2 ** 30, node: process.version }, result });
  console.log(`(${name}: results in ${file})`);
}

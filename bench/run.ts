/**
 * `npm run bench`: runs the benchmark suites, prints tables, writes bench/results/<suite>.json.
 *   npm run bench                      all suites
 *   npm run bench -- --only codec      one suite
 *   npm run bench -- --keep            keep generated models (under .bench/)
 *   npm run bench -- --repeat N        runs per measurement (median reported)
 *   npm run bench -- --threads N       onnxruntime intra-op threads for latency (default 1)
 *   npm run bench -- --workers N       quant-speed: quantization threads (default one per core)
 * Figures are ratios against baselines measured in the same run; absolute numbers depend on the
 * machine (say which when you quote them).
 */
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { writeResults } from './util.js';

const args = process.argv.slice(2);
const only = args.includes('--only') ? args[args.indexOf('--only') + 1] : undefined;
const keep = args.includes('--keep');
const repeat = args.includes('--repeat') ? Number(args[args.indexOf('--repeat') + 1]) : 3;
const dir = join(process.cwd(), '.bench');
const threads = args.includes('--threads') ? Number(args[args.indexOf('--threads') + 1]) : 1;
const workers = args.includes('--workers') ? Number(args[args.indexOf('--workers') + 1]) : undefined;

// ~0.95B parameters (3.6 GiB fp32) for merge and quant-speed; --small for a quick 0.1B run.
const llm = args.includes('--small') ? { layers: 4, hidden: 1024, intermediate: 2816, vocab: 8000 } : { layers: 16, hidden: 2048, intermediate: 5632, vocab: 32000 };

// Suites are imported when run, so one that needs no onnxruntime-node runs without it.
const SUITES: Record<string, () => unknown> = {
  // 5 interleaved rounds by default: this machine's I/O timings vary a lot from run to run.
  codec: async () => (await import('./codec.js')).benchCodec({ dir, keep, repeat: args.includes('--repeat') ? repeat : 5 }),
  compile: async () => (await import('./compile.js')).benchCompile({ dir, repeat: Math.max(repeat, 5) }),
  merge: async () => (await import('./merge.js')).benchMerge({ dir, keep, ...llm, rank: 16, repeat }),
  // Perplexity of models/lm after each weight quantization, vs onnxruntime's own quantizer.
  'quant-fidelity': async () => (await import('./quant-fidelity.js')).benchQuantFidelity({ dir, keep, repeat, threads }),
  // int4 quantization time and peak RSS vs onnxruntime's Python quantizer (where installed).
  'quant-speed': async () => (await import('./quant-speed.js')).benchQuantSpeed({ dir, keep, repeat: args.includes('--repeat') ? repeat : 1, ...llm, ...(workers !== undefined ? { workers } : {}) }),
  fusion: async () => (await import('./fusion.js')).benchFusion({}),
  int8: async () => (await import('./int8.js')).benchInt8({ dir, repeat, threads, small: args.includes('--small') }),
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

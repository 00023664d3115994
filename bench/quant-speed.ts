/**
 * Weight-quantization speed (issue #5): a generated Llama-shaped model of ~1B parameters (fp32,
 * external data) quantized to int4 (block 32, asymmetric) by `peftc compile --quant int4`, end to
 * end (load, quantize on worker threads, save), each run in its own process for its own peak RSS;
 * next to onnxruntime's Python MatMulNBitsQuantizer on the same file in the same run, where a
 * python3 with onnxruntime is on the PATH (bench/ort_quantize.py). Where it is missing the table
 * says so: the comparison is then not made, never assumed.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, statSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DataType } from '../src/ir/dtype.js';
import { Tensor } from '../src/ir/tensor.js';
import { OrtSession } from '../src/runtime/ort.js';
import { fmt, MiB, printTable, runTask, summarize, syncDisks, type TaskResult } from './util.js';

const here = dirname(fileURLToPath(import.meta.url));
const ORT_SCRIPT = join(here, '..', '..', 'bench', 'ort_quantize.py');

interface OrtRun {
  ms: number;
  peakRssMiB: number;
  loadMs: number;
  quantizeMs: number;
  saveMs: number;
  onnxruntime: string;
}

function ortAvailable(python: string): string | undefined {
  try {
    return execFileSync(python, ['-c', 'import onnx, onnxruntime; from onnxruntime.quantization import matmul_nbits_quantizer; print(onnxruntime.__version__)'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return undefined;
  }
}

function runOrt(python: string, model: string, out: string, block: number): OrtRun {
  const text = execFileSync(python, [ORT_SCRIPT, model, out, '--block', String(block)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20 });
  return JSON.parse(text.trim().split('\n').at(-1)!) as OrtRun;
}

/**
 * onnxruntime CPU latency of one forward pass over input_ids [1, 8] (median of `runs` after 2
 * warm-up runs), with one intra-op thread per core. At batch 1 every weight is read once per
 * call, so the pass is bound by memory bandwidth and 4-bit weights should pay off.
 */
async function latency(model: string, runs: number): Promise<{ ms: number; createMs: number }> {
  const t0 = performance.now();
  const session = await OrtSession.create(model, { intraOpThreads: cpus().length });
  const createMs = performance.now() - t0;
  try {
    const ids = Tensor.fromTypedArray('input_ids', DataType.INT64, [1, 8], BigInt64Array.from({ length: 8 }, (_, i) => BigInt(i * 7 + 1)));
    for (let i = 0; i < 2; i++) await session.run({ input_ids: ids });
    const times: number[] = [];
    for (let i = 0; i < runs; i++) {
      const t = performance.now();
      await session.run({ input_ids: ids });
      times.push(performance.now() - t);
    }
    return { ms: times.sort((a, b) => a - b)[Math.floor(runs / 2)]!, createMs };
  } finally {
    await session.release();
  }
}


export async function benchQuantSpeed(opts: {
  dir: string;
  keep: boolean;
  repeat: number;
  layers: number;
  hidden: number;
  intermediate: number;
  vocab: number;
  /** Quantization threads (compile --workers); default one per core. More threads than cores shows their memory on a small machine. */
  workers?: number;
}): Promise<unknown> {
  const threads = opts.workers !== undefined ? { workers: opts.workers } : {};
  const dir = join(opts.dir, 'quant-speed');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const gen = runTask('generate-llm', { dir, layers: opts.layers, hidden: opts.hidden, intermediate: opts.intermediate, vocab: opts.vocab, rank: 1 });
  const model = join(dir, 'base.onnx');
  const bytes = statSync(`${model}.data`).size;
  const params = Number(gen.info.params);
  console.log(`quant-speed: generated ${fmt(params / 1e9, 2)}B parameters (${fmt(bytes / MiB, 0)} MiB fp32) in ${fmt(gen.ms / 1000, 1)} s; ${cpus().length} cores`);
  const block = 32;
  const repeat = Math.max(1, opts.repeat);
  const python = process.env.PEFTC_BENCH_PYTHON ?? 'python3';
  const ortVersion = ortAvailable(python);
  if (!ortVersion) {
    console.error(`quant-speed: NO BASELINE: '${python}' has no onnxruntime/onnx Python package here, so onnxruntime's MatMulNBitsQuantizer was not measured (set PEFTC_BENCH_PYTHON to a python3 that has them)`);
  }
  // Interleaved rounds, each run after a sync: the generated model's 3.6 GB of dirty pages (and
  // each run's output) would otherwise be written back during whichever run comes next.
  const rounds: Record<'rtn' | 'mse', TaskResult[]> = { rtn: [], mse: [] };
  const ortRuns: OrtRun[] = [];
  for (let r = 0; r < repeat; r++) {
    for (const method of ['rtn', 'mse'] as const) {
      syncDisks();
      rounds[method].push(runTask('quantize', { model, out: join(dir, `peftc-${method}.onnx`), method, blockSize: block, ...threads }));
    }
    if (ortVersion) {
      syncDisks();
      ortRuns.push(runOrt(python, model, join(dir, 'ort.onnx'), block));
    }
    console.log(
      `quant-speed: round ${r + 1}: peftc rtn ${fmt(rounds.rtn[r]!.ms / 1000, 2)} s, mse ${fmt(rounds.mse[r]!.ms / 1000, 2)} s` +
        (ortVersion ? `, onnxruntime ${fmt(ortRuns[r]!.ms / 1000, 2)} s` : ''),
    );
  }
  const peftc: Record<string, TaskResult> = {};
  for (const method of ['rtn', 'mse'] as const) peftc[method] = summarize(rounds[method]);
  const ort: OrtRun | undefined = ortVersion ? summarize(ortRuns) : undefined;
  const rel = (ms: number) => (ort ? fmt(ort.ms / ms, 2) : 'n/a');
  printTable(
    `quant-speed: int4, block ${block}, asymmetric, ${fmt(params / 1e9, 2)}B parameters (${fmt(bytes / MiB, 0)} MiB fp32), ${cpus().length} cores, median of ${repeat} interleaved rounds, sync before each run`,
    ['quantizer (load + quantize + save)', 's', 'speed-up vs onnxruntime', 'peak RSS MiB'],
    [
      ...(ort ? [[`onnxruntime ${ortVersion} MatMulNBitsQuantizer (Python)`, fmt(ort.ms / 1000, 2), '1.00', fmt(ort.peakRssMiB, 0)]] : [['onnxruntime MatMulNBitsQuantizer (Python)', 'not measured', '', '']]),
      ['peftc compile --quant int4 --quant-method rtn', fmt(peftc.rtn!.ms / 1000, 2), rel(peftc.rtn!.ms), fmt(peftc.rtn!.peakRssMiB, 0)],
      ['peftc compile --quant int4 --quant-method mse (default)', fmt(peftc.mse!.ms / 1000, 2), rel(peftc.mse!.ms), fmt(peftc.mse!.peakRssMiB, 0)],
    ],
  );
  if (ort) {
    const speed = ort.ms / peftc.rtn!.ms;
    console.log(
      `goal: at least 5x faster than onnxruntime's quantizer with lower peak memory: RTN ${fmt(speed, 2)}x (${speed >= 5 ? 'met' : 'NOT met'}), ` +
        `peak RSS ${fmt(peftc.rtn!.peakRssMiB, 0)} vs ${fmt(ort.peakRssMiB, 0)} MiB (${peftc.rtn!.peakRssMiB < ort.peakRssMiB ? 'lower' : 'NOT lower'}); ` +
        `onnxruntime's time: load ${fmt(ort.loadMs / 1000, 1)} s, quantize ${fmt(ort.quantizeMs / 1000, 1)} s, save ${fmt(ort.saveMs / 1000, 1)} s`,
    );
  }
  // Issue 15: peak memory bounded whatever the core count (parts in flight share a budget, at most
  // 16 threads, quantized weights spilled to a temporary file until written; passes/weight-quant.ts).
  const worst = Math.max(peftc.rtn!.peakRssMiB, peftc.mse!.peakRssMiB);
  console.log(`goal: peak RSS under 1 GiB on ${cpus().length} cores${opts.workers !== undefined ? `, ${opts.workers} worker threads` : ''}: ${fmt(worst, 0)} MiB (${worst < 1024 ? 'met' : 'NOT met'})`);
  // accuracy_level 4 lets onnxruntime quantize the activations to int8 and use integer dot products.
  runTask('quantize', { model, out: join(dir, 'peftc-rtn-acc4.onnx'), method: 'rtn', blockSize: block, accuracyLevel: 4 });
  const lat: Record<string, { ms: number; createMs: number; fileMiB: number }> = {};
  for (const [label, file] of [
    ['fp32', model],
    ['int4 rtn (MatMulNBits)', join(dir, 'peftc-rtn.onnx')],
    ['int4 mse (MatMulNBits)', join(dir, 'peftc-mse.onnx')],
    ['int4 rtn, accuracy_level 4', join(dir, 'peftc-rtn-acc4.onnx')],
  ] as const) {
    const size = statSync(file).size + (statSync(`${file}.data`, { throwIfNoEntry: false })?.size ?? 0);
    lat[label] = { ...(await latency(file, 20)), fileMiB: size / MiB };
  }
  printTable(
    `quant-speed: onnxruntime-node CPU latency, input_ids [1, 8], ${cpus().length} intra-op threads, median of 20`,
    ['model', 'file MiB', 'session create s', 'ms per call', 'x fp32'],
    Object.entries(lat).map(([k, v]) => [k, fmt(v.fileMiB, 0), fmt(v.createMs / 1000, 2), fmt(v.ms, 1), fmt(lat.fp32!.ms / v.ms, 2)]),
  );
  if (!opts.keep) rmSync(dir, { recursive: true, force: true });
  return { params, bytes, cores: cpus().length, workers: opts.workers ?? 'one per core', block, method: 'interleaved rounds, sync before each run, median', peftc, ort: ort ?? null, ortMissing: ort ? undefined : `${python} has no onnxruntime`, latency: lat };
}

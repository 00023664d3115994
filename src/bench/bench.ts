/**
 * `peftc bench MODEL...`: session creation, latency percentiles after warm-up, throughput, peak
 * RSS and artifact size of each model, each measured in a child process of its own. Models are
 * measured side by side in interleaved rounds (the order rotates every round, so drift in the
 * machine's load falls on all alike), with min/median/max of the per-round p50 so the noise is
 * visible, and ratios to the first model measured in the same run.
 */
import { execFile } from 'node:child_process';
import { availableParallelism, cpus, totalmem } from 'node:os';

import { builtScript } from '../built-script.js';
import { PeftcError } from '../errors.js';
import type { LatencyStats } from '../report/results.js';
import { ORT_VERSION } from '../version.js';
import type { ChildArgs, ChildResult } from './child.js';
import type { ExecutionProvider } from '../runtime/ort.js';
import { isTfjsArtifact, tfjsDims } from '../../targets/tfjs/bench.js';


export interface BenchOptions {
  /** Timed calls per round (default 50). */
  runs?: number;
  /** Untimed calls first (default 5). */
  warmup?: number;
  /** Rounds: every model once per round, each in a fresh process (default 3). */
  rounds?: number;
  /** onnxruntime intra-op threads (default 1). */
  threads?: number;
  inputs?: string;
  seed?: number;
  dims?: Record<string, number>;
  /** TF.js backend for TF.js artifacts among the models (default wasm). */
  tfjsBackend?: 'cpu' | 'wasm';
  /** onnxruntime execution provider for the ONNX models (default cpu). */
  ep?: ExecutionProvider;
  onProgress?: (done: number, total: number, what: string) => void;
}

export interface ModelBench {
  model: string;
  artifactBytes: number;
  batch: number;
  latency: LatencyStats;
  /** Session creation: median, min, max over rounds, ms. */
  sessionMs: number;
  sessionMinMs: number;
  sessionMaxMs: number;
  peakRssMiB: number;
  /** p50 / p50 of the first model. */
  latencyRatio: number;
  sizeRatio: number;
  /** Per-round p50, ms, in round order. */
  roundsP50Ms: number[];
}

export interface BenchResults {
  kind: 'peftc-bench';
  date: string;
  machine: { cpus: number; cpuModel: string; memGiB: number; node: string; onnxruntime: string };
  settings: { rounds: number; runs: number; warmup: number; threads: number; ep?: ExecutionProvider };
  models: ModelBench[];
}

export function machineFacts(): BenchResults['machine'] {
  return { cpus: availableParallelism(), cpuModel: cpus()[0]?.model.trim() ?? 'unknown', memGiB: Math.round(totalmem() / 2 ** 30), node: process.version, onnxruntime: ORT_VERSION };
}

/**
 * One measurement in a child process: onnxruntime for ONNX models, tfjs-converter for TF.js
 * artifacts (their inputs generated from `reference`, the first ONNX model benched with them).
 */
function runChild(args: ChildArgs, tfjs?: { reference: string; backend: 'cpu' | 'wasm' }): Promise<ChildResult> {
  const script = tfjs ? builtScript('targets/tfjs/bench-child.js') : builtScript('src/bench/child.js');
  const payload = tfjs
    ? { model: args.model, reference: tfjs.reference, ...(args.inputs ? { inputs: args.inputs } : {}), seed: args.seed, runs: args.runs, warmup: args.warmup, backend: tfjs.backend }
    : args;
  return new Promise((resolvePromise, reject) => {
    execFile(process.execPath, [script, JSON.stringify(payload)], { maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      if (err) {
        reject(new PeftcError(`${args.model}: benchmark run failed: ${stderr.trim() || err.message}`));
        return;
      }
      resolvePromise(JSON.parse(stdout.trim().split('\n').at(-1)!) as ChildResult);
    });
  });
}

const percentile = (sorted: readonly number[], p: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
const median = (xs: readonly number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

export async function benchModels(models: readonly string[], options: BenchOptions = {}): Promise<BenchResults> {
  if (!models.length) throw new PeftcError('bench: name at least one model');
  const rounds = options.rounds ?? 3;
  const runs = options.runs ?? 50;
  const warmup = options.warmup ?? 5;
  const threads = options.threads ?? 1;
  for (const [k, v] of Object.entries({ rounds, runs, threads })) if (!(Number.isInteger(v) && v >= 1)) throw new PeftcError(`bench: --${k} takes a whole number of 1 or more (got ${v})`);
  if (!(Number.isInteger(warmup) && warmup >= 0)) throw new PeftcError(`bench: --warmup takes a whole number of 0 or more (got ${warmup})`);
  const per: ChildResult[][] = models.map(() => []);
  // TF.js artifacts are fed the inputs of the first ONNX model, at the sizes they were compiled for.
  const tfjs = models.map((m) => isTfjsArtifact(m));
  const reference = models.find((_, i) => !tfjs[i]);
  if (tfjs.some(Boolean) && !reference) throw new PeftcError('bench: a TF.js artifact needs an ONNX model beside it (its inputs are generated from that model)');
  const dims = { ...(tfjs.some(Boolean) ? tfjsDims(models[tfjs.indexOf(true)]!, reference!) : {}), ...options.dims };
  let done = 0;
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < models.length; i++) {
      const m = (i + r) % models.length;
      options.onProgress?.(done, rounds * models.length, `round ${r + 1}: ${models[m]}`);
      per[m]!.push(
        await runChild(
          {
            model: models[m]!,
            ...(options.inputs ? { inputs: options.inputs } : {}),
            seed: options.seed ?? 0,
            ...(Object.keys(dims).length ? { dims } : {}),
            runs,
            warmup,
            threads,
            ...(options.ep && options.ep !== 'cpu' ? { ep: options.ep } : {}),
          },
          tfjs[m] ? { reference: reference!, backend: options.tfjsBackend ?? 'wasm' } : undefined,
        ),
      );
      done++;
    }
  }
  options.onProgress?.(done, rounds * models.length, 'done');
  const stats = per.map((results, m) => {
    const roundP50 = results.map((x) => percentile([...x.latenciesMs].sort((a, b) => a - b), 50));
    // Percentiles of the round whose p50 is the median one: a real distribution, not a mix.
    const mid = results[roundP50.indexOf([...roundP50].sort((a, b) => a - b)[Math.floor(roundP50.length / 2)]!)]!;
    const sorted = [...mid.latenciesMs].sort((a, b) => a - b);
    const p50 = percentile(sorted, 50);
    const sessions = results.map((x) => x.sessionMs);
    return {
      model: models[m]!,
      artifactBytes: results[0]!.artifactBytes,
      batch: results[0]!.batch,
      latency: { p50Ms: p50, p90Ms: percentile(sorted, 90), p99Ms: percentile(sorted, 99), p50MinMs: Math.min(...roundP50), p50MaxMs: Math.max(...roundP50), throughput: (1000 / p50) * results[0]!.batch },
      sessionMs: median(sessions),
      sessionMinMs: Math.min(...sessions),
      sessionMaxMs: Math.max(...sessions),
      peakRssMiB: Math.max(...results.map((x) => x.peakRssMiB)),
      roundsP50Ms: roundP50,
    };
  });
  const base = stats[0]!;
  return {
    kind: 'peftc-bench',
    date: new Date().toISOString(),
    machine: machineFacts(),
    settings: { rounds, runs, warmup, threads, ...(options.ep && options.ep !== 'cpu' ? { ep: options.ep } : {}) },
    models: stats.map((s) => ({ ...s, latencyRatio: s.latency.p50Ms / base.latency.p50Ms, sizeRatio: s.artifactBytes / base.artifactBytes })),
  };
}

/** A printed table: one row per model, ratios to the first. */
export function renderBench(r: BenchResults): string {
  const header = ['model', 'size', 'x size', 'session ms', 'p50 ms', 'p50 min-max', 'p90 ms', 'p99 ms', 'x p50', 'samples/s', 'peak RSS MiB'];
  const rows = r.models.map((m) => [
    m.model,
    formatSize(m.artifactBytes),
    m.sizeRatio.toFixed(2),
    m.sessionMs.toFixed(1),
    m.latency.p50Ms.toFixed(3),
    `${m.latency.p50MinMs.toFixed(3)}-${m.latency.p50MaxMs.toFixed(3)}`,
    m.latency.p90Ms.toFixed(3),
    m.latency.p99Ms.toFixed(3),
    m.latencyRatio.toFixed(2),
    m.latency.throughput.toFixed(1),
    m.peakRssMiB.toFixed(0),
  ]);
  const s = r.settings;
  return [
    table(header, rows),
    `${s.rounds} interleaved round(s) x ${s.runs} timed run(s) after ${s.warmup} warm-up, ${s.threads} thread(s)${s.ep ? `, onnxruntime ${s.ep} provider` : ''}; ratios against the first model; ${r.machine.cpus} x ${r.machine.cpuModel}, onnxruntime-node ${r.machine.onnxruntime}`,
  ].join('\n');
}

export function formatSize(n: number): string {
  return n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(2)} MiB` : `${(n / 1024).toFixed(1)} KiB`;
}

export function table(header: string[], rows: string[][]): string {
  const cells = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

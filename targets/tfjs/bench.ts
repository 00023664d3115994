/**
 * Timing a TF.js artifact beside onnxruntime, for reports and for `peftc bench`:
 *
 *  - `measureTfjsArtifact`: one measurement in the shape of src/bench/child.ts's ChildResult
 *    (load time as "session" time, per-call latencies after warm-up, peak RSS, artifact bytes),
 *    run by bench-child.ts in a process of its own so bench can interleave it with onnxruntime
 *    children;
 *  - `compareWithOnnxruntime`: the same feed through onnxruntime-node and the TF.js artifact on
 *    each backend asked for, in this process, as a small table (a report, not a test).
 *
 * Feeds: generated from the ONNX reference model exactly as bench's onnxruntime children generate
 * them (same seed, the artifact's static sizes for the reference's symbolic dimensions), or given.
 */
import { readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { loadModel } from '../../src/onnx/io.js';
import type { Tensor } from '../../src/ir/tensor.js';
import { shapeOf } from '../../src/ir/types.js';
import { OrtSession } from '../../src/runtime/ort.js';
import { inputDataFor } from '../../src/verify/verify.js';
import { PeftcError } from '../../src/errors.js';
import { modelJsonPath, readModelJson } from './model-json.js';
import type { TfjsBackend } from './runner.js';

// runner.js pulls in tfjs-core: loaded only when an artifact is actually run
const runnerModule = () => import('./runner.js');

/** Whether `path` is a TF.js artifact (a folder with model.json, or a model.json file). */
export function isTfjsArtifact(path: string): boolean {
  try {
    const s = statSync(path);
    if (s.isDirectory()) return readdirSync(path).includes('model.json');
    return path.endsWith('.json');
  } catch {
    return false;
  }
}

/** model.json plus every shard it names. */
export function tfjsArtifactBytes(path: string): number {
  const file = modelJsonPath(path);
  const json = readModelJson(file);
  return statSync(file).size + json.weightsManifest.flatMap((g) => g.paths).reduce((n, p) => n + statSync(join(dirname(file), p)).size, 0);
}

/**
 * The sizes the artifact was compiled for, by the reference model's symbolic dimension names
 * (`{batch: 1, seq: 128}`): pass them as bench's `dims` so onnxruntime runs the same shapes.
 */
export function tfjsDims(artifact: string, reference: string): Record<string, number> {
  const info = readModelJson(artifact).userDefinedMetadata.peftc;
  const model = loadModel(reference);
  const dims: Record<string, number> = {};
  for (const v of model.graph.inputs) {
    const fixed = info.inputs.find((i) => i.name === v.name)?.shape;
    const s = shapeOf(v.type);
    if (!fixed || !s) continue;
    s.forEach((d, i) => {
      if (typeof d === 'string' && fixed[i] !== undefined) dims[d] = fixed[i]!;
    });
  }
  return dims;
}

/** One feed for `reference`'s inputs at the artifact's sizes (seeded like bench's children). */
export function feedFor(artifact: string, reference: string, options: { inputs?: string; seed?: number } = {}): Record<string, Tensor> {
  const model = loadModel(reference);
  const data = inputDataFor(model, { ...(options.inputs ? { inputs: options.inputs } : {}), seed: options.seed ?? 0, samples: 1, dims: tfjsDims(artifact, reference) });
  return data.feed(0);
}

export interface TfjsMeasureArgs {
  /** The TF.js artifact (folder or model.json). */
  model: string;
  /** The ONNX model whose inputs are generated (or matched to --inputs data). */
  reference: string;
  inputs?: string;
  seed: number;
  runs: number;
  warmup: number;
  backend: TfjsBackend;
}

/** What src/bench/child.ts prints for an onnxruntime model, for a TF.js artifact. */
export interface TfjsMeasurement {
  sessionMs: number;
  latenciesMs: number[];
  batch: number;
  peakRssMiB: number;
  artifactBytes: number;
  backend: TfjsBackend;
}

export async function measureTfjsArtifact(args: TfjsMeasureArgs): Promise<TfjsMeasurement> {
  const feed = feedFor(args.model, args.reference, { ...(args.inputs ? { inputs: args.inputs } : {}), seed: args.seed });
  const first = Object.values(feed)[0];
  const t0 = performance.now();
  const runner = await (await runnerModule()).TfjsRunner.open(args.model, args.backend);
  const sessionMs = performance.now() - t0;
  try {
    for (let i = 0; i < args.warmup; i++) await runner.run(feed);
    const latenciesMs: number[] = [];
    for (let i = 0; i < args.runs; i++) {
      const t = performance.now();
      await runner.run(feed);
      latenciesMs.push(performance.now() - t);
    }
    return { sessionMs, latenciesMs, batch: first && first.dims.length ? first.dims[0]! : 1, peakRssMiB: process.resourceUsage().maxRSS / 1024, artifactBytes: tfjsArtifactBytes(args.model), backend: args.backend };
  } finally {
    await runner.release();
  }
}

export interface LatencyRow {
  runtime: string;
  /** Open/load time, ms. */
  loadMs: number;
  p50Ms: number;
  minMs: number;
  maxMs: number;
  /** p50 / onnxruntime's p50. */
  ratio: number;
  /** Largest |tfjs - onnxruntime| over the outputs of the timed feed. */
  maxAbsDiff: number;
}

const median = (xs: readonly number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/**
 * onnxruntime-node on `onnx` and the TF.js artifact on each backend, same feed, in this process:
 * load time, median/min/max latency over `runs` calls after `warmup`, and the largest output
 * difference (so a fast wrong artifact shows).
 */
export async function compareWithOnnxruntime(
  onnx: string,
  artifact: string,
  options: { backends?: TfjsBackend[]; runs?: number; warmup?: number; threads?: number; seed?: number; inputs?: string } = {},
): Promise<LatencyRow[]> {
  const runs = options.runs ?? 20;
  const warmup = options.warmup ?? 3;
  if (!(runs >= 1)) throw new PeftcError('compareWithOnnxruntime: runs must be at least 1');
  const feed = feedFor(artifact, onnx, { ...(options.inputs ? { inputs: options.inputs } : {}), seed: options.seed ?? 0 });
  const time = async (open: () => Promise<{ run(f: Record<string, Tensor>): Promise<Record<string, Tensor>>; release(): Promise<void> }>) => {
    const t0 = performance.now();
    const s = await open();
    const loadMs = performance.now() - t0;
    try {
      let out: Record<string, Tensor> = {};
      for (let i = 0; i < warmup; i++) out = await s.run(feed);
      const lat: number[] = [];
      for (let i = 0; i < runs; i++) {
        const t = performance.now();
        out = await s.run(feed);
        lat.push(performance.now() - t);
      }
      return { loadMs, lat, out };
    } finally {
      await s.release();
    }
  };
  const ort = await time(() => OrtSession.create(onnx, { intraOpThreads: options.threads ?? 1 }));
  const base = median(ort.lat);
  const rows: LatencyRow[] = [{ runtime: `onnxruntime-node (${options.threads ?? 1} thread(s))`, loadMs: ort.loadMs, p50Ms: base, minMs: Math.min(...ort.lat), maxMs: Math.max(...ort.lat), ratio: 1, maxAbsDiff: 0 }];
  for (const backend of options.backends ?? ['cpu', 'wasm']) {
    const t = await time(async () => (await runnerModule()).TfjsRunner.open(artifact, backend));
    let diff = 0;
    for (const [k, r] of Object.entries(ort.out)) {
      const a = r.toTypedArray();
      const b = t.out[k]!.toTypedArray();
      for (let i = 0; i < a.length; i++) diff = Math.max(diff, Math.abs(Number(a[i]) - Number(b[i])));
    }
    const p50 = median(t.lat);
    rows.push({ runtime: `TF.js ${backend} backend`, loadMs: t.loadMs, p50Ms: p50, minMs: Math.min(...t.lat), maxMs: Math.max(...t.lat), ratio: p50 / base, maxAbsDiff: diff });
  }
  return rows;
}

/** The rows as a printed table. */
export function renderLatency(rows: readonly LatencyRow[]): string {
  const head = ['runtime', 'load ms', 'p50 ms', 'min-max ms', 'x onnxruntime', 'max |diff|'];
  const body = rows.map((r) => [r.runtime, r.loadMs.toFixed(1), r.p50Ms.toFixed(2), `${r.minMs.toFixed(2)}-${r.maxMs.toFixed(2)}`, r.ratio.toFixed(2), r.maxAbsDiff.toExponential(2)]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  return [head, ...body].map((cells) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ')).join('\n');
}

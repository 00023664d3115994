/**
 * Activation statistics over calibration data, streamed: the model runs in onnxruntime-node with
 * the requested values listed as extra graph outputs (only while the session loads; the model is
 * restored exactly as given, as src/quant/calibration.ts does), and every fetched activation is
 * folded into its fixed-size statistics (src/calibration/histogram.ts) and dropped before the
 * next group is fetched. Memory: the statistics (bins x 8 bytes per value, plus K floats per
 * channel statistic), plus at most `budgetBytes` of activations alive at once: independent of
 * the number of calibration samples.
 *
 * Values are fetched in groups sized from the bytes each took on the first run (the first run
 * fetches them a few at a time), so a run's activations never all sit in memory together.
 */
import { availableParallelism } from 'node:os';
import { PeftcError } from '../errors.js';
import { DataType, dtypeName, float16BitsToFloat32 } from '../ir/dtype.js';
import type { Value } from '../ir/graph.js';
import type { Model } from '../ir/model.js';
import type { Tensor } from '../ir/tensor.js';
import { tensorType } from '../ir/types.js';
import { progress } from '../progress.js';
import type { InputData } from '../runtime/input-data.js';
import { OrtSession } from '../runtime/ort.js';
import { ChannelAbsMax, DEFAULT_BINS, StreamingHistogram } from './histogram.js';

export interface StatRequest {
  /** A value of the main graph (a node output or a graph input). */
  name: string;
  /** Keep a histogram (and min/max); default true. */
  histogram?: boolean;
  /** Also keep max |x| per channel of the last axis, which has this size. */
  channels?: number;
}

export interface CollectOptions {
  bins?: number;
  /** Activation bytes alive at once at most (default 256 MiB; a single activation may exceed it). */
  budgetBytes?: number;
  /** Use only the first `maxRuns` runs of the data. */
  maxRuns?: number;
  /** onnxruntime intra-op threads (default: one per core). */
  threads?: number;
  log?: (message: string) => void;
  /** Draw a progress bar on a terminal (default true). */
  progress?: boolean;
  /** Label for messages and the progress bar. */
  label?: string;
}

export interface CollectedStats {
  histograms: Map<string, StreamingHistogram>;
  channels: Map<string, ChannelAbsMax>;
  runs: number;
  samples: number;
  /** onnxruntime runs (runs x groups). */
  sessionRuns: number;
  /** Bytes the statistics hold (independent of the samples). */
  statBytes: number;
  /** Largest activation bytes alive at once while folding. */
  peakActivationBytes: number;
  /** Activation bytes folded into the statistics in all (what keeping them would have cost). */
  bytesSeen: number;
  ms: number;
}

const DEFAULT_BUDGET = 256 << 20;
const FIRST_RUN_GROUP = 16;

let half: Float32Array | undefined;
const halfTable = () => (half ??= Float32Array.from({ length: 65536 }, (_, i) => float16BitsToFloat32(i)));

function floatValues(t: Tensor, name: string): Float32Array {
  if (t.dtype === DataType.FLOAT) return t.toTypedArray<Float32Array>();
  if (t.dtype === DataType.FLOAT16) {
    const bits = t.toTypedArray<Uint16Array>();
    const table = halfTable();
    return Float32Array.from(bits, (b) => table[b]!);
  }
  throw new PeftcError(`calibration: value '${name}' is ${dtypeName(t.dtype)}; only float32/float16 activations are calibrated`);
}

export async function collectStatistics(model: Model, data: InputData, requests: readonly StatRequest[], options: CollectOptions = {}): Promise<CollectedStats> {
  const t0 = performance.now();
  const label = options.label ?? 'calibration';
  const budget = options.budgetBytes ?? DEFAULT_BUDGET;
  const runs = Math.min(data.runs, options.maxRuns ?? Infinity);
  const histograms = new Map<string, StreamingHistogram>();
  const channels = new Map<string, ChannelAbsMax>();
  const g = model.graph;
  const byName = new Map<string, StatRequest>();
  for (const r of requests) {
    const prev = byName.get(r.name);
    byName.set(r.name, { name: r.name, histogram: (prev?.histogram ?? false) || r.histogram !== false, ...((r.channels ?? prev?.channels) !== undefined ? { channels: r.channels ?? prev?.channels } : {}) });
  }
  for (const r of byName.values()) {
    if (!g.localValue(r.name)) throw new PeftcError(`calibration: '${r.name}' is not a value of the main graph`);
    if (r.histogram) histograms.set(r.name, new StreamingHistogram(options.bins ?? DEFAULT_BINS));
    if (r.channels !== undefined) channels.set(r.name, new ChannelAbsMax(r.channels));
  }
  const fold = (name: string, t: Tensor): number => {
    const values = floatValues(t, name);
    histograms.get(name)?.add(values);
    channels.get(name)?.add(values);
    bytesSeen += t.byteLength;
    return t.byteLength;
  };
  const names = [...byName.keys()];
  const inputNames = new Set(g.inputs.map((v) => v.name));
  const fromFeed = names.filter((n) => inputNames.has(n));
  const computed = names.filter((n) => !inputNames.has(n));

  let session: OrtSession | undefined;
  let sessionRuns = 0;
  let peak = 0;
  let bytesSeen = 0;
  const sizes = new Map<string, number>();
  const bar = progress(label, runs, { enabled: options.progress ?? true });
  try {
    if (computed.length) {
      const restore = exposeOutputs(model, computed.map((n) => g.localValue(n)!));
      try {
        session = await OrtSession.create(model, { label: `the model with ${computed.length} activation(s) as outputs (${label})`, intraOpThreads: options.threads ?? availableParallelism() });
      } finally {
        restore();
      }
    }
    for (let run = 0; run < runs; run++) {
      const feed = data.feed(run);
      for (const n of fromFeed) fold(n, feed[n] ?? g.localValue(n)!.initializer!);
      let next = 0;
      while (next < computed.length) {
        const group: string[] = [];
        let bytes = 0;
        while (next < computed.length) {
          const n = computed[next]!;
          const size = sizes.get(n);
          if (size === undefined) {
            if (group.length >= FIRST_RUN_GROUP) break;
          } else if (group.length && bytes + size > budget) break;
          group.push(n);
          bytes += size ?? 0;
          next++;
        }
        const out = await session!.run(feed, group);
        sessionRuns++;
        let alive = 0;
        for (const n of group) alive += out[n]!.byteLength;
        peak = Math.max(peak, alive);
        for (const n of group) {
          sizes.set(n, fold(n, out[n]!));
          delete out[n];
        }
      }
      bar.update(run + 1);
      if (runs > 1 && (run + 1) % Math.max(1, Math.floor(runs / 4)) === 0) options.log?.(`${label}: ${run + 1}/${runs} runs`);
    }
  } finally {
    bar.done();
    await session?.release();
  }
  for (const [name, h] of histograms) {
    if (h.nonFinite) throw new PeftcError(`${data.path}: activation '${name}' takes ${h.nonFinite} non-finite value(s) on the calibration data; it cannot be quantized`);
  }
  let statBytes = 0;
  for (const h of histograms.values()) statBytes += h.bytes;
  for (const c of channels.values()) statBytes += c.max.byteLength;
  const samples = Math.round((data.samples * runs) / data.runs);
  return { histograms, channels, runs, samples, sessionRuns, statBytes, peakActivationBytes: peak, bytesSeen, ms: performance.now() - t0 };
}

/** Adds values to the graph outputs (typing untyped ones as float32); the result undoes exactly that. */
export function exposeOutputs(model: Model, values: readonly Value[]): () => void {
  const g = model.graph;
  const outputs = [...g.outputs];
  const types: Array<[Value, Value['type']]> = [];
  for (const v of values) {
    if (v.isGraphOutput) continue;
    if (v.type?.kind !== 'tensor') {
      types.push([v, v.type]);
      v.type = tensorType(DataType.FLOAT);
    }
    g.outputs.push(v);
  }
  return () => {
    g.outputs.length = 0;
    g.outputs.push(...outputs);
    for (const [v, type] of types) v.type = type;
  };
}

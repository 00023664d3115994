/**
 * Operator fusion (issue #10): for every zoo model and models/lm, the cleaned-up original against
 * cleaned-up + fused (target cpu), both run by onnxruntime-node with its own full graph
 * optimization ('all'), so the figures are what fusion adds beyond what onnxruntime does itself
 * at session creation:
 *  - node counts before/after, fusions applied, near-misses;
 *  - session creation time (median of interleaved creations);
 *  - CPU latency with 1 intra-op thread and with one per core: median of many runs, the two
 *    models interleaved run by run (order alternating) so drift in machine load hits both alike;
 *    with 1 thread also the median CPU time per run, which waiting for a busy core does not inflate;
 *  - the per-call floor: the latency of a model with the same inputs and outputs that computes
 *    nothing (onnxruntime-node's fixed cost per call, ~0.05-0.1 ms here, as large as the whole
 *    forward pass of the small zoo models), and the speedup of what lies above it;
 *  - the relative L2 error of the fused model's outputs against the original's on the same input;
 * and a table of what the Skip*LayerNormalization contrib ops cost on the CPU EP against the Add +
 * normalization they replace (why the cpu target leaves those two fusions out by default).
 * Inputs are batch 1 where the model's batch axis is dynamic (the first row of test_data_set_0;
 * for models/lm a window of its calibration tokens); static models run at their fixed shape.
 */
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DataType } from '../src/ir/dtype.js';
import type { Model } from '../src/ir/model.js';
import { Tensor } from '../src/ir/tensor.js';
import { encodeModel } from '../src/onnx/encode.js';
import { loadModel } from '../src/onnx/io.js';
import { readArrays } from '../src/runtime/npy.js';
import { OrtSession } from '../src/runtime/ort.js';
import { readDataSet } from '../src/runtime/testdata.js';
import { ErrorAccumulator } from '../src/verify/metrics.js';
import { fusionPass } from '../passes/fusion.js';
import { runPipeline } from '../passes/pass.js';
import { cleanupPipeline } from '../passes/pipelines.js';
import { ModelBuilder } from '../models/builder.js';
import { fmt, printTable } from './util.js';

export interface FusionBenchOptions {
  /** Interleaved rounds per latency measurement. */
  rounds?: number;
  /** Runs of each model per round. */
  runsPerRound?: number;
  /** Session creations of each model (interleaved). */
  creations?: number;
  models?: string[];
}

interface Latency {
  original: number;
  fused: number;
  speedup: number;
  /** Lowest and highest of the per-round ratios (original / fused): the noise, in the same units. */
  speedupRange: [number, number];
  /**
   * Median CPU time of this process per run (all its threads, user + system), ms: with one
   * intra-op thread it is the work done, and does not count time spent waiting for a core, so it
   * holds up on a loaded machine where wall time does not.
   */
  cpu: { original: number; fused: number; speedup: number };
}

export interface FusionBenchRow {
  model: string;
  input: string;
  transformer: boolean;
  nodesOriginal: number;
  nodesFused: number;
  fusions: Record<string, number>;
  nearMisses: number;
  fuseMs: number;
  sessionMs: { original: number; fused: number };
  latencyMs: { threads1: Latency; threadsAll: Latency & { threads: number } };
  /** Latency of a model with the same inputs and outputs that computes nothing (1 thread): the per-call floor. */
  floorMs: number;
  relErr: number;
}

const ZOO = ['bert-static', 'bert-dynamic', 'vit-static', 'gpt2-static', 'llama-static', 'llama-dynamic', 'llama-dynamo', 'llama-nofold', 'llama-mask-dynamic', 'cnn-static', 'cnn-bn'];
// dist/bench/fusion.js -> the repository's models/ folder.
const here = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'models');

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/** First row of every input whose batch axis is dynamic; everything as is otherwise. */
function batchOne(model: Model, feeds: Record<string, Tensor>): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  for (const [name, t] of Object.entries(feeds)) {
    const input = model.graph.inputs.find((v) => v.name === name);
    const d0 = input?.type?.kind === 'tensor' ? input.type.shape?.[0] : undefined;
    const dynamic = d0 !== undefined && d0.value === undefined;
    if (!dynamic || t.dims[0] === 1) {
      out[name] = t;
      continue;
    }
    const rowBytes = t.byteLength / t.dims[0]!;
    out[name] = Tensor.fromBytes(name, t.dtype, [1, ...t.dims.slice(1)], t.bytes().slice(0, rowBytes));
  }
  return out;
}

function feedsFor(name: string, model: Model): Record<string, Tensor> {
  if (name === 'lm') {
    const ids = [...readArrays(join(here, 'lm', 'calib.npy')).values()][0]!;
    const seq = 64;
    return { input_ids: Tensor.fromTypedArray('input_ids', DataType.INT64, [1, seq], (ids.toTypedArray() as BigInt64Array).slice(0, seq)) };
  }
  return batchOne(model, readDataSet(join(here, 'zoo', name, 'test_data_set_0'), model).inputs);
}

/**
 * Median latency of each model over `rounds` x `perRound` runs, the two alternating run by run
 * (which goes first alternates too), so a change in machine load hits both alike; the speedup is
 * the ratio of the medians, and its range that of the per-round medians.
 */
async function latency(a: Uint8Array, b: Uint8Array, feeds: Record<string, Tensor>, threads: number, rounds: number, perRound: number): Promise<Latency> {
  const sa = await OrtSession.create(a, { intraOpThreads: threads, graphOptimization: 'all', label: 'original' });
  const sb = await OrtSession.create(b, { intraOpThreads: threads, graphOptimization: 'all', label: 'fused' });
  try {
    for (let i = 0; i < 10; i++) await sa.run(feeds), await sb.run(feeds);
    const ta: number[] = [];
    const tb: number[] = [];
    const ca: number[] = [];
    const cb: number[] = [];
    const ratios: number[] = [];
    const time = async (s: OrtSession, into: number[]) => {
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      await s.run(feeds);
      into.push(performance.now() - t0);
      const c = process.cpuUsage(c0);
      (s === sa ? ca : cb).push((c.user + c.system) / 1000);
    };
    for (let r = 0; r < rounds; r++) {
      const ra: number[] = [];
      const rb: number[] = [];
      for (let i = 0; i < perRound; i++) {
        if ((i + r) % 2) await time(sa, ra), await time(sb, rb);
        else await time(sb, rb), await time(sa, ra);
      }
      ratios.push(median(ra) / median(rb));
      ta.push(...ra);
      tb.push(...rb);
    }
    const original = median(ta);
    const fused = median(tb);
    const cpu = { original: median(ca), fused: median(cb), speedup: median(ca) / median(cb) };
    return { original, fused, speedup: original / fused, speedupRange: [Math.min(...ratios), Math.max(...ratios)], cpu };
  } finally {
    await sa.release();
    await sb.release();
  }
}

/**
 * A model with the same inputs and outputs that computes nothing (each output an Identity of a
 * constant of its shape): its latency is onnxruntime-node's fixed cost per call (feeding,
 * scheduling, copying outputs back), which no graph change can remove.
 */
function floorModel(source: Model, outputs: Record<string, Tensor>): Uint8Array {
  const b = new ModelBuilder({ opset: 17 });
  for (const v of source.graph.inputs.filter((i) => !i.initializer)) {
    const t = v.type?.kind === 'tensor' ? v.type : undefined;
    b.input(v.name, (t?.elemType ?? DataType.FLOAT) as DataType, (t?.shape ?? []).map((d) => d.value ?? d.param ?? null));
  }
  for (const [name, t] of Object.entries(outputs)) {
    const out = b.op('Identity', [b.initializer(`${name}_value`, t.dtype, [...t.dims], t.toTypedArray())], {}, { name: `${name}_identity` });
    b.graph.renameValue(out, name);
    b.output(out);
  }
  return encodeModel(b.build());
}

async function floorLatency(bytes: Uint8Array, feeds: Record<string, Tensor>, runs: number): Promise<number> {
  const s = await OrtSession.create(bytes, { intraOpThreads: 1, graphOptimization: 'all' });
  try {
    for (let i = 0; i < 10; i++) await s.run(feeds);
    const t: number[] = [];
    for (let i = 0; i < runs; i++) {
      const t0 = performance.now();
      await s.run(feeds);
      t.push(performance.now() - t0);
    }
    return median(t);
  } finally {
    await s.release();
  }
}

async function creation(a: Uint8Array, b: Uint8Array, times: number): Promise<{ original: number; fused: number }> {
  const ta: number[] = [];
  const tb: number[] = [];
  for (let i = 0; i < times; i++) {
    for (const [bytes, out] of i % 2 ? ([[b, tb], [a, ta]] as const) : ([[a, ta], [b, tb]] as const)) {
      const t0 = performance.now();
      const s = await OrtSession.create(bytes, { graphOptimization: 'all' });
      out.push(performance.now() - t0);
      await s.release();
    }
  }
  return { original: median(ta), fused: median(tb) };
}

export interface OpCostRow {
  fused: string;
  shape: string;
  unfusedUs: number;
  fusedUs: number;
  ratio: number;
}

/**
 * Why skip-layer-norm and skip-rms-norm are off by default on cpu: chains of 20 pre-norm residual
 * blocks (s = x + r; x = Norm(s) + s, so onnxruntime does not fuse the Add itself), unfused vs
 * with the Skip* op, per block, 1 thread, graph optimization 'all', interleaved.
 */
async function skipNormCosts(rounds: number, perRound: number): Promise<OpCostRow[]> {
  const rows: OpCostRow[] = [];
  const blocks = 20;
  for (const [b, sq, h] of [[1, 16, 64], [1, 128, 768]] as const) {
    for (const kind of ['SkipLayerNormalization', 'SkipSimplifiedLayerNormalization'] as const) {
      const make = (fused: boolean): Uint8Array => {
        const mb = new ModelBuilder({ opset: 17, extraOpsets: { 'com.microsoft': 1 } });
        let x = mb.input('x', DataType.FLOAT, [b, sq, h]);
        const r = mb.input('r', DataType.FLOAT, [b, sq, h]);
        const gamma = mb.initializer('gamma', DataType.FLOAT, [h], Float32Array.from({ length: h }, (_, i) => 1 + i / h));
        const beta = mb.initializer('beta', DataType.FLOAT, [h], Float32Array.from({ length: h }, (_, i) => i / h));
        const eps = { epsilon: { float: 1e-5 } };
        for (let i = 0; i < blocks; i++) {
          if (fused) {
            const ins = kind === 'SkipLayerNormalization' ? [x, r, gamma, beta] : [x, r, gamma];
            const [y, , , sum] = mb.opMulti(kind, ins, eps, { domain: 'com.microsoft', outputs: 4 });
            x = mb.op('Add', [y!, sum!]);
          } else {
            const sum = mb.op('Add', [x, r]);
            const norm = kind === 'SkipLayerNormalization' ? mb.op('LayerNormalization', [sum, gamma, beta], { axis: -1, ...eps }) : mb.op('SimplifiedLayerNormalization', [sum, gamma], { axis: -1, ...eps });
            x = mb.op('Add', [norm, sum]);
          }
        }
        mb.output(x);
        return encodeModel(mb.build());
      };
      const rand = (seed: number) => Float32Array.from({ length: b * sq * h }, (_, i) => Math.sin(i * 0.37 + seed));
      const feeds = { x: Tensor.fromTypedArray('x', DataType.FLOAT, [b, sq, h], rand(1)), r: Tensor.fromTypedArray('r', DataType.FLOAT, [b, sq, h], rand(2)) };
      const t = await latency(make(false), make(true), feeds, 1, rounds, perRound);
      rows.push({ fused: kind, shape: `[${b},${sq},${h}]`, unfusedUs: (t.original * 1000) / blocks, fusedUs: (t.fused * 1000) / blocks, ratio: t.speedup });
    }
  }
  printTable(
    `onnxruntime CPU EP, 1 thread: Add + (Simplified)LayerNormalization vs the Skip* contrib op, per pre-norm block (the sum also read later), median of ${rounds} x ${perRound} interleaved runs`,
    ['fused op', 'shape', 'unfused us', 'fused us', 'x'],
    rows.map((r) => [r.fused, r.shape, fmt(r.unfusedUs, 2), fmt(r.fusedUs, 2), fmt(r.ratio, 2)]),
  );
  return rows;
}

export async function benchFusion(options: FusionBenchOptions = {}): Promise<{ models: FusionBenchRow[]; skipNormCosts: OpCostRow[]; loadAverage: { start: number[]; end: number[] } }> {
  const loadStart = loadavg();
  const rounds = options.rounds ?? 20;
  const perRound = options.runsPerRound ?? 25;
  const creations = options.creations ?? 9;
  const allThreads = cpus().length;
  const rows: FusionBenchRow[] = [];
  for (const name of options.models ?? [...ZOO, 'lm']) {
    const path = name === 'lm' ? join(here, 'lm', 'model.onnx') : join(here, 'zoo', name, 'model.onnx');
    const source = loadModel(path);
    const feeds = feedsFor(name, source);
    const original = loadModel(path);
    runPipeline(original, cleanupPipeline(), { fixpoint: true });
    const fused = loadModel(path);
    runPipeline(fused, cleanupPipeline(), { fixpoint: true });
    const pass = fusionPass({ target: 'cpu' });
    const t0 = performance.now();
    runPipeline(fused, [pass], {});
    const fuseMs = performance.now() - t0;
    const a = encodeModel(original);
    const b = encodeModel(fused);
    const sessionMs = await creation(a, b, creations);
    const threads1 = await latency(a, b, feeds, 1, rounds, perRound);
    const threadsAll = { ...(await latency(a, b, feeds, allThreads, rounds, perRound)), threads: allThreads };
    const sa = await OrtSession.create(a);
    const sb = await OrtSession.create(b);
    const ra = await sa.run(feeds);
    const rb = await sb.run(feeds);
    await sa.release();
    await sb.release();
    const acc = new ErrorAccumulator();
    for (const k of Object.keys(ra)) acc.add(ra[k]!, rb[k]!);
    const floorMs = await floorLatency(floorModel(source, ra), feeds, rounds * perRound);
    const fusions: Record<string, number> = {};
    for (const x of pass.applied) fusions[x.fusion] = (fusions[x.fusion] ?? 0) + 1;
    rows.push({
      model: name,
      input: Object.values(feeds).map((t) => `[${t.dims.join(',')}]`).join(' '),
      transformer: !name.startsWith('cnn'),
      nodesOriginal: original.graph.nodes.length,
      nodesFused: fused.graph.nodes.length,
      fusions,
      nearMisses: pass.nearMisses.length,
      fuseMs,
      sessionMs,
      latencyMs: { threads1, threadsAll },
      floorMs,
      relErr: acc.stats().relErr,
    });
    process.stderr.write(`fusion bench: ${name} done\n`);
  }
  printTable(
    `Fusion (target cpu): cleaned-up original vs cleaned-up + fused, onnxruntime-node graph optimization 'all'; latency = median of ${rounds} x ${perRound} interleaved runs each`,
    ['model', 'input', 'nodes', 'session ms', `1 thread ms`, `x (round range)`, 'floor ms', 'x above floor', '1 thread cpu ms', 'x cpu', `${allThreads} threads ms`, `x (round range)`, 'rel err', 'fusions'],
    rows.map((r) => [
      r.model,
      r.input,
      `${r.nodesOriginal} -> ${r.nodesFused}`,
      `${fmt(r.sessionMs.original)} -> ${fmt(r.sessionMs.fused)}`,
      `${fmt(r.latencyMs.threads1.original, 3)} -> ${fmt(r.latencyMs.threads1.fused, 3)}`,
      `${fmt(r.latencyMs.threads1.speedup, 2)} (${fmt(r.latencyMs.threads1.speedupRange[0], 2)}-${fmt(r.latencyMs.threads1.speedupRange[1], 2)})`,
      fmt(r.floorMs, 3),
      fmt((r.latencyMs.threads1.original - r.floorMs) / (r.latencyMs.threads1.fused - r.floorMs), 2),
      `${fmt(r.latencyMs.threads1.cpu.original, 3)} -> ${fmt(r.latencyMs.threads1.cpu.fused, 3)}`,
      fmt(r.latencyMs.threads1.cpu.speedup, 2),
      `${fmt(r.latencyMs.threadsAll.original, 3)} -> ${fmt(r.latencyMs.threadsAll.fused, 3)}`,
      `${fmt(r.latencyMs.threadsAll.speedup, 2)} (${fmt(r.latencyMs.threadsAll.speedupRange[0], 2)}-${fmt(r.latencyMs.threadsAll.speedupRange[1], 2)})`,
      r.relErr.toExponential(1),
      Object.entries(r.fusions).map(([k, n]) => `${k} ${n}`).join(', ') || '-',
    ]),
  );
  const transformers = rows.filter((r) => r.transformer);
  const worst = Math.min(...rows.map((r) => Math.min(r.latencyMs.threads1.speedup, r.latencyMs.threadsAll.speedup)));
  const below = transformers.filter((r) => r.latencyMs.threads1.speedup < 1.2).map((r) => r.model);
  const belowCpu = transformers.filter((r) => r.latencyMs.threads1.cpu.speedup < 1.2).map((r) => r.model);
  console.log(`\ngoal: transformers >= 1.2x at 1 thread: by wall time ${below.length ? `not met by ${below.join(', ')}` : 'met'}; by CPU time ${belowCpu.length ? `not met by ${belowCpu.join(', ')}` : 'met'}`);
  console.log(`slowest ratio over all models and thread counts (wall time): ${fmt(worst, 2)}x; machine load average at the end: ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);
  const costs = await skipNormCosts(Math.max(4, rounds / 2), perRound);
  return { models: rows, skipNormCosts: costs, loadAverage: { start: loadStart, end: loadavg() } };
}

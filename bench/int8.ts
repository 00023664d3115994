/**
 * `npm run bench -- --only int8`: INT8 on onnxruntime's CPU provider.
 *
 * 1. Latency: for every zoo model, models/lm and the digits CNN, the cleaned-up fp32 model, static
 *    INT8 (QDQ, minmax, per-channel, uint8 activations) and dynamic INT8 (MatMulInteger form),
 *    each timed in a process of its own by src/bench/bench.ts, the three in interleaved rounds
 *    (order rotated every round). Batch 8 where the model's batch axis is free (its static twin
 *    for bert: bert-dynamic fixed at 8x64 like `compile --shape`; CNNs with a fixed batch are
 *    re-batched when nothing in them depends on it), the model's own fixed batch otherwise.
 *    Beside each: what onnxruntime made of the graph (integer kernels, float MatMul/Conv/Gemm left),
 *    and fidelity against fp32 (relative error / cosine; perplexity for models/lm; accuracy for
 *    digits). Zoo models are calibrated on generated inputs (32 samples, seed 0): their fidelity
 *    figures say how close int8 stays on such inputs, not on real data.
 * 2. Calibration time and peak RSS against the number of samples (models/lm, 256-byte windows,
 *    each count in a fresh process): the streaming statistics keep memory flat where keeping the
 *    activations (as onnxruntime's Python calibrators do) would grow with the samples.
 * 3. models/lm static INT8 perplexity: the naive plan (every op quantize_static quantizes by
 *    default), peftc's plan with each calibration method, SmoothQuant, --max-error, and dynamic.
 * `--small`: the first three models and two sample counts only, no LM table.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchModels } from '../src/bench/bench.js';
import { DataType } from '../src/ir/dtype.js';
import type { Model } from '../src/ir/model.js';
import { decodeModel } from '../src/onnx/decode.js';
import { encodeModel } from '../src/onnx/encode.js';
import { loadModel, saveModel } from '../src/onnx/io.js';
import { runPipeline } from '../passes/pass.js';
import { cleanupPipeline } from '../passes/pipelines.js';
import { fixShapes } from '../passes/fix-shapes.js';
import { ModelBuilder } from '../models/builder.js';
import { matchInputData, readInputArrays, synthesizeInputs, type InputData } from '../src/runtime/input-data.js';
import { readArrays } from '../src/runtime/npy.js';
import { OrtSession } from '../src/runtime/ort.js';
import { ErrorAccumulator } from '../src/verify/metrics.js';
import { quantizeInt8, type Int8Options } from '../src/quant/int8.js';
import { ortOptimizedGraph } from '../src/quant/int8-kernels.js';
import { evalWindows, windowPerplexity } from './lm-eval.js';
import { fmt, printTable } from './util.js';

const here = dirname(fileURLToPath(import.meta.url));

interface Spec {
  name: string;
  path: string;
  /** A model made here instead of read from `path`. */
  build?: () => Model;
  /** Symbolic dims for latency (batch 8 where free). */
  dims?: Record<string, number>;
  /** Fix input shapes before cleanup (compile --shape). */
  shapes?: Record<string, number[]>;
  /** Try to re-batch a model whose batch is fixed (CNNs). */
  rebatch?: number;
  calib: string | { samples: number };
  kind: 'generic' | 'lm' | 'digits';
}

interface Row {
  model: string;
  batch: string;
  variant: 'fp32' | 'static int8' | 'dynamic int8';
  p50Ms: number;
  p50MinMs: number;
  p50MaxMs: number;
  speedup: number;
  bytes: number;
  integerKernels: number;
  floatMatmuls: number;
  quantizeMs?: number;
  fidelity: string;
  error?: string;
}

const copy = (m: Model) => decodeModel(encodeModel(m));

/**
 * A BERT-style encoder stack of realistic width (MiniLM-like: hidden 384, 6 heads, FFN 1536) with
 * deterministic random weights, input [batch, seq, hidden] float32 embeddings: LayerNormalization,
 * Q/K/V/O projections with biases, scaled dot-product attention, erf GELU feed-forward, residuals.
 * The zoo's encoders are 64 wide, where GEMMs are a small share of the time; this one shows where
 * int8 pays (latency only: its outputs mean nothing).
 */
export function generatedEncoder(o: { batch: number; seq: number; hidden: number; heads: number; ffn: number; layers: number }): Model {
  const b = new ModelBuilder({ opset: 17 });
  let seed = 1;
  const rand = () => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed / 4294967296;
  };
  const w = (rows: number, cols: number, scale: number) => b.initializer(undefined, DataType.FLOAT, rows === 1 ? [cols] : [rows, cols], Float32Array.from({ length: rows * cols }, () => Math.fround((rand() * 2 - 1) * scale)));
  const ones = (n: number) => b.initializer(undefined, DataType.FLOAT, [n], new Float32Array(n).fill(1));
  const ints = (v: number[]) => b.initializer(undefined, DataType.INT64, [v.length], BigInt64Array.from(v, BigInt));
  const scalar = (v: number) => b.initializer(undefined, DataType.FLOAT, [], Float32Array.of(v));
  const { batch: B, seq: S, hidden: H, heads: NH, ffn: F } = o;
  const dh = H / NH;
  let x = b.input('x', DataType.FLOAT, [B, S, H]);
  const dense = (v: typeof x, k: number, n: number) => b.op('Add', [b.op('MatMul', [v, w(k, n, 1 / Math.sqrt(k))]), w(1, n, 0.02)]);
  const norm = (v: typeof x) => b.op('LayerNormalization', [v, ones(H), w(1, H, 0.02)], { axis: -1, epsilon: { float: 1e-5 } });
  for (let l = 0; l < o.layers; l++) {
    const h = norm(x);
    const heads = (v: typeof x, perm: number[]) => b.op('Transpose', [b.op('Reshape', [v, ints([B, S, NH, dh])])], { perm });
    const q = heads(dense(h, H, H), [0, 2, 1, 3]);
    const k = heads(dense(h, H, H), [0, 2, 3, 1]);
    const v = heads(dense(h, H, H), [0, 2, 1, 3]);
    const p = b.op('Softmax', [b.op('Mul', [b.op('MatMul', [q, k]), scalar(1 / Math.sqrt(dh))])], { axis: -1 });
    const ctx = b.op('Reshape', [b.op('Transpose', [b.op('MatMul', [p, v])], { perm: [0, 2, 1, 3] }), ints([B, S, H])]);
    const x1 = b.op('Add', [x, dense(ctx, H, H)]);
    const f = dense(norm(x1), H, F);
    const gelu = b.op('Mul', [b.op('Mul', [f, scalar(0.5)]), b.op('Add', [b.op('Erf', [b.op('Div', [f, scalar(Math.SQRT2)])]), scalar(1)])]);
    x = b.op('Add', [x1, dense(gelu, F, H)]);
  }
  b.output(norm(x), { dtype: DataType.FLOAT, shape: [B, S, H] });
  return b.build();
}

/** The model with its fixed leading input dim replaced, if onnxruntime still runs it; else undefined. */
async function rebatched(m: Model, batch: number): Promise<Model | undefined> {
  const c = copy(m);
  const g = c.graph;
  for (const v of [...g.inputs, ...g.outputs]) {
    if (v.type?.kind === 'tensor' && v.type.shape?.[0]?.value !== undefined) v.type = { ...v.type, shape: [{ value: batch }, ...v.type.shape.slice(1)] };
  }
  for (const v of g.valueInfos) if (v.type?.kind === 'tensor') v.type = { kind: 'tensor', elemType: v.type.elemType };
  for (const n of g.nodes) for (const o of n.outputs) if (o && !o.isGraphOutput && o.type?.kind === 'tensor') o.type = { kind: 'tensor', elemType: o.type.elemType };
  try {
    runPipeline(c, cleanupPipeline(), { fixpoint: true });
    const data = matchInputData(synthesizeInputs(c, { samples: 1 }), c);
    const s = await OrtSession.create(c);
    try {
      await s.run(data.feed(0));
    } finally {
      await s.release();
    }
    return c;
  } catch {
    return undefined;
  }
}

async function fidelity(spec: Spec, ref: Model, cand: Model, data: InputData): Promise<string> {
  if (spec.kind === 'lm') return `ppl ${(await lmPerplexity(cand)).toFixed(4)}`;
  if (spec.kind === 'digits') {
    const images = readArrays(join(process.cwd(), 'models', 'digits', 'test_images.npy'), 'x').get('x')!;
    const labels = readArrays(join(process.cwd(), 'models', 'digits', 'test_labels.npy'), 'x').get('x')!.toTypedArray<BigInt64Array>();
    const s = await OrtSession.create(cand, { intraOpThreads: 2 });
    try {
      const l = (await s.run({ image: images })).logits!.toTypedArray<Float32Array>();
      let right = 0;
      for (let i = 0; i < labels.length; i++) {
        let best = 0;
        for (let k = 1; k < 10; k++) if (l[i * 10 + k]! > l[i * 10 + best]!) best = k;
        if (BigInt(best) === labels[i]) right++;
      }
      return `acc ${((100 * right) / labels.length).toFixed(2)}%`;
    } finally {
      await s.release();
    }
  }
  const r = await OrtSession.create(ref, { intraOpThreads: 2 });
  const c = await OrtSession.create(cand, { intraOpThreads: 2 });
  try {
    const acc = new ErrorAccumulator();
    const names = ref.graph.outputs.filter((v) => v.type?.kind === 'tensor' && v.type.elemType === DataType.FLOAT).map((v) => v.name);
    for (let run = 0; run < Math.min(8, data.runs); run++) {
      const a = await r.run(data.feed(run), names);
      const b = await c.run(data.feed(run), names);
      for (const n of names) acc.add(a[n]!, b[n]!);
    }
    const s = acc.stats();
    return `rel ${s.relErr.toExponential(2)} cos ${s.cosine.toFixed(5)}`;
  } finally {
    await r.release();
    await c.release();
  }
}

export async function benchInt8(opts: { dir: string; repeat: number; threads: number; small?: boolean }): Promise<unknown> {
  const dir = join(opts.dir, 'int8');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const zoo = (n: string) => join(process.cwd(), 'models', 'zoo', n, 'model.onnx');
  const specs: Spec[] = [
    { name: 'digits (CNN, trained)', path: join(process.cwd(), 'models', 'digits', 'model.onnx'), dims: { N: 8 }, calib: join(process.cwd(), 'models', 'digits', 'calib.npy'), kind: 'digits' },
    { name: 'cnn-static', path: zoo('cnn-static'), rebatch: 8, calib: { samples: 32 }, kind: 'generic' },
    { name: 'cnn-bn', path: zoo('cnn-bn'), rebatch: 8, calib: { samples: 32 }, kind: 'generic' },
    { name: 'bert-dynamic @8x64 (--shape)', path: zoo('bert-dynamic'), shapes: { input_ids: [8, 64], attention_mask: [8, 64] }, calib: { samples: 32 }, kind: 'generic' },
    { name: 'bert-dynamic @8x64', path: zoo('bert-dynamic'), dims: { batch: 8, seq: 64 }, calib: { samples: 32 }, kind: 'generic' },
    { name: 'bert-static', path: zoo('bert-static'), calib: { samples: 32 }, kind: 'generic' },
    { name: 'encoder 384x4 (generated) @8x128', path: '', build: () => generatedEncoder({ batch: 8, seq: 128, hidden: 384, heads: 6, ffn: 1536, layers: 4 }), calib: { samples: 16 }, kind: 'generic' },
    { name: 'vit-static', path: zoo('vit-static'), rebatch: 8, calib: { samples: 32 }, kind: 'generic' },
    { name: 'gpt2-static', path: zoo('gpt2-static'), calib: { samples: 32 }, kind: 'generic' },
    { name: 'llama-static', path: zoo('llama-static'), calib: { samples: 32 }, kind: 'generic' },
    { name: 'llama-nofold', path: zoo('llama-nofold'), calib: { samples: 32 }, kind: 'generic' },
    { name: 'llama-dynamo', path: zoo('llama-dynamo'), calib: { samples: 32 }, kind: 'generic' },
    { name: 'llama-dynamic @8x16', path: zoo('llama-dynamic'), dims: { batch: 8, seq: 16 }, calib: { samples: 32 }, kind: 'generic' },
    { name: 'llama-mask-dynamic @8x16', path: zoo('llama-mask-dynamic'), dims: { batch: 8, seq: 16 }, calib: { samples: 32 }, kind: 'generic' },
    { name: 'models/lm @8x256', path: join(process.cwd(), 'models', 'lm', 'model.onnx'), dims: { batch: 8, seq: 256 }, calib: join(process.cwd(), 'models', 'lm', 'calib.npy'), kind: 'lm' },
  ];
  const rows: Row[] = [];
  for (const spec of opts.small ? specs.slice(0, 3) : specs) {
    console.log(`int8: ${spec.name}`);
    let fp32 = spec.build ? spec.build() : loadModel(spec.path);
    if (spec.shapes) runPipeline(fp32, [fixShapes(spec.shapes)]);
    runPipeline(fp32, cleanupPipeline(), { fixpoint: true });
    let batch = spec.dims ? Object.values(spec.dims)[0]! : (fp32.graph.inputs[0]?.type?.kind === 'tensor' ? fp32.graph.inputs[0].type.shape?.[0]?.value : undefined) ?? 1;
    if (spec.rebatch) {
      const r = await rebatched(fp32, spec.rebatch);
      if (r) {
        fp32 = r;
        batch = spec.rebatch;
      } else console.log(`int8: ${spec.name}: its batch stays ${batch} (the graph depends on it)`);
    }
    const calib = typeof spec.calib === 'string' ? matchInputData(readInputArrays(spec.calib), fp32) : matchInputData(synthesizeInputs(fp32, { samples: spec.calib.samples, seed: 0, ...(spec.dims ? { dims: spec.dims } : {}) }), fp32);
    const evalData = spec.kind === 'generic' ? matchInputData(synthesizeInputs(fp32, { samples: 8, seed: 1, ...(spec.dims ? { dims: spec.dims } : {}) }), fp32) : calib;
    const base = spec.name.replace(/[^a-z0-9]+/gi, '-');
    const files: Record<Row['variant'], string> = { fp32: join(dir, `${base}-fp32.onnx`), 'static int8': join(dir, `${base}-static.onnx`), 'dynamic int8': join(dir, `${base}-dynamic.onnx`) };
    saveModel(fp32, files.fp32);
    const made: Array<{ variant: Row['variant']; model: Model; ms?: number; error?: string }> = [{ variant: 'fp32', model: fp32 }];
    for (const [variant, mode] of [['static int8', 'static'], ['dynamic int8', 'dynamic']] as const) {
      const m = copy(fp32);
      const t = performance.now();
      try {
        await quantizeInt8(m, calib, { mode, progress: false } as Int8Options);
        saveModel(m, files[variant]);
        made.push({ variant, model: m, ms: performance.now() - t });
      } catch (err) {
        made.push({ variant, model: m, error: err instanceof Error ? err.message : String(err) });
      }
    }
    const ok = made.filter((x) => !x.error);
    const lat = await benchModels(
      ok.map((x) => files[x.variant]),
      { rounds: Math.max(3, opts.repeat), runs: spec.kind === 'lm' ? 10 : 50, warmup: 5, threads: opts.threads, ...(spec.dims ? { dims: spec.dims } : {}) },
    );
    for (const x of made) {
      const i = ok.indexOf(x);
      if (i < 0) {
        rows.push({ model: spec.name, batch: String(batch), variant: x.variant, p50Ms: NaN, p50MinMs: NaN, p50MaxMs: NaN, speedup: NaN, bytes: 0, integerKernels: 0, floatMatmuls: 0, fidelity: '', error: x.error! });
        continue;
      }
      const b = lat.models[i]!;
      const ort = await ortOptimizedGraph(files[x.variant]);
      rows.push({
        model: spec.name,
        batch: String(b.batch),
        variant: x.variant,
        p50Ms: b.latency.p50Ms,
        p50MinMs: b.latency.p50MinMs,
        p50MaxMs: b.latency.p50MaxMs,
        speedup: lat.models[0]!.latency.p50Ms / b.latency.p50Ms,
        bytes: b.artifactBytes,
        integerKernels: ort.integerKernels,
        floatMatmuls: ort.floatMatmuls,
        ...(x.ms !== undefined ? { quantizeMs: x.ms } : {}),
        fidelity: await fidelity(spec, fp32, x.model, evalData),
      });
    }
  }
  printTable(
    `int8 latency: onnxruntime-node CPU, ${opts.threads} thread(s), p50 of the median round (min-max of the per-round p50), ${Math.max(3, opts.repeat)} interleaved rounds, each model in its own process; speed-up = fp32 p50 / p50`,
    ['model', 'batch', 'variant', 'p50 ms', 'p50 min-max', 'x fp32', 'KiB', 'int kernels', 'float mm', 'quantize s', 'fidelity vs fp32', 'note'],
    rows.map((r) => [
      r.model,
      r.batch,
      r.variant,
      r.error ? '' : fmt(r.p50Ms, 3),
      r.error ? '' : `${fmt(r.p50MinMs, 3)}-${fmt(r.p50MaxMs, 3)}`,
      r.error ? '' : fmt(r.speedup, 2),
      r.error ? '' : fmt(r.bytes / 1024, 0),
      r.error ? '' : String(r.integerKernels),
      r.error ? '' : String(r.floatMatmuls),
      r.quantizeMs !== undefined ? fmt(r.quantizeMs / 1000, 2) : '',
      r.fidelity,
      r.error ? r.error.slice(0, 80) : '',
    ]),
  );

  // Calibration: time and peak RSS against the number of samples, each in a fresh process.
  const counts = opts.small ? [8, 32] : [8, 32, 128, 512];
  const calibration: Array<Record<string, number | string>> = [];
  for (const method of ['minmax', 'percentile'] as const) {
    for (const samples of counts) {
      const out = execFileSync(process.execPath, ['--expose-gc', join(here, 'int8-calib-task.js'), JSON.stringify({ samples, method })], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 16 << 20 });
      const r = JSON.parse(out.trim().split('\n').at(-1)!) as Record<string, number>;
      calibration.push({ method, samples, ...r });
      console.log(`int8 calibration: ${method} ${samples} samples: ${(r.calibrationMs! / 1000).toFixed(1)} s, peak RSS ${r.peakRssMiB!.toFixed(0)} MiB`);
    }
  }
  printTable(
    'int8 calibration of models/lm (85 activations, 8192-bin histograms), one process per row: time and peak RSS against the samples (256-byte windows)',
    ['method', 'samples', 'calibration s', 'quantize s', 'RSS before MiB', 'peak RSS MiB', 'statistics KiB', 'activations streamed MiB', 'largest group alive MiB'],
    calibration.map((r) => [
      String(r.method),
      String(r.samples),
      fmt(Number(r.calibrationMs) / 1000, 2),
      fmt(Number(r.ms) / 1000, 2),
      fmt(Number(r.rssBeforeMiB), 0),
      fmt(Number(r.peakRssMiB), 0),
      fmt(Number(r.statBytes) / 1024, 0),
      fmt(Number(r.bytesSeen) / 2 ** 20, 0),
      fmt(Number(r.peakActivationBytes) / 2 ** 20, 1),
    ]),
  );
  const lm = opts.small ? [] : await lmTable();
  const goal = rows.filter((r) => r.variant === 'static int8' && /digits|cnn|bert|encoder/.test(r.model)).map((r) => `${r.model} ${fmt(r.speedup, 2)}x`);
  console.log(`goal (>= 1.5x static int8 at batch 8 on the CNN and the encoder): ${goal.join(', ')}`);
  return { rows, calibration, lm };
}

/** Perplexity of models/lm on every 256-byte window of eval.bin. */
async function lmPerplexity(model: Model): Promise<number> {
  const seq = 256;
  const { ids, count } = evalWindows(seq);
  const s = await OrtSession.create(model, { intraOpThreads: 2 });
  try {
    return await windowPerplexity(s, ids, count, seq);
  } finally {
    await s.release();
  }
}

/**
 * models/lm static INT8 rows: the naive plan (every op onnxruntime's quantize_static quantizes by
 * default), peftc's plan with each calibration method, SmoothQuant, and --max-error, next to
 * dynamic int8; perplexity on the 128 held-out windows, calibration on models/lm/calib.npy.
 */
async function lmTable(): Promise<Array<Record<string, number | string>>> {
  const lm = join(process.cwd(), 'models', 'lm');
  const base = loadModel(join(lm, 'model.onnx'));
  runPipeline(base, cleanupPipeline(), { fixpoint: true });
  const calib = matchInputData(readInputArrays(join(lm, 'calib.npy')), base);
  const fp32 = await lmPerplexity(base);
  const configs: Array<[string, Partial<Int8Options>]> = [
    ['naive: every op quantize_static quantizes by default, minmax', { chainMode: 'all', calibMethod: 'minmax' }],
    ['naive + percentile', { chainMode: 'all', calibMethod: 'percentile' }],
    ['naive + --max-error 0.05 (sensitive nodes float)', { chainMode: 'all', calibMethod: 'minmax', maxError: 0.05 }],
    ['peftc plan, minmax', { calibMethod: 'minmax' }],
    ['peftc plan, percentile 99.999', { calibMethod: 'percentile' }],
    ['peftc plan, entropy (KL)', { calibMethod: 'entropy' }],
    ['peftc plan, mse', { calibMethod: 'mse' }],
    ['peftc plan, SmoothQuant alpha 0.5, minmax', { calibMethod: 'minmax', smoothQuant: 0.5 }],
    ['peftc plan, SmoothQuant alpha searched, mse', { calibMethod: 'mse', smoothQuant: 'search' }],
    ['peftc plan, mse, --max-error 0.02', { calibMethod: 'mse', maxError: 0.02 }],
    ['dynamic int8', { mode: 'dynamic' }],
  ];
  const out: Array<Record<string, number | string>> = [{ config: 'fp32', perplexity: fp32, delta: 0, quantized: 0, float: 0, seconds: 0, kernels: 0, note: '' }];
  for (const [label, o] of configs) {
    const m = copy(base);
    const t = performance.now();
    const r = await quantizeInt8(m, calib, { mode: 'static', progress: false, ...o } as Int8Options);
    const seconds = (performance.now() - t) / 1000;
    const ppl = await lmPerplexity(m);
    const ort = await ortOptimizedGraph(m);
    const note = [
      r.smoothQuant ? `alpha ${r.smoothQuant.alpha}` : '',
      r.keptFloat ? `${r.keptFloat.reduce((a, k) => a + k.nodes.length, 0)} node(s) kept float, simulated error ${r.error!.relative.toExponential(2)}` : '',
    ]
      .filter(Boolean)
      .join('; ');
    out.push({ config: label, perplexity: ppl, delta: (ppl / fp32 - 1) * 100, quantized: r.nodes.length, float: r.float.length, seconds, kernels: ort.integerKernels, note });
    console.log(`int8 lm: ${label}: perplexity ${ppl.toFixed(4)} (${((ppl / fp32 - 1) * 100).toFixed(2)}%)`);
  }
  printTable(
    `models/lm (3.5M byte-level Llama) int8: perplexity on 128 held-out windows of 256 bytes, calibrated on models/lm/calib.npy (32 windows); onnxruntime-node CPU`,
    ['config', 'perplexity', 'Δ vs fp32 %', 'nodes int8', 'integer kernels', 'quantize s', 'note'],
    out.map((r) => [String(r.config), Number(r.perplexity).toFixed(4), Number(r.delta).toFixed(2), String(r.quantized), String(r.kernels), Number(r.seconds).toFixed(1), String(r.note)]),
  );
  return out;
}

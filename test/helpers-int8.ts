/** Shared steps of the INT8 tests: load + cleanup, quantize a copy, compare outputs on onnxruntime. */
import { DataType } from '../src/ir/dtype.js';
import type { Model } from '../src/ir/model.js';
import { readFileSync } from 'node:fs';
import { Tensor as TensorCtor, type Tensor } from '../src/ir/tensor.js';
import { decodeModel } from '../src/onnx/decode.js';
import { encodeModel } from '../src/onnx/encode.js';
import { loadModel } from '../src/onnx/io.js';
import { runPipeline } from '../passes/pass.js';
import { cleanupPipeline } from '../passes/pipelines.js';
import { matchInputData, readInputArrays, synthesizeInputs, type InputData } from '../src/runtime/input-data.js';
import { OrtSession } from '../src/runtime/ort.js';
import { ErrorAccumulator, PerplexityAccumulator, type ErrorStats } from '../src/verify/metrics.js';
import { quantizeInt8, type Int8Options, type Int8Report } from '../src/quant/int8.js';

export function cleaned(path: string): Model {
  const m = loadModel(path);
  runPipeline(m, cleanupPipeline(), { fixpoint: true });
  return m;
}

export function copyOf(m: Model): Model {
  return decodeModel(encodeModel(m));
}

/** Calibration data: a .npy/.npz file, or `samples` generated samples (seed 0). */
export function dataFor(m: Model, source: string | { samples: number; seed?: number; dims?: Record<string, number> }): InputData {
  return typeof source === 'string'
    ? matchInputData(readInputArrays(source), m)
    : matchInputData(synthesizeInputs(m, { samples: source.samples, seed: source.seed ?? 0, ...(source.dims ? { dims: source.dims } : {}) }), m);
}

export async function quantized(m: Model, data: InputData, options: Partial<Int8Options> = {}): Promise<{ model: Model; report: Int8Report }> {
  const model = copyOf(m);
  const report = await quantizeInt8(model, data, { mode: 'static', progress: false, ...options });
  return { model, report };
}

/** Error statistics of `candidate` against `reference` over every run of `data` (all float outputs). */
export async function compare(reference: Model, candidate: Model, data: InputData): Promise<ErrorStats> {
  const r = await OrtSession.create(reference, { intraOpThreads: 2 });
  const c = await OrtSession.create(candidate, { intraOpThreads: 2 });
  try {
    const acc = new ErrorAccumulator();
    const names = reference.graph.outputs.filter((v) => v.type?.kind === 'tensor' && v.type.elemType === DataType.FLOAT).map((v) => v.name);
    for (let run = 0; run < data.runs; run++) {
      const feed: Record<string, Tensor> = data.feed(run);
      const a = await r.run(feed, names);
      const b = await c.run(feed, names);
      for (const n of names) acc.add(a[n]!, b[n]!);
    }
    return acc.stats();
  } finally {
    await r.release();
    await c.release();
  }
}

/** Perplexity of models/lm on the first `windows` 256-byte windows of eval.bin (the bench's held-out windows). */
export async function lmPerplexity(model: Model, windows = 128, seq = 256): Promise<number> {
  const bytes = readFileSync('models/lm/eval.bin');
  const count = Math.min(windows, Math.floor(bytes.length / seq));
  const s = await OrtSession.create(model, { intraOpThreads: 2 });
  try {
    const acc = new PerplexityAccumulator();
    for (let w = 0; w < count; w += 16) {
      const rows = Math.min(16, count - w);
      const ids = new BigInt64Array(rows * seq);
      for (let i = 0; i < ids.length; i++) ids[i] = BigInt(bytes[w * seq + i]!);
      const out = await s.run({ input_ids: TensorCtor.fromTypedArray('input_ids', DataType.INT64, [rows, seq], ids) });
      acc.add(Object.values(out)[0]!.toTypedArray<Float32Array>(), ids, rows, seq);
    }
    return acc.perplexity();
  } finally {
    await s.release();
  }
}

/**
 * Shared by the fusion tests: run a fusion on a model, compare outputs before/after on
 * onnxruntime-node, count ops, make inputs.
 *
 * "Same outputs" means, per output, relative L2 error ||fused - original|| / ||original|| <= 1e-4
 * (the bound `peftc verify` applies by default) and elementwise |a - b| <= 1e-4 * |b| + 1e-5 (the
 * fused kernels reassociate float32 sums, and onnxruntime's erf/tanh differ from the decomposed
 * ops' in the last bits).
 */
import { expect } from 'vitest';
import { DataType } from '../src/ir/dtype.js';
import type { Model } from '../src/ir/model.js';
import { Tensor } from '../src/ir/tensor.js';
import { decodeModel } from '../src/onnx/decode.js';
import { encodeModel } from '../src/onnx/encode.js';
import { compareTensors } from '../src/runtime/compare.js';
import { runModel } from '../src/runtime/ort.js';
import { ErrorAccumulator } from '../src/verify/metrics.js';
import { fusionPass, type FusionPass, type FusionTarget } from '../passes/fusion.js';
import { runPipeline } from '../passes/pass.js';
import { shapeInference } from '../passes/shape-inference.js';
import { mulberry32 } from './rng.js';

export const REL_L2 = 1e-4;
export const ELEMENTWISE = { rtol: 1e-4, atol: 1e-5 };

/** Shape inference, which the fusion pass expects to have run (as compile's cleanup does). */
export function inferShapes(model: Model): Model {
  runPipeline(model, [shapeInference], { check: true });
  return model;
}

/** Runs the fusion pass (invariant checker on) and returns it with its records. */
export function fuse(model: Model, options: { target?: FusionTarget; only?: string[]; lowerFloatTo?: 'fp16' | 'bf16' } = {}): FusionPass {
  const pass = fusionPass({ target: options.target ?? 'cpu', ...(options.only ? { only: options.only } : {}), ...(options.lowerFloatTo ? { lowerFloatTo: options.lowerFloatTo } : {}) });
  runPipeline(model, [pass], { check: true });
  return pass;
}

/** Op histogram ("com.microsoft::Gelu" for contrib ops). */
export function ops(model: Model): Record<string, number> {
  const h: Record<string, number> = {};
  for (const n of model.graph.nodes) h[n.qualifiedOp] = (h[n.qualifiedOp] ?? 0) + 1;
  return h;
}

export function copy(model: Model): Model {
  return decodeModel(encodeModel(model));
}

/** Worst relative L2 error over the outputs, and any elementwise failure. */
export async function compareRuns(original: Model | Uint8Array, fused: Model, feeds: Record<string, Tensor>): Promise<{ relErr: number; failures: string[] }> {
  const expected = await runModel(original, feeds);
  const actual = await runModel(fused, feeds);
  let relErr = 0;
  const failures: string[] = [];
  for (const [name, e] of Object.entries(expected)) {
    const a = actual[name];
    if (!a) {
      failures.push(`output '${name}' missing`);
      continue;
    }
    const c = compareTensors(e, a, ELEMENTWISE);
    if (!c.ok) failures.push(`output '${name}': ${c.reason}`);
    if (e.dims.join() !== a.dims.join() || e.dtype !== a.dtype) continue;
    const acc = new ErrorAccumulator();
    acc.add(e, a);
    relErr = Math.max(relErr, acc.stats().relErr);
  }
  return { relErr, failures };
}

export async function expectSameOutputs(original: Model | Uint8Array, fused: Model, feeds: Record<string, Tensor>): Promise<number> {
  const { relErr, failures } = await compareRuns(original, fused, feeds);
  expect(failures).toEqual([]);
  expect(relErr).toBeLessThanOrEqual(REL_L2);
  return relErr;
}

export function floats(n: number, seed: number, scale = 1): Float32Array {
  const r = mulberry32(seed);
  return Float32Array.from({ length: n }, () => Math.fround((r() * 2 - 1) * scale));
}

export function floatInput(name: string, dims: number[], seed: number, scale = 1): Tensor {
  return Tensor.fromTypedArray(name, DataType.FLOAT, dims, floats(dims.reduce((a, b) => a * b, 1), seed, scale));
}

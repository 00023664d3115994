/**
 * --target tfjs, op by op: small graphs that exercise the lowering table's cases beyond what the
 * zoo uses (padding forms, ceil_mode, depthwise and dilated convolution, NHWC through Concat, Pad
 * and reductions, Transpose composed with the layout, Slice clamping and negative steps, negative
 * Gather indices, Softmax on another axis in both opset forms, integer Div truncation...), each run
 * by onnxruntime-node as ONNX and by tfjs-converter on tfjs-core's CPU backend as the lowered
 * artifact, outputs compared (float within 1e-5 relative, integers exactly). CNN graphs also
 * check that NCHW <-> NHWC conversions happen only at the boundaries.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ModelBuilder } from '../models/builder.js';
import { runPipeline } from '../passes/pass.js';
import { cleanupPipeline } from '../passes/pipelines.js';
import { shapeInference } from '../passes/shape-inference.js';
import { DataType } from '../src/ir/dtype.js';
import type { Value } from '../src/ir/graph.js';
import type { Model } from '../src/ir/model.js';
import { Tensor } from '../src/ir/tensor.js';
import { runModel } from '../src/runtime/ort.js';
import { ErrorAccumulator } from '../src/verify/metrics.js';
import { writeTfjsArtifact, type TfjsWriteResult } from '../targets/tfjs/artifact.js';
import { openTfjsArtifact } from '../targets/tfjs/runner.js';
import { mulberry32 } from './rng.js';

const work = mkdtempSync(join(tmpdir(), 'peftc-tfjs-ops-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

type Built = { model: Model; feeds: Record<string, Tensor> };

/** A builder with seeded helpers: random float inputs/weights, int64 constants. */
function graph(opset = 17) {
  const b = new ModelBuilder({ opset });
  const rnd = mulberry32(1234);
  const feeds: Record<string, Tensor> = {};
  const floats = (n: number, scale = 1) => Float32Array.from({ length: n }, () => (rnd() * 2 - 1) * scale);
  const count = (dims: number[]) => dims.reduce((a, d) => a * d, 1);
  return {
    b,
    input(name: string, dims: number[], scale = 2): Value {
      feeds[name] = Tensor.fromTypedArray(name, DataType.FLOAT, dims, floats(count(dims), scale));
      return b.input(name, DataType.FLOAT, dims);
    },
    intInput(name: string, dims: number[], values: number[]): Value {
      feeds[name] = Tensor.fromTypedArray(name, DataType.INT64, dims, BigInt64Array.from(values, (v) => BigInt(v)));
      return b.input(name, DataType.INT64, dims);
    },
    weight(dims: number[], scale = 0.5): Value {
      return b.initializer(undefined, DataType.FLOAT, dims, floats(count(dims), scale));
    },
    ints(values: Array<number | bigint>): Value {
      return b.initializer(undefined, DataType.INT64, [values.length], BigInt64Array.from(values, (v) => BigInt(v)));
    },
    scalar(x: number): Value {
      return b.initializer(undefined, DataType.FLOAT, [], Float32Array.of(x));
    },
    done(...outputs: Value[]): Built {
      for (const o of outputs) b.output(o);
      return { model: b.build(), feeds };
    },
  };
}

/** Runs `build()` in onnxruntime and as a TF.js artifact; compares; returns the write result. */
async function agree(name: string, build: () => Built, tolerance = 1e-5, options: { fold?: boolean } = {}): Promise<TfjsWriteResult> {
  const reference = build();
  const want = await runModel(reference.model, reference.feeds);
  const lowered = build().model;
  // Without folding, ops with constant inputs (Shape, Range, ConstantOfShape) reach the lowering.
  runPipeline(lowered, options.fold === false ? [shapeInference] : cleanupPipeline(), { fixpoint: options.fold !== false });
  const dir = join(work, name);
  const written = writeTfjsArtifact(lowered, dir, { source: name });
  const runner = await openTfjsArtifact(dir);
  try {
    const got = await runner.run(reference.feeds);
    for (const [k, r] of Object.entries(want)) {
      const c = got[k]!;
      expect(c.dims, `${name}: ${k} shape`).toEqual(r.dims);
      expect(c.dtype, `${name}: ${k} type`).toBe(r.dtype);
      const acc = new ErrorAccumulator();
      acc.add(r, c);
      const s = acc.stats();
      if (s.mismatches !== undefined) expect(s.mismatches, `${name}: ${k} integer mismatches`).toBe(0);
      else expect(s.relErr, `${name}: ${k} relative error`).toBeLessThan(tolerance);
      expect(s.nonFinite, `${name}: ${k} non-finite`).toBe(0);
    }
  } finally {
    await runner.release();
  }
  return written;
}

describe('tfjs lowering, op by op, against onnxruntime', () => {
  it('a CNN: strided SAME conv, BatchNorm, explicit-pad max pool, depthwise conv, residual add, counted-pad average pool, channel concat, global pooling, Gemm; NHWC conversions only at the boundaries', async () => {
    const r = await agree('cnn', () => {
      const g = graph();
      const x = g.input('image', [2, 3, 17, 17]);
      let y = g.b.op('Conv', [x, g.weight([8, 3, 3, 3]), g.weight([8])], { strides: [2, 2], auto_pad: 'SAME_UPPER' });
      y = g.b.op('BatchNormalization', [y, g.weight([8]), g.weight([8]), g.weight([8], 0.1), g.b.initializer(undefined, DataType.FLOAT, [8], Float32Array.from({ length: 8 }, (_, i) => 0.5 + i / 8))], { epsilon: { float: 1e-5 } });
      y = g.b.op('Relu', [y]);
      const pooled = g.b.op('MaxPool', [y], { kernel_shape: [3, 3], strides: [1, 1], pads: [0, 1, 1, 0] });
      const dw = g.b.op('Conv', [pooled, g.weight([16, 1, 3, 3]), g.weight([16])], { group: 8, pads: [1, 1, 1, 1] });
      const proj = g.b.op('Conv', [pooled, g.weight([16, 8, 1, 1])], {});
      const sum = g.b.op('Add', [dw, proj]);
      const scaled = g.b.op('Mul', [sum, g.weight([16, 1, 1])]);
      const avg = g.b.op('AveragePool', [scaled], { kernel_shape: [3, 3], pads: [1, 1, 1, 1], count_include_pad: 1 });
      const cat = g.b.op('Concat', [avg, g.b.op('Sigmoid', [scaled])], { axis: 1 });
      const gap = g.b.op('GlobalAveragePool', [cat]);
      const flat = g.b.op('Flatten', [gap], { axis: 1 });
      return g.done(g.b.op('Gemm', [flat, g.weight([5, 32]), g.weight([5])], { transB: 1 }));
    });
    // One Transpose where the image enters NHWC; leaving after global pooling is a Reshape ([N,1,1,C]).
    expect(r.info.layoutConversions).toBe(2);
    expect(r.info.tfOps.Transpose ?? 0).toBe(1);
    expect(r.info.tfOps).toMatchObject({ Conv2D: 2, DepthwiseConv2dNative: 1, FusedBatchNormV3: 1, MaxPool: 1, AvgPool: 1 });
  });

  it('asymmetric and dilated convolution, ceil_mode max pooling, SAME average pooling without counted pads, keepdims ReduceMean and Pad in NHWC, then a Transpose composed with the layout', async () => {
    const r = await agree('cnn2', () => {
      const g = graph();
      const x = g.input('x', [1, 4, 11, 9]);
      let y = g.b.op('Conv', [x, g.weight([6, 4, 3, 3])], { pads: [0, 1, 2, 0] });
      y = g.b.op('Conv', [y, g.weight([6, 6, 3, 3])], { dilations: [2, 2], pads: [2, 2, 2, 2] });
      y = g.b.op('MaxPool', [y], { kernel_shape: [2, 2], strides: [2, 2], ceil_mode: 1 });
      y = g.b.op('AveragePool', [y], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] });
      y = g.b.op('Pad', [y, g.ints([0, 0, 1, 2, 0, 0, 2, 1]), g.scalar(0.25)], { mode: 'constant' });
      const mean = g.b.op('ReduceMean', [y], { axes: [2, 3], keepdims: 1 });
      y = g.b.op('Sub', [y, mean]);
      y = g.b.op('Clip', [y, g.scalar(-0.5), g.scalar(0.75)]);
      return g.done(g.b.op('Transpose', [y], { perm: [0, 2, 3, 1] }));
    });
    // In: one Transpose. Out: the ONNX Transpose reads the NHWC tensor as it is (composed to the identity).
    expect(r.info.layoutConversions).toBe(1);
    expect(r.info.tfOps.Transpose ?? 0).toBe(1);
  });

  it('Slice: negative starts/ends/steps, INT64 bounds, negative axes', async () => {
    await agree('slice', () => {
      const g = graph(13);
      const x = g.input('x', [3, 10, 8]);
      const a = g.b.op('Slice', [x, g.ints([-1, 7]), g.ints([-(2n ** 63n), 1]), g.ints([1, -1]), g.ints([-1, -2])]);
      const b = g.b.op('Slice', [x, g.ints([2]), g.ints([2n ** 63n - 1n]), g.ints([-2])]);
      const c = g.b.op('Slice', [x, g.ints([-100, 1]), g.ints([100, 9]), g.ints([0, 1]), g.ints([2, 3])]);
      return g.done(a, b, c);
    });
  });

  it('Gather: negative constant indices, run-time int64 indices (negative ones wrap), gathering along axis 1', async () => {
    await agree('gather', () => {
      const g = graph();
      const table = g.weight([7, 5]);
      const ids = g.intInput('ids', [2, 3], [0, 6, -1, 3, -7, 2]);
      const x = g.input('x', [4, 6]);
      const a = g.b.op('Gather', [table, ids], { axis: 0 });
      const b = g.b.op('Gather', [x, g.ints([-1, 0, 2])], { axis: 1 });
      const c = g.b.op('Gather', [x, g.b.initializer(undefined, DataType.INT64, [], BigInt64Array.of(-2n))], { axis: 0 });
      return g.done(a, b, c);
    });
  });

  it('Softmax and LogSoftmax on an inner axis (opset 13: that axis; opset 11: coerced to 2-D)', async () => {
    await agree('softmax13', () => {
      const g = graph(13);
      const x = g.input('x', [2, 5, 3, 4]);
      return g.done(g.b.op('Softmax', [x], { axis: 1 }), g.b.op('LogSoftmax', [x], { axis: -2 }), g.b.op('Softmax', [x], {}));
    });
    await agree('softmax11', () => {
      const g = graph(11);
      const x = g.input('x', [2, 5, 3]);
      return g.done(g.b.op('Softmax', [x], { axis: 1 }), g.b.op('Softmax', [x], {}));
    });
  });

  it('Split (sizes input and equal parts), Concat, Expand, Tile, Unsqueeze, Squeeze, Flatten, Reshape with 0 and -1', async () => {
    await agree('movement', () => {
      const g = graph(13);
      const x = g.input('x', [2, 6, 4]);
      const [p, q] = g.b.opMulti('Split', [x, g.ints([2, 4])], { axis: 1 }, { outputs: 2 });
      const [u, v, w] = g.b.opMulti('Split', [x], { axis: 1 }, { outputs: 3 });
      const cat = g.b.op('Concat', [q!, p!, u!], { axis: 1 });
      const e = g.b.op('Expand', [g.b.op('Unsqueeze', [v!, g.ints([1])]), g.ints([2, 3, 2, 4])]);
      const t = g.b.op('Tile', [w!, g.ints([1, 2, 3])]);
      const s = g.b.op('Squeeze', [g.b.op('ReduceSum', [x, g.ints([2])], { keepdims: 1 }), g.ints([2])]);
      const f = g.b.op('Flatten', [e], { axis: 2 });
      const r = g.b.op('Reshape', [cat, g.ints([0, -1, 2])]);
      return g.done(cat, e, t, s, f, r);
    });
  });

  it('elementwise and activations: Pow 2 and 3, Div, Where/Equal/Greater, Clip with one bound, LeakyRelu, Elu, Selu, HardSigmoid, HardSwish, Softplus, Gelu (both), Erf, Max/Min/Sum/Mean', async () => {
    await agree('activations', () => {
      const g = graph(20);
      const x = g.input('x', [3, 7]);
      const y = g.input('y', [7]);
      const outs = [
        g.b.op('Pow', [x, g.scalar(2)]),
        g.b.op('Pow', [g.b.op('Abs', [x]), g.scalar(3)]),
        g.b.op('Div', [x, g.b.op('Add', [g.b.op('Abs', [y]), g.scalar(0.5)])]),
        g.b.op('Where', [g.b.op('Greater', [x, y]), x, g.b.op('Neg', [y])]),
        g.b.op('Cast', [g.b.op('Equal', [g.b.op('Round', [x]), g.scalar(1)])], { to: DataType.FLOAT }),
        g.b.op('Clip', [x, g.scalar(-0.3)]),
        g.b.op('LeakyRelu', [x], { alpha: { float: 0.1 } }),
        g.b.op('Elu', [x], { alpha: { float: 0.5 } }),
        g.b.op('Selu', [x]),
        g.b.op('HardSigmoid', [x], { alpha: { float: 0.3 }, beta: { float: 0.4 } }),
        g.b.op('HardSwish', [x]),
        g.b.op('Softplus', [x]),
        g.b.op('Gelu', [x]),
        g.b.op('Gelu', [x], { approximate: 'tanh' }),
        g.b.op('Erf', [x]),
        g.b.op('Max', [x, y, g.scalar(0.1)]),
        g.b.op('Min', [x, y]),
        g.b.op('Sum', [x, y, x]),
        g.b.op('Mean', [x, y]),
      ];
      return g.done(...outs);
    });
  });

  it('integers: int64 Div truncates toward zero, Mod floors, Cast float <-> int64 <-> bool, ArgMax keepdims, CumSum, TopK, reductions', async () => {
    await agree('integers', () => {
      const g = graph(13);
      const a = g.intInput('a', [6], [-7, 7, -8, 9, 0, -1]);
      const x = g.input('x', [4, 5]);
      const div = g.b.op('Div', [a, g.ints([2, -2, 3, 4, 5, 2])]);
      const mod = g.b.op('Mod', [a, g.ints([3, 3, -3, 4, 5, 2])]);
      const i = g.b.op('Cast', [g.b.op('Mul', [x, g.scalar(3)])], { to: DataType.INT64 });
      const back = g.b.op('Cast', [g.b.op('Add', [i, g.ints([1])])], { to: DataType.FLOAT });
      const bool = g.b.op('Cast', [g.b.op('Cast', [i], { to: DataType.BOOL })], { to: DataType.INT64 });
      const arg = g.b.op('ArgMax', [x], { axis: 1, keepdims: 1 });
      const cum = g.b.op('CumSum', [x, g.ints([1])], { exclusive: 1, reverse: 1 });
      const [vals, idx] = g.b.opMulti('TopK', [x, g.ints([2])], {}, { outputs: 2 });
      const red = [
        g.b.op('ReduceSum', [x, g.ints([1])], { keepdims: 0 }),
        g.b.op('ReduceMax', [x], { axes: [0], keepdims: 0 }),
        g.b.op('ReduceMin', [x], { keepdims: 1 }),
        g.b.op('ReduceL2', [x], { axes: [1] }),
        g.b.op('ReduceSumSquare', [x], { axes: [0] }),
      ];
      return g.done(div, mod, back, bool, arg, cum, vals!, idx!, ...red);
    });
  });

  it('MatMul with 1-D and broadcast batch operands, Gemm with alpha, beta, transA and a [1, N] bias, BatchNormalization on rank 3, LayerNormalization on two axes', async () => {
    await agree('matrices', () => {
      const g = graph(17);
      const x = g.input('x', [2, 3, 4]);
      const v = g.input('v', [4]);
      const m = g.input('m', [5, 4]);
      const outs = [
        g.b.op('MatMul', [x, v]),
        g.b.op('MatMul', [v, g.weight([4, 6])]),
        g.b.op('MatMul', [x, g.weight([1, 4, 3])]),
        g.b.op('Gemm', [m, g.weight([5, 3]), g.weight([1, 3])], { transA: 1, alpha: { float: 0.5 }, beta: { float: 2 } }),
        g.b.op('BatchNormalization', [x, g.weight([3]), g.weight([3]), g.weight([3]), g.b.initializer(undefined, DataType.FLOAT, [3], Float32Array.of(0.5, 1, 2))]),
        g.b.op('LayerNormalization', [x, g.weight([3, 4]), g.weight([3, 4])], { axis: -2, epsilon: { float: 1e-5 } }),
      ];
      return g.done(...outs);
    });
  });

  it('Pad reflect; Pad with axes (opset 18)', async () => {
    await agree('pad', () => {
      const g = graph(18);
      const x = g.input('x', [2, 5, 6]);
      return g.done(g.b.op('Pad', [x, g.ints([0, 1, 2, 0, 3, 1])], { mode: 'reflect' }), g.b.op('Pad', [x, g.ints([1, 2]), g.scalar(-1), g.ints([-1])]));
    });
  });

  it('less common ops, lowered without constant folding: Shape, Size, Range, ConstantOfShape, Identity, Dropout, PRelu, Softsign, inverse trigonometry, IsNaN, logical ops, ReduceProd/L1/LogSum, ArgMin, GlobalMaxPool', async () => {
    const r = await agree(
      'rare',
      () => {
        const g = graph(13);
        const x = g.input('x', [2, 3, 4, 5], 0.9);
        const shape = g.b.op('Shape', [x]);
        const size = g.b.op('Size', [x]);
        const range = g.b.op('Range', [g.scalar(0.5), g.scalar(3), g.scalar(0.75)]);
        const filled = g.b.op('ConstantOfShape', [g.ints([2, 3])], { value: Tensor.fromTypedArray('v', DataType.FLOAT, [1], Float32Array.of(1.5)) });
        const id = g.b.op('Identity', [g.b.op('Dropout', [x])]);
        const prelu = g.b.op('PRelu', [x, g.weight([3, 1, 1])]);
        const trig = ['Softsign', 'Asin', 'Acos', 'Atan', 'Tan', 'Sinh', 'Cosh', 'Asinh', 'Atanh'].map((op) => g.b.op(op, [x]));
        const nan = g.b.op('IsNaN', [g.b.op('Sqrt', [x])]);
        const pos = g.b.op('Greater', [x, g.scalar(0)]);
        const small = g.b.op('Less', [x, g.scalar(0.5)]);
        const logic = [g.b.op('And', [pos, small]), g.b.op('Or', [pos, small]), g.b.op('Xor', [pos, small]), g.b.op('Not', [pos])];
        const red = [
          g.b.op('ReduceProd', [x], { axes: [1], keepdims: 0 }),
          g.b.op('ReduceL1', [x], { axes: [3] }),
          g.b.op('ReduceLogSum', [g.b.op('Abs', [x])], { axes: [2, 3] }),
          g.b.op('ArgMin', [x], { axis: 2, keepdims: 0 }),
          g.b.op('GlobalMaxPool', [x]),
        ];
        return g.done(shape, size, range, filled, id, prelu, ...trig, nan, ...logic, ...red);
      },
      1e-5,
      { fold: false },
    );
    expect(r.info.tfOps).toMatchObject({ Range: 1, Fill: 1, Prelu: 1, IsNan: 1, LogicalAnd: 1, Prod: 1, ArgMin: 1 });
  });
});

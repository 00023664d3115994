/**
 * Reference kernels against onnxruntime on random inputs, for what ONNX 1.12's node tests do not
 * reach: newer opsets (reduce axes as input at 18, blocked int4 Quantize/DequantizeLinear at 21),
 * random broadcasting, batch MatMul, negative-step Slice, random permutations. Each case is one
 * node; integer results must be exact, float32 within rtol 1e-5/atol 1e-6, float16 within 1 ulp.
 */
import fc from 'fast-check';
import { describe, it } from 'vitest';
import { DataType, elementCount, packSubByte, unpackSubByte, type TypedArray } from '../src/ir/dtype.js';
import { Tensor } from '../src/ir/tensor.js';
import { compareTensors } from '../src/runtime/compare.js';
import { runModel } from '../src/runtime/ort.js';
import { ModelBuilder, type AttrInput } from '../models/builder.js';
import { findKernel } from '../kernels/index.js';
import { randomFloats } from './arbitrary-graph.js';

interface Case {
  op: string;
  opset: number;
  inputs: Tensor[];
  /** Constant inputs (initializers) instead of graph inputs, by index. */
  constants?: number[];
  attrs?: Record<string, AttrInput>;
  outputs?: number;
  /** Cast outputs to this type inside the model (onnxruntime-node cannot return int4/uint4). */
  castTo?: DataType;
}

const f32 = (dims: number[], seed: number) => Tensor.fromTypedArray('', DataType.FLOAT, dims, randomFloats(elementCount(dims), seed));
const i64 = (vals: number[]) => Tensor.fromTypedArray('', DataType.INT64, [vals.length], BigInt64Array.from(vals, BigInt));
const typed = (dtype: DataType, dims: number[], data: TypedArray) => Tensor.fromTypedArray('', dtype, dims, data);

async function check(c: Case): Promise<void> {
  const b = new ModelBuilder({ opset: c.opset });
  const vals = c.inputs.map((t, i) =>
    c.constants?.includes(i) ? b.graph.addInitializer(t.renamed(`in${i}`)) : b.input(`in${i}`, t.dtype, [...t.dims]),
  );
  const outs = b.opMulti(c.op, vals, c.attrs ?? {}, { outputs: c.outputs ?? 1, name: 'n' });
  for (const o of outs) b.graph.outputs.push(c.castTo ? b.op('Cast', [o], { to: c.castTo }) : o);
  const model = b.build();
  const feeds: Record<string, Tensor> = {};
  c.inputs.forEach((t, i) => {
    if (!c.constants?.includes(i)) feeds[`in${i}`] = t.renamed(`in${i}`);
  });
  const expected = await runModel(model, feeds);
  const node = model.graph.nodes[0]!;
  const entry = findKernel('', c.op, c.opset);
  if (!entry) throw new Error(`no kernel for ${c.op} at opset ${c.opset}`);
  const got = entry.kernel(c.inputs, node, { opsetVersion: c.opset });
  b.graph.outputs.forEach((o, i) => {
    const e = expected[o.name]!;
    const tol = e.dtype === DataType.FLOAT16 ? { rtol: 1e-3, atol: 1e-3 } : { rtol: 1e-5, atol: 1e-6 };
    const mine = c.castTo ? findKernel('', 'Cast', 21)!.kernel([unpacked(got[i]!)], castNode(c.castTo), { opsetVersion: 21 })[0]! : got[i]!;
    const cmp = compareTensors(e, mine, tol);
    if (!cmp.ok) throw new Error(`${c.op}: ${cmp.reason}`);
  });
}

/** int4/uint4 as int8 values (our Cast kernel does not read packed types). */
function unpacked(t: Tensor): Tensor {
  if (t.dtype !== DataType.INT4 && t.dtype !== DataType.UINT4) return t;
  return typed(DataType.INT8, [...t.dims], unpackSubByte(t.bytes(), t.elementCount, 4, t.dtype === DataType.INT4));
}

function castNode(to: DataType) {
  return new ModelBuilder({ opset: 21 }).graph.addNode('Cast', [], [], { attributes: [{ name: 'to', type: 'int', value: BigInt(to) }] });
}

const shape = (maxRank = 3) => fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 1, maxLength: maxRank });
const seed = fc.nat();

/** A shape that broadcasts against `s`: a suffix of it with some dims set to 1. */
const broadcastable = (s: number[]) =>
  fc.tuple(fc.nat(s.length), fc.array(fc.boolean(), { minLength: s.length, maxLength: s.length })).map(([drop, ones]) =>
    s.slice(drop).map((d, i) => (ones[i + drop] ? 1 : d)),
  );

describe('reference kernels agree with onnxruntime on random inputs', () => {
  it('broadcasting arithmetic (float32, int32, int64)', async () => {
    await fc.assert(
      fc.asyncProperty(shape(), fc.constantFrom('Add', 'Sub', 'Mul', 'Div'), fc.constantFrom(DataType.FLOAT, DataType.INT32, DataType.INT64), seed, async (s, op, dt, sd) => {
        const t = await fc.sample(broadcastable(s), { numRuns: 1, seed: sd })[0]!;
        const mk = (dims: number[], k: number, nonzero: boolean) => {
          const f = randomFloats(elementCount(dims), sd + k);
          if (dt === DataType.FLOAT) return f32(dims, sd + k);
          const ints = Array.from(f, (v) => Math.round(v * 50) || (nonzero ? 1 : 0));
          return dt === DataType.INT32 ? typed(dt, dims, Int32Array.from(ints)) : typed(dt, dims, BigInt64Array.from(ints, BigInt));
        };
        await check({ op, opset: 14, inputs: [mk(s, 1, false), mk(t, 2, true)] });
      }),
      { numRuns: 40 },
    );
  });

  it('Cast between float32, float16, int32, int64, bool', async () => {
    const types = [DataType.FLOAT, DataType.FLOAT16, DataType.INT32, DataType.INT64, DataType.BOOL];
    await fc.assert(
      fc.asyncProperty(shape(), fc.constantFrom(...types), seed, async (s, to, sd) => {
        const x = f32(s, sd);
        const scaled = typed(DataType.FLOAT, s, x.toTypedArray<Float32Array>().map((v) => v * 1000));
        await check({ op: 'Cast', opset: 19, inputs: [scaled], attrs: { to } });
      }),
      { numRuns: 30 },
    );
  });

  it('reductions with axes as input (opset 18), keepdims on and off', async () => {
    await fc.assert(
      fc.asyncProperty(shape(), fc.constantFrom('ReduceSum', 'ReduceMean', 'ReduceMax', 'ReduceMin', 'ReduceProd', 'ReduceL1', 'ReduceL2', 'ReduceSumSquare', 'ReduceLogSumExp'), fc.boolean(), seed, async (s, op, keep, sd) => {
        const axes = s.map((_, i) => i).filter((i) => (sd >> i) & 1);
        await check({ op, opset: 18, inputs: [f32(s, sd), i64(axes)], constants: [1], attrs: { keepdims: keep ? 1 : 0 } });
      }),
      { numRuns: 40 },
    );
  });

  it('Softmax / LogSoftmax on any axis (opset 13)', async () => {
    await fc.assert(
      fc.asyncProperty(shape(), fc.constantFrom('Softmax', 'LogSoftmax'), seed, async (s, op, sd) => {
        await check({ op, opset: 13, inputs: [f32(s, sd)], attrs: { axis: (sd % s.length) - s.length } });
      }),
      { numRuns: 20 },
    );
  });

  it('Transpose, Slice with negative steps, Gather with negative indices, Tile, Expand', async () => {
    await fc.assert(
      fc.asyncProperty(shape(4), seed, async (s, sd) => {
        const x = f32(s, sd);
        const perm = s.map((_, i) => i).sort((a, b) => ((a * 7919 + sd) % 13) - ((b * 7919 + sd) % 13));
        await check({ op: 'Transpose', opset: 13, inputs: [x], attrs: { perm } });
        const axis = sd % s.length;
        const n = s[axis]!;
        const starts = [-1 - (sd % n)];
        const ends = [sd % 2 ? -n - 5 : 0];
        await check({ op: 'Slice', opset: 13, inputs: [x, i64(starts), i64(ends), i64([axis]), i64([-1 - (sd % 2)])], constants: [1, 2, 3, 4] });
        const idx = Array.from({ length: 3 }, (_, k) => ((sd + k * 5) % (2 * n)) - n);
        await check({ op: 'Gather', opset: 13, inputs: [x, i64(idx)], constants: [1], attrs: { axis } });
        await check({ op: 'Tile', opset: 13, inputs: [x, i64(s.map((_, k) => 1 + ((sd + k) % 2)))], constants: [1] });
        await check({ op: 'Expand', opset: 13, inputs: [typed(DataType.FLOAT, [1, ...s.slice(1)], randomFloats(elementCount(s.slice(1)), sd)), i64([2, ...s])], constants: [1] });
      }),
      { numRuns: 25 },
    );
  });

  it('MatMul with batch broadcasting and 1-D operands; Gemm with transposes', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 5 }), fc.constantFrom(0, 1, 2, 3), seed, async (m, k, n, form, sd) => {
        const a = form === 1 ? f32([k], sd) : form === 2 ? f32([2, 1, m, k], sd) : f32([m, k], sd);
        const b = form === 3 ? f32([k], sd + 1) : form === 2 ? f32([3, k, n], sd + 1) : f32([k, n], sd + 1);
        await check({ op: 'MatMul', opset: 13, inputs: [a, b] });
        const ta = sd % 2;
        const tb = (sd >> 1) % 2;
        await check({
          op: 'Gemm',
          opset: 13,
          inputs: [f32(ta ? [k, m] : [m, k], sd), f32(tb ? [n, k] : [k, n], sd + 1), f32([n], sd + 2)],
          attrs: { transA: ta, transB: tb, alpha: { float: 0.5 }, beta: { float: 2 } },
        });
      }),
      { numRuns: 25 },
    );
  });

  it('Quantize/DequantizeLinear: per-tensor, per-axis, blocked int4/uint4/int8 (opset 21)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 9 }), fc.constantFrom(DataType.INT8, DataType.UINT8, DataType.INT4, DataType.UINT4), fc.constantFrom('tensor', 'axis', 'block'), seed, async (rows, cols, qt, form, sd) => {
        const block = 1 + (sd % 4);
        // Multiples of 1/8 over power-of-two scales: x / scale is exact and often a tie (k + 0.5),
        // which is where round-half-to-even matters.
        const x = typed(DataType.FLOAT, [rows, cols], randomFloats(rows * cols, sd).map((v) => Math.round(v * 24) / 8));
        const sDims = form === 'tensor' ? [] : form === 'axis' ? [cols] : [rows, Math.ceil(cols / block)];
        const scale = typed(DataType.FLOAT, sDims, randomFloats(elementCount(sDims), sd + 1).map((v) => [0.25, 0.5, 1][Math.floor(Math.abs(v) * 1.49)]!));
        const signed = qt === DataType.INT8 || qt === DataType.INT4;
        const zpVals = Array.from(randomFloats(elementCount(sDims), sd + 2), (v) => (signed ? Math.round(v) : 4 + Math.round(v)));
        const zp = qt === DataType.INT4 || qt === DataType.UINT4 ? Tensor.fromBytes('', qt, sDims, packSubByte(zpVals, 4)) : typed(qt, sDims, qt === DataType.INT8 ? Int8Array.from(zpVals) : Uint8Array.from(zpVals));
        const attrs: Record<string, AttrInput> = form === 'axis' ? { axis: 1 } : form === 'block' ? { axis: 1, block_size: block } : {};
        const packed = qt === DataType.INT4 || qt === DataType.UINT4;
        await check({ op: 'QuantizeLinear', opset: 21, inputs: [x, scale, zp], constants: [1, 2], attrs, castTo: packed ? DataType.INT32 : undefined });
        const q = findKernel('', 'QuantizeLinear', 21)!.kernel([x, scale, zp], new ModelBuilder({ opset: 21 }).graph.addNode('QuantizeLinear', [], [], { attributes: Object.entries(attrs).map(([k2, v]) => ({ name: k2, type: 'int', value: BigInt(v as number) })) }), { opsetVersion: 21 })[0]!;
        // The quantized values enter as a constant: onnxruntime-node cannot take int4 inputs either.
        await check({ op: 'DequantizeLinear', opset: 21, inputs: [q, scale, zp], constants: [0, 1, 2], attrs });
      }),
      { numRuns: 40 },
    );
  });
});

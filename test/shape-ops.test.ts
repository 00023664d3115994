/**
 * Shape and data-movement kernels beyond what ONNX 1.12's node tests reach (test/kernels.test.ts
 * runs those):
 * - every dtype: on each dtype (fixed-size, complex, float8, sub-byte, string) an op must move
 *   exactly the elements it moves on an int32 index tensor, bit for bit;
 * - onnxruntime agreement on newer opsets and forms (Split-18 num_outputs, Shape-15 start/end,
 *   Slice with int32 indices and int64 extremes, Reshape allowzero, non-float dtypes ...);
 * - older opset forms (attributes instead of inputs), Constant's value_* and sparse_value;
 * - invalid inputs are PeftcErrors naming the node (never garbage, never "unsupported");
 * - reshaping ops keep external data lazy.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PeftcError } from '../src/errors.js';
import { textBytes, type Attribute } from '../src/ir/attribute.js';
import { ALL_DTYPES, byteSize, DataType, dtypeInfo, dtypeName, elementCount, packSubByte, unpackSubByte, type TypedArray } from '../src/ir/dtype.js';
import type { Node } from '../src/ir/graph.js';
import { Tensor } from '../src/ir/tensor.js';
import { compareTensors } from '../src/runtime/compare.js';
import { runModel } from '../src/runtime/ort.js';
import { ModelBuilder, type AttrInput } from '../models/builder.js';
import { findKernel, KernelUnsupported } from '../kernels/index.js';

const typed = (dtype: DataType, dims: number[], data: TypedArray) => Tensor.fromTypedArray('', dtype, dims, data);
const i64 = (vals: Array<number | bigint>, dims = [vals.length]) => typed(DataType.INT64, dims, BigInt64Array.from(vals, (v) => BigInt(v)));
const i32 = (vals: number[], dims = [vals.length]) => typed(DataType.INT32, dims, Int32Array.from(vals));
const f32 = (vals: number[], dims = [vals.length]) => typed(DataType.FLOAT, dims, Float32Array.from(vals));
const strs = (vals: string[], dims = [vals.length]) => Tensor.fromStrings('', dims, vals.map(textBytes));
const arange = (dims: number[], from = 0) => i32(Array.from({ length: elementCount(dims) }, (_, i) => from + i), dims);
const INT64_MAX = 2n ** 63n - 1n;
const INT64_MIN = -(2n ** 63n);

interface Call {
  op: string;
  opset: number;
  inputs: Array<Tensor | null>;
  attrs?: Record<string, AttrInput>;
  outputs?: number;
}

/** A one-node model for `c` (inputs as graph inputs, or initializers where listed) and its node. */
function build(c: Call, constants: number[] = []) {
  const b = new ModelBuilder({ opset: c.opset });
  const vals = c.inputs.map((t, i) => {
    if (!t) return null;
    return constants.includes(i) ? b.graph.addInitializer(t.renamed(`in${i}`)) : b.input(`in${i}`, t.dtype, [...t.dims]);
  });
  const outs = b.opMulti(c.op, vals, c.attrs ?? {}, { outputs: c.outputs ?? 1, name: 'n' });
  for (const o of outs) b.graph.outputs.push(o);
  return { model: b.build(), node: b.graph.nodes[0]! };
}

function runNode(node: Node, op: string, opset: number, inputs: Array<Tensor | null>): Array<Tensor | null> {
  const entry = findKernel('', op, opset);
  if (!entry) throw new Error(`no kernel for ${op}-${opset}`);
  return entry.kernel(inputs, node, { opsetVersion: opset });
}

function run(c: Call): Tensor[] {
  return runNode(build(c).node, c.op, c.opset, c.inputs) as Tensor[];
}

/** Kernel and onnxruntime agree exactly (inputs at `constants` become initializers). */
async function agree(c: Call, constants: number[] = []): Promise<void> {
  const { model, node } = build(c, constants);
  const feeds: Record<string, Tensor> = {};
  c.inputs.forEach((t, i) => {
    if (t && !constants.includes(i)) feeds[`in${i}`] = t.renamed(`in${i}`);
  });
  const expected = await runModel(model, feeds);
  const got = runNode(node, c.op, c.opset, c.inputs);
  model.graph.outputs.forEach((o, i) => {
    const e = expected[o.name]!;
    const cmp = compareTensors(e, got[i]!, { rtol: 0, atol: 0 });
    if (!cmp.ok) throw new Error(`${c.op}-${c.opset} output ${i}: ${cmp.reason} (expected [${e.dims}], got [${got[i]!.dims}])`);
  });
}

// ---------------------------------------------------------------------------------------------
// Element identity across dtypes

/** A canonical key per element: its bytes in hex, its 2/4-bit code, or its string bytes. */
function elementKeys(t: Tensor): string[] {
  if (t.dtype === DataType.STRING) return t.strings().map((s) => Buffer.from(s).toString('hex'));
  const bits = dtypeInfo(t.dtype).bits;
  if (bits < 8) return Array.from(unpackSubByte(t.bytes(), t.elementCount, bits as 2 | 4, false), String);
  const size = bits / 8;
  const b = Buffer.from(t.bytes());
  return Array.from({ length: t.elementCount }, (_, i) => b.subarray(i * size, (i + 1) * size).toString('hex'));
}

let rngState = 12345;
const rnd = () => ((rngState = (rngState * 1103515245 + 12345) >>> 0) / 2 ** 32);

function randomTensor(dtype: DataType, dims: number[]): Tensor {
  const n = elementCount(dims);
  if (dtype === DataType.STRING) return strs(Array.from({ length: n }, () => `s${Math.floor(rnd() * 1e6)}é`), dims);
  const bits = dtypeInfo(dtype).bits;
  if (bits < 8) return Tensor.fromBytes('', dtype, dims, packSubByte(Array.from({ length: n }, () => Math.floor(rnd() * 2 ** bits)), bits as 2 | 4));
  const bytes = new Uint8Array(byteSize(dtype, n));
  for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(rnd() * 256);
  if (dtype === DataType.BOOL) bytes.forEach((v, i) => (bytes[i] = v & 1));
  return Tensor.fromBytes('', dtype, dims, bytes);
}

interface MoveCase {
  name: string;
  op: string;
  opset: number;
  /** Builds the inputs; `data(dims)` makes a data tensor (an index tensor or random data). */
  inputs: (data: (dims: number[]) => Tensor) => Array<Tensor | null>;
  attrs?: Record<string, AttrInput>;
  outputs?: number;
}

const MOVES: MoveCase[] = [
  { name: 'Identity', op: 'Identity', opset: 21, inputs: (d) => [d([2, 3])] },
  { name: 'Transpose', op: 'Transpose', opset: 21, inputs: (d) => [d([2, 3, 5])], attrs: { perm: [2, 0, 1] } },
  { name: 'Transpose (inner axes kept)', op: 'Transpose', opset: 21, inputs: (d) => [d([3, 2, 4, 5])], attrs: { perm: [1, 0, 2, 3] } },
  { name: 'Gather', op: 'Gather', opset: 21, inputs: (d) => [d([4, 3, 2]), i32([3, -4, 1, 1], [2, 2])], attrs: { axis: 0 } },
  { name: 'Gather axis 1', op: 'Gather', opset: 21, inputs: (d) => [d([4, 3, 2]), i64([2, 0])], attrs: { axis: -2 } },
  { name: 'Gather long rows', op: 'Gather', opset: 21, inputs: (d) => [d([3, 40]), i64([2, 0, 2])] },
  { name: 'GatherElements', op: 'GatherElements', opset: 21, inputs: (d) => [d([3, 4]), i64([0, -1, 2, 1, 1, 0], [2, 3])], attrs: { axis: 1 } },
  { name: 'Concat', op: 'Concat', opset: 21, inputs: (d) => [d([2, 1, 3]), d([2, 3, 3]), d([2, 0, 3])], attrs: { axis: 1 } },
  { name: 'Concat axis 0', op: 'Concat', opset: 21, inputs: (d) => [d([3]), d([1])], attrs: { axis: 0 } },
  { name: 'Split', op: 'Split', opset: 21, inputs: (d) => [d([2, 7]), i64([3, 0, 4])], attrs: { axis: 1 }, outputs: 3 },
  { name: 'Split num_outputs', op: 'Split', opset: 18, inputs: (d) => [d([7, 2])], attrs: { num_outputs: 3 }, outputs: 3 },
  { name: 'Slice negative steps', op: 'Slice', opset: 21, inputs: (d) => [d([4, 5, 3]), i64([-1, 1]), i64([INT64_MIN, 5]), i64([0, 1]), i64([-2, 2])] },
  { name: 'Slice inner run', op: 'Slice', opset: 21, inputs: (d) => [d([3, 40]), i32([1, 3]), i32([3, 39])] },
  { name: 'Tile', op: 'Tile', opset: 21, inputs: (d) => [d([2, 3]), i64([2, 3])] },
  { name: 'Expand', op: 'Expand', opset: 21, inputs: (d) => [d([3, 1]), i64([2, 1, 4])] },
  { name: 'Reshape', op: 'Reshape', opset: 21, inputs: (d) => [d([2, 3, 2]), i64([0, -1])] },
  { name: 'Flatten', op: 'Flatten', opset: 21, inputs: (d) => [d([2, 3, 2])], attrs: { axis: 2 } },
  { name: 'Squeeze', op: 'Squeeze', opset: 21, inputs: (d) => [d([1, 3, 1]), i64([-1])] },
  { name: 'Unsqueeze', op: 'Unsqueeze', opset: 21, inputs: (d) => [d([3]), i64([0, -1])] },
];

describe('shape and data-movement kernels on every dtype', () => {
  const dtypes = ALL_DTYPES.filter((d) => d !== DataType.UNDEFINED);
  for (const c of MOVES) {
    it(`${c.name} moves the same elements for ${dtypes.length} dtypes`, () => {
      // The index run: data tensors hold their flat positions in one universe.
      let next = 0;
      const idxOut = run({ ...c, inputs: c.inputs((dims) => arange(dims, (next += elementCount(dims)) - elementCount(dims))) });
      const maps = idxOut.map((t) => Array.from(t.toTypedArray<Int32Array>()));
      for (const dtype of dtypes) {
        const universe: string[] = [];
        const inputs = c.inputs((dims) => {
          const t = randomTensor(dtype, dims);
          universe.push(...elementKeys(t));
          return t;
        });
        const out = run({ ...c, inputs });
        out.forEach((t, k) => {
          expect(t.dtype, `${c.name} ${dtypeName(dtype)}`).toBe(dtype);
          expect(t.dims, `${c.name} ${dtypeName(dtype)}`).toEqual(idxOut[k]!.dims);
          if (t.dtype !== DataType.STRING) expect(t.bytes().byteLength).toBe(byteSize(dtype, t.elementCount));
          expect(elementKeys(t), `${c.name} ${dtypeName(dtype)} output ${k}`).toEqual(maps[k]!.map((i) => universe[i]!));
        });
      }
    });
  }

  it('ConstantOfShape fills with a value of any dtype', () => {
    for (const dtype of dtypes) {
      const value = randomTensor(dtype, [1]);
      const [out] = run({ op: 'ConstantOfShape', opset: 21, inputs: [i64([2, 3])], attrs: { value } });
      expect(out!.dims).toEqual([2, 3]);
      expect(elementKeys(out!)).toEqual(new Array(6).fill(elementKeys(value)[0]));
    }
  });

  it('float NaN payloads and signed zeros move bit for bit', () => {
    const bits = Uint32Array.of(0x7fc00001, 0xffbadbad, 0x80000000, 0x7f800001);
    const x = typed(DataType.FLOAT, [4], new Float32Array(bits.buffer));
    const [t] = run({ op: 'Slice', opset: 13, inputs: [x, i64([-1]), i64([INT64_MIN]), i64([0]), i64([-1])] });
    expect(Array.from(new Uint32Array(t!.toTypedArray<Float32Array>().slice().buffer))).toEqual(Array.from(bits).reverse());
    const d = typed(DataType.DOUBLE, [2], new Float64Array(new Uint32Array([1, 0x7ff00000, 0, 0x80000000]).buffer));
    const [g] = run({ op: 'Gather', opset: 13, inputs: [d, i64([1, 0])] });
    expect(Array.from(new Uint32Array(g!.toTypedArray<Float64Array>().slice().buffer))).toEqual([0, 0x80000000, 1, 0x7ff00000]);
  });

  it('misaligned input bytes (views into a decoded buffer) are handled', () => {
    const buf = new Uint8Array(1 + 24);
    const view = buf.subarray(1);
    const src = new Float32Array([1, 2, 3, 4, 5, 6]);
    view.set(new Uint8Array(src.buffer));
    const x = Tensor.fromBytes('', DataType.FLOAT, [2, 3], view);
    const [t] = run({ op: 'Transpose', opset: 13, inputs: [x] });
    expect(Array.from(t!.toTypedArray<Float32Array>())).toEqual([1, 4, 2, 5, 3, 6]);
  });
});

// ---------------------------------------------------------------------------------------------

describe('shape and data-movement kernels agree with onnxruntime', () => {
  it('Split-18 num_outputs (even and uneven) and Split-13 with sizes', async () => {
    for (const [n, k] of [[6, 3], [7, 3], [5, 2], [8, 3], [1, 1]] as const) {
      await agree({ op: 'Split', opset: 18, inputs: [arange([2, n])], attrs: { axis: 1, num_outputs: k }, outputs: k });
    }
    await agree({ op: 'Split', opset: 13, inputs: [arange([6, 2]), i64([1, 0, 5])], outputs: 3 }, [1]);
    await agree({ op: 'Split', opset: 13, inputs: [arange([6, 2])], attrs: { axis: -2 }, outputs: 2 });
    await agree({ op: 'Split', opset: 11, inputs: [arange([6, 2])], attrs: { split: [2, 4] }, outputs: 2 });
  });

  it('Shape-15/21 start and end, clamped', async () => {
    const x = arange([2, 3, 4, 5]);
    for (const [start, end] of [[0, undefined], [1, 3], [-3, -1], [-10, 10], [3, 1], [2, undefined], [0, 0]] as const) {
      await agree({ op: 'Shape', opset: 21, inputs: [x], attrs: end === undefined ? { start } : { start, end } });
    }
    await agree({ op: 'Shape', opset: 13, inputs: [arange([])] });
    await agree({ op: 'Size', opset: 13, inputs: [arange([3, 0, 2])] });
  });

  it('Slice: random starts/ends/steps on several axes, int32 and int64 indices, int64 extremes', async () => {
    const x = arange([4, 5, 6]);
    const bound = fc.oneof(fc.integer({ min: -8, max: 8 }).map(BigInt), fc.constantFrom(INT64_MAX, INT64_MIN, 2n ** 40n, -(2n ** 40n)));
    const axisSpec = fc.record({ start: bound, end: bound, step: fc.oneof(fc.integer({ min: -3, max: 3 }).filter((s) => s !== 0).map(BigInt), fc.constantFrom(INT64_MAX, INT64_MIN + 1n)) });
    await fc.assert(
      fc.asyncProperty(fc.subarray([0, 1, 2], { minLength: 1 }), fc.array(axisSpec, { minLength: 3, maxLength: 3 }), fc.boolean(), fc.boolean(), async (axes, specs, neg, use32) => {
        const sp = axes.map((_, i) => specs[i]!);
        const clamp32 = (v: bigint) => (v > 2147483647n ? 2147483647n : v < -2147483648n ? -2147483648n : v);
        const ints = (vals: bigint[]) => (use32 ? i32(vals.map((v) => Number(clamp32(v)))) : i64(vals));
        const ax = axes.map((a) => (neg ? a - 3 : a));
        const steps = sp.map((s) => (use32 ? clamp32(s.step) : s.step));
        // onnxruntime reads an end of INT32_MAX/INT64_MAX with a negative step as "through index 0",
        // the ONNX spec clamps it to dim-1 (an empty slice): the kernel declines those.
        if (sp.some((s, i) => steps[i]! < 0n && [2147483647n, INT64_MAX].includes(use32 ? clamp32(s.end) : s.end))) {
          expect(() => run({ op: 'Slice', opset: 13, inputs: [x, ints(sp.map((s) => s.start)), ints(sp.map((s) => s.end)), ints(ax.map(BigInt)), ints(steps)] })).toThrow(KernelUnsupported);
          return;
        }
        await agree({ op: 'Slice', opset: 13, inputs: [x, ints(sp.map((s) => s.start)), ints(sp.map((s) => s.end)), ints(ax.map(BigInt)), ints(steps)] }, [1, 2, 3, 4]);
      }),
      { numRuns: 60 },
    );
    // Omitted axes and steps; Slice-10 (no negative axes rule change needed).
    await agree({ op: 'Slice', opset: 10, inputs: [x, i64([1, -2]), i64([INT64_MAX, 100])] }, [1, 2]);
  });

  it('Reshape allowzero, 0 and -1; Squeeze/Unsqueeze with negative axes; Flatten', async () => {
    const x = arange([2, 0, 3]);
    await agree({ op: 'Reshape', opset: 14, inputs: [x, i64([3, 0, 2])], attrs: { allowzero: 1 } }, [1]);
    await agree({ op: 'Reshape', opset: 14, inputs: [x, i64([-1, 3])] }, [1]);
    await agree({ op: 'Reshape', opset: 13, inputs: [arange([2, 3, 4]), i64([0, -1])] }, [1]);
    await agree({ op: 'Reshape', opset: 13, inputs: [arange([1]), i64([])] }, [1]);
    await agree({ op: 'Squeeze', opset: 13, inputs: [arange([1, 3, 1, 2]), i64([-2, 0])] }, [1]);
    await agree({ op: 'Squeeze', opset: 13, inputs: [arange([1, 3, 1, 2])] });
    // Empty axes: onnxruntime squeezes every 1, ONNX's inference and reference nothing; declined.
    expect(() => run({ op: 'Squeeze', opset: 13, inputs: [arange([1, 3]), i64([])] })).toThrow(KernelUnsupported);
    await agree({ op: 'Squeeze', opset: 11, inputs: [arange([1, 3, 1, 2])], attrs: { axes: [-4] } });
    await agree({ op: 'Unsqueeze', opset: 13, inputs: [arange([3, 2]), i64([-1, 0, 3])] }, [1]);
    await agree({ op: 'Unsqueeze', opset: 11, inputs: [arange([3, 2])], attrs: { axes: [1, -1] } });
    await agree({ op: 'Flatten', opset: 13, inputs: [arange([2, 3, 4])], attrs: { axis: -1 } });
    await agree({ op: 'Flatten', opset: 13, inputs: [arange([2, 3, 4])], attrs: { axis: 0 } });
    await agree({ op: 'Flatten', opset: 13, inputs: [arange([2, 3, 4])], attrs: { axis: 3 } });
  });

  it('Gather / GatherElements with int32 and int64 negative indices, scalar indices, on several dtypes', async () => {
    const dts: Array<[DataType, (n: number) => TypedArray]> = [
      [DataType.UINT8, (n) => Uint8Array.from({ length: n }, (_, i) => i * 7)],
      [DataType.INT16, (n) => Int16Array.from({ length: n }, (_, i) => -i * 300)],
      [DataType.FLOAT16, (n) => Uint16Array.from({ length: n }, (_, i) => 0x3c00 + i)],
      [DataType.BOOL, (n) => Uint8Array.from({ length: n }, (_, i) => i % 3 === 0 ? 1 : 0)],
      [DataType.UINT64, (n) => BigUint64Array.from({ length: n }, (_, i) => 2n ** 63n + BigInt(i))],
      [DataType.DOUBLE, (n) => Float64Array.from({ length: n }, (_, i) => i / 3)],
    ];
    for (const [dt, make] of dts) {
      const x = typed(dt, [3, 4, 2], make(24));
      await agree({ op: 'Gather', opset: 13, inputs: [x, i32([-1, 0, 2, -3], [2, 2])], attrs: { axis: 1 } }, [1]);
      await agree({ op: 'Gather', opset: 13, inputs: [x, typed(DataType.INT64, [], BigInt64Array.of(-1n))], attrs: { axis: 2 } }, [1]);
      await agree({ op: 'GatherElements', opset: 13, inputs: [x, i32([0, -1, 2, 1, 1, 0, -2, -1], [2, 2, 2])], attrs: { axis: 0 } }, [1]);
    }
    const s = strs(['a', 'bb', 'ccc', 'dddd', 'é', '']);
    await agree({ op: 'Gather', opset: 13, inputs: [s, i64([5, -2, 0])] }, [1]);
  });

  it('Concat, Transpose, Tile, Expand on strings, bool, int64 and float16', async () => {
    const s = strs(['a', 'b', 'c', 'd', 'e', 'f'], [2, 3]);
    await agree({ op: 'Concat', opset: 13, inputs: [s, strs(['x', 'y'], [2, 1])], attrs: { axis: -1 } });
    await agree({ op: 'Transpose', opset: 13, inputs: [s] });
    await agree({ op: 'Tile', opset: 13, inputs: [s, i64([2, 2])] }, [1]);
    await agree({ op: 'Expand', opset: 13, inputs: [strs(['p', 'q'], [2, 1]), i64([3, 2, 2])] }, [1]);
    const b = typed(DataType.BOOL, [2, 1, 3], Uint8Array.of(1, 0, 1, 0, 0, 1));
    await agree({ op: 'Concat', opset: 13, inputs: [b, b, b], attrs: { axis: 1 } });
    await agree({ op: 'Expand', opset: 13, inputs: [b, i64([3, 1])] }, [1]);
    const h = typed(DataType.FLOAT16, [2, 3, 4], Uint16Array.from({ length: 24 }, (_, i) => 0x3800 + i));
    await agree({ op: 'Transpose', opset: 13, inputs: [h], attrs: { perm: [1, 2, 0] } });
    await agree({ op: 'Tile', opset: 13, inputs: [h, i64([1, 0, 2])] }, [1]);
    const l = typed(DataType.INT64, [3, 1], BigInt64Array.of(INT64_MAX, INT64_MIN, -1n));
    await agree({ op: 'Expand', opset: 13, inputs: [l, i64([1, 1, 2])] }, [1]);
    await agree({ op: 'Expand', opset: 13, inputs: [l, i64([3, 0])] }, [1]);
  });

  it('ConstantOfShape and Range', async () => {
    for (const value of [typed(DataType.INT8, [1], Int8Array.of(-7)), typed(DataType.BOOL, [1], Uint8Array.of(1)), typed(DataType.INT64, [1], BigInt64Array.of(INT64_MIN)), typed(DataType.FLOAT16, [1], Uint16Array.of(0x7e01))]) {
      await agree({ op: 'ConstantOfShape', opset: 20, inputs: [i64([2, 3])], attrs: { value } }, [0]);
    }
    await agree({ op: 'ConstantOfShape', opset: 9, inputs: [i64([])] }, [0]);
    await agree({ op: 'ConstantOfShape', opset: 9, inputs: [i64([4, 0])] }, [0]);
    const sc = (dt: DataType, v: number) =>
      dt === DataType.INT64 ? typed(dt, [], BigInt64Array.of(BigInt(v))) : dt === DataType.INT32 ? typed(dt, [], Int32Array.of(v)) : dt === DataType.INT16 ? typed(dt, [], Int16Array.of(v)) : dt === DataType.DOUBLE ? typed(dt, [], Float64Array.of(v)) : typed(dt, [], Float32Array.of(v));
    for (const dt of [DataType.INT64, DataType.INT32, DataType.INT16, DataType.FLOAT, DataType.DOUBLE]) {
      for (const [s, l, d] of [[0, 10, 3], [10, 0, -3], [5, 5, 1], [1, 10, -1], [-3, 7, 2], [7, -3, -4]]) {
        await agree({ op: 'Range', opset: 11, inputs: [sc(dt, s!), sc(dt, l!), sc(dt, d!)] });
      }
    }
    await agree({ op: 'Range', opset: 11, inputs: [f32([0.5], []), f32([2.3], []), f32([0.3], [])] });
  });
});

// ---------------------------------------------------------------------------------------------

describe('older opset forms', () => {
  it('Slice-1, Split-2, Reshape-5, Squeeze-1 agree with onnxruntime', async () => {
    const x = arange([4, 5]);
    await agree({ op: 'Slice', opset: 9, inputs: [x], attrs: { starts: [1, -3], ends: [INT64_MAX, -1n] } });
    await agree({ op: 'Slice', opset: 1, inputs: [x], attrs: { starts: [-2], ends: [100], axes: [1] } });
    await agree({ op: 'Split', opset: 2, inputs: [x], attrs: { axis: 1, split: [2, 3] }, outputs: 2 });
    await agree({ op: 'Split', opset: 2, inputs: [x], outputs: 2 });
    await agree({ op: 'Reshape', opset: 5, inputs: [x, i64([-1, 2])] }, [1]);
    await agree({ op: 'Squeeze', opset: 1, inputs: [arange([1, 3])], attrs: { axes: [0] } });
    await agree({ op: 'Unsqueeze', opset: 1, inputs: [arange([3])], attrs: { axes: [0, 2] } });
    await agree({ op: 'Concat', opset: 4, inputs: [x, x], attrs: { axis: 0 } });
  });

  it('Concat-1 defaults to axis 1; Reshape-1 takes the shape attribute; Tile-1 tiles along one axis', () => {
    const x = arange([2, 2]);
    const [c] = run({ op: 'Concat', opset: 1, inputs: [x, arange([2, 1], 10)] });
    expect(c!.dims).toEqual([2, 3]);
    expect(Array.from(c!.toTypedArray<Int32Array>())).toEqual([0, 1, 10, 2, 3, 11]);
    const [r] = run({ op: 'Reshape', opset: 1, inputs: [arange([2, 3])], attrs: { shape: [3, -1] } });
    expect(r!.dims).toEqual([3, 2]);
    const [t] = run({ op: 'Tile', opset: 1, inputs: [x, i64([3]), i64([1])] });
    expect(t!.dims).toEqual([2, 6]);
    expect(Array.from(t!.toTypedArray<Int32Array>())).toEqual([0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3]);
    expect(() => run({ op: 'Concat', opset: 4, inputs: [x, x] })).toThrow(/'n' \(Concat\).*axis/);
  });

  it('Constant: value_* forms from opset 12, sparse_value from 11, refused earlier', () => {
    const one = (attrs: Record<string, AttrInput>, opset = 13) => run({ op: 'Constant', opset, inputs: [], attrs })[0]!;
    expect(one({ value_int: INT64_MAX }).toTypedArray<BigInt64Array>()[0]).toBe(INT64_MAX);
    expect(one({ value_int: 3 }).dims).toEqual([]);
    expect(Array.from(one({ value_ints: [1, -2] }).toTypedArray<BigInt64Array>())).toEqual([1n, -2n]);
    expect(one({ value_float: { float: 0.5 } }).toTypedArray<Float32Array>()[0]).toBe(0.5);
    expect(Array.from(one({ value_floats: { floats: [1.5, 2] } }).toTypedArray<Float32Array>())).toEqual([1.5, 2]);
    expect(one({ value_string: 'hé' }).strings().map((s) => Buffer.from(s).toString())).toEqual(['hé']);
    expect(one({ value_strings: ['a', 'b'] }).dims).toEqual([2]);
    const v = f32([1, 2], [2]);
    expect(one({ value: v }, 1)).toBe(v);
    expect(() => one({ value_int: 3 }, 11)).toThrow(PeftcError);
    expect(() => one({ value_int: 3 }, 11)).toThrow(/needs opset 12/);
    expect(() => one({ value: v, value_int: 3 })).toThrow(/exactly one/);

    const sparse = (indices: Tensor, opset = 11) => {
      const { node } = build({ op: 'Constant', opset, inputs: [] });
      node.attributes = [{ name: 'sparse_value', type: 'sparse_tensor', value: { values: f32([5, 6, 7]), indices, dims: [2, 3] } } as Attribute];
      return runNode(node, 'Constant', opset, [])[0]!;
    };
    const linear = sparse(i64([1, 3, 5]));
    expect(linear.dims).toEqual([2, 3]);
    expect(Array.from(linear.toTypedArray<Float32Array>())).toEqual([0, 5, 0, 6, 0, 7]);
    const coords = sparse(typed(DataType.INT64, [3, 2], BigInt64Array.of(0n, 1n, 1n, 0n, 1n, 2n)));
    expect(Array.from(coords.toTypedArray<Float32Array>())).toEqual([0, 5, 0, 6, 0, 7]);
    expect(() => sparse(i64([1, 3, 6]))).toThrow(/'n' \(Constant\).*out of range/);
    expect(() => sparse(i64([1, 3, 5]), 10)).toThrow(/needs opset 11/);
  });
});

// ---------------------------------------------------------------------------------------------

describe('invalid inputs are errors naming the node', () => {
  const bad: Array<[string, Call]> = [
    ['Gather index too large (int64)', { op: 'Gather', opset: 13, inputs: [arange([3, 2]), i64([3])] }],
    ['Gather index too small (int32)', { op: 'Gather', opset: 13, inputs: [arange([3, 2]), i32([-4])] }],
    ['Gather index beyond 2^53', { op: 'Gather', opset: 13, inputs: [arange([3]), i64([INT64_MIN])] }],
    ['Gather axis out of range', { op: 'Gather', opset: 13, inputs: [arange([3]), i64([0])], attrs: { axis: 1 } }],
    ['Gather on a scalar', { op: 'Gather', opset: 13, inputs: [arange([]), i64([0])] }],
    ['Gather float indices', { op: 'Gather', opset: 13, inputs: [arange([3]), f32([0])] }],
    ['GatherElements index out of range', { op: 'GatherElements', opset: 13, inputs: [arange([2, 2]), i64([0, 2, 1, 0], [2, 2])], attrs: { axis: 1 } }],
    ['GatherElements rank mismatch', { op: 'GatherElements', opset: 13, inputs: [arange([2, 2]), i64([0, 1])] }],
    ['GatherElements index dims too large', { op: 'GatherElements', opset: 13, inputs: [arange([2, 2]), i64([0, 0, 0, 0, 0, 0], [3, 2])], attrs: { axis: 1 } }],
    ['Concat shape mismatch', { op: 'Concat', opset: 13, inputs: [arange([2, 2]), arange([3, 3])], attrs: { axis: 0 } }],
    ['Concat type mismatch', { op: 'Concat', opset: 13, inputs: [arange([2]), f32([1])], attrs: { axis: 0 } }],
    ['Split sizes do not add up', { op: 'Split', opset: 13, inputs: [arange([5]), i64([2, 2])], outputs: 2 }],
    ['Split uneven without sizes', { op: 'Split', opset: 13, inputs: [arange([5])], outputs: 2 }],
    ['Split-18 impossible num_outputs', { op: 'Split', opset: 18, inputs: [arange([5])], attrs: { num_outputs: 4 }, outputs: 4 }],
    ['Split sizes vs outputs', { op: 'Split', opset: 13, inputs: [arange([5]), i64([2, 3])], outputs: 3 }],
    ['Slice step 0', { op: 'Slice', opset: 13, inputs: [arange([5]), i64([0]), i64([5]), i64([0]), i64([0])] }],
    ['Slice repeated axis', { op: 'Slice', opset: 13, inputs: [arange([5]), i64([0, 1]), i64([5, 4]), i64([0, -1])] }],
    ['Slice length mismatch', { op: 'Slice', opset: 13, inputs: [arange([5]), i64([0, 1]), i64([5])] }],
    ['Reshape count mismatch', { op: 'Reshape', opset: 13, inputs: [arange([6]), i64([4, -1])] }],
    ['Reshape two -1', { op: 'Reshape', opset: 13, inputs: [arange([6]), i64([-1, -1])] }],
    ['Reshape 0 beyond rank', { op: 'Reshape', opset: 13, inputs: [arange([6]), i64([6, 0])] }],
    ['Reshape -2', { op: 'Reshape', opset: 13, inputs: [arange([6]), i64([-2, -3])] }],
    ['Squeeze a non-1 axis', { op: 'Squeeze', opset: 13, inputs: [arange([2, 1]), i64([0])] }],
    ['Unsqueeze axis out of range', { op: 'Unsqueeze', opset: 13, inputs: [arange([2]), i64([3])] }],
    ['Unsqueeze repeated axis', { op: 'Unsqueeze', opset: 13, inputs: [arange([2]), i64([0, -3])] }],
    ['Transpose bad perm', { op: 'Transpose', opset: 13, inputs: [arange([2, 3])], attrs: { perm: [0, 0] } }],
    ['Expand incompatible', { op: 'Expand', opset: 13, inputs: [arange([3]), i64([2, 2])] }],
    ['Tile negative', { op: 'Tile', opset: 13, inputs: [arange([3]), i64([-1])] }],
    ['Tile rank mismatch', { op: 'Tile', opset: 13, inputs: [arange([3]), i64([1, 2])] }],
    ['ConstantOfShape negative', { op: 'ConstantOfShape', opset: 13, inputs: [i64([2, -1])] }],
    ['Range delta 0', { op: 'Range', opset: 11, inputs: [i32([0], []), i32([5], []), i32([0], [])] }],
    ['Range mixed types', { op: 'Range', opset: 11, inputs: [i32([0], []), f32([5], []), i32([1], [])] }],
    ['Flatten axis out of range', { op: 'Flatten', opset: 13, inputs: [arange([2, 3])], attrs: { axis: 3 } }],
    ['missing input', { op: 'Reshape', opset: 13, inputs: [arange([2, 3]), null] }],
  ];
  for (const [name, c] of bad) {
    it(name, () => {
      let err: unknown;
      try {
        run(c);
      } catch (e) {
        err = e;
      }
      expect(err, name).toBeInstanceOf(PeftcError);
      expect(err).not.toBeInstanceOf(KernelUnsupported);
      expect((err as Error).message).toContain(`'n' (${c.op})`);
    });
  }
});

describe('attributes a kernel does not know are declined', () => {
  it('an attribute from another opset (or a typo) is KernelUnsupported, not ignored', () => {
    expect(() => run({ op: 'Reshape', opset: 13, inputs: [arange([2, 3]), i64([3, 2])], attrs: { allowzero: 1 } })).toThrow(KernelUnsupported);
    expect(() => run({ op: 'Split', opset: 13, inputs: [arange([4])], attrs: { num_outputs: 2 }, outputs: 2 })).toThrow(KernelUnsupported);
    expect(() => run({ op: 'Gather', opset: 13, inputs: [arange([4]), i64([0])], attrs: { batch_dims: 0 } })).toThrow(KernelUnsupported);
    expect(() => run({ op: 'Shape', opset: 13, inputs: [arange([4])], attrs: { start: 1 } })).toThrow(KernelUnsupported);
    expect(run({ op: 'Shape', opset: 15, inputs: [arange([4, 5])], attrs: { start: 1 } })[0]!.dims).toEqual([1]);
  });
});

describe('reshaping keeps data lazy', () => {
  it('Reshape/Flatten/Squeeze/Unsqueeze/Identity/one-input Concat of external data do not read it', () => {
    const ref = { path: '/nonexistent/weights.bin', location: 'weights.bin', offset: 0, length: 24, checksum: undefined };
    const x = new Tensor('w', DataType.FLOAT, [1, 2, 3], { kind: 'external', ref });
    const outs = [
      run({ op: 'Reshape', opset: 14, inputs: [x, i64([3, 2])] })[0]!,
      run({ op: 'Flatten', opset: 13, inputs: [x] })[0]!,
      run({ op: 'Squeeze', opset: 13, inputs: [x, i64([0])] })[0]!,
      run({ op: 'Unsqueeze', opset: 13, inputs: [x, i64([0])] })[0]!,
      run({ op: 'Identity', opset: 13, inputs: [x] })[0]!,
      run({ op: 'Concat', opset: 13, inputs: [x], attrs: { axis: 1 } })[0]!,
    ];
    for (const t of outs) {
      expect(t.source).toBe(x.source);
      expect(t.byteLength).toBe(24);
    }
    // Shape and Size need no data either.
    expect(Array.from(run({ op: 'Shape', opset: 13, inputs: [x] })[0]!.toTypedArray<BigInt64Array>())).toEqual([1n, 2n, 3n]);
  });

});

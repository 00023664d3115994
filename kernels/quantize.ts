/**
 * QuantizeLinear / DequantizeLinear: per-tensor (10+), per-axis (13+) and blocked (21+,
 * block_size) forms; integer types int8/uint8 (10+), int16/uint16 and int4/uint4 (21+), int32
 * (dequantize only), float8 e4m3fn/e4m3fnuz/e5m2/e5m2fnuz (19+, with `saturate`).
 *
 * Quantize, integers: y = clamp(round_half_even(x / scale) + zero_point). ONNX's reference divides
 * in x's type (float16 division rounds to float16); onnxruntime divides in float32. Both are
 * computed and an element where they round to different integers is refused, as are int32
 * inputs whose float32 and float64 quotients round apart.
 * Quantize, float8: y = float8(x / scale) (division in float32, round to nearest even, saturate
 * rules as Cast); the zero point must be 0.
 * Dequantize: y = (x - zero_point) * scale in float32 (x and the zero point widened to float32
 * first), rounded to the scale's type.
 * Attributes a later opset adds (e.g. `precision`) are refused.
 */
import { DataType, dtypeInfo, dtypeName, elementCount } from '../src/ir/dtype.js';
import type { Node } from '../src/ir/graph.js';
import { Tensor } from '../src/ir/tensor.js';
import { kernel, KernelUnsupported } from './registry.js';
import {
  checkAttributes,
  FLOAT8_TYPES,
  float8Encode,
  fromF64,
  input,
  intRange,
  normalizeAxis,
  readF64,
  roundHalfEven,
  roundToType,
  stridedIndex,
} from './util.js';

const INT_Q = new Set<DataType>([DataType.INT8, DataType.UINT8, DataType.INT16, DataType.UINT16, DataType.INT4, DataType.UINT4]);
const SCALE_TYPES = new Set<DataType>([DataType.FLOAT, DataType.FLOAT16, DataType.BFLOAT16]);

/**
 * For each element of `x`, the index of its scale / zero point: per-tensor (all 0), per-axis
 * (the coordinate along `axis`) or blocked (the block along `axis`, other coordinates as is).
 */
function paramIndex(op: string, node: Node, x: Tensor, scale: Tensor, zp: Tensor | null, opset: number): Int32Array {
  if (zp && zp.dims.join() !== scale.dims.join() && !(zp.elementCount === 1 && scale.elementCount === 1)) throw new KernelUnsupported(op, `zero point shape [${zp.dims.join(',')}] unlike scale [${scale.dims.join(',')}]`);
  const block = opset >= 21 ? node.attrInt('block_size', 0) : 0;
  const n = x.elementCount;
  if (block === 0 && scale.dims.length <= 1 && scale.elementCount === 1) return new Int32Array(n);
  if (opset < 13) throw new KernelUnsupported(op, 'a non-scalar scale before opset 13');
  const r = x.dims.length;
  const axis = normalizeAxis(node, node.attrInt('axis', 1), r);
  const len = x.dims[axis]!;
  if (block === 0) {
    if (scale.dims.length !== 1 || scale.dims[0] !== len) throw new KernelUnsupported(op, `per-axis scale of shape [${scale.dims.join(',')}] for axis size ${len}`);
    return stridedIndex(x.dims, x.dims.map((_, i) => (i === axis ? 1 : 0)));
  }
  if (block < 0) throw new KernelUnsupported(op, `block_size ${block}`);
  const nb = Math.ceil(len / block);
  const ok = scale.dims.length === r && scale.dims.every((d, i) => (i === axis ? d === nb : d === x.dims[i]));
  if (!ok) throw new KernelUnsupported(op, `blocked scale of shape [${scale.dims.join(',')}] for [${x.dims.join(',')}], axis ${axis}, block ${block}`);
  const inner = elementCount(x.dims.slice(axis + 1));
  const outer = elementCount(x.dims.slice(0, axis));
  const idx = new Int32Array(n);
  let i = 0;
  for (let o = 0; o < outer; o++) {
    for (let k = 0; k < len; k++) {
      const base = (o * nb + Math.floor(k / block)) * inner;
      for (let j = 0; j < inner; j++) idx[i++] = base + j;
    }
  }
  return idx;
}

kernel('DequantizeLinear', 10, (inputs, node, ctx) => {
  const op = 'DequantizeLinear';
  checkAttributes(node, ['axis', 'block_size', 'output_dtype']);
  const x = input(op, inputs, 0);
  const scale = input(op, inputs, 1);
  const zp = inputs[2] ?? null;
  const info = dtypeInfo(x.dtype);
  if (!(INT_Q.has(x.dtype) || x.dtype === DataType.INT32 || FLOAT8_TYPES.has(x.dtype))) throw new KernelUnsupported(op, `${dtypeName(x.dtype)} input`);
  if (!SCALE_TYPES.has(scale.dtype)) throw new KernelUnsupported(op, `${dtypeName(scale.dtype)} scale`);
  if (zp && zp.dtype !== x.dtype) throw new KernelUnsupported(op, 'a zero point of another type than the input');
  const outType = (node.attrInt('output_dtype', 0) || scale.dtype) as DataType;
  if (outType !== scale.dtype) throw new KernelUnsupported(op, `output_dtype ${dtypeName(outType)} unlike the scale's ${dtypeName(scale.dtype)}`);
  const idx = paramIndex(op, node, x, scale, zp, ctx.opsetVersion);
  const q = readF64(x);
  const s = readF64(scale);
  const z = zp ? readF64(zp) : null;
  const out = new Float64Array(q.length);
  for (let i = 0; i < q.length; i++) {
    const k = idx[i]!;
    const zk = z ? z[k]! : 0;
    if (info.bits === 32 && zk !== 0 && Math.abs(q[i]!) > 2 ** 24) throw new KernelUnsupported(op, 'int32 input beyond 2^24 with a zero point');
    const d = Math.fround(Math.fround(q[i]!) - Math.fround(zk));
    out[i] = Math.fround(d * s[k]!);
  }
  return [fromF64(outType, x.dims, out)];
});

kernel('QuantizeLinear', 10, (inputs, node, ctx) => {
  const op = 'QuantizeLinear';
  checkAttributes(node, ['axis', 'saturate', 'block_size', 'output_dtype']);
  const x = input(op, inputs, 0);
  const scale = input(op, inputs, 1);
  const zp = inputs[2] ?? null;
  const attrType = ctx.opsetVersion >= 21 ? node.attrInt('output_dtype', 0) : 0;
  if (zp && attrType && zp.dtype !== attrType) throw new KernelUnsupported(op, 'output_dtype unlike the zero point type');
  const outType = (zp?.dtype ?? (attrType || DataType.UINT8)) as DataType;
  const float8 = FLOAT8_TYPES.has(outType);
  if (!INT_Q.has(outType) && !float8) throw new KernelUnsupported(op, `${dtypeName(outType)} output`);
  if (!SCALE_TYPES.has(scale.dtype)) throw new KernelUnsupported(op, `${dtypeName(scale.dtype)} scale`);
  if (!(x.dtype === scale.dtype || (x.dtype === DataType.INT32 && scale.dtype === DataType.FLOAT))) {
    throw new KernelUnsupported(op, `${dtypeName(x.dtype)} input with a ${dtypeName(scale.dtype)} scale`);
  }
  const idx = paramIndex(op, node, x, scale, zp, ctx.opsetVersion);
  const v = readF64(x);
  const s = readF64(scale);
  const z = zp ? readF64(zp) : null;
  const n = v.length;
  const out = new Float64Array(n);

  if (float8) {
    if (z && z.some((e) => e !== 0)) throw new KernelUnsupported(op, 'a non-zero float8 zero point');
    const saturate = ctx.opsetVersion >= 19 ? node.attrInt('saturate', 1) !== 0 : true;
    const bytes = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      const ratio = v[i]! / s[idx[i]!]!;
      const b = float8Encode(outType, Math.fround(ratio), saturate);
      if (x.dtype !== DataType.FLOAT && float8Encode(outType, roundToType(x.dtype, ratio), saturate) !== b) {
        throw new KernelUnsupported(op, `${dtypeName(x.dtype)} element ${i}: float8 result depends on the division's precision`);
      }
      bytes[i] = b;
    }
    return [Tensor.fromBytes('', outType, x.dims, bytes)];
  }

  const [lo, hi] = intRange(outType);
  const clampRound = (ratio: number, zk: number) => Math.min(hi, Math.max(lo, roundHalfEven(ratio) + zk));
  for (let i = 0; i < n; i++) {
    const k = idx[i]!;
    const zk = z ? z[k]! : 0;
    const exact = v[i]! / s[k]!;
    const y32 = clampRound(Math.fround(exact), zk);
    // The other precision an implementation may divide in: x's own type (float16/bfloat16, as
    // numpy), or float64 for int32 inputs (numpy's int32 / float32).
    const other = x.dtype === DataType.INT32 ? exact : roundToType(x.dtype, exact);
    if (Number.isNaN(y32)) throw new KernelUnsupported(op, 'NaN input');
    if (clampRound(other, zk) !== y32) throw new KernelUnsupported(op, `element ${i}: the result depends on the division's precision`);
    out[i] = y32;
  }
  return [fromF64(outType, x.dims, out)];
});

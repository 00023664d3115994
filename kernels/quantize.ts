/**
 * QuantizeLinear / DequantizeLinear: per-tensor, per-axis (opset 13+) and blocked (opset 21,
 * block_size) forms, for int8/uint8/int16/uint16/int32 (dequantize) and int4/uint4.
 * Quantize: y = saturate(round_half_even(x / scale) + zero_point), the division done in the scale's
 * float type as ONNX specifies; dequantize: y = (x - zero_point) * scale. float8 types are
 * declared unsupported.
 */
import { DataType, dtypeInfo, dtypeName, elementCount, packSubByte, unpackSubByte } from '../src/ir/dtype.js';
import type { Node } from '../src/ir/graph.js';
import { Tensor } from '../src/ir/tensor.js';
import { kernel, KernelUnsupported } from './registry.js';
import { fromF64, input, normalizeAxis, readF64 } from './util.js';

const QTYPES = new Set<DataType>([DataType.INT8, DataType.UINT8, DataType.INT16, DataType.UINT16, DataType.INT32, DataType.INT4, DataType.UINT4]);

function readQuantized(t: Tensor): Float64Array {
  if (t.dtype === DataType.INT4 || t.dtype === DataType.UINT4) return Float64Array.from(unpackSubByte(t.bytes(), t.elementCount, 4, t.dtype === DataType.INT4));
  return readF64(t);
}

/** For each element of `x`, the index of its scale / zero point (per-tensor, per-axis or blocked). */
function paramIndex(node: Node, x: Tensor, scale: Tensor, opset: number): (i: number) => number {
  if (scale.elementCount === 1 && scale.dims.length <= 1 && node.attrInt('block_size', 0) === 0) return () => 0;
  const r = x.dims.length;
  const axis = normalizeAxis(node, node.attrInt('axis', 1), r);
  const inner = elementCount(x.dims.slice(axis + 1));
  const n = x.dims[axis]!;
  const block = opset >= 21 ? node.attrInt('block_size', 0) : 0;
  if (block > 0) {
    // Scale has x's shape with the axis divided (rounded up) into blocks.
    const nb = scale.dims[axis]!;
    if (scale.dims.length !== r || nb !== Math.ceil(n / block)) throw new KernelUnsupported(node.opType, `blocked scale of shape [${scale.dims.join(',')}]`);
    return (i) => {
      const outer = Math.floor(i / (n * inner));
      const k = Math.floor(i / inner) % n;
      const j = i % inner;
      return (outer * nb + Math.floor(k / block)) * inner + j;
    };
  }
  if (scale.dims.length !== 1 || scale.dims[0] !== n) throw new KernelUnsupported(node.opType, `per-axis scale of shape [${scale.dims.join(',')}] for axis size ${n}`);
  return (i) => Math.floor(i / inner) % n;
}

function roundHalfEven(v: number): number {
  const f = Math.floor(v);
  const d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

kernel('DequantizeLinear', 10, (inputs, node, ctx) => {
  const x = input('DequantizeLinear', inputs, 0);
  const scale = input('DequantizeLinear', inputs, 1);
  const zp = inputs[2] ?? null;
  if (!QTYPES.has(x.dtype)) throw new KernelUnsupported('DequantizeLinear', `${dtypeName(x.dtype)} input`);
  const idx = paramIndex(node, x, scale, ctx.opsetVersion);
  const q = readQuantized(x);
  const s = readF64(scale);
  const z = zp ? readQuantized(zp) : null;
  const out = new Float64Array(q.length);
  const f32 = scale.dtype === DataType.FLOAT;
  for (let i = 0; i < q.length; i++) {
    const k = idx(i);
    const d = q[i]! - (z ? z[k]! : 0);
    out[i] = f32 ? Math.fround(Math.fround(d) * s[k]!) : d * s[k]!;
  }
  return [fromF64(scale.dtype, x.dims, out)];
});

kernel('QuantizeLinear', 10, (inputs, node, ctx) => {
  const x = input('QuantizeLinear', inputs, 0);
  const scale = input('QuantizeLinear', inputs, 1);
  const zp = inputs[2] ?? null;
  const outType = (zp?.dtype ?? (node.attrInt('output_dtype', 0) || DataType.UINT8)) as DataType;
  if (!QTYPES.has(outType) || outType === DataType.INT32) throw new KernelUnsupported('QuantizeLinear', `${dtypeName(outType)} output`);
  const idx = paramIndex(node, x, scale, ctx.opsetVersion);
  const v = readF64(x);
  const s = readF64(scale);
  const z = zp ? readQuantized(zp) : null;
  const info = dtypeInfo(outType);
  const lo = info.isSigned ? -(2 ** (info.bits - 1)) : 0;
  const hi = info.isSigned ? 2 ** (info.bits - 1) - 1 : 2 ** info.bits - 1;
  const out = new Float64Array(v.length);
  const f32 = scale.dtype === DataType.FLOAT || x.dtype === DataType.FLOAT;
  for (let i = 0; i < v.length; i++) {
    const k = idx(i);
    const ratio = f32 ? Math.fround(v[i]! / s[k]!) : v[i]! / s[k]!;
    out[i] = Math.min(hi, Math.max(lo, roundHalfEven(ratio) + (z ? z[k]! : 0)));
  }
  if (outType === DataType.INT4 || outType === DataType.UINT4) return [Tensor.fromBytes('', outType, x.dims, packSubByte(out, 4))];
  return [fromF64(outType, x.dims, out)];
});

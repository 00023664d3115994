/**
 * Element-moving primitives for the shape and data-movement kernels. They never look at values:
 * an element is `size` raw bytes (any fixed-size dtype, complex and float8 included), a string
 * (string tensors), or a 2/4-bit code (sub-byte types, unpacked to one byte each while moving and
 * packed again, low bits first, with src/ir/dtype.ts's helpers).
 *
 * Everything is expressed as "block gathers": the output is the concatenation of blocks of
 * `block` consecutive input elements starting at the given flat element offsets. Kernels find the
 * largest contiguous block they can (a Gather row, the untouched trailing axes of a Slice or
 * Transpose), so big copies go through Uint8Array.set and only short blocks are copied word by
 * word through typed-array views (32-bit words for 4/8/16-byte elements, so float NaN payloads
 * are never canonicalized).
 */
import { PeftcError } from '../src/errors.js';
import { DataType, dtypeInfo, dtypeName, elementCount, packSubByte, unpackSubByte } from '../src/ir/dtype.js';
import type { Node } from '../src/ir/graph.js';
import { Tensor } from '../src/ir/tensor.js';
import { kernel, KernelUnsupported, type Kernel } from './registry.js';
import { checkAttributes, stridesOf } from './util.js';

export { stridesOf };

/** Flat element offsets (Int32Array while they fit, Float64Array beyond 2^31 elements). */
export type Offsets = Int32Array | Float64Array;

export function offsetArray(length: number, maxOffset: number): Offsets {
  return maxOffset < 2 ** 31 ? new Int32Array(length) : new Float64Array(length);
}

/** An invalid input or attribute: a PeftcError that names the node. */
export function fail(node: Node, what: string): never {
  throw new PeftcError(`node '${node.name || '(unnamed)'}' (${node.opType}): ${what}`);
}

/** Required input `i`; a missing one is an invalid node. */
export function need(node: Node, inputs: ReadonlyArray<Tensor | null>, i: number, what: string): Tensor {
  const t = inputs[i];
  if (!t) fail(node, `input ${i} (${what}) is missing`);
  return t;
}

/** Normalizes an axis into [0, rank) (negative counts from the end); out of range fails naming the node. */
export function axisOf(node: Node, axis: number, rank: number, what = 'axis'): number {
  const a = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(a) || a < 0 || a >= rank) fail(node, `${what} ${axis} is out of range for rank ${rank}`);
  return a;
}

function subBits(dtype: DataType): 2 | 4 | undefined {
  const bits = dtypeInfo(dtype).bits;
  return bits === 2 || bits === 4 ? bits : undefined;
}

/** Raw bytes of elements that are whole bytes; throws KernelUnsupported for anything else. */
function byteElementSize(op: string, dtype: DataType): number {
  const bits = dtypeInfo(dtype).bits;
  if (bits === 0 || bits % 8 !== 0) throw new KernelUnsupported(op, `${dtypeName(dtype)} data`);
  return bits / 8;
}

/** The elements of a sub-byte tensor, one byte (the raw 2/4-bit code) each. */
function unpackCodes(t: Tensor, bits: 2 | 4): Uint8Array {
  const codes = unpackSubByte(t.bytes(), t.elementCount, bits, false);
  return new Uint8Array(codes.buffer, codes.byteOffset, codes.byteLength);
}

/** A word view of `bytes` for elements of `size` bytes: the widest of 4/2/1 that divides it. */
function words(bytes: Uint8Array, size: number): { view: Uint32Array | Uint16Array | Uint8Array; per: number } {
  const w = size % 4 === 0 ? 4 : size % 2 === 0 ? 2 : 1;
  let b = bytes;
  if (b.byteOffset % w !== 0) {
    b = new Uint8Array(bytes.byteLength); // (Buffer#slice would be a view, not a copy)
    b.set(bytes);
  }
  const Ctor = w === 4 ? Uint32Array : w === 2 ? Uint16Array : Uint8Array;
  return { view: new Ctor(b.buffer as ArrayBuffer, b.byteOffset, b.byteLength / w), per: size / w };
}

/** Blocks of `block` elements of `size` bytes from `src` at element offsets `starts`, concatenated. */
function gatherBytes(src: Uint8Array, size: number, starts: ArrayLike<number>, block: number): Uint8Array {
  const n = starts.length;
  const blockBytes = block * size;
  const out = new Uint8Array(n * blockBytes);
  if (blockBytes === 0) return out;
  if (blockBytes >= 64) {
    for (let i = 0; i < n; i++) {
      const s = starts[i]! * size;
      out.set(src.subarray(s, s + blockBytes), i * blockBytes);
    }
    return out;
  }
  const from = words(src, size);
  const per = from.per;
  const Ctor = from.view.constructor as typeof Uint32Array;
  const to = new Ctor(out.buffer, 0, out.byteLength / (size / per));
  const blockWords = block * per;
  const fv = from.view;
  let o = 0;
  for (let i = 0; i < n; i++) {
    const s = starts[i]! * per;
    for (let j = 0; j < blockWords; j++) to[o++] = fv[s + j]!;
  }
  return out;
}

/**
 * Output = concatenation of the blocks t[starts[i] .. starts[i] + block) (flat row-major element
 * offsets), shaped `dims`. Works for every dtype but undefined.
 */
export function gatherBlocks(op: string, t: Tensor, starts: ArrayLike<number>, block: number, dims: readonly number[]): Tensor {
  const count = starts.length * block;
  if (count !== elementCount(dims)) throw new Error(`${op}: internal error: ${count} elements for dims [${dims.join(',')}]`);
  if (t.dtype === DataType.STRING) {
    const s = t.strings();
    const out = new Array<Uint8Array>(count);
    let o = 0;
    for (let i = 0; i < starts.length; i++) for (let j = 0; j < block; j++) out[o++] = s[starts[i]! + j]!;
    return Tensor.fromStrings('', dims, out);
  }
  const bits = subBits(t.dtype);
  if (bits) return Tensor.fromBytes('', t.dtype, dims, packSubByte(gatherBytes(unpackCodes(t, bits), 1, starts, block), bits));
  if (count === t.elementCount && starts.length <= 1) return sameData(t, dims); // the whole tensor, in order
  return Tensor.fromBytes('', t.dtype, dims, gatherBytes(t.bytes(), byteElementSize(op, t.dtype), starts, block));
}

/** The same elements under new dims, sharing the data source (no read, no copy: external data stays lazy). */
export function sameData(t: Tensor, dims: readonly number[]): Tensor {
  return new Tensor('', t.dtype, dims, t.source);
}

/**
 * Concatenation along an axis, given as (outer, part lengths along the axis times inner): the
 * output is, for each outer index, part 0's run, part 1's run, ... Parts share one dtype.
 */
export function concatRuns(op: string, parts: readonly Tensor[], runs: readonly number[], outer: number, dims: readonly number[]): Tensor {
  const dtype = parts[0]!.dtype;
  if (dtype === DataType.STRING) {
    const out: Uint8Array[] = [];
    const all = parts.map((p) => p.strings());
    for (let a = 0; a < outer; a++) all.forEach((s, k) => {
      for (let j = a * runs[k]!; j < (a + 1) * runs[k]!; j++) out.push(s[j]!);
    });
    return Tensor.fromStrings('', dims, out);
  }
  const bits = subBits(dtype);
  const size = bits ? 1 : byteElementSize(op, dtype);
  const data = parts.map((p) => (bits ? unpackCodes(p, bits) : p.bytes()));
  const out = new Uint8Array(elementCount(dims) * size);
  let at = 0;
  for (let a = 0; a < outer; a++) {
    data.forEach((d, k) => {
      const len = runs[k]! * size;
      out.set(d.subarray(a * len, (a + 1) * len), at);
      at += len;
    });
  }
  return Tensor.fromBytes('', dtype, dims, bits ? packSubByte(out, bits) : out);
}

/** A tensor of `dims` whose every element is the single element of `value`. */
export function fillWith(op: string, value: Tensor, dims: readonly number[]): Tensor {
  const n = elementCount(dims);
  if (value.dtype === DataType.STRING) return Tensor.fromStrings('', dims, new Array<Uint8Array>(n).fill(value.strings()[0]!));
  const bits = subBits(value.dtype);
  if (bits) return Tensor.fromBytes('', value.dtype, dims, packSubByte(new Uint8Array(n).fill(unpackCodes(value, bits)[0]!), bits));
  const size = byteElementSize(op, value.dtype);
  const out = new Uint8Array(n * size);
  if (n === 0) return Tensor.fromBytes('', value.dtype, dims, out);
  out.set(value.bytes().subarray(0, size));
  for (let filled = size; filled < out.length; filled *= 2) out.copyWithin(filled, 0, Math.min(filled, out.length - filled));
  return Tensor.fromBytes('', value.dtype, dims, out);
}

/**
 * Starts of the blocks of a strided N-d walk: for every counter c over `dims` (row-major), the
 * offset base + sum(c[d] * strides[d]). Strides may be negative (reversed slices) or 0 (broadcast).
 */
export function walkOffsets(dims: readonly number[], strides: readonly number[], base: number, maxOffset: number): Offsets {
  const n = elementCount(dims);
  const out = offsetArray(n, maxOffset);
  const r = dims.length;
  const counter = new Array<number>(r).fill(0);
  let flat = base;
  for (let i = 0; i < n; i++) {
    out[i] = flat;
    for (let d = r - 1; d >= 0; d--) {
      flat += strides[d]!;
      if (++counter[d]! < dims[d]!) break;
      flat -= strides[d]! * dims[d]!;
      counter[d] = 0;
    }
  }
  return out;
}

/**
 * A strided view of `x` (output dims, per-axis element strides into x, base offset), copied out
 * with the trailing axes that are contiguous in x merged into one block. The walk's dims may be
 * finer than the output's (`outDims`, same element count), as Tile's (repeat, axis) pairs are.
 */
export function stridedCopy(
  op: string,
  x: Tensor,
  dims: readonly number[],
  strides: readonly number[],
  base: number,
  outDims: readonly number[] = dims,
): Tensor {
  let k = dims.length;
  let block = 1;
  // Merge trailing axes while they continue the contiguous run (stride = elements in the block so far).
  while (k > 0 && (strides[k - 1] === block || dims[k - 1] === 1)) {
    block *= dims[k - 1]!;
    k--;
  }
  if (elementCount(dims) === 0) return gatherBlocks(op, x, [], 1, outDims);
  const starts = walkOffsets(dims.slice(0, k), strides.slice(0, k), base, x.elementCount);
  return gatherBlocks(op, x, starts, block, outDims);
}

/**
 * A tensor of `dims` with `values`' elements at the flat positions `positions` and zero (empty
 * strings) elsewhere; positions must be in range.
 */
export function scatterInto(op: string, values: Tensor, positions: ArrayLike<number>, dims: readonly number[]): Tensor {
  const n = elementCount(dims);
  if (values.dtype === DataType.STRING) {
    const out = new Array<Uint8Array>(n).fill(new Uint8Array(0));
    const s = values.strings();
    for (let i = 0; i < positions.length; i++) out[positions[i]!] = s[i]!;
    return Tensor.fromStrings('', dims, out);
  }
  const bits = subBits(values.dtype);
  const size = bits ? 1 : byteElementSize(op, values.dtype);
  const src = bits ? unpackCodes(values, bits) : values.bytes();
  const out = new Uint8Array(n * size);
  for (let i = 0; i < positions.length; i++) out.set(src.subarray(i * size, (i + 1) * size), positions[i]! * size);
  return Tensor.fromBytes('', values.dtype, dims, bits ? packSubByte(out, bits) : out);
}

/** The bigint values of an int attribute list (INT64_MAX and friends stay exact). */
export function attrBigInts(node: Node, name: string): bigint[] | undefined {
  const a = node.attribute(name);
  if (!a) return undefined;
  if (a.type !== 'ints') fail(node, `attribute '${name}' is ${a.type}, expected ints`);
  return a.value;
}

/** An integer input (shape, axes, indices) as bigints, for int32 and int64 tensors. */
export function bigIntsOf(node: Node, t: Tensor, what: string): bigint[] {
  if (t.dtype === DataType.INT64) return Array.from(t.toTypedArray<BigInt64Array>());
  if (t.dtype === DataType.INT32) return Array.from(t.toTypedArray<Int32Array>(), BigInt);
  if (t.dtype === DataType.INT16 || t.dtype === DataType.INT8 || t.dtype === DataType.UINT8 || t.dtype === DataType.UINT16 || t.dtype === DataType.UINT32) {
    return Array.from(t.toTypedArray() as ArrayLike<number>, BigInt);
  }
  if (t.dtype === DataType.UINT64) return Array.from(t.toTypedArray<BigUint64Array>());
  fail(node, `${what} must be an integer tensor, got ${dtypeName(t.dtype)}`);
}

/** An integer input as numbers (exact below 2^53; larger magnitudes are only ever out of range). */
export function intsOf(node: Node, t: Tensor, what: string): number[] {
  if (t.dtype === DataType.INT32) return Array.from(t.toTypedArray<Int32Array>());
  return bigIntsOf(node, t, what).map(Number);
}

/**
 * Registers a kernel that first refuses (KernelUnsupported) any attribute outside `attrs`: an
 * attribute a later opset adds to an open-ended version range must never be silently ignored.
 */
export function kernelWith(
  opType: string,
  since: number,
  attrs: readonly string[] | ((opset: number) => readonly string[]),
  fn: Kernel,
  until?: number,
): void {
  kernel(
    opType,
    since,
    (inputs, node, ctx) => {
      checkAttributes(node, typeof attrs === 'function' ? attrs(ctx.opsetVersion) : attrs);
      return fn(inputs, node, ctx);
    },
    until,
  );
}

/**
 * Shape and data-movement kernels. They move elements without arithmetic, so they work on raw
 * element bytes (any fixed-size dtype) or on string elements, through one `take` primitive:
 * output element i is input element src[i]. Sub-byte types (int4/uint4/int2/uint2) are declared
 * unsupported; index inputs may be int32 or int64, negative indices wrap, and out-of-range indices
 * are an error naming the node.
 */
import { PeftcError } from '../src/errors.js';
import { DataType, dtypeInfo, dtypeName, elementCount } from '../src/ir/dtype.js';
import type { Node } from '../src/ir/graph.js';
import { Tensor } from '../src/ir/tensor.js';
import { kernel, KernelUnsupported } from './registry.js';
import { broadcastIndex, broadcastShapes, fromBig, fromF64, input, normalizeAxis, readBig, readF64, readInts, stridesOf } from './util.js';

/** Output element i = input element src[i] (flat, row-major). */
export function take(t: Tensor, src: ArrayLike<number>, dims: readonly number[]): Tensor {
  if (t.dtype === DataType.STRING) {
    const s = t.strings();
    return Tensor.fromStrings('', dims, Array.from({ length: src.length }, (_, i) => s[src[i]!]!));
  }
  const bits = dtypeInfo(t.dtype).bits;
  if (bits < 8) throw new KernelUnsupported('take', `${dtypeName(t.dtype)} (sub-byte) data`);
  const size = bits / 8;
  const bytes = t.bytes();
  const n = src.length;
  const out = new Uint8Array(n * size);
  if (size === 1 || size === 2 || size === 4 || size === 8) {
    const Ctor = size === 1 ? Uint8Array : size === 2 ? Uint16Array : size === 4 ? Uint32Array : Float64Array;
    const aligned = bytes.byteOffset % size === 0 ? bytes : Uint8Array.from(bytes);
    const from = new Ctor(aligned.buffer as ArrayBuffer, aligned.byteOffset, aligned.byteLength / size);
    const to = new Ctor(out.buffer, 0, n);
    if (size === 8) {
      // Copy 8-byte elements as two 32-bit words so NaN payloads in float64 views are not canonicalized.
      const from32 = new Uint32Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 4);
      const to32 = new Uint32Array(out.buffer, 0, n * 2);
      for (let i = 0; i < n; i++) {
        to32[2 * i] = from32[2 * src[i]!]!;
        to32[2 * i + 1] = from32[2 * src[i]! + 1]!;
      }
    } else {
      for (let i = 0; i < n; i++) to[i] = from[src[i]!]!;
    }
  } else {
    for (let i = 0; i < n; i++) out.set(bytes.subarray(src[i]! * size, (src[i]! + 1) * size), i * size);
  }
  return Tensor.fromBytes('', t.dtype, dims, out);
}

/** The same data under new dims (no copy). */
function reshaped(t: Tensor, dims: readonly number[]): Tensor {
  if (t.dtype === DataType.STRING) return Tensor.fromStrings('', dims, t.strings());
  return Tensor.fromBytes('', t.dtype, dims, t.bytes());
}

function fail(node: Node, what: string): never {
  throw new PeftcError(`node '${node.name || node.opType}' (${node.opType}): ${what}`);
}

function ints(node: Node, inputs: ReadonlyArray<Tensor | null>, i: number, attr: string, opsetInputFrom: number, opset: number): number[] | undefined {
  if (opset >= opsetInputFrom) {
    const t = inputs[i];
    return t ? readInts(t) : undefined;
  }
  return node.attrInts(attr);
}

// ---------------------------------------------------------------------------------------------

kernel('Identity', 1, (inputs) => [input('Identity', inputs, 0)]);

kernel('Constant', 1, (_inputs, node) => {
  const a = node.attributes[0];
  if (!a || node.attributes.length !== 1) throw new KernelUnsupported('Constant', 'a Constant without exactly one value attribute');
  switch (a.name) {
    case 'value':
      if (a.type === 'tensor') return [a.value];
      break;
    case 'value_float':
      if (a.type === 'float') return [fromF64(DataType.FLOAT, [], [a.value])];
      break;
    case 'value_floats':
      if (a.type === 'floats') return [fromF64(DataType.FLOAT, [a.value.length], a.value)];
      break;
    case 'value_int':
      if (a.type === 'int') return [fromBig(DataType.INT64, [], [a.value])];
      break;
    case 'value_ints':
      if (a.type === 'ints') return [fromBig(DataType.INT64, [a.value.length], a.value)];
      break;
    case 'value_string':
      if (a.type === 'string') return [Tensor.fromStrings('', [], [a.value])];
      break;
    case 'value_strings':
      if (a.type === 'strings') return [Tensor.fromStrings('', [a.value.length], a.value)];
      break;
  }
  throw new KernelUnsupported('Constant', `attribute '${a.name}' (${a.type})`);
});

kernel('Shape', 1, (inputs, node, ctx) => {
  const x = input('Shape', inputs, 0);
  const r = x.dims.length;
  let start = 0;
  let end = r;
  if (ctx.opsetVersion >= 15) {
    const clamp = (i: number) => Math.min(Math.max(i < 0 ? i + r : i, 0), r);
    start = clamp(node.attrInt('start', 0));
    end = node.attribute('end') ? clamp(node.attrInt('end', r)) : r;
  }
  const dims = x.dims.slice(start, Math.max(start, end));
  return [fromBig(DataType.INT64, [dims.length], dims.map(BigInt))];
});

kernel('Size', 1, (inputs) => [fromBig(DataType.INT64, [], [BigInt(input('Size', inputs, 0).elementCount)])]);

kernel('Gather', 1, (inputs, node) => {
  const x = input('Gather', inputs, 0);
  const idxT = input('Gather', inputs, 1);
  const r = x.dims.length;
  const axis = normalizeAxis(node, node.attrInt('axis', 0), r);
  const idx = readInts(idxT);
  const n = x.dims[axis]!;
  const outer = elementCount(x.dims.slice(0, axis));
  const inner = elementCount(x.dims.slice(axis + 1));
  const dims = [...x.dims.slice(0, axis), ...idxT.dims, ...x.dims.slice(axis + 1)];
  const src = new Int32Array(elementCount(dims));
  let o = 0;
  for (let a = 0; a < outer; a++) {
    for (const raw of idx) {
      const k = raw < 0 ? raw + n : raw;
      if (k < 0 || k >= n) fail(node, `index ${raw} out of range for axis of size ${n}`);
      const base = (a * n + k) * inner;
      for (let j = 0; j < inner; j++) src[o++] = base + j;
    }
  }
  return [take(x, src, dims)];
});

kernel('GatherElements', 11, (inputs, node) => {
  const x = input('GatherElements', inputs, 0);
  const idxT = input('GatherElements', inputs, 1);
  const r = x.dims.length;
  const axis = normalizeAxis(node, node.attrInt('axis', 0), r);
  const idx = readInts(idxT);
  const xs = stridesOf(x.dims);
  const is = stridesOf(idxT.dims);
  const src = new Int32Array(idx.length);
  for (let i = 0; i < idx.length; i++) {
    let rem = i;
    let flat = 0;
    for (let d = 0; d < r; d++) {
      const c = Math.floor(rem / is[d]!);
      rem -= c * is[d]!;
      if (d === axis) {
        const n = x.dims[axis]!;
        const k = idx[i]! < 0 ? idx[i]! + n : idx[i]!;
        if (k < 0 || k >= n) fail(node, `index ${idx[i]} out of range for axis of size ${n}`);
        flat += k * xs[d]!;
      } else flat += c * xs[d]!;
    }
    src[i] = flat;
  }
  return [take(x, src, idxT.dims)];
});

kernel('Concat', 4, (inputs, node) => {
  const parts = inputs.filter((t): t is Tensor => t !== null);
  if (!parts.length) throw new KernelUnsupported('Concat', 'no inputs');
  const r = parts[0]!.dims.length;
  const axis = normalizeAxis(node, node.attrInt('axis', 0), r);
  for (const p of parts) {
    if (p.dtype !== parts[0]!.dtype || p.dims.length !== r || p.dims.some((d, i) => i !== axis && d !== parts[0]!.dims[i])) {
      fail(node, 'inputs do not agree in type or shape off the concatenation axis');
    }
  }
  const dims = [...parts[0]!.dims];
  dims[axis] = parts.reduce((s, p) => s + p.dims[axis]!, 0);
  const outer = elementCount(dims.slice(0, axis));
  const inner = elementCount(dims.slice(axis + 1));
  // Build the output as one "virtual" input: index pairs (part, element).
  const total = elementCount(dims);
  if (parts[0]!.dtype === DataType.STRING) {
    const strings: Uint8Array[] = [];
    for (let a = 0; a < outer; a++) for (const p of parts) {
      const s = p.strings();
      const len = p.dims[axis]! * inner;
      for (let j = 0; j < len; j++) strings.push(s[a * len + j]!);
    }
    return [Tensor.fromStrings('', dims, strings)];
  }
  const bits = dtypeInfo(parts[0]!.dtype).bits;
  if (bits < 8) throw new KernelUnsupported('Concat', `${dtypeName(parts[0]!.dtype)} data`);
  const size = bits / 8;
  const out = new Uint8Array(total * size);
  let at = 0;
  for (let a = 0; a < outer; a++) {
    for (const p of parts) {
      const len = p.dims[axis]! * inner * size;
      out.set(p.bytes().subarray(a * len, (a + 1) * len), at);
      at += len;
    }
  }
  return [Tensor.fromBytes('', parts[0]!.dtype, dims, out)];
});

/** Elements [begin, end) along `axis` (step 1). */
function sliceAxis(x: Tensor, axis: number, begin: number, end: number): Tensor {
  const dims = [...x.dims];
  dims[axis] = end - begin;
  const outer = elementCount(x.dims.slice(0, axis));
  const inner = elementCount(x.dims.slice(axis + 1));
  const n = x.dims[axis]!;
  const src = new Int32Array(elementCount(dims));
  let o = 0;
  for (let a = 0; a < outer; a++) for (let k = begin; k < end; k++) for (let j = 0; j < inner; j++) src[o++] = (a * n + k) * inner + j;
  return take(x, src, dims);
}

kernel('Split', 2, (inputs, node, ctx) => {
  const x = input('Split', inputs, 0);
  const axis = normalizeAxis(node, node.attrInt('axis', 0), x.dims.length);
  const n = x.dims[axis]!;
  const count = node.outputs.length;
  let sizes = ctx.opsetVersion >= 13 ? (inputs[1] ? readInts(inputs[1]) : undefined) : node.attrInts('split');
  if (!sizes) {
    const k = ctx.opsetVersion >= 18 ? node.attrInt('num_outputs', count) : count;
    const chunk = Math.ceil(n / k);
    sizes = Array.from({ length: k }, (_, i) => Math.max(0, Math.min(chunk, n - i * chunk)));
    if (ctx.opsetVersion < 18 && n % k !== 0) fail(node, `axis of size ${n} does not split evenly into ${k}`);
  }
  if (sizes.reduce((a, b) => a + b, 0) !== n) fail(node, `split sizes ${sizes.join(',')} do not add up to ${n}`);
  const out: Tensor[] = [];
  let at = 0;
  for (const s of sizes) {
    out.push(sliceAxis(x, axis, at, at + s));
    at += s;
  }
  return out;
});

kernel('Slice', 1, (inputs, node, ctx) => {
  const x = input('Slice', inputs, 0);
  const r = x.dims.length;
  const opset = ctx.opsetVersion;
  const big = (i: number): bigint[] | undefined => (inputs[i] ? Array.from(readBig(inputs[i]!)) : undefined);
  let starts: bigint[] | undefined;
  let ends: bigint[] | undefined;
  let axes: number[] | undefined;
  let steps: bigint[] | undefined;
  if (opset >= 10) {
    starts = big(1);
    ends = big(2);
    axes = inputs[3] ? readInts(inputs[3]) : undefined;
    steps = big(4);
  } else {
    starts = node.attrInts('starts')?.map(BigInt);
    ends = node.attrInts('ends')?.map(BigInt);
    axes = node.attrInts('axes');
  }
  if (!starts || !ends) throw new KernelUnsupported('Slice', 'missing starts/ends');
  axes ??= starts.map((_, i) => i);
  steps ??= starts.map(() => 1n);
  const begin = new Array<number>(r).fill(0);
  const step = new Array<number>(r).fill(1);
  const dims = [...x.dims];
  axes.forEach((rawAxis, i) => {
    const axis = normalizeAxis(node, rawAxis, r);
    const n = BigInt(x.dims[axis]!);
    const st = steps![i]!;
    if (st === 0n) fail(node, 'a step of 0');
    const clamp = (v: bigint, lo: bigint, hi: bigint) => (v < lo ? lo : v > hi ? hi : v);
    let s = starts![i]!;
    let e = ends![i]!;
    if (s < 0n) s += n;
    if (e < 0n) e += n;
    if (st > 0n) {
      s = clamp(s, 0n, n);
      e = clamp(e, 0n, n);
    } else {
      s = clamp(s, 0n, n - 1n);
      e = clamp(e, -1n, n - 1n);
    }
    const count = st > 0n ? (e > s ? (e - s + st - 1n) / st : 0n) : s > e ? (s - e + -st - 1n) / -st : 0n;
    begin[axis] = Number(s);
    step[axis] = Number(st);
    dims[axis] = Number(count);
  });
  const xs = stridesOf(x.dims);
  const total = elementCount(dims);
  const src = new Int32Array(total);
  const counter = new Array<number>(r).fill(0);
  for (let i = 0; i < total; i++) {
    let flat = 0;
    for (let d = 0; d < r; d++) flat += (begin[d]! + counter[d]! * step[d]!) * xs[d]!;
    src[i] = flat;
    for (let d = r - 1; d >= 0; d--) {
      if (++counter[d]! < dims[d]!) break;
      counter[d] = 0;
    }
  }
  return [take(x, src, dims)];
});

kernel('Squeeze', 1, (inputs, node, ctx) => {
  const x = input('Squeeze', inputs, 0);
  const r = x.dims.length;
  const axes = ints(node, inputs, 1, 'axes', 13, ctx.opsetVersion)?.map((a) => normalizeAxis(node, a, r));
  for (const a of axes ?? []) if (x.dims[a] !== 1) fail(node, `cannot squeeze axis ${a} of size ${x.dims[a]}`);
  const dims = x.dims.filter((d, i) => (axes ? !axes.includes(i) : d !== 1));
  return [reshaped(x, dims)];
});

kernel('Unsqueeze', 1, (inputs, node, ctx) => {
  const x = input('Unsqueeze', inputs, 0);
  const axes = ints(node, inputs, 1, 'axes', 13, ctx.opsetVersion);
  if (!axes) throw new KernelUnsupported('Unsqueeze', 'missing axes');
  const r = x.dims.length + axes.length;
  const norm = axes.map((a) => normalizeAxis(node, a, r));
  if (new Set(norm).size !== norm.length) fail(node, 'repeated axes');
  const dims: number[] = [];
  let k = 0;
  for (let i = 0; i < r; i++) dims.push(norm.includes(i) ? 1 : x.dims[k++]!);
  return [reshaped(x, dims)];
});

kernel('Reshape', 5, (inputs, node) => {
  const x = input('Reshape', inputs, 0);
  const shape = readInts(input('Reshape', inputs, 1));
  const allowZero = node.attrInt('allowzero', 0) === 1;
  const dims = shape.map((d, i) => (d === 0 && !allowZero ? x.dims[i]! : d));
  const unknown = dims.indexOf(-1);
  if (dims.filter((d) => d === -1).length > 1) fail(node, 'more than one -1 in the shape');
  if (unknown >= 0) {
    const known = dims.reduce((a, d, i) => (i === unknown ? a : a * d), 1);
    if (known === 0 || x.elementCount % known !== 0) fail(node, `cannot infer -1 for ${x.elementCount} elements into [${shape.join(',')}]`);
    dims[unknown] = x.elementCount / known;
  }
  if (elementCount(dims) !== x.elementCount) fail(node, `cannot reshape ${x.elementCount} elements to [${dims.join(',')}]`);
  return [reshaped(x, dims)];
});

kernel('Flatten', 1, (inputs, node) => {
  const x = input('Flatten', inputs, 0);
  const r = x.dims.length;
  let axis = node.attrInt('axis', 1);
  if (axis < 0) axis += r;
  if (axis < 0 || axis > r) fail(node, `axis ${axis} out of range`);
  return [reshaped(x, [elementCount(x.dims.slice(0, axis)), elementCount(x.dims.slice(axis))])];
});

kernel('Transpose', 1, (inputs, node) => {
  const x = input('Transpose', inputs, 0);
  const r = x.dims.length;
  const perm = node.attrInts('perm') ?? x.dims.map((_, i) => r - 1 - i);
  if (perm.length !== r || new Set(perm).size !== r || perm.some((p) => p < 0 || p >= r)) fail(node, `bad perm [${perm.join(',')}]`);
  const dims = perm.map((p) => x.dims[p]!);
  const xs = stridesOf(x.dims);
  const total = elementCount(dims);
  const src = new Int32Array(total);
  const counter = new Array<number>(r).fill(0);
  let flat = 0;
  for (let i = 0; i < total; i++) {
    src[i] = flat;
    for (let d = r - 1; d >= 0; d--) {
      counter[d]!++;
      flat += xs[perm[d]!]!;
      if (counter[d]! < dims[d]!) break;
      flat -= xs[perm[d]!]! * dims[d]!;
      counter[d] = 0;
    }
  }
  return [take(x, src, dims)];
});

kernel('Expand', 8, (inputs) => {
  const x = input('Expand', inputs, 0);
  const shape = readInts(input('Expand', inputs, 1));
  const dims = broadcastShapes('Expand', x.dims, shape);
  const idx = broadcastIndex(x.dims, dims);
  return [idx ? take(x, idx, dims) : reshaped(x, dims)];
});

kernel('Tile', 6, (inputs, node) => {
  const x = input('Tile', inputs, 0);
  const reps = readInts(input('Tile', inputs, 1));
  if (reps.length !== x.dims.length) fail(node, 'repeats do not match the rank');
  const dims = x.dims.map((d, i) => d * reps[i]!);
  const xs = stridesOf(x.dims);
  const total = elementCount(dims);
  const src = new Int32Array(total);
  const r = dims.length;
  const counter = new Array<number>(r).fill(0);
  for (let i = 0; i < total; i++) {
    let flat = 0;
    for (let d = 0; d < r; d++) flat += (counter[d]! % x.dims[d]!) * xs[d]!;
    src[i] = flat;
    for (let d = r - 1; d >= 0; d--) {
      if (++counter[d]! < dims[d]!) break;
      counter[d] = 0;
    }
  }
  return [take(x, src, dims)];
});

kernel('ConstantOfShape', 9, (inputs, node) => {
  const dims = readInts(input('ConstantOfShape', inputs, 0));
  const a = node.attribute('value');
  const value = a?.type === 'tensor' ? a.value : fromF64(DataType.FLOAT, [1], [0]);
  if (value.elementCount !== 1) fail(node, 'value must hold one element');
  return [take(value, new Int32Array(elementCount(dims)), dims)];
});

kernel('Range', 11, (inputs) => {
  const start = input('Range', inputs, 0);
  const limit = input('Range', inputs, 1);
  const delta = input('Range', inputs, 2);
  const dtype = start.dtype;
  if (dtype === DataType.INT64) {
    const [s, l, d] = [readBig(start)[0]!, readBig(limit)[0]!, readBig(delta)[0]!];
    if (d === 0n) throw new KernelUnsupported('Range', 'a delta of 0');
    const span = l - s;
    const n = span / d + (span % d !== 0n ? 1n : 0n);
    const count = n > 0n ? Number(n) : 0;
    return [fromBig(dtype, [count], Array.from({ length: count }, (_, i) => s + BigInt(i) * d))];
  }
  const [s, l, d] = [readF64(start)[0]!, readF64(limit)[0]!, readF64(delta)[0]!];
  if (d === 0) throw new KernelUnsupported('Range', 'a delta of 0');
  const count = Math.max(Math.ceil((l - s) / d), 0);
  // ONNX defines element i as start + i * delta, computed in the input type.
  const round = dtype === DataType.FLOAT ? Math.fround : (v: number) => v;
  return [fromF64(dtype, [count], Array.from({ length: count }, (_, i) => round(s + i * d)))];
});


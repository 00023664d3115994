/**
 * Data-movement kernels: Gather, GatherElements, Concat, Split, Slice, Transpose, Expand, Tile.
 * They move elements without arithmetic, through movement.ts's block gathers, so every dtype
 * works (fixed-size on raw bytes, strings, sub-byte int4/uint4/int2/uint2/float4e2m1). Index
 * inputs may be int32 or int64; negative indices wrap; out-of-range indices, bad axes and
 * mismatched shapes are PeftcErrors naming the node. Version ranges follow the ONNX operator
 * changelog where the signature changed (Concat 4, Split 2/13/18, Slice 10, Tile 6).
 */
import { elementCount } from '../src/ir/dtype.js';
import type { Node } from '../src/ir/graph.js';
import type { Tensor } from '../src/ir/tensor.js';
import { KernelUnsupported } from './registry.js';
import {
  attrBigInts,
  axisOf,
  bigIntsOf,
  concatRuns,
  fail,
  gatherBlocks,
  intsOf,
  kernelWith,
  need,
  offsetArray,
  sameData,
  stridedCopy,
  stridesOf,
  walkOffsets,
} from './movement.js';

/** An index into an axis of size n (negative wraps); out of range fails naming the node. */
function wrapIndex(node: Node, raw: number, n: number): number {
  const k = raw < 0 ? raw + n : raw;
  if (!(k >= 0 && k < n)) fail(node, `index ${raw} is out of range for an axis of size ${n}`);
  return k;
}

// ---------------------------------------------------------------------------------------------

kernelWith('Gather', 1, ['axis'], (inputs, node) => {
  const x = need(node, inputs, 0, 'data');
  const idxT = need(node, inputs, 1, 'indices');
  const r = x.dims.length;
  if (r === 0) fail(node, 'data must have rank 1 or more');
  const axis = axisOf(node, node.attrInt('axis', 0), r);
  const n = x.dims[axis]!;
  const idx = intsOf(node, idxT, 'indices').map((raw) => wrapIndex(node, raw, n));
  const outer = elementCount(x.dims.slice(0, axis));
  const inner = elementCount(x.dims.slice(axis + 1));
  const dims = [...x.dims.slice(0, axis), ...idxT.dims, ...x.dims.slice(axis + 1)];
  const starts = offsetArray(outer * idx.length, x.elementCount);
  let o = 0;
  for (let a = 0; a < outer; a++) for (const k of idx) starts[o++] = (a * n + k) * inner;
  return [gatherBlocks('Gather', x, starts, inner, dims)];
});

kernelWith('GatherElements', 11, ['axis'], (inputs, node) => {
  const x = need(node, inputs, 0, 'data');
  const idxT = need(node, inputs, 1, 'indices');
  const r = x.dims.length;
  if (r === 0) fail(node, 'data must have rank 1 or more');
  if (idxT.dims.length !== r) fail(node, `indices have rank ${idxT.dims.length}, data rank ${r}`);
  const axis = axisOf(node, node.attrInt('axis', 0), r);
  idxT.dims.forEach((d, i) => {
    if (i !== axis && d > x.dims[i]!) fail(node, `indices dim ${i} (${d}) exceeds the data's (${x.dims[i]})`);
  });
  const xs = stridesOf(x.dims);
  const n = x.dims[axis]!;
  const idx = intsOf(node, idxT, 'indices');
  // Offsets of the index positions with the axis coordinate left out, plus the index along the axis.
  const strides = xs.map((s, i) => (i === axis ? 0 : s));
  const starts = walkOffsets(idxT.dims, strides, 0, x.elementCount);
  for (let i = 0; i < starts.length; i++) starts[i] = starts[i]! + wrapIndex(node, idx[i]!, n) * xs[axis]!;
  return [gatherBlocks('GatherElements', x, starts, 1, idxT.dims)];
});

// ---------------------------------------------------------------------------------------------

function concat(inputs: ReadonlyArray<Tensor | null>, node: Node, axisAttr: number): Tensor[] {
  const parts = inputs.filter((t): t is Tensor => t !== null);
  if (!parts.length) fail(node, 'no inputs');
  const first = parts[0]!;
  const r = first.dims.length;
  if (r === 0) fail(node, 'cannot concatenate scalars');
  const axis = axisOf(node, axisAttr, r);
  for (const p of parts) {
    if (p.dtype !== first.dtype) fail(node, 'inputs differ in type');
    if (p.dims.length !== r || p.dims.some((d, i) => i !== axis && d !== first.dims[i])) {
      fail(node, `input shapes [${parts.map((q) => q.dims.join(',')).join('] [')}] differ off axis ${axis}`);
    }
  }
  const dims = [...first.dims];
  dims[axis] = parts.reduce((s, p) => s + p.dims[axis]!, 0);
  if (parts.length === 1) return [sameData(first, dims)];
  const inner = elementCount(dims.slice(axis + 1));
  return [concatRuns('Concat', parts, parts.map((p) => p.dims[axis]! * inner), elementCount(dims.slice(0, axis)), dims)];
}

// Concat-1: axis optional, default 1. From 4: required.
kernelWith('Concat', 1, ['axis'], (inputs, node) => concat(inputs, node, node.attrInt('axis', 1)), 4);
kernelWith('Concat', 4, ['axis'], (inputs, node) => {
  const axis = node.attrInt('axis');
  if (axis === undefined) fail(node, "attribute 'axis' is required");
  return concat(inputs, node, axis);
});

// ---------------------------------------------------------------------------------------------

/** Elements [begin, begin + count) along `axis`. */
function sliceAxis(op: string, x: Tensor, axis: number, begin: number, count: number): Tensor {
  const dims = [...x.dims];
  dims[axis] = count;
  const xs = stridesOf(x.dims);
  return stridedCopy(op, x, dims, xs, begin * xs[axis]!);
}

function split(x: Tensor, node: Node, sizes: readonly number[]): Tensor[] {
  const axis = axisOf(node, node.attrInt('axis', 0), x.dims.length);
  const n = x.dims[axis]!;
  if (sizes.length !== node.outputs.length) fail(node, `${sizes.length} split sizes for ${node.outputs.length} outputs`);
  if (sizes.some((s) => !(s >= 0))) fail(node, `negative split size in [${sizes.join(',')}]`);
  if (sizes.reduce((a, b) => a + b, 0) !== n) fail(node, `split sizes [${sizes.join(',')}] do not add up to the axis size ${n}`);
  const out: Tensor[] = [];
  let at = 0;
  for (const s of sizes) {
    out.push(sliceAxis('Split', x, axis, at, s));
    at += s;
  }
  return out;
}

/** Equal parts, one per output; the axis must divide evenly. */
function equalSizes(x: Tensor, node: Node): number[] {
  const axis = axisOf(node, node.attrInt('axis', 0), x.dims.length);
  const n = x.dims[axis]!;
  const k = node.outputs.length;
  if (k === 0 || n % k !== 0) fail(node, `axis of size ${n} does not split evenly into ${k} outputs`);
  return new Array<number>(k).fill(n / k);
}

kernelWith('Split', 1, ['axis', 'split'], (inputs, node) => {
  const x = need(node, inputs, 0, 'input');
  if (inputs[1]) throw new KernelUnsupported('Split', "Split-1's 'split' input (a float tensor of lengths)");
  return split(x, node, node.attrInts('split') ?? equalSizes(x, node));
}, 2);
kernelWith('Split', 2, ['axis', 'split'], (inputs, node) => {
  const x = need(node, inputs, 0, 'input');
  return split(x, node, node.attrInts('split') ?? equalSizes(x, node));
}, 13);
kernelWith('Split', 13, (opset) => (opset >= 18 ? ['axis', 'num_outputs'] : ['axis']), (inputs, node, ctx) => {
  const x = need(node, inputs, 0, 'input');
  if (inputs[1]) {
    if (ctx.opsetVersion >= 18 && node.attribute('num_outputs')) fail(node, "both the 'split' input and 'num_outputs' are given");
    return split(x, node, intsOf(node, inputs[1], 'split'));
  }
  const k = ctx.opsetVersion >= 18 ? node.attrInt('num_outputs') : undefined;
  if (k === undefined) return split(x, node, equalSizes(x, node));
  // Split-18: ceil(n / k) per output, the last one smaller when k does not divide n.
  const n = x.dims[axisOf(node, node.attrInt('axis', 0), x.dims.length)]!;
  if (!(k >= 1)) fail(node, `num_outputs ${k}`);
  const chunk = Math.ceil(n / k);
  const last = n - chunk * (k - 1);
  if (last < 0) fail(node, `an axis of size ${n} cannot be split into ${k} outputs of ${chunk} (the last would be ${last})`);
  return split(x, node, [...new Array<number>(k - 1).fill(chunk), last]);
});

// ---------------------------------------------------------------------------------------------

const INT32_MAX = 2n ** 31n - 1n;
const INT64_MAX = 2n ** 63n - 1n;

function slice(x: Tensor, node: Node, starts: bigint[], ends: bigint[], axesIn: number[] | undefined, steps: bigint[] | undefined): Tensor[] {
  const r = x.dims.length;
  const axes = axesIn ?? starts.map((_, i) => i);
  if (ends.length !== starts.length || axes.length !== starts.length || (steps && steps.length !== starts.length)) {
    fail(node, `starts, ends, axes and steps differ in length (${starts.length}, ${ends.length}, ${axes.length}, ${steps?.length ?? '-'})`);
  }
  const xs = stridesOf(x.dims);
  const dims = [...x.dims];
  const strides = [...xs];
  let base = 0;
  const seen = new Set<number>();
  axes.forEach((rawAxis, i) => {
    const axis = axisOf(node, rawAxis, r);
    if (seen.has(axis)) fail(node, `axis ${axis} is sliced twice`);
    seen.add(axis);
    const n = BigInt(x.dims[axis]!);
    const st = steps ? steps[i]! : 1n;
    if (st === 0n) fail(node, `step 0 on axis ${axis}`);
    const clamp = (v: bigint, lo: bigint, hi: bigint) => (v < lo ? lo : v > hi ? hi : v);
    let s = starts[i]!;
    let e = ends[i]!;
    if (s < 0n) s += n;
    if (e < 0n) e += n;
    let count: bigint;
    if (st > 0n) {
      s = clamp(s, 0n, n);
      e = clamp(e, 0n, n);
      count = e > s ? (e - s + st - 1n) / st : 0n;
    } else {
      // The spec (and its numpy reference) clamps an end of INT64_MAX with a negative step to
      // dim-1: an empty slice. onnxruntime reads INT32_MAX/INT64_MAX ends as "through index 0"
      // there. Folding either answer would change what the model computes somewhere, so decline.
      // (Exporters write INT64_MIN for a reversed slice to the start; both agree on that.)
      if (e === INT32_MAX || e === INT64_MAX) {
        throw new KernelUnsupported('Slice', `an end of ${e} with a negative step (the ONNX spec and onnxruntime disagree on it)`);
      }
      s = clamp(s, 0n, n - 1n);
      e = clamp(e, -1n, n - 1n);
      count = s > e ? (s - e - st - 1n) / -st : 0n;
    }
    dims[axis] = Number(count);
    // With one element or none the step does not matter (and may be far beyond 2^53).
    strides[axis] = count > 1n ? Number(st) * xs[axis]! : xs[axis]!;
    if (count > 0n) base += Number(s) * xs[axis]!;
  });
  return [stridedCopy('Slice', x, dims, strides, base)];
}

// Slice-1: starts/ends/axes attributes. From 10: inputs, with steps.
kernelWith('Slice', 1, ['starts', 'ends', 'axes'], (inputs, node) => {
  const x = need(node, inputs, 0, 'data');
  const starts = attrBigInts(node, 'starts');
  const ends = attrBigInts(node, 'ends');
  if (!starts || !ends) fail(node, "attributes 'starts' and 'ends' are required");
  return slice(x, node, starts, ends, node.attrInts('axes'), undefined);
}, 10);
kernelWith('Slice', 10, [], (inputs, node) => {
  const x = need(node, inputs, 0, 'data');
  const starts = bigIntsOf(node, need(node, inputs, 1, 'starts'), 'starts');
  const ends = bigIntsOf(node, need(node, inputs, 2, 'ends'), 'ends');
  const axes = inputs[3] ? intsOf(node, inputs[3], 'axes') : undefined;
  const steps = inputs[4] ? bigIntsOf(node, inputs[4], 'steps') : undefined;
  return slice(x, node, starts, ends, axes, steps);
});

// ---------------------------------------------------------------------------------------------

kernelWith('Transpose', 1, ['perm'], (inputs, node) => {
  const x = need(node, inputs, 0, 'data');
  const r = x.dims.length;
  const perm = node.attrInts('perm') ?? x.dims.map((_, i) => r - 1 - i);
  if (perm.length !== r || new Set(perm).size !== r || perm.some((p) => !(p >= 0 && p < r))) {
    fail(node, `perm [${perm.join(',')}] is not a permutation of ${r} axes`);
  }
  const xs = stridesOf(x.dims);
  return [stridedCopy('Transpose', x, perm.map((p) => x.dims[p]!), perm.map((p) => xs[p]!), 0)];
});

kernelWith('Expand', 8, [], (inputs, node) => {
  const x = need(node, inputs, 0, 'input');
  const shape = intsOf(node, need(node, inputs, 1, 'shape'), 'shape');
  if (shape.some((d) => !(d >= 0))) fail(node, `shape [${shape.join(',')}] has a negative dim`);
  const r = Math.max(x.dims.length, shape.length);
  const xd = [...new Array<number>(r - x.dims.length).fill(1), ...x.dims];
  const sd = [...new Array<number>(r - shape.length).fill(1), ...shape];
  const dims = xd.map((a, i) => {
    const b = sd[i]!;
    if (a === b || b === 1) return a;
    if (a === 1) return b;
    return fail(node, `input shape [${x.dims.join(',')}] does not broadcast to [${shape.join(',')}]`);
  });
  const xs = stridesOf(xd);
  return [stridedCopy('Expand', x, dims, xs.map((s, i) => (xd[i] === 1 ? 0 : s)), 0)];
});

/** Tiles `x` reps[i] times along each axis: a walk over (repeat, index) pairs per axis. */
function tile(op: string, x: Tensor, reps: readonly number[]): Tensor {
  const xs = stridesOf(x.dims);
  const walk: number[] = [];
  const strides: number[] = [];
  x.dims.forEach((d, i) => {
    walk.push(reps[i]!, d);
    strides.push(0, xs[i]!);
  });
  return stridedCopy(op, x, walk, strides, 0, x.dims.map((d, i) => d * reps[i]!));
}

// Tile-1: repeat the whole tensor `tiles` times along `axis` (scalar inputs). From 6: repeats per axis.
kernelWith('Tile', 1, [], (inputs, node) => {
  const x = need(node, inputs, 0, 'input');
  const [tiles] = intsOf(node, need(node, inputs, 1, 'tiles'), 'tiles');
  const [rawAxis] = intsOf(node, need(node, inputs, 2, 'axis'), 'axis');
  if (tiles === undefined || rawAxis === undefined) fail(node, 'tiles and axis must hold one value each');
  if (tiles < 0) fail(node, `tiles ${tiles} is negative`);
  const axis = axisOf(node, rawAxis, x.dims.length);
  return [tile('Tile', x, x.dims.map((_, i) => (i === axis ? tiles : 1)))];
}, 6);
kernelWith('Tile', 6, [], (inputs, node) => {
  const x = need(node, inputs, 0, 'input');
  const reps = intsOf(node, need(node, inputs, 1, 'repeats'), 'repeats');
  if (reps.length !== x.dims.length) fail(node, `${reps.length} repeats for rank ${x.dims.length}`);
  if (reps.some((k) => !(k >= 0))) fail(node, `repeats [${reps.join(',')}] has a negative value`);
  return [tile('Tile', x, reps)];
});


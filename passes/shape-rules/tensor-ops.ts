/**
 * Rules for ops that move data or compute shapes: Shape, Size, Constant, ConstantOfShape,
 * Reshape, Flatten, Transpose, Squeeze/Unsqueeze, Concat, Split, Slice, Gather*, Expand, Tile,
 * Range, Pad, Resize/Upsample, DepthToSpace/SpaceToDepth, TopK, OneHot, NonZero, Compress, Unique.
 *
 * Shape arithmetic is followed through values: Shape gives the input's dims as values (numbers
 * or symbols), Gather/Slice/Concat/Unsqueeze/Squeeze/Cast/Reshape carry them, and Reshape,
 * Expand, ConstantOfShape, Tile and the axes/sizes inputs of other ops read them. So an
 * exporter's `Reshape(x, Concat(Gather(Shape(x), 0), [-1]))` still comes out as [batch, 2048].
 */
import { DataType } from '../../src/ir/dtype.js';
import type { Tensor } from '../../src/ir/tensor.js';
import {
  addDim,
  broadcastShapes,
  isNum,
  isStatic,
  mergeDim,
  mulDim,
  normAxes,
  normAxis,
  productDim,
  quotientDim,
  type D,
  type Shape,
} from './dims.js';
import { attrIntOr, attrIntsOr, attrString, type Fact, type Rule, type RuleInput } from './rule.js';

/** Largest integer tensor whose values inference keeps track of. */
export const MAX_TRACKED_VALUES = 1024;

const unknownDims = (n: number): Shape => new Array<D>(n).fill(null);

/** Axes of Squeeze/Unsqueeze/Reduce*: an attribute before `inputFrom`, an input (index 1) since. */
function axesOf(r: RuleInput, inputFrom: number): { given: boolean; axes: number[] | undefined } {
  if (r.opset < inputFrom) {
    const axes = attrIntsOr(r.node, 'axes');
    return { given: axes !== undefined, axes };
  }
  return { given: r.has(1), axes: r.has(1) ? r.ints(1) : undefined };
}

/** Integer elements of a small tensor (Constant attributes), as numbers. */
function tensorInts(t: Tensor): number[] | undefined {
  if (t.elementCount > MAX_TRACKED_VALUES) return undefined;
  if (t.dtype === DataType.INT64) return Array.from(t.toTypedArray<BigInt64Array>(), Number);
  if (t.dtype === DataType.INT32) return Array.from(t.toTypedArray<Int32Array>());
  return undefined;
}

function sliceDim(dim: number, start: number, end: number, step: number): number {
  if (start < 0) start += dim;
  if (end < 0) end += dim;
  if (step > 0) {
    start = Math.min(Math.max(start, 0), dim);
    end = Math.min(Math.max(end, 0), dim);
    return Math.max(0, Math.ceil((end - start) / step));
  }
  start = Math.min(Math.max(start, 0), dim - 1);
  end = Math.min(Math.max(end, -1), dim - 1);
  return Math.max(0, Math.ceil((start - end) / -step));
}

/** The element indices a 1-D slice picks (for values). */
function sliceIndices(dim: number, start: number, end: number, step: number): number[] {
  const n = sliceDim(dim, start, end, step);
  if (start < 0) start += dim;
  start = step > 0 ? Math.min(Math.max(start, 0), dim) : Math.min(Math.max(start, 0), dim - 1);
  return Array.from({ length: n }, (_, i) => start + i * step);
}

/** Slice parameters, from attributes (opset < 10) or constant inputs. */
function sliceParams(r: RuleInput): { starts?: number[]; ends?: number[]; axes?: number[]; steps?: number[]; axesKnown: boolean } {
  if (r.opset < 10) {
    const starts = attrIntsOr(r.node, 'starts');
    const axes = attrIntsOr(r.node, 'axes') ?? starts?.map((_, i) => i);
    return { starts, ends: attrIntsOr(r.node, 'ends'), axes, steps: starts?.map(() => 1), axesKnown: axes !== undefined };
  }
  const starts = r.ints(1);
  const ends = r.ints(2);
  const count = starts?.length ?? ends?.length ?? r.shape(1)?.[0] ?? r.shape(2)?.[0];
  const axes = r.has(3) ? r.ints(3) : typeof count === 'number' ? Array.from({ length: count }, (_, i) => i) : undefined;
  const steps = r.has(4) ? r.ints(4) : typeof count === 'number' ? new Array<number>(count).fill(1) : undefined;
  return { starts, ends, axes, steps, axesKnown: axes !== undefined };
}

/**
 * floor(dim * scale). Runtimes multiply in float32, the ONNX reference in float64; where the two
 * could disagree the dim is left unknown.
 */
function resizeDim(dim: D, scale: number): D {
  if (!isNum(dim)) return scale === 1 ? dim : null;
  const single = Math.floor(Math.fround(Math.fround(dim) * Math.fround(scale)));
  return single === Math.floor(dim * Math.fround(scale)) ? single : null;
}

export const TENSOR_RULES: Record<string, Rule> = {
  Shape: (r) => {
    const x = r.shape(0);
    if (!x) return [{ elemType: DataType.INT64, shape: [null] }];
    const rank = x.length;
    let start = 0;
    let end = rank;
    if (r.opset >= 15) {
      const clamp = (i: number) => Math.min(Math.max(i < 0 ? i + rank : i, 0), rank);
      start = clamp(attrIntOr(r.node, 'start', 0));
      if (r.node.attribute('end')) end = clamp(attrIntOr(r.node, 'end', rank));
    }
    const dims = x.slice(start, Math.max(start, end));
    return [{ elemType: DataType.INT64, shape: [dims.length], values: dims }];
  },
  Size: (r) => {
    const x = r.shape(0);
    const n = x ? productDim(x) : null;
    return [{ elemType: DataType.INT64, shape: [], ...(n !== null ? { values: [n] } : {}) }];
  },
  Constant: (r) => {
    const a = r.node.attributes.find((x) => x.name.startsWith('value') || x.name === 'sparse_value');
    if (!a) return undefined;
    switch (a.type) {
      case 'tensor':
        return [{ elemType: a.value.dtype, shape: [...a.value.dims], values: tensorInts(a.value) }];
      case 'sparse_tensor':
        return [{ elemType: a.value.values.dtype, shape: [...a.value.dims] }];
      case 'float':
        return [{ elemType: DataType.FLOAT, shape: [] }];
      case 'floats':
        return [{ elemType: DataType.FLOAT, shape: [a.value.length] }];
      case 'int':
        return [{ elemType: DataType.INT64, shape: [], values: [Number(a.value)] }];
      case 'ints':
        return [{ elemType: DataType.INT64, shape: [a.value.length], values: a.value.length <= MAX_TRACKED_VALUES ? a.value.map(Number) : undefined }];
      case 'string':
        return [{ elemType: DataType.STRING, shape: [] }];
      case 'strings':
        return [{ elemType: DataType.STRING, shape: [a.value.length] }];
      default:
        return undefined;
    }
  },
  ConstantOfShape: (r) => {
    const a = r.node.attribute('value');
    const elemType = a?.type === 'tensor' ? a.value.dtype : DataType.FLOAT;
    const dims = r.values(0);
    const len = r.shape(0)?.[0];
    const shape = dims ? dims.map((d) => (isNum(d) || typeof d === 'string' ? d : null)) : isNum(len) ? unknownDims(len) : undefined;
    const fact: Fact = { elemType, shape };
    if (shape && isStatic(shape) && (elemType === DataType.INT64 || elemType === DataType.INT32)) {
      const n = shape.reduce((p, d) => p * d, 1);
      const fill = a?.type === 'tensor' ? tensorInts(a.value)?.[0] : 0;
      if (n <= MAX_TRACKED_VALUES && fill !== undefined) fact.values = new Array<D>(n).fill(fill);
    }
    return [fact];
  },
  Reshape: (r) => {
    const x = r.shape(0);
    const target = r.opset >= 5 ? r.values(1) : attrIntsOr(r.node, 'shape');
    const elemType = r.elem(0);
    if (!target) {
      const len = r.opset >= 5 ? r.shape(1)?.[0] : undefined;
      return [{ elemType, shape: isNum(len) ? unknownDims(len) : undefined }];
    }
    const allowZero = r.opset >= 14 && attrIntOr(r.node, 'allowzero', 0) === 1;
    const dims: Shape = target.map((d, i) => (d === 0 && !allowZero ? (x && i < x.length ? x[i]! : null) : d === -1 ? -1 : d));
    const minus = dims.flatMap((d, i) => (d === -1 ? [i] : []));
    if (minus.length > 1) return [{ elemType }];
    if (minus.length === 1) {
      const at = minus[0]!;
      dims[at] = x ? quotientDim(x, dims.filter((_, i) => i !== at)) : null;
    }
    const fact: Fact = { elemType, shape: dims };
    const v = r.values(0);
    if (v && isStatic(dims) && dims.length <= 1 && v.length === (dims[0] ?? 1)) fact.values = v;
    return [fact];
  },
  Flatten: (r) => {
    const x = r.shape(0);
    if (!x) return [{ elemType: r.elem(0), shape: [null, null] }];
    let axis = attrIntOr(r.node, 'axis', 1);
    if (axis < 0) axis += x.length;
    if (axis < 0 || axis > x.length) return [{ elemType: r.elem(0), shape: [null, null] }];
    return [{ elemType: r.elem(0), shape: [productDim(x.slice(0, axis)), productDim(x.slice(axis))] }];
  },
  Transpose: (r) => {
    const x = r.shape(0);
    if (!x) return [{ elemType: r.elem(0) }];
    const perm = attrIntsOr(r.node, 'perm') ?? x.map((_, i) => x.length - 1 - i);
    if (perm.length !== x.length || !normAxes(perm, x.length)) return [{ elemType: r.elem(0) }];
    return [{ elemType: r.elem(0), shape: perm.map((p) => x[normAxis(p, x.length)!]!) }];
  },
  Unsqueeze: (r) => {
    const x = r.shape(0);
    const { axes } = axesOf(r, 13);
    if (!x || !axes) return [{ elemType: r.elem(0) }];
    const rank = x.length + axes.length;
    const set = normAxes(axes, rank);
    if (!set) return [{ elemType: r.elem(0) }];
    const out: Shape = [];
    let k = 0;
    for (let i = 0; i < rank; i++) out.push(set.includes(i) ? 1 : x[k++]!);
    return [{ elemType: r.elem(0), shape: out, values: r.values(0) }];
  },
  Squeeze: (r) => {
    const x = r.shape(0);
    const { given, axes } = axesOf(r, 13);
    if (!x || (given && !axes)) return [{ elemType: r.elem(0) }];
    let out: Shape;
    if (!axes || axes.length === 0) {
      // Every dim of size 1 goes: only known when every dim is known.
      if (!isStatic(x)) return [{ elemType: r.elem(0) }];
      out = x.filter((d) => d !== 1);
    } else {
      const set = normAxes(axes, x.length);
      if (!set || set.some((a) => isNum(x[a]!) && x[a] !== 1)) return [{ elemType: r.elem(0) }];
      out = x.filter((_, i) => !set.includes(i));
    }
    return [{ elemType: r.elem(0), shape: out, values: r.values(0) }];
  },
  Concat: (r) => {
    const present = r.node.inputs.map((_, i) => i).filter((i) => r.has(i));
    const shapes = present.map((i) => r.shape(i));
    const elemType = present.map((i) => r.elem(i)).find((t) => t !== undefined);
    const known = shapes.filter((s): s is Shape => s !== undefined);
    if (known.length === 0) return [{ elemType }];
    const rank = known[0]!.length;
    if (known.some((s) => s.length !== rank)) return [{ elemType }];
    const axis = normAxis(attrIntOr(r.node, 'axis', 0), rank);
    if (axis === undefined) return [{ elemType }];
    const out: Shape = [];
    for (let i = 0; i < rank; i++) {
      if (i === axis) {
        out.push(known.length === shapes.length ? known.map((s) => s[i]!).reduce<D>((a, b) => addDim(a, b), 0) : null);
        continue;
      }
      let d: D | undefined = null;
      for (const s of known) d = d === undefined ? undefined : mergeDim(d, s[i]!);
      if (d === undefined) return [{ elemType }];
      out.push(d);
    }
    const fact: Fact = { elemType, shape: out };
    if (rank === 1) {
      const vals = present.map((i) => r.values(i));
      if (vals.every((v) => v !== undefined)) fact.values = vals.flat() as D[];
    }
    return [fact];
  },
  Split: (r) => {
    const x = r.shape(0);
    const count = r.node.outputs.length;
    const elemType = r.elem(0);
    if (!x) return Array.from({ length: count }, () => ({ elemType }));
    const axis = normAxis(attrIntOr(r.node, 'axis', 0), x.length);
    if (axis === undefined) return Array.from({ length: count }, () => ({ elemType }));
    const withSize = (size: D): Fact => ({ elemType, shape: x.map((d, k) => (k === axis ? size : d)) });
    const sizesGiven = r.opset >= 13 ? r.has(1) : r.node.attribute('split') !== undefined;
    const sizes = r.opset >= 13 ? (r.has(1) ? r.ints(1) : undefined) : attrIntsOr(r.node, 'split');
    if (sizesGiven) return Array.from({ length: count }, (_, i) => withSize(sizes?.[i] ?? null));
    const dim = x[axis]!;
    const parts = r.opset >= 18 ? attrIntOr(r.node, 'num_outputs', count) : count;
    if (!isNum(dim) || parts !== count) return Array.from({ length: count }, () => withSize(null));
    // Opset 18 allows a smaller last chunk; before, the dim must divide evenly.
    if (r.opset < 18 && dim % count !== 0) return Array.from({ length: count }, () => withSize(null));
    const chunk = Math.ceil(dim / count);
    return Array.from({ length: count }, (_, i) => withSize(Math.max(0, Math.min(chunk, dim - i * chunk))));
  },
  Slice: (r) => {
    const x = r.shape(0);
    const elemType = r.elem(0);
    if (!x) return [{ elemType }];
    const { starts, ends, axes, steps } = sliceParams(r);
    const out: Shape = [...x];
    const normalized = axes ? normAxes(axes, x.length) : undefined;
    if (!normalized || !starts || !ends || !steps || starts.length !== normalized.length || ends.length !== normalized.length || steps.length !== normalized.length) {
      // Which axes are sliced, or by how much, is unknown: those dims may change.
      for (const a of normalized ?? x.map((_, i) => i)) out[a] = null;
      return [{ elemType, shape: out }];
    }
    const picks: number[][] = [];
    for (let i = 0; i < normalized.length; i++) {
      const a = normalized[i]!;
      const dim = x[a]!;
      const [s, e, st] = [starts[i]!, ends[i]!, steps[i]!];
      if (st === 0) return [{ elemType }];
      if (isNum(dim)) {
        out[a] = sliceDim(dim, s, e, st);
        picks.push(sliceIndices(dim, s, e, st));
      } else {
        // A symbolic dim survives a slice that takes all of it.
        out[a] = st === 1 && s === 0 && e >= 2 ** 31 - 1 ? dim : null;
      }
    }
    const fact: Fact = { elemType, shape: out };
    const v = r.values(0);
    if (v && x.length === 1 && picks.length === 1 && normalized.length === 1) fact.values = picks[0]!.map((i) => v[i] ?? null);
    return [fact];
  },
  Gather: (r) => {
    const x = r.shape(0);
    const idx = r.shape(1);
    const elemType = r.elem(0);
    if (!x || !idx) return [{ elemType }];
    const axis = normAxis(attrIntOr(r.node, 'axis', 0), x.length);
    if (axis === undefined) return [{ elemType }];
    const fact: Fact = { elemType, shape: [...x.slice(0, axis), ...idx, ...x.slice(axis + 1)] };
    const v = r.values(0);
    const at = r.ints(1);
    if (v && at && x.length === 1 && v.length === x[0]) {
      const picked = at.map((i) => v[i < 0 ? i + v.length : i]);
      if (picked.every((p) => p !== undefined)) fact.values = picked as D[];
    }
    return [fact];
  },
  GatherElements: (r) => [{ elemType: r.elem(0), shape: r.shape(1) }],
  GatherND: (r) => {
    const x = r.shape(0);
    const idx = r.shape(1);
    const b = attrIntOr(r.node, 'batch_dims', 0);
    if (!x || !idx || idx.length === 0) return [{ elemType: r.elem(0) }];
    const last = idx[idx.length - 1]!;
    if (!isNum(last) || b + last > x.length) return [{ elemType: r.elem(0) }];
    return [{ elemType: r.elem(0), shape: [...idx.slice(0, -1), ...x.slice(b + last)] }];
  },
  Expand: (r) => {
    const x = r.shape(0);
    const target = r.values(1) ?? (isNum(r.shape(1)?.[0]) ? unknownDims(r.shape(1)![0] as number) : undefined);
    return [{ elemType: r.elem(0), shape: x && target ? broadcastShapes([x, target]) : undefined }];
  },
  Tile: (r) => {
    const x = r.shape(0);
    const reps = r.values(1);
    if (!x) return [{ elemType: r.elem(0) }];
    if (!reps || reps.length !== x.length) return [{ elemType: r.elem(0), shape: unknownDims(x.length) }];
    return [{ elemType: r.elem(0), shape: x.map((d, i) => mulDim(d, reps[i]!)) }];
  },
  Range: (r) => {
    const elemType = r.elem(0) ?? r.elem(1) ?? r.elem(2);
    const scalar = (i: number) => r.ints(i)?.[0] ?? r.floats(i)?.[0];
    const [start, limit, delta] = [scalar(0), scalar(1), scalar(2)];
    // Range(0, n, 1) has n elements, also when n is a symbolic dim (read off a Shape).
    const symbolic = r.values(1)?.[0];
    if (start === 0 && delta === 1 && typeof symbolic === 'string') return [{ elemType, shape: [symbolic] }];
    if (start === undefined || limit === undefined || delta === undefined || delta === 0) return [{ elemType, shape: [null] }];
    const n = Math.max(Math.ceil((limit - start) / delta), 0);
    const isInt = Number.isInteger(start) && Number.isInteger(limit) && Number.isInteger(delta) && (elemType === DataType.INT64 || elemType === DataType.INT32);
    // Floating-point ranges are counted in the input's precision; where float32 and float64 might
    // disagree on the count, say nothing.
    if (!isInt) {
      const n32 = Math.max(Math.ceil(Math.fround(Math.fround(Math.fround(limit) - Math.fround(start)) / Math.fround(delta))), 0);
      if (n32 !== n) return [{ elemType, shape: [null] }];
    }
    const fact: Fact = { elemType, shape: [n] };
    if (isInt && n <= MAX_TRACKED_VALUES) fact.values = Array.from({ length: n }, (_, i) => start + i * delta);
    return [fact];
  },
  Pad: (r) => {
    const x = r.shape(0);
    if (!x) return [{ elemType: r.elem(0) }];
    const rank = x.length;
    let pads: number[] | undefined;
    let axes: number[] | undefined = x.map((_, i) => i);
    if (r.opset < 11) pads = attrIntsOr(r.node, r.opset < 2 ? 'paddings' : 'pads');
    else {
      pads = r.ints(1);
      if (r.opset >= 18 && r.has(3)) axes = r.ints(3);
    }
    const normalized = axes ? normAxes(axes, rank) : undefined;
    if (!pads || !normalized || pads.length !== 2 * normalized.length) {
      return [{ elemType: r.elem(0), shape: normalized && !pads ? x.map((d, i) => (normalized.includes(i) ? null : d)) : unknownDims(rank) }];
    }
    const out = [...x];
    normalized.forEach((a, i) => {
      out[a] = addDim(addDim(x[a]!, pads![i]!), pads![i + normalized.length]!);
    });
    return [{ elemType: r.elem(0), shape: out }];
  },
  Resize: (r) => resize(r, r.opset >= 11 ? 2 : 1, r.opset >= 11 ? 3 : -1),
  Upsample: (r) => {
    if (r.opset < 9) {
      const x = r.shape(0);
      const a = r.node.attribute('scales');
      const scales = a?.type === 'floats' ? a.value : undefined;
      if (!x) return [{ elemType: r.elem(0) }];
      if (!scales || scales.length !== x.length) return [{ elemType: r.elem(0), shape: unknownDims(x.length) }];
      return [{ elemType: r.elem(0), shape: x.map((d, i) => resizeDim(d, scales[i]!)) }];
    }
    return resize(r, 1, -1);
  },
  DepthToSpace: (r) => {
    const x = r.shape(0);
    const b = attrIntOr(r.node, 'blocksize', 0);
    if (!x || x.length !== 4 || b <= 0) return [{ elemType: r.elem(0) }];
    const c = x[1]!;
    return [{ elemType: r.elem(0), shape: [x[0]!, isNum(c) && c % (b * b) === 0 ? c / (b * b) : null, mulDim(x[2]!, b), mulDim(x[3]!, b)] }];
  },
  SpaceToDepth: (r) => {
    const x = r.shape(0);
    const b = attrIntOr(r.node, 'blocksize', 0);
    if (!x || x.length !== 4 || b <= 0) return [{ elemType: r.elem(0) }];
    const div = (d: D) => (isNum(d) && d % b === 0 ? d / b : null);
    return [{ elemType: r.elem(0), shape: [x[0]!, mulDim(x[1]!, b * b), div(x[2]!), div(x[3]!)] }];
  },
  TopK: (r) => {
    const x = r.shape(0);
    const k = r.opset >= 10 ? r.values(1)?.[0] : attrIntOr(r.node, 'k', -1);
    if (!x) return [{ elemType: r.elem(0) }, { elemType: DataType.INT64 }];
    const axis = normAxis(attrIntOr(r.node, 'axis', -1), x.length);
    const shape = axis === undefined ? undefined : x.map((d, i) => (i === axis ? (isNum(k) && k >= 0 ? k : typeof k === 'string' ? k : null) : d));
    return [{ elemType: r.elem(0), shape }, { elemType: DataType.INT64, shape }];
  },
  OneHot: (r) => {
    const idx = r.shape(0);
    const elemType = r.elem(2);
    if (!idx) return [{ elemType }];
    const depthRaw = r.ints(1)?.[0] ?? r.floats(1)?.[0];
    const depth = depthRaw !== undefined && depthRaw >= 0 ? Math.trunc(depthRaw) : null;
    const axis = normAxis(attrIntOr(r.node, 'axis', -1), idx.length + 1);
    if (axis === undefined) return [{ elemType }];
    return [{ elemType, shape: [...idx.slice(0, axis), depth, ...idx.slice(axis)] }];
  },
  NonZero: (r) => [{ elemType: DataType.INT64, shape: [r.shape(0)?.length ?? null, null] }],
  Compress: (r) => {
    const x = r.shape(0);
    const a = r.node.attribute('axis');
    if (!a) return [{ elemType: r.elem(0), shape: [null] }];
    const axis = x ? normAxis(attrIntOr(r.node, 'axis', 0), x.length) : undefined;
    return [{ elemType: r.elem(0), shape: x && axis !== undefined ? x.map((d, i) => (i === axis ? null : d)) : undefined }];
  },
  Unique: (r) => {
    const x = r.shape(0);
    const a = r.node.attribute('axis');
    const axis = x && a ? normAxis(attrIntOr(r.node, 'axis', 0), x.length) : undefined;
    const y: Fact = { elemType: r.elem(0), shape: !a ? [null] : x && axis !== undefined ? x.map((d, i) => (i === axis ? null : d)) : undefined };
    const inverse = !a ? (x ? productDim(x) : null) : x && axis !== undefined ? x[axis]! : null;
    return [y, { elemType: DataType.INT64, shape: [null] }, { elemType: DataType.INT64, shape: [inverse] }, { elemType: DataType.INT64, shape: [null] }];
  },
  Det: (r) => {
    const x = r.shape(0);
    return [{ elemType: r.elem(0), shape: x && x.length >= 2 ? x.slice(0, -2) : undefined }];
  },
  StringNormalizer: (r) => {
    const x = r.shape(0);
    return [{ elemType: DataType.STRING, shape: x && x.length >= 1 ? [...x.slice(0, -1), null] : undefined }];
  },
};

/**
 * Resize (scales at `scalesAt`, sizes at `sizesAt`) and Upsample from opset 9: output dims are
 * the sizes, or floor(dim * scale) computed in float32 as runtimes do.
 */
function resize(r: RuleInput, scalesAt: number, sizesAt: number): Array<Fact | undefined> {
  const x = r.shape(0);
  const elemType = r.elem(0);
  if (!x) return [{ elemType }];
  const rank = x.length;
  const axesAttr = r.opset >= 18 ? attrIntsOr(r.node, 'axes') : undefined;
  const axes = axesAttr ? normAxes(axesAttr, rank) : x.map((_, i) => i);
  if (!axes) return [{ elemType, shape: unknownDims(rank) }];
  const out: Shape = [...x];
  const sizes = sizesAt >= 0 && r.has(sizesAt) ? r.values(sizesAt) : undefined;
  const sizesGiven = sizesAt >= 0 && r.has(sizesAt);
  const scales = !sizesGiven && r.has(scalesAt) ? r.floats(scalesAt) : undefined;
  const policy = r.opset >= 18 ? attrString(r.node, 'keep_aspect_ratio_policy', 'stretch') : 'stretch';
  const crop = attrString(r.node, 'coordinate_transformation_mode', 'half_pixel') === 'tf_crop_and_resize';
  if (sizes && sizes.length === axes.length && policy === 'stretch') axes.forEach((a, i) => (out[a] = sizes[i]!));
  else if (scales && scales.length === axes.length && !crop) axes.forEach((a, i) => (out[a] = resizeDim(x[a]!, scales[i]!)));
  else for (const a of axes) out[a] = null;
  return [{ elemType, shape: out }];
}

/**
 * Shape and dtype inference.
 *
 * Walks the main graph in order and gives node outputs a tensor type (element type + shape) from
 * their inputs' types and constant inputs, one rule per op. A dim is a number, a symbolic name
 * carried through from the inputs, or unknown (null); a rule that is not sure leaves the dim
 * unknown or the output untouched, so the pass never writes something wrong. Existing types are
 * replaced only by strictly more precise ones that agree with them. Inferred intermediate values
 * are added to value_info so they survive encoding.
 *
 * Constant folding relies on it: Shape/Size of a fully static value fold to constants, which is
 * what turns an exporter's shape arithmetic into initializers.
 */
import { DataType, dtypeName } from '../src/ir/dtype.js';
import type { Graph, Node, Value } from '../src/ir/graph.js';
import type { Model } from '../src/ir/model.js';
import { shapeOf, type Dim, type TypeInfo } from '../src/ir/types.js';
import { constantInts, constantTensor } from './constants.js';
import type { Pass, PassContext, PassResult } from './pass.js';

type D = number | string | null;
type Shape = D[];
interface Out {
  elemType: number | undefined;
  shape: Shape | undefined;
}

const elemOf = (v: Value | null | undefined): number | undefined => (v?.type?.kind === 'tensor' && v.type.elemType ? v.type.elemType : undefined);

function shapeOfValue(v: Value | null | undefined): Shape | undefined {
  if (!v) return undefined;
  const c = v.initializer && !v.isGraphInput ? v.initializer : undefined;
  if (c) return [...c.dims];
  return shapeOf(v.type);
}

function broadcast(shapes: Array<Shape | undefined>): Shape | undefined {
  if (shapes.some((s) => s === undefined)) return undefined;
  const rank = Math.max(...(shapes as Shape[]).map((s) => s.length));
  const out: Shape = [];
  for (let i = 0; i < rank; i++) {
    let d: D = 1;
    for (const s of shapes as Shape[]) {
      const at = s.length - rank + i;
      const x = at < 0 ? 1 : s[at]!; // missing leading dims broadcast as 1; null (unknown) stays unknown
      if (x === 1) continue;
      if (d === 1) d = x;
      else if (x !== d) d = typeof x === 'number' && typeof d === 'number' ? NaN : null; // NaN marks a conflict
    }
    if (typeof d === 'number' && Number.isNaN(d)) return undefined;
    out.push(d);
  }
  return out;
}

const norm = (axis: number, rank: number) => (axis < 0 ? axis + rank : axis);
const product = (s: Shape): D => (s.every((d) => typeof d === 'number') ? (s as number[]).reduce((a, b) => a * b, 1) : null);

function attrOrInput(node: Node, name: string, inputIndex: number, fromOpset: number, opset: number): number[] | undefined {
  return opset >= fromOpset ? constantInts(node.inputs[inputIndex]) : node.attrInts(name);
}

function convLike(node: Node, x: Shape, kernel: number[], outChannels: D): Shape | undefined {
  const spatial = x.length - 2;
  if (spatial < 1 || kernel.length !== spatial) return undefined;
  const strides = node.attrInts('strides') ?? new Array(spatial).fill(1);
  const dil = node.attrInts('dilations') ?? new Array(spatial).fill(1);
  const pads = node.attrInts('pads') ?? new Array(spatial * 2).fill(0);
  const autoPad = node.attribute('auto_pad');
  const mode = autoPad?.type === 'string' ? new TextDecoder().decode(autoPad.value) : 'NOTSET';
  const ceil = node.attrInt('ceil_mode', 0) === 1;
  const out: Shape = [x[0]!, outChannels];
  for (let i = 0; i < spatial; i++) {
    const n = x[i + 2];
    if (typeof n !== 'number') {
      out.push(null);
      continue;
    }
    const k = (kernel[i]! - 1) * dil[i]! + 1;
    if (mode === 'SAME_UPPER' || mode === 'SAME_LOWER') out.push(Math.ceil(n / strides[i]!));
    else if (mode === 'VALID') out.push(Math.floor((n - k) / strides[i]!) + 1);
    else {
      const span = n + pads[i]! + pads[i + spatial]! - k;
      out.push((ceil ? Math.ceil(span / strides[i]!) : Math.floor(span / strides[i]!)) + 1);
    }
  }
  return out;
}

type Rule = (node: Node, opset: number) => Out[] | undefined;

const same: Rule = (n) => [{ elemType: elemOf(n.inputs[0]), shape: shapeOfValue(n.inputs[0]) }];
const broadcastRule = (outType?: number): Rule => (n) => [
  { elemType: outType ?? elemOf(n.inputs[0]), shape: broadcast(n.inputs.filter((v): v is Value => v !== null).map(shapeOfValue)) },
];

const RULES: Record<string, Rule> = {};
for (const op of ['Add', 'Sub', 'Mul', 'Div', 'Pow', 'Max', 'Min', 'Sum', 'Mean', 'PRelu', 'Mod', 'BitShift']) RULES[op] = broadcastRule();
for (const op of ['Equal', 'Less', 'LessOrEqual', 'Greater', 'GreaterOrEqual', 'And', 'Or', 'Xor']) RULES[op] = broadcastRule(DataType.BOOL);
for (const op of [
  'Identity', 'Neg', 'Abs', 'Sqrt', 'Reciprocal', 'Exp', 'Log', 'Erf', 'Tanh', 'Sigmoid', 'Relu', 'LeakyRelu', 'Elu', 'Selu', 'Gelu',
  'HardSigmoid', 'HardSwish', 'Softplus', 'Softsign', 'Sin', 'Cos', 'Floor', 'Ceil', 'Round', 'Sign', 'Not', 'Clip', 'Softmax',
  'LogSoftmax', 'BatchNormalization', 'InstanceNormalization', 'LpNormalization', 'Mish', 'Celu', 'ThresholdedRelu', 'Erf',
]) RULES[op] = same;
RULES.IsNaN = (n) => [{ elemType: DataType.BOOL, shape: shapeOfValue(n.inputs[0]) }];
RULES.IsInf = RULES.IsNaN;
RULES.Where = (n) => [{ elemType: elemOf(n.inputs[1]), shape: broadcast([shapeOfValue(n.inputs[0]), shapeOfValue(n.inputs[1]), shapeOfValue(n.inputs[2])]) }];
RULES.Cast = (n) => [{ elemType: n.attrInt('to'), shape: shapeOfValue(n.inputs[0]) }];
RULES.CastLike = (n) => [{ elemType: elemOf(n.inputs[1]), shape: shapeOfValue(n.inputs[0]) }];
RULES.Dropout = (n) => [same(n, 0)![0]!, { elemType: DataType.BOOL, shape: shapeOfValue(n.inputs[0]) }];
RULES.LayerNormalization = (n) => {
  const x = shapeOfValue(n.inputs[0]);
  const axis = x ? norm(n.attrInt('axis', -1), x.length) : 0;
  const stat = x ? x.map((d, i) => (i < axis ? d : 1)) : undefined;
  return [{ elemType: elemOf(n.inputs[0]), shape: x }, { elemType: DataType.FLOAT, shape: stat }, { elemType: DataType.FLOAT, shape: stat }];
};
RULES.GroupNormalization = same;
RULES.SkipLayerNormalization = same;
RULES.Shape = (n, opset) => {
  const x = shapeOfValue(n.inputs[0]);
  if (!x) return [{ elemType: DataType.INT64, shape: [null] }];
  const r = x.length;
  const clamp = (i: number) => Math.min(Math.max(i < 0 ? i + r : i, 0), r);
  const start = opset >= 15 ? clamp(n.attrInt('start', 0)) : 0;
  const end = opset >= 15 && n.attribute('end') ? clamp(n.attrInt('end', r)) : r;
  return [{ elemType: DataType.INT64, shape: [Math.max(0, end - start)] }];
};
RULES.Size = () => [{ elemType: DataType.INT64, shape: [] }];
RULES.Constant = (n) => {
  const a = n.attribute('value');
  if (a?.type === 'tensor') return [{ elemType: a.value.dtype, shape: [...a.value.dims] }];
  const b = n.attributes[0];
  if (!b) return undefined;
  if (b.type === 'float') return [{ elemType: DataType.FLOAT, shape: [] }];
  if (b.type === 'int') return [{ elemType: DataType.INT64, shape: [] }];
  if (b.type === 'floats') return [{ elemType: DataType.FLOAT, shape: [b.value.length] }];
  if (b.type === 'ints') return [{ elemType: DataType.INT64, shape: [b.value.length] }];
  return undefined;
};
RULES.ConstantOfShape = (n) => {
  const dims = constantInts(n.inputs[0]);
  const a = n.attribute('value');
  return [{ elemType: a?.type === 'tensor' ? a.value.dtype : DataType.FLOAT, shape: dims }];
};
RULES.MatMul = (n) => {
  const a = shapeOfValue(n.inputs[0]);
  const b = shapeOfValue(n.inputs[1]);
  if (!a || !b || a.length === 0 || b.length === 0) return [{ elemType: elemOf(n.inputs[0]), shape: undefined }];
  const a2 = a.length === 1 ? [1, a[0]!] : a;
  const b2 = b.length === 1 ? [b[0]!, 1] : b;
  const batch = broadcast([a2.slice(0, -2), b2.slice(0, -2)]);
  if (!batch) return [{ elemType: elemOf(n.inputs[0]), shape: undefined }];
  return [{ elemType: elemOf(n.inputs[0]), shape: [...batch, ...(a.length === 1 ? [] : [a2[a2.length - 2]!]), ...(b.length === 1 ? [] : [b2[b2.length - 1]!])] }];
};
RULES.Gemm = (n) => {
  const a = shapeOfValue(n.inputs[0]);
  const b = shapeOfValue(n.inputs[1]);
  const m = a ? (n.attrInt('transA', 0) ? a[1] : a[0]) : null;
  const k = b ? (n.attrInt('transB', 0) ? b[0] : b[1]) : null;
  return [{ elemType: elemOf(n.inputs[0]), shape: a && b ? [m ?? null, k ?? null] : undefined }];
};
RULES.Conv = (n) => {
  const x = shapeOfValue(n.inputs[0]);
  const w = shapeOfValue(n.inputs[1]);
  if (!x || !w) return [{ elemType: elemOf(n.inputs[0]), shape: undefined }];
  const kernel = n.attrInts('kernel_shape') ?? (w.slice(2).every((d) => typeof d === 'number') ? (w.slice(2) as number[]) : undefined);
  return [{ elemType: elemOf(n.inputs[0]), shape: kernel ? convLike(n, x, kernel, w[0]!) : undefined }];
};
for (const op of ['MaxPool', 'AveragePool', 'LpPool']) {
  RULES[op] = (n) => {
    const x = shapeOfValue(n.inputs[0]);
    const kernel = n.attrInts('kernel_shape');
    const shape = x && kernel ? convLike(n, x, kernel, x[1]!) : undefined;
    return [{ elemType: elemOf(n.inputs[0]), shape }, { elemType: DataType.INT64, shape }];
  };
}
for (const op of ['GlobalAveragePool', 'GlobalMaxPool', 'GlobalLpPool']) {
  RULES[op] = (n) => {
    const x = shapeOfValue(n.inputs[0]);
    return [{ elemType: elemOf(n.inputs[0]), shape: x ? x.map((d, i) => (i < 2 ? d : 1)) : undefined }];
  };
}
RULES.Flatten = (n) => {
  const x = shapeOfValue(n.inputs[0]);
  if (!x) return [{ elemType: elemOf(n.inputs[0]), shape: [null, null] }];
  const axis = norm(n.attrInt('axis', 1), x.length);
  return [{ elemType: elemOf(n.inputs[0]), shape: [product(x.slice(0, axis)), product(x.slice(axis))] }];
};
RULES.Reshape = (n) => {
  const x = shapeOfValue(n.inputs[0]);
  const target = constantInts(n.inputs[1]);
  if (!target) {
    const len = shapeOfValue(n.inputs[1]);
    return [{ elemType: elemOf(n.inputs[0]), shape: len && typeof len[0] === 'number' ? new Array(len[0]).fill(null) : undefined }];
  }
  const allowZero = n.attrInt('allowzero', 0) === 1;
  const dims: Shape = target.map((d, i) => (d === 0 && !allowZero ? (x ? (x[i] ?? null) : null) : d));
  const minus = dims.indexOf(-1);
  if (minus >= 0) {
    const total = x ? product(x) : null;
    const known = dims.filter((_, i) => i !== minus);
    const k = product(known);
    dims[minus] = typeof total === 'number' && typeof k === 'number' && k > 0 ? total / k : null;
  }
  return [{ elemType: elemOf(n.inputs[0]), shape: dims }];
};
RULES.Transpose = (n) => {
  const x = shapeOfValue(n.inputs[0]);
  if (!x) return [{ elemType: elemOf(n.inputs[0]), shape: undefined }];
  const perm = n.attrInts('perm') ?? x.map((_, i) => x.length - 1 - i);
  return [{ elemType: elemOf(n.inputs[0]), shape: perm.map((p) => x[p] ?? null) }];
};
RULES.Unsqueeze = (n, opset) => {
  const x = shapeOfValue(n.inputs[0]);
  const axes = attrOrInput(n, 'axes', 1, 13, opset);
  if (!x || !axes) return [{ elemType: elemOf(n.inputs[0]), shape: undefined }];
  const r = x.length + axes.length;
  const set = new Set(axes.map((a) => norm(a, r)));
  const out: Shape = [];
  let k = 0;
  for (let i = 0; i < r; i++) out.push(set.has(i) ? 1 : x[k++]!);
  return [{ elemType: elemOf(n.inputs[0]), shape: out }];
};
RULES.Squeeze = (n, opset) => {
  const x = shapeOfValue(n.inputs[0]);
  const axes = attrOrInput(n, 'axes', 1, 13, opset);
  if (!x) return [{ elemType: elemOf(n.inputs[0]), shape: undefined }];
  if (!axes && opset >= 13 && n.inputs[1]) return [{ elemType: elemOf(n.inputs[0]), shape: undefined }]; // axes given, not constant
  if (!axes) {
    if (x.some((d) => typeof d !== 'number')) return [{ elemType: elemOf(n.inputs[0]), shape: undefined }];
    return [{ elemType: elemOf(n.inputs[0]), shape: x.filter((d) => d !== 1) }];
  }
  const set = new Set(axes.map((a) => norm(a, x.length)));
  return [{ elemType: elemOf(n.inputs[0]), shape: x.filter((_, i) => !set.has(i)) }];
};
RULES.Concat = (n) => {
  const shapes = n.inputs.filter((v): v is Value => v !== null).map(shapeOfValue);
  if (shapes.some((s) => !s) || shapes.length === 0) return [{ elemType: elemOf(n.inputs[0]), shape: undefined }];
  const r = shapes[0]!.length;
  const axis = norm(n.attrInt('axis', 0), r);
  const out: Shape = shapes[0]!.map((d, i) => {
    if (i === axis) {
      const parts = shapes.map((s) => s![i]);
      return parts.every((p) => typeof p === 'number') ? (parts as number[]).reduce((a, b) => a + b, 0) : null;
    }
    return shapes.map((s) => s![i]).find((x) => typeof x === 'number') ?? d;
  });
  return [{ elemType: elemOf(n.inputs[0]), shape: out }];
};
RULES.Gather = (n) => {
  const x = shapeOfValue(n.inputs[0]);
  const idx = shapeOfValue(n.inputs[1]);
  if (!x || !idx) return [{ elemType: elemOf(n.inputs[0]), shape: undefined }];
  const axis = norm(n.attrInt('axis', 0), x.length);
  return [{ elemType: elemOf(n.inputs[0]), shape: [...x.slice(0, axis), ...idx, ...x.slice(axis + 1)] }];
};
RULES.GatherElements = (n) => [{ elemType: elemOf(n.inputs[0]), shape: shapeOfValue(n.inputs[1]) }];
RULES.Slice = (n, opset) => {
  const x = shapeOfValue(n.inputs[0]);
  if (!x) return [{ elemType: elemOf(n.inputs[0]), shape: undefined }];
  const starts = opset >= 10 ? constantInts(n.inputs[1]) : n.attrInts('starts');
  const ends = opset >= 10 ? constantTensor(n.inputs[2]) : undefined;
  const endsList = opset >= 10 ? (ends ? constantEnds(n.inputs[2]!) : undefined) : n.attrInts('ends');
  const axes = (opset >= 10 ? constantInts(n.inputs[3]) : n.attrInts('axes')) ?? starts?.map((_, i) => i);
  const steps = (opset >= 10 ? constantInts(n.inputs[4]) : undefined) ?? starts?.map(() => 1);
  const out: Shape = [...x];
  if (!starts || !endsList || !axes || !steps) {
    // Which axes are sliced is unknown: every dim may change.
    const ax = axes ?? x.map((_, i) => i);
    for (const a of ax) out[norm(a, x.length)] = null;
    return [{ elemType: elemOf(n.inputs[0]), shape: out }];
  }
  axes.forEach((a, i) => {
    const axis = norm(a, x.length);
    const dim = x[axis];
    if (typeof dim !== 'number') {
      out[axis] = null;
      return;
    }
    const st = steps[i]!;
    let s = starts[i]!;
    let e = endsList[i]!;
    if (s < 0) s += dim;
    if (e < 0) e += dim;
    if (st > 0) {
      s = Math.min(Math.max(s, 0), dim);
      e = Math.min(Math.max(e, 0), dim);
      out[axis] = e > s ? Math.ceil((e - s) / st) : 0;
    } else {
      s = Math.min(Math.max(s, 0), dim - 1);
      e = Math.min(Math.max(e, -1), dim - 1);
      out[axis] = s > e ? Math.ceil((s - e) / -st) : 0;
    }
  });
  return [{ elemType: elemOf(n.inputs[0]), shape: out }];
};
RULES.Split = (n, opset) => {
  const x = shapeOfValue(n.inputs[0]);
  const count = n.outputs.length;
  if (!x) return new Array(count).fill({ elemType: elemOf(n.inputs[0]), shape: undefined });
  const axis = norm(n.attrInt('axis', 0), x.length);
  const sizes = opset >= 13 ? constantInts(n.inputs[1]) : n.attrInts('split');
  if (opset >= 13 && n.inputs[1] && !sizes) return Array.from({ length: count }, () => ({ elemType: elemOf(n.inputs[0]), shape: x.map((d, k) => (k === axis ? null : d)) }));
  const dim = x[axis];
  return Array.from({ length: count }, (_, i) => {
    let size: D = null;
    if (sizes) size = sizes[i] ?? null;
    else if (typeof dim === 'number') {
      const chunk = Math.ceil(dim / count);
      size = Math.max(0, Math.min(chunk, dim - i * chunk));
    }
    return { elemType: elemOf(n.inputs[0]), shape: x.map((d, k) => (k === axis ? size : d)) };
  });
};
RULES.Expand = (n) => {
  const target = constantInts(n.inputs[1]);
  const x = shapeOfValue(n.inputs[0]);
  return [{ elemType: elemOf(n.inputs[0]), shape: target && x ? broadcast([x, target]) : undefined }];
};
RULES.Tile = (n) => {
  const x = shapeOfValue(n.inputs[0]);
  const reps = constantInts(n.inputs[1]);
  return [{ elemType: elemOf(n.inputs[0]), shape: x && reps ? x.map((d, i) => (typeof d === 'number' ? d * reps[i]! : null)) : undefined }];
};
RULES.Range = (n) => [{ elemType: elemOf(n.inputs[0]), shape: [null] }];
for (const [op, fromOpset] of [['ReduceSum', 13], ['ReduceMean', 18], ['ReduceMax', 18], ['ReduceMin', 18], ['ReduceProd', 18], ['ReduceL2', 18], ['ReduceL1', 18], ['ReduceLogSumExp', 18], ['ReduceSumSquare', 18]] as const) {
  RULES[op] = (n, opset) => {
    const x = shapeOfValue(n.inputs[0]);
    if (!x) return [{ elemType: elemOf(n.inputs[0]), shape: undefined }];
    const axesGiven = opset >= fromOpset ? n.inputs[1] : undefined;
    let axes = opset >= fromOpset ? constantInts(n.inputs[1]) : n.attrInts('axes');
    if (axesGiven && !axes) return [{ elemType: elemOf(n.inputs[0]), shape: undefined }];
    if (!axes || axes.length === 0) {
      if (n.attrInt('noop_with_empty_axes', 0) === 1) return [{ elemType: elemOf(n.inputs[0]), shape: x }];
      axes = x.map((_, i) => i);
    }
    const set = new Set(axes.map((a) => norm(a, x.length)));
    const keep = n.attrInt('keepdims', 1) === 1;
    return [{ elemType: elemOf(n.inputs[0]), shape: keep ? x.map((d, i) => (set.has(i) ? 1 : d)) : x.filter((_, i) => !set.has(i)) }];
  };
}
RULES.ArgMax = (n) => {
  const x = shapeOfValue(n.inputs[0]);
  if (!x) return [{ elemType: DataType.INT64, shape: undefined }];
  const axis = norm(n.attrInt('axis', 0), x.length);
  const keep = n.attrInt('keepdims', 1) === 1;
  return [{ elemType: DataType.INT64, shape: keep ? x.map((d, i) => (i === axis ? 1 : d)) : x.filter((_, i) => i !== axis) }];
};
RULES.ArgMin = RULES.ArgMax;
RULES.QuantizeLinear = (n) => {
  const zp = elemOf(n.inputs[2]);
  return [{ elemType: zp ?? (n.attrInt('output_dtype', 0) || DataType.UINT8), shape: shapeOfValue(n.inputs[0]) }];
};
RULES.DequantizeLinear = (n) => [{ elemType: elemOf(n.inputs[1]) ?? DataType.FLOAT, shape: shapeOfValue(n.inputs[0]) }];

/** Slice ends may hold INT64 extremes; clamp them into number range without losing meaning. */
function constantEnds(v: Value): number[] | undefined {
  const t = constantTensor(v);
  if (!t || t.elementCount > 64) return undefined;
  if (t.dtype === DataType.INT64) return Array.from(t.toTypedArray<BigInt64Array>(), (b) => (b > 2n ** 52n ? 2 ** 52 : b < -(2n ** 52n) ? -(2 ** 52) : Number(b)));
  return constantInts(v);
}

function toType(o: Out): TypeInfo | undefined {
  if (!o.elemType) return undefined;
  const shape: Dim[] | undefined = o.shape?.map((d) => (typeof d === 'number' && d >= 0 ? { value: d } : typeof d === 'string' ? { param: d } : {}));
  return { kind: 'tensor', elemType: o.elemType, ...(shape ? { shape } : {}) };
}

/** More precise and consistent with what is there: same element type, same rank, no disagreeing known dims. */
function refines(old: TypeInfo | undefined, next: TypeInfo): boolean | 'conflict' {
  if (!old) return true;
  if (old.kind !== 'tensor' || next.kind !== 'tensor') return false;
  if (old.elemType && old.elemType !== next.elemType) return 'conflict';
  if (!next.shape) return false;
  if (!old.shape) return true;
  if (old.shape.length !== next.shape.length) return 'conflict';
  let better = false;
  for (let i = 0; i < old.shape.length; i++) {
    const a = old.shape[i]!;
    const b = next.shape[i]!;
    if (a.value !== undefined && b.value !== undefined && a.value !== b.value) return 'conflict';
    if (a.value === undefined && b.value !== undefined) better = true;
    if (a.value === undefined && a.param === undefined && b.param !== undefined) better = true;
  }
  return better;
}

function inferGraph(g: Graph, model: Model, ctx: PassContext, stats: { typed: number; static: number; conflicts: number }): void {
  const listed = new Set(g.valueInfos);
  for (const node of g.nodes) {
    if (node.domain !== '' && node.domain !== 'ai.onnx') continue;
    const rule = RULES[node.opType];
    if (!rule) continue;
    let outs: Out[] | undefined;
    try {
      outs = rule(node, model.opsetVersion('') ?? 0);
    } catch {
      outs = undefined; // a rule must never break the pipeline; leave the types alone
    }
    if (!outs) continue;
    node.outputs.forEach((v, i) => {
      const o = outs![i];
      if (!v || !o) return;
      const next = toType(o);
      if (!next) return;
      const verdict = refines(v.type, next);
      if (verdict === 'conflict') {
        stats.conflicts++;
        ctx.log(`shape-inference: '${v.name}' is declared ${describe(v.type)} but ${node.opType} gives ${describe(next)}; keeping the declaration`);
        return;
      }
      if (!verdict) return;
      v.type = next;
      stats.typed++;
      if (next.kind === 'tensor' && next.shape?.every((d) => d.value !== undefined)) stats.static++;
      if (!v.isGraphOutput && !listed.has(v)) {
        g.valueInfos.push(v);
        listed.add(v);
      }
    });
  }
}

function describe(t: TypeInfo | undefined): string {
  if (!t || t.kind !== 'tensor') return t?.kind ?? 'untyped';
  return `${dtypeName(t.elemType)}[${t.shape?.map((d) => d.value ?? d.param ?? '?').join(',') ?? '*'}]`;
}

export const shapeInference: Pass = {
  name: 'shape-inference',
  description: 'infer element types and shapes of node outputs (static where inputs and constants allow)',
  run(model: Model, ctx: PassContext): PassResult {
    const stats = { typed: 0, static: 0, conflicts: 0 };
    inferGraph(model.graph, model, ctx, stats);
    return { changed: stats.typed > 0, details: stats };
  },
};

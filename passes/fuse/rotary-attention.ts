/**
 * Llama-style causal attention with rotary embeddings and grouped K/V heads
 *   -> com.microsoft GroupQueryAttention (rotary inside, do_rotary=1).
 *
 *   Q, K, V = Transpose(Reshape(q | k | v, [B, S, heads, H]), [0, 2, 1, 3])     (q, k, v: [B, S, heads*H])
 *   rot(t)  = t * cos + Concat(-t[..., H/2:], t[..., :H/2]) * sin              (HF rotate_half)
 *   K', V'  = repeat_kv(rot(K)), repeat_kv(V): Reshape(Expand(Unsqueeze(t, 2), [B, KVH, n, S, H]), [B, NH, S, H])
 *             (absent when K/V have as many heads as Q)
 *   P       = Softmax(rot(Q) K'^T * scale + causal_mask)
 *   out     = Reshape(Transpose(P V', [0, 2, 1, 3]), [B, S, NH*H])
 *     -> GroupQueryAttention(q, k, v, seqlens_k = S-1 per row, total_sequence_length = S,
 *                            cos_cache, sin_cache; num_heads=NH, kv_num_heads=KVH, scale)
 *
 * as TorchScript and dynamo export HF Llama, with static shapes (llama-static, llama-nofold,
 * llama-dynamo in the zoo) or dynamic batch and sequence axes (llama-dynamic, models/lm).
 * GroupQueryAttention always masks causally and, with no past, gives token p the cache row p
 * (ContribOperators.md), so the checks pin:
 *  - the mask is causal and nothing else: a constant [B or 1, 1, S, S] that is 0 on and below the
 *    diagonal and <= -1e4 above it, or, with dynamic axes, the exporters' construction
 *    Where(Greater(r[None, :], r[:, None]), <= -1e4, 0) over r = Range(0, S, 1), unsqueezed and
 *    expanded to [B or 1, 1, S, S] (a padding mask from an attention_mask input is a near-miss);
 *  - cos and sin have one row per token and the rotate_half layout (equal halves along H):
 *    constants (or Cos/Sin of constants, scaled, unsqueezed) whose halves compare equal, or, with
 *    dynamic axes, [1, S, H] tables computed as Cos/Sin(Concat(f, f)) (times a constant); their
 *    first halves become the caches (constants, or a Slice of the table at run time);
 *  - the head size is a multiple of 16 (onnxruntime's kernels refuse others) and NH a multiple of
 *    KVH; the Slices cut the last axis at H/2 (constant or computed as dim/2), the Transposes,
 *    Reshapes and repeat_kv are the ones above (dims as shape inference gives them: numbers or the
 *    same symbolic names as q's batch and sequence).
 * seqlens_k and total_sequence_length are constants for static shapes and computed from the
 * mask's shape otherwise. OperatorKernels.md: GroupQueryAttention takes float32/float16 on the CPU
 * EP and only float16/bfloat16 on the CUDA EP (an fp32 model is a near-miss there unless a later
 * pass lowers it, see FusionOptions.lowerFloatTo).
 */
import { DataType } from '../../src/ir/dtype.js';
import type { Node, Value } from '../../src/ir/graph.js';
import { Tensor } from '../../src/ir/tensor.js';
import { constantInts, constantTensor } from '../constants.js';
import { alt, constOperand, floatAttr, intAttr, op, typeFor, v, type Fusion, type Match, type Pattern, type Rewriter } from './engine.js';
import { permIs, whyNotCausal } from './attention-forms.js';
import { elemType, floatData, floatTensor, sameDim, scalarConstant, shape, showShape, type Dim } from './tensors.js';

type Path = 'q' | 'k' | 'v';
const heads = (p: Path) => op('Transpose', [op('Reshape', [v(p), v(`${p}shape`)], { name: `${p}heads` })], { name: `${p}t`, check: permIs([0, 2, 1, 3]) });

/** rot(t) = t * cos + Concat(Neg(t[.., H/2:]), t[.., :H/2]) * sin, operands in either order. */
function rotary(t: Pattern, p: 'q' | 'k'): Pattern {
  const half = op('Concat', [op('Neg', [op('Slice', [t], { name: `${p}hi`, extraInputs: true })]), op('Slice', [t], { name: `${p}lo`, extraInputs: true })], { name: `${p}cat` });
  return op('Add', [op('Mul', [t, v('cos')], { commutative: true }), op('Mul', [half, v('sin')], { commutative: true })], { commutative: true, name: `${p}rot` });
}

/** repeat_kv: Reshape(Expand(Unsqueeze(t, [2]), ..), ..), or t itself when there is nothing to repeat. */
const repeated = (t: Pattern, p: 'k' | 'v'): Pattern =>
  alt(op('Reshape', [op('Expand', [op('Unsqueeze', [t], { name: `${p}unsq`, extraInputs: true }), v(`${p}expandShape`)], { name: `${p}expand` }), v(`${p}repShape`)], { name: `${p}rep` }), t);

const scores = op('MatMul', [rotary(heads('q'), 'q'), op('Transpose', [repeated(rotary(heads('k'), 'k'), 'k')], { name: 'kT', check: permIs([0, 1, 3, 2]) })], { name: 'qk' });
const scaled = alt(op('Mul', [scores, constOperand('scale')], { commutative: true }), op('Div', [scores, constOperand('divisor')]), scores);
const probs = op('Softmax', [op('Add', [scaled, v('mask')], { commutative: true, name: 'maskAdd' })], { name: 'softmax' });
const context = op('MatMul', [probs, repeated(heads('v'), 'v')], { name: 'pv' });
const merged = op('Reshape', [op('Transpose', [context], { name: 'ot', check: permIs([0, 2, 1, 3]) }), v('outShape')], { name: 'out' });

interface Layout {
  /** Batch and sequence: numbers, or symbolic names (dynamic axes). */
  b: Dim;
  s: Dim;
  numHeads: number;
  kvHeads: number;
  size: number;
}

const isStatic = (l: Layout): l is Layout & { b: number; s: number } => typeof l.b === 'number' && typeof l.s === 'number';

/** Dims equal as shape inference knows them: the same number or the same symbolic name. */
const dimsAre = (got: readonly Dim[] | undefined, want: readonly Dim[]) => !!got && got.length === want.length && got.every((d, i) => sameDim(d, want[i]));

/** Heads of a Reshape [B, S, heads*H] -> [B, S, heads, H], or why not. */
function splitHeads(reshape: Node, input: Value): { heads: number; size: number } | string {
  const xs = shape(input);
  const where = `'${reshape.name}' (Reshape)`;
  if (!xs || xs.length !== 3 || typeof xs[2] !== 'number' || xs[0] === null || xs[1] === null) return `the input of ${where} is ${showShape(xs)}, not [B, S, width] with named or known B and S`;
  const out = shape(reshape.outputs[0]);
  const [h, n] = [out?.[3], out?.[2]];
  if (!out || typeof h !== 'number' || typeof n !== 'number' || !dimsAre(out, [xs[0], xs[1], n, h]) || n * h !== xs[2]) return `${where} does not split [B, S, width] into [B, S, heads, head_size]`;
  return { heads: n, size: h };
}

function layout(m: Match): Layout | string {
  const q = splitHeads(m.node('qheads'), m.value('q'));
  if (typeof q === 'string') return q;
  const k = splitHeads(m.node('kheads'), m.value('k'));
  if (typeof k === 'string') return k;
  const vv = splitHeads(m.node('vheads'), m.value('v'));
  if (typeof vv === 'string') return vv;
  if (k.heads !== vv.heads || k.size !== q.size || vv.size !== q.size) return `K and V heads (${k.heads} x ${k.size}, ${vv.heads} x ${vv.size}) do not fit Q's ${q.heads} x ${q.size}`;
  const [b, s] = shape(m.value('q'))!;
  for (const p of ['k', 'v'] as const) {
    const d = shape(m.value(p))!;
    if (!sameDim(d[0], b) || !sameDim(d[1], s)) return `${p.toUpperCase()} is ${showShape(d)}, Q is [${b}, ${s}, ..] (self-attention needs the same batch and sequence)`;
  }
  return { b: b!, s: s!, numHeads: q.heads, kvHeads: k.heads, size: q.size };
}

function layoutChecks(m: Match): string | undefined {
  const l = layout(m);
  if (typeof l === 'string') return l;
  if (l.size % 16 !== 0) return `head size ${l.size} is not a multiple of 16 (onnxruntime's GroupQueryAttention kernels need that)`;
  if (l.numHeads % l.kvHeads !== 0) return `${l.numHeads} query heads are not a multiple of ${l.kvHeads} K/V heads`;
  const rep = l.numHeads / l.kvHeads;
  for (const p of ['k', 'v'] as const) {
    if (!m.has(`${p}rep`)) {
      if (rep !== 1) return `${p.toUpperCase()} has ${l.kvHeads} heads and Q ${l.numHeads}, but no repeat_kv was matched`;
      continue;
    }
    const unsq = m.node(`${p}unsq`);
    const axes = unsq.attrInts('axes') ?? constantInts(unsq.inputs[1]);
    if (!axes || axes.join() !== '2') return `'${unsq.name}' (Unsqueeze) does not insert axis 2`;
    const expand = m.node(`${p}expand`);
    if (!dimsAre(shape(expand.outputs[0]), [l.b, l.kvHeads, rep, l.s, l.size])) return `'${expand.name}' (Expand) does not repeat each of ${l.kvHeads} heads ${rep} times`;
    const rs = m.node(`${p}rep`);
    if (!dimsAre(shape(rs.outputs[0]), [l.b, l.numHeads, l.s, l.size])) return `'${rs.name}' (Reshape) does not make [B, ${l.numHeads}, S, ${l.size}]`;
  }
  const out = m.node('out');
  if (!dimsAre(shape(out.outputs[0]), [l.b, l.s, l.numHeads * l.size])) return `'${out.name}' (Reshape) does not make [B, S, ${l.numHeads * l.size}]`;
  return undefined;
}

/**
 * Small integer values computed from shapes, as the dynamic exporters write a Slice's bounds
 * (Unsqueeze(Div(Gather(Shape(t), 3), 2)) for H/2): constants, Gather(Shape(t), i) of a known
 * dim, and Div/Mul/Add/Sub/Unsqueeze/Squeeze/Cast/Identity of those. Undefined when not known.
 */
export function knownInts(val: Value | null | undefined, depth = 0): number[] | undefined {
  if (!val || depth > 8) return undefined;
  const c = constantInts(val);
  if (c) return c;
  const n = val.producer;
  if (!n || (n.domain !== '' && n.domain !== 'ai.onnx')) return undefined;
  const arg = (i: number) => knownInts(n.inputs[i], depth + 1);
  switch (n.opType) {
    case 'Unsqueeze':
    case 'Squeeze':
    case 'Cast':
    case 'Identity':
      return arg(0);
    case 'Gather': {
      const src = n.inputs[0]?.producer;
      const idx = arg(1);
      if (!src || src.opType !== 'Shape' || src.attribute('start') || src.attribute('end') || !idx || n.attrInt('axis', 0) !== 0) return undefined;
      const dims = shape(src.inputs[0]);
      const r = dims?.length ?? 0;
      const out = idx.map((i) => dims?.[i < 0 ? i + r : i]);
      return out.every((d) => typeof d === 'number') ? (out as number[]) : undefined;
    }
    case 'Div':
    case 'Mul':
    case 'Add':
    case 'Sub': {
      const [a, b] = [arg(0), arg(1)];
      if (!a || !b || (a.length !== 1 && b.length !== 1)) return undefined;
      const f = { Div: (x: number, y: number) => (y === 0 ? NaN : Math.trunc(x / y)), Mul: (x: number, y: number) => x * y, Add: (x: number, y: number) => x + y, Sub: (x: number, y: number) => x - y }[n.opType as 'Div'];
      const len = Math.max(a.length, b.length);
      const out = Array.from({ length: len }, (_, i) => f(a[a.length === 1 ? 0 : i]!, b[b.length === 1 ? 0 : i]!));
      return out.every(Number.isFinite) ? out : undefined;
    }
    default:
      return undefined;
  }
}

/** Whether a Slice cuts [from, to) of the last axis (rank 4) with step 1. */
function slices(n: Node, from: number, to: number | 'end', size: number): boolean {
  const [starts, ends, axes, steps] = [1, 2, 3, 4].map((i) => (n.inputs[i] ? knownInts(n.inputs[i]) : undefined));
  if (!starts || !ends || starts.length !== 1 || !axes) return false;
  if (!(axes.length === 1 && (axes[0] === 3 || axes[0] === -1))) return false;
  if (steps && !(steps.length === 1 && steps[0] === 1)) return false;
  const end = ends[0]!;
  return starts[0] === from && (to === 'end' ? end >= size : end === to);
}

/**
 * A cos/sin table whose rows are the tokens: its data when it is a constant (or Cos/Sin of
 * constants, scaled, unsqueezed), else the [1, S, H] value computed at run time as
 * Cos/Sin(Concat(f, f)) (times a constant), whose halves are equal by construction. The value
 * given is the rotary multiplier [1, 1, S, H] (an Unsqueeze of the table on axis 1).
 */
type Table = { kind: 'constant'; dims: number[]; data: Float64Array } | { kind: 'computed'; table: Value };

function rotaryTable(val: Value, which: 'cos' | 'sin'): Table | string {
  const data = constantTable(val);
  if (data) return { kind: 'constant', ...data };
  const un = val.producer;
  const axes = un?.opType === 'Unsqueeze' ? (un.attrInts('axes') ?? constantInts(un.inputs[1])) : undefined;
  if (!un || !axes || axes.join() !== '1') return `the rotary ${which} table is computed in a way the fusion does not read`;
  const table = un.inputs[0]!;
  let t = table.producer;
  if (t?.opType === 'Mul') {
    const [a, b] = t.inputs;
    const other = scalarConstant(b) !== undefined ? a : scalarConstant(a) !== undefined ? b : undefined;
    t = other?.producer ?? null;
  }
  const want = which === 'cos' ? 'Cos' : 'Sin';
  const cat = t?.opType === want ? t.inputs[0]?.producer : undefined;
  if (!cat || cat.opType !== 'Concat' || cat.inputs.length !== 2 || cat.inputs[0] !== cat.inputs[1] || ![-1, 2].includes(cat.attrInt('axis', 0))) {
    return `the rotary ${which} table is not ${want}(Concat(f, f)) (the rotate_half layout)`;
  }
  return { kind: 'computed', table };
}

/**
 * The data of a constant cos/sin table: a constant, or Cos/Sin of a constant, times a constant
 * scalar, unsqueezed; computed in float64 then rounded to float32 (as onnxruntime computes it).
 */
export function constantTable(val: Value | null | undefined, depth = 0): { dims: number[]; data: Float64Array } | undefined {
  if (!val || depth > 6) return undefined;
  const c = constantTensor(val);
  if (c) {
    const data = floatData(c);
    return data ? { dims: [...c.dims], data } : undefined;
  }
  const n = val.producer;
  if (!n || (n.domain !== '' && n.domain !== 'ai.onnx')) return undefined;
  const inner = () => constantTable(n.inputs[0], depth + 1);
  switch (n.opType) {
    case 'Cos':
    case 'Sin': {
      const t = inner();
      const f = n.opType === 'Cos' ? Math.cos : Math.sin;
      return t && { dims: t.dims, data: t.data.map((x) => Math.fround(f(x))) };
    }
    case 'Mul': {
      const [a, b] = [n.inputs[0], n.inputs[1]];
      const sa = scalarConstant(a);
      const sb = scalarConstant(b);
      const t = sb !== undefined ? constantTable(a, depth + 1) : sa !== undefined ? constantTable(b, depth + 1) : undefined;
      const s = sb ?? sa;
      return t && s !== undefined ? { dims: t.dims, data: t.data.map((x) => Math.fround(x * s)) } : undefined;
    }
    case 'Unsqueeze': {
      const t = inner();
      const axes = n.attrInts('axes') ?? constantInts(n.inputs[1]);
      if (!t || !axes) return undefined;
      const dims = [...t.dims];
      const r = dims.length + axes.length;
      for (const a of [...axes].map((x) => (x < 0 ? x + r : x)).sort((x, y) => x - y)) dims.splice(a, 0, 1);
      return { dims, data: t.data };
    }
    case 'Identity':
      return inner();
    default:
      return undefined;
  }
}

function rotaryChecks(m: Match): string | undefined {
  const l = layout(m) as Layout;
  const h = l.size / 2;
  for (const p of ['q', 'k'] as const) {
    if (!slices(m.node(`${p}lo`), 0, h, l.size) || !slices(m.node(`${p}hi`), h, 'end', l.size)) return `the rotary Slices of ${p.toUpperCase()} do not cut the head at ${h} (rotate_half)`;
    const axis = m.node(`${p}cat`).attrInt('axis', 0);
    if (axis !== -1 && axis !== 3) return `'${m.node(`${p}cat`).name}' (Concat) joins axis ${axis}, not the last`;
  }
  for (const which of ['cos', 'sin'] as const) {
    const t = rotaryTable(m.value(which), which);
    if (typeof t === 'string') return t;
    if (t.kind === 'constant') {
      if (!isStatic(l)) return `the rotary ${which} table is a constant but the sequence length is not fixed`;
      const ok = t.dims.length === 4 && t.dims[0] === 1 && t.dims[1] === 1 && t.dims[2] === l.s && t.dims[3] === l.size;
      if (!ok) return `the rotary ${which} table is [${t.dims.join(', ')}], expected [1, 1, ${l.s}, ${l.size}]`;
      for (let p = 0; p < l.s; p++) {
        for (let i = 0; i < h; i++) if (t.data[p * l.size + i] !== t.data[p * l.size + i + h]) return `the rotary ${which} table's two halves differ (not the rotate_half layout)`;
      }
    } else if (!dimsAre(shape(t.table), [1, l.s, l.size])) {
      return `the rotary ${which} table is ${showShape(shape(t.table))}, expected [1, S, ${l.size}] (one row per token)`;
    }
  }
  return undefined;
}

/**
 * Why a mask computed at run time is not the exporters' causal construction over the sequence S:
 * Expand/Unsqueeze of Where(Greater(Unsqueeze(r, 0), Unsqueeze(r, 1)), big negative, 0) with
 * r = Range(0, S, 1) (or Less with the operands swapped).
 */
function whyNotCausalGraph(mask: Value, l: Layout): string | undefined {
  const source = mask.producer ? `computed by '${mask.producer.name}' (${mask.producer.opType})` : `graph input '${mask.name}'`;
  const fail = `the mask is ${source}, not a causal mask the fusion can read (GroupQueryAttention masks causally by itself; a padding mask does not fit)`;
  const ms = shape(mask);
  if (!ms || ms.length !== 4 || !(ms[0] === 1 || sameDim(ms[0], l.b)) || ms[1] !== 1 || !sameDim(ms[2], l.s) || !sameDim(ms[3], l.s)) return `the mask is ${showShape(ms)}, not [B or 1, 1, S, S]`;
  let t: Value = mask;
  for (let i = 0; i < 6 && t.producer && ['Expand', 'Unsqueeze'].includes(t.producer.opType); i++) t = t.producer.inputs[0]!;
  const where = t.producer;
  if (!where || where.opType !== 'Where' || !dimsAre(shape(t), [l.s, l.s])) return fail;
  const big = scalarConstant(where.inputs[1]);
  const zero = where.inputs[2]?.producer;
  const isZero = scalarConstant(where.inputs[2]) === 0 || (zero?.opType === 'ConstantOfShape' && (() => {
    const a = zero.attribute('value');
    return !a || (a.type === 'tensor' && (floatData(a.value) ?? [1])[0] === 0);
  })());
  if (big === undefined || !(big <= -1e4) || !isZero) return fail;
  const cmp = where.inputs[0]?.producer;
  if (!cmp || (cmp.opType !== 'Greater' && cmp.opType !== 'Less')) return fail;
  // Greater(cols, rows) or Less(rows, cols): true where key position j > query position i.
  const [colsAt, rowsAt] = cmp.opType === 'Greater' ? [0, 1] : [1, 0];
  const unsq = (val: Value | null | undefined, axis: number) => {
    const u = val?.producer;
    const axes = u?.opType === 'Unsqueeze' ? (u.attrInts('axes') ?? constantInts(u.inputs[1])) : undefined;
    return axes && axes.join() === String(axis) ? u!.inputs[0] : undefined;
  };
  const cols = unsq(cmp.inputs[colsAt], 0);
  const rows = unsq(cmp.inputs[rowsAt], 1);
  const range = cols?.producer;
  if (!cols || cols !== rows || !range || range.opType !== 'Range') return fail;
  if (scalarConstant(range.inputs[0]) !== 0 || scalarConstant(range.inputs[2]) !== 1) return fail;
  return undefined;
}

function maskCheck(m: Match): string | undefined {
  const l = layout(m) as Layout;
  const mask = m.value('mask');
  if (constantTensor(mask)) return isStatic(l) ? whyNotCausal(mask, l.b, l.s) : 'the mask is a constant but the sequence length is not fixed';
  return whyNotCausalGraph(mask, l);
}

function scaleCheck(m: Match): string | undefined {
  for (const s of ['scale', 'divisor']) {
    if (!m.has(s)) continue;
    const x = scalarConstant(m.value(s));
    if (x === undefined || x === 0 || !Number.isFinite(x)) return `the attention scale '${m.value(s).name}' is not a single non-zero number`;
  }
  const sm = m.node('softmax');
  const axis = sm.attrInt('axis', (m.model.opsetVersion('') ?? 0) >= 13 ? -1 : 1);
  return axis === -1 || axis === 3 ? undefined : `'${sm.name}' (Softmax) is over axis ${axis}, not the last`;
}

const i64 = (r: Rewriter, base: string, values: number[], scalar = false) => r.constant(base, Tensor.fromTypedArray('', DataType.INT64, scalar ? [] : [values.length], BigInt64Array.from(values, BigInt)));

/**
 * Values computed once per source for every layer: the sequence inputs from the mask, the caches
 * from the tables (all layers share those), so N layers add these few nodes once, not N times.
 */
const derived = new WeakMap<Value, Map<string, Value>>();
function once(source: Value, key: string, make: () => Value): Value {
  let bySource = derived.get(source);
  if (!bySource) derived.set(source, (bySource = new Map()));
  const hit = bySource.get(key);
  if (hit && hit.graph.localValue(hit.name) === hit && hit.producer) return hit;
  const made = make();
  bySource.set(key, made);
  return made;
}

/**
 * seqlens_k ([B] int32, S-1 each) and total_sequence_length (int32 scalar S): constants for fixed
 * shapes; otherwise computed from the mask's shape ([B or 1, 1, S, S]; the batch from q when the
 * mask broadcasts over it).
 */
function sequenceInputs(m: Match, r: Rewriter, l: Layout): [Value, Value] {
  if (isStatic(l)) {
    return [
      r.constant(`${m.scope}seqlens_k`, Tensor.fromTypedArray('', DataType.INT32, [l.b], new Int32Array(l.b).fill(l.s - 1))),
      r.constant(`${m.scope}total_sequence_length`, Tensor.fromTypedArray('', DataType.INT32, [], Int32Array.of(l.s))),
    ];
  }
  const mask = m.value('mask');
  const int32 = [intAttr('to', DataType.INT32)];
  const s = once(mask, 'seq', () => r.add('Gather', [r.add('Shape', [mask]).outputs[0]!, i64(r, 'gqa_seq_axis', [2], true)], { attributes: [intAttr('axis', 0)] }).outputs[0]!);
  const total = once(mask, 'total', () => r.add('Cast', [s], { attributes: int32 }).outputs[0]!);
  const last = once(mask, 'last', () => r.add('Cast', [r.add('Sub', [s, i64(r, 'gqa_one', [1], true)]).outputs[0]!], { attributes: int32 }).outputs[0]!);
  const batchOf = sameDim(shape(mask)![0], l.b) ? mask : m.value('q');
  const seqlens = once(batchOf, `seqlens:${last.name}`, () => {
    const batch = r.add('Slice', [r.add('Shape', [batchOf]).outputs[0]!, i64(r, 'gqa_batch_from', [0]), i64(r, 'gqa_batch_to', [1])]).outputs[0]!;
    return r.add('Expand', [last, batch]).outputs[0]!;
  });
  return [seqlens, total];
}

/** The [S, H/2] cache: the constant table's first half, or a Slice of the table computed at run time. */
function cacheInput(m: Match, r: Rewriter, l: Layout, which: 'cos' | 'sin'): Value {
  const half = l.size / 2;
  const t = rotaryTable(m.value(which), which) as Table;
  if (t.kind === 'constant') {
    const s = l.s as number;
    const data = new Float64Array(s * half);
    for (let p = 0; p < s; p++) for (let i = 0; i < half; i++) data[p * half + i] = t.data[p * l.size + i]!;
    return r.constant(`${m.scope}${which}_cache`, floatTensor('', elemType(m.value('q'))!, [s, half], data));
  }
  return once(t.table, `cache:${half}`, () => {
    const sliced = r.add('Slice', [t.table, i64(r, `gqa_${which}_from`, [0]), i64(r, `gqa_${which}_to`, [half]), i64(r, `gqa_${which}_axis`, [2])]).outputs[0]!;
    return r.add('Squeeze', [sliced, i64(r, `gqa_${which}_squeeze`, [0])]).outputs[0]!;
  });
}

export const rotaryAttention: Fusion = {
  name: 'rotary-attention',
  description: 'Llama-style causal attention (rotary embeddings, grouped K/V heads, causal mask) -> com.microsoft GroupQueryAttention',
  targets: ['cpu', 'cuda'],
  patterns: [merged],
  checks: [layoutChecks, rotaryChecks, maskCheck, scaleCheck, typeFor('q', { cpu: [DataType.FLOAT, DataType.FLOAT16], cuda: [DataType.FLOAT16, DataType.BFLOAT16] }, 'GroupQueryAttention')],
  rewrite(m, r) {
    const l = layout(m) as Layout;
    const scale = m.has('scale') ? m.scalar('scale') : m.has('divisor') ? 1 / m.scalar('divisor') : 1;
    const [seqlens, total] = sequenceInputs(m, r, l);
    const cos = cacheInput(m, r, l, 'cos');
    const sin = cacheInput(m, r, l, 'sin');
    r.requireOpset('com.microsoft', 1);
    const n = r.add('GroupQueryAttention', [m.value('q'), m.value('k'), m.value('v'), null, null, seqlens, total, cos, sin], {
      domain: 'com.microsoft',
      attributes: [intAttr('num_heads', l.numHeads), intAttr('kv_num_heads', l.kvHeads), intAttr('do_rotary', 1), intAttr('rotary_interleaved', 0), floatAttr('scale', scale)],
      // present_key/present_value are named though nothing reads them: onnxruntime's CUDA kernel
      // writes them without checking they exist (a null dereference, the segmentation fault seen
      // on the H200, bench/gpu/README.md), and the op's schema before onnxruntime 1.29 requires them.
      outputs: 3,
    });
    r.replace(m.root.outputs[0]!, n.outputs[0]!);
  },
};

/**
 * BERT/ViT/GPT-2 self-attention -> com.microsoft Attention (packed Q/K/V weights).
 *
 *   q, k, v = x Wq + bq, x Wk + bk, x Wv + bv                   (or one Gemm on x viewed as 2-D,
 *                                                                 split in three: GPT-2's c_attn)
 *   Q, V    = Transpose(Reshape(q | v, [B, S, N, H]), [0, 2, 1, 3])
 *   K^T     = Transpose(Reshape(k, [B, S, N, H]), [0, 2, 3, 1])    (or [0, 2, 1, 3] then [0, 1, 3, 2])
 *   P       = Softmax(Q K^T * scale [+ mask], last axis)          (scale: Mul or Div by a constant, or none)
 *   out     = Reshape(Transpose(P V, [0, 2, 1, 3]), [B, S, N*H])
 *     -> Attention(x, [Wq | Wk | Wv], [bq | bk | bv], attention_bias=mask, num_heads=N, scale=scale)
 *
 * which is what the TorchScript exporter writes for BERT, ViT and GPT-2 (zoo: bert-static/dynamic,
 * vit-static, gpt2-static). The checks pin what makes the rewrite exact:
 *  - the three projections read the same 3-D x, with constant weights [D, N*H] and biases [N*H];
 *  - every Reshape splits or merges only the last axis into/from heads: its target is a constant
 *    or a Concat of constants and dims read from a Shape (`Gather(Shape(t), i)` at position i, the
 *    exporter's shape arithmetic for dynamic batch and sequence axes), with batch and sequence
 *    entries 0, -1, x's own static dims or those Shape reads, and N*H = the projection width;
 *  - the Transposes permute exactly as above; Softmax is over the last axis;
 *  - a mask, if any, is added to the scaled scores and is 4-D [B or 1, N or 1, S, S] (the shape
 *    Attention's attention_bias input takes, ContribOperators.md); a dim of 1 where S belongs
 *    (a [B, 1, 1, S] padding mask) is a near-miss. An all-zero constant mask is dropped.
 * Attention's output [B, S, N*H] replaces the final Reshape. OperatorKernels.md: the CPU EP's
 * Attention takes float32; the CUDA EP's float32/float16/bfloat16.
 *
 * Not matched (yet): Llama-style attention (rotary embeddings, grouped K/V heads) and causal
 * attention written with a Trilu/Where mask; both stay as they are.
 */
import { DataType, byteSize } from '../../src/ir/dtype.js';
import type { Node, Value } from '../../src/ir/graph.js';
import { Tensor } from '../../src/ir/tensor.js';
import { constantInts, constantTensor } from '../constants.js';
import { alt, constOperand, floatAttr, intAttr, k, op, typeFor, v, type Fusion, type Match, type Pattern } from './engine.js';
import { permIs, shapeEntries, type Entry } from './attention-forms.js';
import { elemType, floatData, scalarConstant, shape, showShape, staticShape, type Dim } from './tensors.js';

type Path = 'q' | 'k' | 'v';
const x = v('x');
const packed = op(
  'Reshape',
  [op('Gemm', [op('Reshape', [x, v('flatShape')], { name: 'flat' }), k('wqkv', undefined, 'the packed Q/K/V weight'), k('bqkv', undefined, 'the packed Q/K/V bias')], { name: 'gemm' }), v('packedShape')],
  { name: 'unflat' },
);
const SPLIT_INDEX: Record<Path, number> = { q: 0, k: 1, v: 2 };
const projection = (p: Path): Pattern =>
  alt(
    op('Add', [op('MatMul', [x, k(`w${p}`, undefined, `the ${p.toUpperCase()} weight`)], { name: `${p}mm` }), k(`b${p}`, undefined, `the ${p.toUpperCase()} bias`)], { name: `${p}add`, commutative: true }),
    op('MatMul', [x, k(`w${p}`, undefined, `the ${p.toUpperCase()} weight`)], { name: `${p}mm` }),
    op('Split', [packed], { name: 'split', output: SPLIT_INDEX[p], extraInputs: true }),
  );
const heads = (p: Path) => op('Reshape', [projection(p), v(`${p}shape`)], { name: `${p}heads` });
const bnsh = (p: Path) => op('Transpose', [heads(p)], { name: `${p}t`, check: permIs([0, 2, 1, 3]) });
const keyT = alt(
  op('Transpose', [heads('k')], { name: 'kt', check: permIs([0, 2, 3, 1]) }),
  op('Transpose', [op('Transpose', [heads('k')], { name: 'kt1', check: permIs([0, 2, 1, 3]) })], { name: 'kt', check: permIs([0, 1, 3, 2]) }),
);
const scores = op('MatMul', [bnsh('q'), keyT], { name: 'qk' });
const scaled = alt(op('Mul', [scores, constOperand('scale')], { commutative: true, name: 'scaling' }), op('Div', [scores, constOperand('divisor')], { name: 'scaling' }), scores);
const masked = alt(op('Add', [scaled, v('mask')], { commutative: true, name: 'maskAdd' }), scaled);
const probs = op('Softmax', [masked], { name: 'softmax' });
const context = op('MatMul', [probs, bnsh('v')], { name: 'pv' });
const merged = op('Reshape', [op('Transpose', [context], { name: 'ot', check: permIs([0, 2, 1, 3]) }), v('outShape')], { name: 'out' });

/** Whether entry i of a Reshape target over x's leading (batch, sequence) axes keeps dim i. */
function keepsDim(e: Entry, i: number, xs: readonly Dim[]): boolean {
  if (typeof e === 'object') return e.dim === i;
  return e === 0 || e === -1 || (typeof xs[i] === 'number' && e === xs[i]);
}

const countMinusOne = (es: Entry[]) => es.filter((e) => e === -1).length;

/** Heads [N, H] of a Reshape [B, S, D] -> [B, S, N, H], or why it is not one. */
function headSplit(reshape: Node, xs: readonly Dim[], width: number): { n: number; h: number } | string {
  const es = shapeEntries(reshape.inputs[1]!);
  const where = `'${reshape.name}' (Reshape)`;
  if (!es) return `the target shape of ${where} is computed in a way the fusion does not read`;
  if (es.length !== 4) return `${where} makes a ${es.length}-D tensor, not [B, S, heads, head_size]`;
  const [b, s, n, h] = es as [Entry, Entry, Entry, Entry];
  if (typeof h !== 'number' || h <= 0) return `${where} has no constant head size`;
  if (typeof n !== 'number' || (n !== -1 && n <= 0)) return `${where} has no constant head count`;
  if (!keepsDim(b, 0, xs) || !keepsDim(s, 1, xs) || countMinusOne(es) > 1) return `${where} does not keep the batch and sequence axes`;
  if (es.includes(0) && reshape.attrInt('allowzero', 0) === 1) return `${where} has allowzero=1`;
  const heads = n === -1 ? width / h : n;
  if (!Number.isInteger(heads) || heads * h !== width) return `${where} splits width ${width} into ${n} x ${h}`;
  return { n: heads, h };
}

/** Why a Reshape is not [B, S, ...] -> [B, S, width], or undefined. */
function mergesTo(reshape: Node, xs: readonly Dim[], width: number): string | undefined {
  const es = shapeEntries(reshape.inputs[1]!);
  const where = `'${reshape.name}' (Reshape)`;
  if (!es) return `the target shape of ${where} is computed in a way the fusion does not read`;
  if (es.length !== 3) return `${where} makes a ${es.length}-D tensor, not [B, S, ${width}]`;
  if (!keepsDim(es[0]!, 0, xs) || !keepsDim(es[1]!, 1, xs) || !(es[2] === -1 || es[2] === width) || countMinusOne(es) > 1) return `${where} does not make [B, S, ${width}]`;
  if (es.includes(0) && reshape.attrInt('allowzero', 0) === 1) return `${where} has allowzero=1`;
  return undefined;
}

/** Projection width (N*H) of the match, from the weights; or why they do not fit. */
function width(m: Match): number | string {
  const xs = shape(m.value('x'));
  const d = xs?.[2];
  if (!xs || xs.length !== 3 || typeof d !== 'number') return `the attention input is ${showShape(xs)}, not 3-D [B, S, D] with D known`;
  if (m.has('split')) {
    const w = constantTensor(m.value('wqkv'))!;
    if (w.dims.length !== 2 || w.dims[0] !== d || w.dims[1]! % 3 !== 0) return `the packed weight is [${w.dims.join(', ')}], not [${d}, 3 * width]`;
    return w.dims[1]! / 3;
  }
  const ws = (['q', 'k', 'v'] as const).map((p) => constantTensor(m.value(`w${p}`))!);
  const cols = ws[0]!.dims[1];
  for (const w of ws) if (w.dims.length !== 2 || w.dims[0] !== d || w.dims[1] !== cols) return `the Q/K/V weights are ${ws.map((t) => `[${t.dims.join(', ')}]`).join(', ')}, not three [${d}, width]`;
  return cols!;
}

function projectionChecks(m: Match): string | undefined {
  const w = width(m);
  if (typeof w === 'string') return w;
  const packedForm = m.has('split');
  if (!packedForm && (m.has('wqkv') || ['q', 'k', 'v'].some((p) => !m.has(`w${p}`)))) return 'the Q, K and V projections are written in different forms';
  const t = elemType(m.value('x'));
  if (packedForm) {
    const gemm = m.node('gemm');
    for (const [a, want] of [['alpha', 1], ['beta', 1], ['transA', 0], ['transB', 0]] as const) {
      const got = a === 'alpha' || a === 'beta' ? gemm.attrFloat(a, 1) : gemm.attrInt(a, 0);
      if (got !== want) return `'${gemm.name}' (Gemm) has ${a}=${got}`;
    }
    const b = constantTensor(m.value('bqkv'))!;
    if (b.elementCount !== 3 * w || b.dims.length !== 1) return `the packed bias is [${b.dims.join(', ')}], not [${3 * w}]`;
    const xs = shape(m.value('x'))!;
    const flat = constantInts(m.value('flatShape'));
    if (!flat || flat.length !== 2 || flat[1] !== xs[2] || !(flat[0] === -1 || (staticShape(m.value('x')) && flat[0] === (xs[0] as number) * (xs[1] as number)))) return `'${m.node('flat').name}' (Reshape) does not flatten x to [B*S, D]`;
    const bad = mergesTo(m.node('unflat'), xs, 3 * w);
    if (bad) return bad;
    const split = m.node('split');
    const axis = split.attrInt('axis', 0);
    if (axis !== 2 && axis !== -1) return `'${split.name}' (Split) splits axis ${axis}, not the last`;
    const sizes = split.inputs[1] ? constantInts(split.inputs[1]) : (split.attrInts('split') ?? [w, w, w]);
    if (!sizes || sizes.join() !== [w, w, w].join() || split.outputs.length !== 3) return `'${split.name}' (Split) does not cut three equal parts of ${w}`;
    if ([m.value('wqkv'), m.value('bqkv')].some((c) => elemType(c) !== t && constantTensor(c)!.dtype !== t)) return 'the packed weight or bias has another element type than x';
    return undefined;
  }
  for (const p of ['q', 'k', 'v']) {
    if (constantTensor(m.value(`w${p}`))!.dtype !== t) return `the ${p.toUpperCase()} weight has another element type than x`;
    if (!m.has(`b${p}`)) continue;
    const b = constantTensor(m.value(`b${p}`))!;
    if (b.elementCount !== w || b.dims.some((d, i) => i < b.dims.length - 1 && d !== 1) || b.dtype !== t) return `the ${p.toUpperCase()} bias is [${b.dims.join(', ')}], not [${w}]`;
  }
  return undefined;
}

function headChecks(m: Match): string | undefined {
  const w = width(m) as number;
  const xs = shape(m.value('x'))!;
  let heads: { n: number; h: number } | undefined;
  for (const p of ['q', 'k', 'v']) {
    const split = headSplit(m.node(`${p}heads`), xs, w);
    if (typeof split === 'string') return split;
    if (heads && (heads.n !== split.n || heads.h !== split.h)) return `Q, K and V are split into different heads (${heads.n} x ${heads.h}, ${split.n} x ${split.h})`;
    heads = split;
  }
  return mergesTo(m.node('out'), xs, w);
}

function softmaxCheck(m: Match): string | undefined {
  const s = m.node('softmax');
  const opset = m.model.opsetVersion('') ?? 0;
  const axis = s.attrInt('axis', opset >= 13 ? -1 : 1);
  return axis === -1 || axis === 3 ? undefined : `'${s.name}' (Softmax) is over axis ${axis}, not the last`;
}

function scaleCheck(m: Match): string | undefined {
  for (const s of ['scale', 'divisor']) {
    if (!m.has(s)) continue;
    const val = scalarConstant(m.value(s));
    if (val === undefined || val === 0 || !Number.isFinite(val)) return `the attention scale '${m.value(s).name}' is not a single non-zero number`;
  }
  return undefined;
}

/** The mask as attention_bias: undefined when absent or all zeros; a reason when it does not fit. */
function maskFor(m: Match): { mask: Value | undefined } | string {
  if (!m.has('mask')) return { mask: undefined };
  const mask = m.value('mask');
  const ms = shape(mask);
  if (!ms) return 'the mask shape is unknown';
  if (ms.length !== 4) return `mask is ${ms.length}-D ${showShape(ms)}, not 4-D [B or 1, heads or 1, S, S]`;
  const { n } = headSplit(m.node('qheads'), shape(m.value('x'))!, width(m) as number) as { n: number; h: number };
  const xs = shape(m.value('x'))!;
  if (!(ms[0] === 1 || ms[0] === null || ms[0] === xs[0] || typeof ms[0] === 'string')) return `mask ${showShape(ms)} has batch ${ms[0]}, input has ${xs[0]}`;
  if (!(ms[1] === 1 || ms[1] === n)) return `mask ${showShape(ms)} has ${ms[1]} where 1 or ${n} heads belong`;
  if ((ms[2] === 1 || ms[3] === 1) && xs[1] !== 1) return `mask ${showShape(ms)} broadcasts over query or key positions (attention_bias needs [.., S, S])`;
  for (const i of [2, 3]) if (typeof ms[i] === 'number' && typeof xs[1] === 'number' && ms[i] !== xs[1]) return `mask ${showShape(ms)} does not match sequence length ${xs[1]}`;
  if (elemType(mask) !== elemType(m.value('x'))) return 'the mask has another element type than the scores';
  const c = constantTensor(mask);
  if (c) {
    const data = floatData(c);
    if (data && data.every((z) => z === 0)) return { mask: undefined };
  }
  return { mask };
}

/** Columns of 2-D constants side by side: [D, a] | [D, b] | [D, c] -> [D, a + b + c] (raw bytes, any float type). */
function concatColumns(name: string, parts: Tensor[]): Tensor {
  const rows = parts[0]!.dims[0]!;
  const dtype = parts[0]!.dtype;
  const widths = parts.map((t) => byteSize(dtype, t.dims[1]!));
  const total = widths.reduce((s, w) => s + w, 0);
  const out = new Uint8Array(rows * total);
  const bytes = parts.map((t) => t.bytes());
  for (let r = 0; r < rows; r++) {
    let at = r * total;
    parts.forEach((_, i) => {
      out.set(bytes[i]!.subarray(r * widths[i]!, (r + 1) * widths[i]!), at);
      at += widths[i]!;
    });
  }
  return Tensor.fromBytes(name, dtype, [rows, parts.reduce((s, t) => s + t.dims[1]!, 0)], out);
}

function concatVectors(name: string, parts: Tensor[]): Tensor {
  const out = new Uint8Array(parts.reduce((s, t) => s + t.byteLength, 0));
  let at = 0;
  for (const t of parts) {
    out.set(t.bytes(), at);
    at += t.byteLength;
  }
  return Tensor.fromBytes(name, parts[0]!.dtype, [parts.reduce((s, t) => s + t.elementCount, 0)], out);
}

/** Zeros of a float type: all-zero bytes are 0.0 in float16/bfloat16/float32/float64. */
const zeros = (dtype: DataType, n: number): Tensor => Tensor.fromBytes('', dtype, [n], new Uint8Array(byteSize(dtype, n)));

export const attention: Fusion = {
  name: 'attention',
  description: 'BERT/ViT/GPT-2 self-attention (Q/K/V projections, head split, scaled softmax, optional additive mask) -> com.microsoft Attention',
  targets: ['cpu', 'cuda'],
  patterns: [merged],
  checks: [projectionChecks, headChecks, softmaxCheck, scaleCheck, (m) => {
    const r = maskFor(m);
    return typeof r === 'string' ? r : undefined;
  }, typeFor('x', { cpu: [DataType.FLOAT], cuda: [DataType.FLOAT, DataType.FLOAT16, DataType.BFLOAT16] }, 'Attention')],
  rewrite(m, r) {
    const w = width(m) as number;
    const { n } = headSplit(m.node('qheads'), shape(m.value('x'))!, w) as { n: number; h: number };
    const t = elemType(m.value('x'))!;
    let weights: Value;
    let bias: Value;
    if (m.has('split')) {
      weights = m.value('wqkv');
      bias = m.value('bqkv');
    } else {
      const ws = (['q', 'k', 'v'] as const).map((p) => constantTensor(m.value(`w${p}`))!);
      weights = r.constant(`${m.scope}qkv_weight`, concatColumns('', ws));
      const bs = (['q', 'k', 'v'] as const).map((p) => (m.has(`b${p}`) ? constantTensor(m.value(`b${p}`))! : zeros(t as DataType, w)));
      bias = r.constant(`${m.scope}qkv_bias`, concatVectors('', bs));
    }
    const { mask } = maskFor(m) as { mask: Value | undefined };
    const scale = m.has('scale') ? m.scalar('scale') : m.has('divisor') ? 1 / m.scalar('divisor') : 1;
    r.requireOpset('com.microsoft', 1);
    const node = r.add('Attention', [m.value('x'), weights, bias, null, null, mask ?? null], {
      domain: 'com.microsoft',
      attributes: [intAttr('num_heads', n), floatAttr('scale', scale)],
    });
    r.replace(m.root.outputs[0]!, node.outputs[0]!);
  },
};

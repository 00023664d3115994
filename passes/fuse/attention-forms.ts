/**
 * What the attention fusions share: reading Reshape targets (constants, or the exporters' shape
 * arithmetic for dynamic axes), Transpose permutation checks, and recognizing a constant causal mask.
 */
import type { Value } from '../../src/ir/graph.js';
import { constantInts, constantTensor } from '../constants.js';
import type { NodeCheck } from './engine.js';
import { floatData } from './tensors.js';

/** Node check: a Transpose with exactly this permutation. */
export const permIs =
  (perm: number[]): NodeCheck =>
  (n) => {
    const p = n.attrInts('perm');
    return p && p.join() === perm.join() ? undefined : `'${n.name}' (Transpose) permutes [${p?.join(', ') ?? 'reversed'}], expected [${perm.join(', ')}]`;
  };

/** A shape entry: a number, or "dim i of some tensor" read through Gather(Shape(t), i). */
export type Entry = number | { dim: number };

/** The entries of a Reshape target: a constant, or a Concat of constants and Shape reads. */
export function shapeEntries(target: Value): Entry[] | undefined {
  const c = constantInts(target);
  if (c) return c;
  const cat = target.producer;
  if (!cat || cat.opType !== 'Concat' || cat.attrInt('axis', 0) !== 0) return undefined;
  const out: Entry[] = [];
  for (const piece of cat.inputs) {
    if (!piece) return undefined;
    const ints = constantInts(piece);
    if (ints) {
      out.push(...ints);
      continue;
    }
    // Unsqueeze(Gather(Shape(t), i), [0]) -> one entry, dim i.
    const un = piece.producer;
    if (!un || un.opType !== 'Unsqueeze') return undefined;
    const axes = un.attrInts('axes') ?? constantInts(un.inputs[1]);
    const ga = un.inputs[0]?.producer;
    if (!axes || axes.join() !== '0' || !ga || ga.opType !== 'Gather' || ga.attrInt('axis', 0) !== 0) return undefined;
    const sh = ga.inputs[0]?.producer;
    const idx = constantInts(ga.inputs[1]);
    if (!sh || sh.opType !== 'Shape' || sh.attribute('start') || sh.attribute('end') || !idx || idx.length !== 1 || (ga.inputs[1] && constantTensor(ga.inputs[1])!.dims.length !== 0)) return undefined;
    out.push({ dim: idx[0]! });
  }
  return out;
}

/**
 * Why a value is not a constant additive causal mask [B or 1, 1, S, S] (0 on and below the
 * diagonal, <= -1e4 above: softmax gives those positions exactly 0 in float32), or undefined.
 */
export function whyNotCausal(mask: Value, batch: number, seq: number): string | undefined {
  const t = constantTensor(mask);
  if (!t) return 'the mask is not a constant';
  const dims = t.dims;
  if (dims.length !== 4 || !(dims[0] === 1 || dims[0] === batch) || dims[1] !== 1 || dims[2] !== seq || dims[3] !== seq) return `the mask is [${dims.join(', ')}], not [B or 1, 1, ${seq}, ${seq}]`;
  const data = floatData(t);
  if (!data) return 'the mask is not a float tensor';
  for (let i = 0; i < data.length; i++) {
    const col = i % seq;
    const row = Math.floor(i / seq) % seq;
    if (col <= row ? data[i] !== 0 : !(data[i]! <= -1e4)) return 'the mask is not causal (0 on and below the diagonal, <= -1e4 above)';
  }
  return undefined;
}

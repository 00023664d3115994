/**
 * Rules for sequence ops, where they are cheap: the element type a sequence holds passes through
 * SequenceConstruct/Insert/Erase/At and ConcatFromSequence; SequenceLength is an int64 scalar.
 * Element shapes are kept only where every tensor put into the sequence agrees on them.
 */
import { DataType } from '../../src/ir/dtype.js';
import { shapeOf, type TypeInfo } from '../../src/ir/types.js';
import { unionShapes, type Shape } from './dims.js';
import { attrIntOr, type Rule, type RuleInput } from './rule.js';

function tensorOf(elemType: number, shape: Shape | undefined): TypeInfo {
  return { kind: 'tensor', elemType, ...(shape ? { shape: shape.map((d) => (typeof d === 'number' ? { value: d } : typeof d === 'string' ? { param: d } : {})) } : {}) };
}

/** The tensor type a sequence input holds, if known. */
function heldTensor(r: RuleInput, i: number): { elemType: number; shape: Shape | undefined } | undefined {
  const t = r.type(i);
  if (t?.kind !== 'sequence' || t.elem?.kind !== 'tensor' || !t.elem.elemType) return undefined;
  return { elemType: t.elem.elemType, shape: shapeOf(t.elem) };
}

/** A sequence of tensors of one element type, with the shape all of them agree on. */
function sequenceOf(elemType: number | undefined, shapes: Array<Shape | undefined>) {
  if (!elemType) return undefined;
  const shape = shapes.length ? shapes.reduce<Shape | undefined>((acc, s) => unionShapes(acc, s), shapes[0]) : undefined;
  return [{ type: { kind: 'sequence', elem: tensorOf(elemType, shape) } as TypeInfo }];
}

export const SEQUENCE_RULES: Record<string, Rule> = {
  SequenceLength: () => [{ elemType: DataType.INT64, shape: [] }],
  SequenceAt: (r) => {
    const held = heldTensor(r, 0);
    return held ? [{ elemType: held.elemType, shape: held.shape }] : undefined;
  },
  SequenceEmpty: (r) => sequenceOf(attrIntOr(r.node, 'dtype', DataType.FLOAT), []),
  SequenceConstruct: (r) => {
    const n = r.node.inputs.length;
    const types = Array.from({ length: n }, (_, i) => r.elem(i));
    if (n === 0 || types.some((t) => t !== types[0])) return undefined;
    return sequenceOf(types[0], Array.from({ length: n }, (_, i) => r.shape(i)));
  },
  SequenceInsert: (r) => {
    const held = heldTensor(r, 0);
    if (held && r.elem(1) !== held.elemType) return undefined;
    // An empty sequence's declared element shape says nothing about what is inserted: no shape.
    return sequenceOf(held?.elemType ?? r.elem(1), held ? [held.shape, r.shape(1)] : [undefined]);
  },
  SequenceErase: (r) => {
    const t = r.type(0);
    return t?.kind === 'sequence' ? [{ type: t }] : undefined;
  },
  SplitToSequence: (r) => sequenceOf(r.elem(0), [undefined]),
  ConcatFromSequence: (r) => {
    const held = heldTensor(r, 0);
    return held ? [{ elemType: held.elemType }] : undefined;
  },
};

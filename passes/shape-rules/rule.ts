/**
 * The contract between the shape-inference pass and its per-op rules.
 *
 * A rule sees a node through `RuleInput` (input element types, shapes, constant or propagated
 * integer values, attributes) and returns one `Fact` per output it can say something about.
 * A fact leaves out what it does not know: no elemType, no shape (rank unknown), or null dims.
 * Facts must be certain for every valid model: when unsure, say less.
 */
import { bytesText } from '../../src/ir/attribute.js';
import type { Node } from '../../src/ir/graph.js';
import type { TypeInfo } from '../../src/ir/types.js';
import type { D, Shape } from './dims.js';

export interface RuleInput {
  readonly node: Node;
  /** Version of the default ONNX domain the model imports. */
  readonly opset: number;
  /** Whether input i is given (present and not the empty optional name). */
  has(i: number): boolean;
  elem(i: number): number | undefined;
  shape(i: number): Shape | undefined;
  /** The full type of input i as declared or inferred (for pass-through of non-tensor types). */
  type(i: number): TypeInfo | undefined;
  /**
   * Elements of a small integer tensor (INT64/INT32), flattened, from a constant or from what
   * inference worked out (e.g. the output of Shape): numbers, symbolic dims, or null where unknown.
   */
  values(i: number): D[] | undefined;
  /** Like values(i), but only when every element is a known number. */
  ints(i: number): number[] | undefined;
  /** Elements of a small constant floating-point tensor (Resize scales, Range bounds). */
  floats(i: number): number[] | undefined;
}

export interface Fact {
  elemType?: number;
  shape?: Shape;
  /** Known elements of the output when it is a small integer tensor (see RuleInput.values). */
  values?: D[];
  /** A whole type to pass through when the output is not a tensor (Identity on a sequence). */
  type?: TypeInfo;
}

export type Rule = (r: RuleInput) => Array<Fact | undefined> | undefined;

export function attrString(node: Node, name: string, fallback: string): string {
  const a = node.attribute(name);
  return a?.type === 'string' ? bytesText(a.value) : fallback;
}

/** An int attribute read leniently (rules must not throw on a mistyped attribute; they say nothing). */
export function attrIntOr(node: Node, name: string, fallback: number): number {
  const a = node.attribute(name);
  return a?.type === 'int' ? Number(a.value) : fallback;
}

export function attrIntsOr(node: Node, name: string): number[] | undefined {
  const a = node.attribute(name);
  return a?.type === 'ints' ? a.value.map(Number) : undefined;
}

/** A rule table entry for several ops at once. */
export function each(ops: readonly string[], rule: Rule): Record<string, Rule> {
  return Object.fromEntries(ops.map((op) => [op, rule]));
}

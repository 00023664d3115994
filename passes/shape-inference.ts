/**
 * Shape and dtype inference.
 *
 * Gives node outputs a tensor type (element type + shape) from their inputs' types and constant
 * inputs, visiting nodes in topological order (subgraph bodies before the If/Loop that owns them),
 * one rule per op (passes/shape-rules/). The rewrite, in words:
 *  1. A dim is a number, a symbolic name (a dim_param carried through from the inputs, or the
 *     value of a Shape op's element), or unknown. A rule that is not sure of a dim leaves it
 *     unknown; not sure of the rank, it leaves the shape out; not sure of the type, it says nothing.
 *  2. A type already on a value is never made less precise: the inferred type is merged into it
 *     dim by dim (a known number beats a name beats unknown; a declared name is kept). When the
 *     declaration and the inference disagree (element type, rank, or two different numbers), the
 *     declaration stays and the disagreement is logged and counted as a conflict.
 *  3. Small integer tensors (shapes, axes, sizes) carry their known elements from op to op
 *     (Shape -> Gather -> Concat -> Reshape), so exporters' shape arithmetic resolves.
 *  4. Intermediate values that get a type are added to their graph's value_info (so they survive
 *     encoding). Graph inputs and initializers are never retyped.
 *  5. Inputs of ops whose type constraint makes them share an element type (Add, MatMul, Concat,
 *     Where, Conv...) are checked: a mismatch is logged as a warning and counted, never thrown.
 *  6. If: the output types both branches agree on (or the taken branch's, for a constant
 *     condition). Loop: loop-carried values keep what the initial value and the body output agree
 *     on; scan outputs get an unknown leading dim. Scan and non-ONNX domains are left alone.
 *
 * Constant folding relies on it: Shape/Size of a fully static value fold to constants, which is
 * what turns an exporter's shape arithmetic into initializers.
 */
import { DataType, bfloat16BitsToFloat32, dtypeName, float16BitsToFloat32 } from '../src/ir/dtype.js';
import type { Graph, Node, Value } from '../src/ir/graph.js';
import type { Model } from '../src/ir/model.js';
import { shapeOf, type Dim, type TypeInfo } from '../src/ir/types.js';
import { constantInts, constantTensor } from './constants.js';
import type { Pass, PassContext, PassResult } from './pass.js';
import { cleanDim, isStatic, unionShapes, type D, type Shape } from './shape-rules/dims.js';
import { ELEMENTWISE_RULES, SAME_TYPE_INPUTS } from './shape-rules/elementwise.js';
import { NN_RULES } from './shape-rules/nn.js';
import { SEQUENCE_RULES } from './shape-rules/sequence.js';
import type { Fact, Rule, RuleInput } from './shape-rules/rule.js';
import { MAX_TRACKED_VALUES, TENSOR_RULES } from './shape-rules/tensor-ops.js';

/** Every op with a rule, keyed by op type (default ONNX domain). */
export const SHAPE_RULES: Readonly<Record<string, Rule>> = { ...ELEMENTWISE_RULES, ...TENSOR_RULES, ...NN_RULES, ...SEQUENCE_RULES };

export interface ShapeInferenceStats {
  /** Values given a type, or a more precise one, by this run. */
  typed: number;
  /** Node outputs (all graphs) with a full static shape after the run. */
  fullyStatic: number;
  /** Node outputs (all graphs) still without a type after the run. */
  untyped: number;
  /** Declared types that disagree with the inference (kept, logged). */
  conflicts: number;
  /** Nodes whose inputs break their op's same-element-type constraint (logged). */
  dtypeWarnings: number;
  /** Rules that threw (a bug in a rule; the outputs were left alone, logged). */
  ruleErrors: number;
}

/** Element types whose small tensors carry their values through inference. */
const TRACKED_TYPES = new Set<number>([DataType.INT64, DataType.INT32, DataType.BOOL]);
const isDefaultDomain = (n: Node) => n.domain === '' || n.domain === 'ai.onnx';

/** A value's tensor element type, from its type or the initializer bound to it. */
function elemOfValue(v: Value | null | undefined): number | undefined {
  if (!v) return undefined;
  if ((v.type?.kind === 'tensor' || v.type?.kind === 'sparse_tensor') && v.type.elemType) return v.type.elemType;
  return v.initializer?.dtype;
}

/** A value's shape: a non-overridable initializer's dims, else its type's shape, else an initializer's dims. */
function shapeOfValue(v: Value | null | undefined): Shape | undefined {
  if (!v) return undefined;
  if (v.initializer && !v.isGraphInput) return [...v.initializer.dims];
  return shapeOf(v.type) ?? (v.initializer ? [...v.initializer.dims] : undefined);
}

function constantFloats(v: Value | null | undefined): number[] | undefined {
  const t = constantTensor(v);
  if (!t || t.elementCount > MAX_TRACKED_VALUES) return undefined;
  switch (t.dtype) {
    case DataType.FLOAT:
    case DataType.DOUBLE:
      return Array.from(t.toTypedArray() as Float32Array | Float64Array);
    case DataType.FLOAT16:
      return Array.from(t.toTypedArray<Uint16Array>(), float16BitsToFloat32);
    case DataType.BFLOAT16:
      return Array.from(t.toTypedArray<Uint16Array>(), bfloat16BitsToFloat32);
    default:
      return undefined;
  }
}

function describe(t: TypeInfo | undefined): string {
  if (!t || t.kind !== 'tensor') return t?.kind ?? 'untyped';
  return `${dtypeName(t.elemType)}[${t.shape?.map((d) => d.value ?? d.param ?? '?').join(',') ?? '*'}]`;
}

/** Inputs that nodes of a nested graph read from enclosing graphs. */
function outerReads(sub: Graph, out: Value[]): void {
  for (const n of sub.nodes) {
    for (const v of n.inputs) if (v && v.graph !== sub) out.push(v);
    for (const s of n.subgraphs()) outerReads(s, out);
  }
}

/** The graph's nodes in topological order (stable; the listed order when it already is one). */
export function topologicalOrder(g: Graph): Node[] {
  const position = new Map<Node, number>(g.nodes.map((n, i) => [n, i]));
  const deps = g.nodes.map((n) => {
    const reads = n.inputs.filter((v): v is Value => v !== null);
    for (const s of n.subgraphs()) outerReads(s, reads);
    return [...new Set(reads.map((v) => v.producer).filter((p): p is Node => p !== null && p !== n && position.has(p)))];
  });
  if (deps.every((ds, i) => ds.every((p) => position.get(p)! < i))) return [...g.nodes];
  const indegree = deps.map((ds) => ds.length);
  const consumers = g.nodes.map((): number[] => []);
  deps.forEach((ds, i) => ds.forEach((p) => consumers[position.get(p)!]!.push(i)));
  const ready = indegree.flatMap((d, i) => (d === 0 ? [i] : []));
  const order: Node[] = [];
  const placed = new Set<number>();
  for (let at = 0; at < ready.length; at++) {
    const i = ready[at]!;
    order.push(g.nodes[i]!);
    placed.add(i);
    for (const c of consumers[i]!) if (--indegree[c]! === 0) ready.push(c);
  }
  // A cycle (invalid model): visit what is left in listed order rather than not at all.
  g.nodes.forEach((n, i) => placed.has(i) || order.push(n));
  return order;
}

class ShapeInference {
  readonly stats: ShapeInferenceStats = { typed: 0, fullyStatic: 0, untyped: 0, conflicts: 0, dtypeWarnings: 0, ruleErrors: 0 };
  changed = false;
  /** Known elements of small integer tensors computed by inference (constants are read directly). */
  private readonly values = new Map<Value, D[]>();
  private readonly opset: number | undefined;

  constructor(
    model: Model,
    private readonly ctx: PassContext,
  ) {
    this.opset = model.opsetVersion('');
  }

  inferGraph(g: Graph): void {
    const listed = new Set(g.valueInfos);
    for (const node of topologicalOrder(g)) {
      if (node.opType === 'Loop' && isDefaultDomain(node)) this.seedLoopBody(node);
      for (const sub of node.subgraphs()) this.inferGraph(sub);
      if (!isDefaultDomain(node) || this.opset === undefined) continue;
      this.checkDtypes(node);
      let facts: Array<Fact | undefined> | undefined;
      try {
        facts = this.factsFor(node);
      } catch (err) {
        // A rule must never break the pipeline: leave the outputs alone, but say so.
        this.stats.ruleErrors++;
        this.ctx.log(`shape-inference: the ${node.opType} rule failed on node '${node.name}' (${(err as Error).message}); its outputs are left as they were`);
        continue;
      }
      if (!facts) continue;
      node.outputs.forEach((v, i) => {
        const fact = facts![i];
        if (!v || !fact) return;
        if (this.apply(v, fact, node) && !v.isGraphInput && !v.isGraphOutput && !v.initializer && !listed.has(v)) {
          g.valueInfos.push(v);
          listed.add(v);
        }
      });
    }
  }

  /** Counts over every node output of the graph and its subgraphs. */
  tally(g: Graph): void {
    for (const node of g.nodes) {
      for (const v of node.outputs) {
        if (!v) continue;
        if (!v.type) this.stats.untyped++;
        else if (isStatic(shapeOf(v.type))) this.stats.fullyStatic++;
      }
      for (const sub of node.subgraphs()) this.tally(sub);
    }
  }

  private factsFor(node: Node): Array<Fact | undefined> | undefined {
    if (node.opType === 'If') return this.ifFacts(node);
    if (node.opType === 'Loop') return this.loopFacts(node);
    const rule = SHAPE_RULES[node.opType];
    return rule ? rule(this.ruleInput(node)) : undefined;
  }

  private ruleInput(node: Node): RuleInput {
    const at = (i: number): Value | null => node.inputs[i] ?? null;
    return {
      node,
      opset: this.opset!,
      has: (i) => at(i) !== null,
      elem: (i) => elemOfValue(at(i)),
      shape: (i) => shapeOfValue(at(i)),
      type: (i) => at(i)?.type,
      values: (i) => this.valuesOf(at(i)),
      ints: (i) => {
        const v = this.valuesOf(at(i));
        return v && v.every((d) => typeof d === 'number') ? (v as number[]) : undefined;
      },
      floats: (i) => constantFloats(at(i)),
    };
  }

  private valuesOf(v: Value | null): D[] | undefined {
    if (!v) return undefined;
    return this.values.get(v) ?? constantInts(v, MAX_TRACKED_VALUES);
  }

  private ifFacts(node: Node): Array<Fact | undefined> {
    const branch = (name: string) => {
      const a = node.attribute(name);
      return a?.type === 'graph' ? a.value : undefined;
    };
    const thenG = branch('then_branch');
    const elseG = branch('else_branch');
    if (!thenG || !elseG) return [];
    const cond = this.valuesOf(node.inputs[0] ?? null);
    const taken = cond?.length === 1 && typeof cond[0] === 'number' ? (cond[0] ? thenG : elseG) : undefined;
    return node.outputs.map((_, i) => {
      const a = thenG.outputs[i];
      const b = elseG.outputs[i];
      if (taken) {
        const v = taken.outputs[i];
        return v && elemOfValue(v) ? { elemType: elemOfValue(v), shape: shapeOfValue(v) } : undefined;
      }
      const ta = elemOfValue(a);
      if (!a || !b || !ta || ta !== elemOfValue(b)) return undefined;
      return { elemType: ta, shape: unionShapes(shapeOfValue(a), shapeOfValue(b)) };
    });
  }

  private loopFacts(node: Node): Array<Fact | undefined> {
    const a = node.attribute('body');
    if (a?.type !== 'graph') return [];
    const body = a.value;
    const carried = node.inputs.length - 2;
    return node.outputs.map((_, i) => {
      if (i < carried) {
        const init = node.inputs[2 + i] ?? null;
        const next = body.outputs[1 + i];
        const t = elemOfValue(init) ?? elemOfValue(next);
        if (!t || (elemOfValue(next) !== undefined && elemOfValue(next) !== t)) return undefined;
        return { elemType: t, shape: unionShapes(shapeOfValue(init), shapeOfValue(next)) };
      }
      const scanned = body.outputs[1 + i];
      const shape = shapeOfValue(scanned);
      return { elemType: elemOfValue(scanned), shape: shape ? [null, ...shape] : undefined };
    });
  }

  /**
   * Loop body inputs without a type get their element type (only: a loop-carried shape may change
   * from one iteration to the next): iteration number int64, condition bool, carried values the
   * type of their initial value.
   */
  private seedLoopBody(node: Node): void {
    const a = node.attribute('body');
    if (a?.type !== 'graph') return;
    a.value.inputs.forEach((v, i) => {
      if (v.type) return;
      const elemType = i === 0 ? DataType.INT64 : i === 1 ? DataType.BOOL : elemOfValue(node.inputs[i]);
      if (!elemType) return;
      v.type = { kind: 'tensor', elemType };
      this.stats.typed++;
    });
  }

  private checkDtypes(node: Node): void {
    const which = SAME_TYPE_INPUTS[node.opType];
    if (!which) return;
    const indices = which === 'all' ? node.inputs.map((_, i) => i) : which;
    const types = indices.map((i) => elemOfValue(node.inputs[i])).filter((t): t is number => t !== undefined);
    if (types.some((t) => t !== types[0])) {
      this.stats.dtypeWarnings++;
      const names = indices.flatMap((i) => {
        const v = node.inputs[i];
        const t = elemOfValue(v);
        return v && t !== undefined ? [`'${v.name}' ${dtypeName(t)}`] : [];
      });
      this.ctx.log(`shape-inference: warning: node '${node.name}' (${node.opType}) mixes element types: ${names.join(', ')}`);
    }
  }

  /** Merges a fact into a value's type (rule 2). True when the type changed. */
  private apply(v: Value, fact: Fact, node: Node): boolean {
    if (fact.type) {
      if (v.type) return false;
      v.type = structuredClone(fact.type);
      this.stats.typed++;
      return true;
    }
    const shape = fact.shape?.map(cleanDim);
    const old = v.type;
    let next: TypeInfo | undefined;
    if (!old) {
      if (!fact.elemType) return false;
      next = { kind: 'tensor', elemType: fact.elemType, ...(shape ? { shape: shape.map(toDim) } : {}) };
    } else {
      if (old.kind !== 'tensor') return false;
      const conflict = (why: string) => {
        this.stats.conflicts++;
        this.ctx.log(
          `shape-inference: '${v.name}' (output of ${node.opType} '${node.name}') is declared ${describe(old)} but inference gives ` +
            `${describe(fact.elemType ? { kind: 'tensor', elemType: fact.elemType, ...(shape ? { shape: shape.map(toDim) } : {}) } : undefined)} (${why}); keeping the declaration`,
        );
        return false;
      };
      if (old.elemType && fact.elemType && old.elemType !== fact.elemType) return conflict('element type');
      const elemType = old.elemType || fact.elemType || 0;
      let merged = old.shape;
      if (shape) {
        if (!old.shape) merged = shape.map(toDim);
        else if (old.shape.length !== shape.length) return conflict('rank');
        else {
          merged = [];
          for (let i = 0; i < shape.length; i++) {
            const od = old.shape[i]!;
            const nd = shape[i]!;
            if (od.value !== undefined) {
              if (typeof nd === 'number' && nd !== od.value) return conflict(`dim ${i}`);
              merged.push(od);
            } else if (typeof nd === 'number') merged.push(withDenotation({ value: nd }, od));
            else if (od.param !== undefined || typeof nd !== 'string') merged.push(od);
            else merged.push(withDenotation({ param: nd }, od));
          }
        }
      }
      const sameShape = merged === old.shape || (merged !== undefined && old.shape !== undefined && merged.every((d, i) => d === old.shape![i]));
      if (elemType === old.elemType && sameShape) {
        this.remember(v, fact);
        return false;
      }
      next = { ...old, elemType, ...(merged ? { shape: merged } : {}) };
    }
    v.type = next;
    this.stats.typed++;
    this.remember(v, fact);
    return true;
  }

  /** Keeps a fact's values when they fit the value's (merged) type: a small static int tensor. */
  private remember(v: Value, fact: Fact): void {
    if (!fact.values || v.type?.kind !== 'tensor' || !TRACKED_TYPES.has(v.type.elemType)) return;
    const s = shapeOf(v.type);
    if (!isStatic(s) || s.length > 1) return;
    const n = s.length ? s[0]! : 1;
    if (n === fact.values.length && n <= MAX_TRACKED_VALUES) this.values.set(v, fact.values);
  }
}

function toDim(d: D): Dim {
  return typeof d === 'number' ? { value: d } : typeof d === 'string' ? { param: d } : {};
}

function withDenotation(d: Dim, old: Dim): Dim {
  return old.denotation !== undefined ? { ...d, denotation: old.denotation } : d;
}

export const shapeInference: Pass = {
  name: 'shape-inference',
  description: 'infer element types and shapes of node outputs (static where inputs and constants allow)',
  run(model: Model, ctx: PassContext): PassResult {
    const inference = new ShapeInference(model, ctx);
    inference.inferGraph(model.graph);
    inference.tally(model.graph);
    const { stats } = inference;
    return { changed: stats.typed > 0, details: { ...stats } };
  },
};

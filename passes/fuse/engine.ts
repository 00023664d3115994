/**
 * The fusion engine: a fusion is data, matched on the use-def graph and applied to a fixpoint.
 *
 * A fusion (see `Fusion`) is
 *  - one or more patterns: small trees of ops (`op`), captured values (`v`), constants (`k`) and
 *    alternatives (`alt`), rooted at the op whose output the fused op replaces. Exporters write the
 *    same computation in different forms (TorchScript's Div(1, Sqrt(..)) where dynamo writes
 *    Reciprocal(Sqrt(..)), x*0.5 or 0.5*x): each form is an alternative, and two-input ops marked
 *    `commutative` match either operand order. A capture name used twice must bind the same value
 *    (or node), so `x - mean(x)` only matches when both `x` are one value;
 *  - checks: when the match is legal (attributes, constant values, shapes, element types the
 *    target's kernel takes). Each returns the reason it fails, in words;
 *  - the targets whose runtime implements the fused op ('cpu' = onnxruntime CPU EP, 'cuda' = CUDA
 *    EP); a pass for one target applies only the fusions tagged with it;
 *  - a rewrite, which adds the fused node(s) through a `Rewriter` and points the users of the
 *    root's output at the new output.
 *
 * Matching has two stages. The skeleton is the tree of op types (with commutative orders and
 * alternatives, repeated captures binding the same value, and the few conditions declared part of
 * it: `constOperand`, `require`, for ops that are common in other roles, like a Mul after a MatMul
 * that is a scale only when its other operand is a constant). A node where the skeleton matches
 * but every binding fails a check is a near-miss, reported with the reason of the binding that
 * got furthest ("layer-norm at /encoder/layer.3/: epsilon is computed by '/x/Div' (Div), not a
 * constant"). The checks are, in order: those of the pattern's ops and values, then "every
 * intermediate is used only inside the match" (other users that only compute numbers for the
 * match, like a Shape feeding its Slice, do not count; an op marked `shared` may have other users,
 * and the rewrite must then keep them fed, e.g. from SkipLayerNormalization's sum output), then
 * the fusion's own.
 *
 * Applying: fusions run in the order given, each over every node of the graph, last node first
 * (so a pattern is tried at its outermost op before a smaller form can claim the inside); the
 * whole list repeats until a round changes nothing (at most `maxRounds`), so a fusion can build on
 * another's output (RMSNorm -> SimplifiedLayerNormalization, then Add + it ->
 * SkipSimplifiedLayerNormalization).
 * Near-misses are reported for roots that are still in the graph at the end, each with its latest
 * reason (a near-miss whose root a later fusion took is gone; one whose skeleton a later, smaller
 * fusion changed stays, since it says why the larger fusion did not happen).
 * After a rewrite the matched nodes nobody uses any more are removed, then whatever only fed them
 * (shape arithmetic, constants); the fused node's output takes the replaced value's name (so a
 * graph output keeps its name); the node list is re-sorted if the new node's inputs come later.
 * Only the main graph is rewritten (If/Loop bodies and local functions are left alone).
 */
import { PeftcError } from '../../src/errors.js';
import type { Attribute } from '../../src/ir/attribute.js';
import { DataType, dtypeName } from '../../src/ir/dtype.js';
import type { Graph, Node, Value } from '../../src/ir/graph.js';
import type { Model } from '../../src/ir/model.js';
import type { Tensor } from '../../src/ir/tensor.js';
import { constantTensor } from '../constants.js';
import { topologicalOrder } from '../shape-inference.js';
import { elemType, near, scalarConstant, scopeOf, typeName, whyNotConstant } from './tensors.js';

export type FusionTarget = 'cpu' | 'cuda';
export const FUSION_TARGETS: readonly FusionTarget[] = ['cpu', 'cuda'];

/** A check returns undefined when it holds, or why it does not (for near-miss reports). */
export type NodeCheck = (node: Node, m: Match) => string | undefined;
export type ValueCheck = (value: Value, m: Match) => string | undefined;
export type MatchCheck = (m: Match) => string | undefined;

export type Pattern = OpPattern | ValuePattern | AltPattern;

export interface OpPattern {
  readonly kind: 'op';
  readonly ops: readonly string[];
  readonly domain: string;
  readonly inputs: readonly Pattern[];
  readonly commutative: boolean;
  readonly name: string | undefined;
  /** Which of the node's outputs the parent pattern consumes. */
  readonly output: number;
  /** The node's outputs may have users outside the match. */
  readonly shared: boolean;
  /** The node may have more inputs than the pattern lists (checks then judge them). */
  readonly extraInputs: boolean;
  readonly checks: readonly NodeCheck[];
  /** Part of the skeleton: a node failing it is no match at all (no near-miss). */
  readonly require: ((node: Node) => boolean) | undefined;
}

export interface ValuePattern {
  readonly kind: 'value';
  readonly name: string | undefined;
  readonly checks: readonly ValueCheck[];
  /** Part of the skeleton: the value must be a constant for the pattern to match at all. */
  readonly mustBeConstant?: boolean;
}

export interface AltPattern {
  readonly kind: 'alt';
  readonly options: readonly Pattern[];
}

export interface OpOptions {
  /** Capture name: the node is `m.node(name)`; its output `m.value(name)`. */
  name?: string;
  domain?: string;
  commutative?: boolean;
  output?: number;
  shared?: boolean;
  extraInputs?: boolean;
  check?: NodeCheck | NodeCheck[];
  /** A skeleton condition: where it fails the pattern does not match (use `check` for near-misses). */
  require?: (node: Node) => boolean;
}

/** An op node producing the value; `ops` may list several op types. */
export function op(ops: string | readonly string[], inputs: Pattern[], options: OpOptions = {}): OpPattern {
  return {
    kind: 'op',
    ops: typeof ops === 'string' ? [ops] : ops,
    domain: options.domain ?? '',
    inputs,
    commutative: options.commutative ?? false,
    name: options.name,
    output: options.output ?? 0,
    shared: options.shared ?? false,
    extraInputs: options.extraInputs ?? false,
    checks: options.check === undefined ? [] : Array.isArray(options.check) ? options.check : [options.check],
    require: options.require,
  };
}

/** Any value (a graph input, a constant, another op's output), optionally captured and checked. */
export function v(name?: string, ...checks: ValueCheck[]): ValuePattern {
  return { kind: 'value', name, checks };
}

/**
 * A constant. With `expected`, it must hold one element close to it (relative 1e-4, so float32
 * roundings of sqrt(2) or 0.044715 pass; 1e-3 for float16 and 8e-3 for bfloat16 constants, as
 * close as those types hold them); `label` names it in messages ("epsilon", "sqrt(2)").
 */
export function k(name?: string, expected?: number, label?: string): ValuePattern {
  const what = label ?? name ?? 'constant';
  return v(name, (val) => {
    if (!constantTensor(val)) return `${what} is not a constant (${whyNotConstant(val)})`;
    if (expected === undefined) return undefined;
    const x = scalarConstant(val);
    if (x === undefined) return `${what} '${val.name}' is not a single number`;
    // A float16/bfloat16 constant is as close as its type can hold (0.044715 is 0.04470825 in float16).
    const t = constantTensor(val)!.dtype;
    const rel = t === DataType.FLOAT16 ? 1e-3 : t === DataType.BFLOAT16 ? 8e-3 : 1e-4;
    return near(x, expected, rel) ? undefined : `${what} is ${x}, expected ${expected}`;
  });
}

/**
 * A constant operand that is part of the skeleton: where the operand is not a constant the
 * pattern simply does not match (no near-miss). For ops that are common with a computed operand
 * (a Mul after a MatMul is a scale only when its other operand is a constant).
 */
export function constOperand(name: string): ValuePattern {
  return { kind: 'value', name, checks: [], mustBeConstant: true };
}

/** The first alternative that matches (all are tried; each binding is judged by the checks). */
export function alt(...options: Pattern[]): AltPattern {
  return { kind: 'alt', options };
}

/** The op-rooted forms of a pattern (alternatives at the root become separate patterns). */
export function rootForms(p: Pattern): OpPattern[] {
  if (p.kind === 'op') return [p];
  if (p.kind === 'alt') return p.options.flatMap(rootForms);
  throw new Error('internal: a fusion pattern must be rooted at an op');
}

/** Node check: attribute `name` (or its default) equals `expected`. */
export function attrIs(name: string, expected: number, fallback?: number): NodeCheck {
  return (n) => {
    const a = n.attribute(name);
    let got: number | undefined;
    if (!a) got = fallback;
    else if (a.type === 'int') got = Number(a.value);
    else if (a.type === 'float') got = a.value;
    return got === expected ? undefined : `'${n.name}' (${n.opType}) has ${name}=${got ?? 'unset'}, expected ${expected}`;
  };
}

/**
 * Match check: the captured value's element type is one the target's kernel takes (onnxruntime's
 * OperatorKernels.md lists them per execution provider), e.g. the CPU Gelu kernel is float32 only.
 */
export function typeFor(capture: string, allowed: Readonly<Record<FusionTarget, readonly DataType[]>>, opName: string): MatchCheck {
  return (m) => {
    const raw = elemType(m.value(capture));
    // A float32 graph that a later pass lowers to float16/bfloat16 is judged by that type.
    const t = raw === DataType.FLOAT ? m.floatAs : raw;
    const ok = allowed[m.target];
    if (t !== undefined && ok.includes(t as DataType)) return undefined;
    return `the ${m.target} ${opName} kernel does not take ${t === raw ? typeName(m.value(capture)) : `${dtypeName(t!)} (float32 here, lowered later)`}`;
  };
}

export interface Fusion {
  /** Kebab-case name, as `--fuse` takes it. */
  readonly name: string;
  /** One line: what is matched and what it becomes. */
  readonly description: string;
  /** The runtimes whose execution provider implements the fused op. */
  readonly targets: readonly FusionTarget[];
  /**
   * Targets where the fused op runs but measures slower than what it replaces (why, in words):
   * a pass for such a target leaves the fusion out unless it is named in `only`.
   */
  readonly slowerOn?: Partial<Record<FusionTarget, string>>;
  /** Alternative forms, tried in order; each rooted at the op whose output is replaced. */
  readonly patterns: readonly OpPattern[];
  /** Checks on the whole match, after the patterns' own. */
  readonly checks?: readonly MatchCheck[];
  rewrite(m: Match, r: Rewriter): void;
}

export interface FusionApplied {
  fusion: string;
  /** The root node's name. */
  at: string;
  /** Common name prefix of the matched nodes ("/encoder/layer.0/attention/"). */
  scope: string;
  /** Matched nodes removed (plus anything that only fed them). */
  removed: number;
  /** Op types of the nodes added. */
  added: string[];
}

export interface NearMiss {
  fusion: string;
  at: string;
  scope: string;
  reason: string;
}

interface Binding {
  readonly nodes: ReadonlyMap<string, Node>;
  readonly values: ReadonlyMap<string, Value>;
  /** Matched nodes with their pattern (in match order, each node once). */
  readonly matched: ReadonlyArray<{ node: Node; pattern: OpPattern }>;
  readonly checks: ReadonlyArray<(m: Match) => string | undefined>;
}

const EMPTY: Binding = { nodes: new Map(), values: new Map(), matched: [], checks: [] };

/** A successful skeleton match: captures, and the context checks and rewrites need. */
export class Match {
  constructor(
    readonly fusion: Fusion,
    readonly root: Node,
    private readonly binding: Binding,
    readonly model: Model,
    readonly graph: Graph,
    readonly target: FusionTarget,
    /** The type float32 values will have in the artifact (a later precision pass), when not float32. */
    readonly floatAs: DataType = DataType.FLOAT,
  ) {}

  /** Every matched node, root included. */
  get nodes(): Node[] {
    return this.binding.matched.map((x) => x.node);
  }

  get scope(): string {
    return scopeOf(this.nodes.map((n) => n.name));
  }

  has(name: string): boolean {
    return this.binding.nodes.has(name) || this.binding.values.has(name);
  }

  node(name: string): Node {
    const n = this.binding.nodes.get(name);
    if (!n) throw new Error(`internal: fusion '${this.fusion.name}' has no node capture '${name}'`);
    return n;
  }

  maybeNode(name: string): Node | undefined {
    return this.binding.nodes.get(name);
  }

  /** A captured value, or the first output of a captured node. */
  value(name: string): Value {
    const v = this.maybeValue(name);
    if (!v) throw new Error(`internal: fusion '${this.fusion.name}' has no capture '${name}'`);
    return v;
  }

  maybeValue(name: string): Value | undefined {
    const v = this.binding.values.get(name);
    if (v) return v;
    const n = this.binding.nodes.get(name);
    if (!n) return undefined;
    const p = this.binding.matched.find((x) => x.node === n)!.pattern;
    return n.outputs[p.output] ?? undefined;
  }

  /** The constant data of a captured value (checks have made sure it is one). */
  constant(name: string): Tensor {
    const t = constantTensor(this.value(name));
    if (!t) throw new Error(`internal: capture '${name}' of fusion '${this.fusion.name}' is not a constant`);
    return t;
  }

  scalar(name: string): number {
    const x = scalarConstant(this.value(name));
    if (x === undefined) throw new Error(`internal: capture '${name}' of fusion '${this.fusion.name}' is not a scalar constant`);
    return x;
  }

  /** Runs every check in order; the first failure and how many passed before it. */
  judge(): { reason: string | undefined; passed: number } {
    let passed = 0;
    for (const c of this.binding.checks) {
      const reason = c(this);
      if (reason !== undefined) return { reason, passed };
      passed++;
    }
    const inside = new Set(this.nodes);
    for (const { node, pattern } of this.binding.matched) {
      if (node === this.root) {
        for (let i = 1; i < node.outputs.length; i++) {
          const out = node.outputs[i];
          if (out && (out.uses.length || out.isGraphOutput)) return { reason: `'${node.name}' (${node.opType}) output ${i} '${out.name}' is used`, passed };
        }
        continue;
      }
      if (pattern.shared) continue;
      for (const out of node.outputs) {
        if (!out) continue;
        if (out.isGraphOutput) return { reason: `intermediate '${node.name}' (${node.opType}) output '${out.name}' is a graph output`, passed };
        const outside = out.uses.find((u) => !inside.has(u.node) && !onlyFeeds(u.node, inside, new Set()));
        if (outside) return { reason: `intermediate '${node.name}' (${node.opType}) is also used by '${outside.node.name}' (${outside.node.opType})`, passed };
      }
    }
    passed++;
    for (const c of this.fusion.checks ?? []) {
      const reason = c(this);
      if (reason !== undefined) return { reason, passed };
      passed++;
    }
    return { reason: undefined, passed };
  }
}

/**
 * Whether everything `n` computes ends up only in `inside` (a Shape of an intermediate whose
 * numbers feed a Slice or Reshape of the match: dynamic exporters' shape arithmetic). Such a
 * user dies with the match, so it does not make the intermediate shared. Bounded to small chains.
 */
function onlyFeeds(n: Node, inside: ReadonlySet<Node>, seen: Set<Node>): boolean {
  if (seen.has(n)) return true;
  if (seen.size > 32 || n.subgraphs().length) return false;
  seen.add(n);
  for (const out of n.outputs) {
    if (!out) continue;
    if (out.isGraphOutput) return false;
    for (const u of out.uses) if (!inside.has(u.node) && !onlyFeeds(u.node, inside, seen)) return false;
  }
  return true;
}

function bind(b: Binding, extra: Partial<Binding>): Binding {
  return { nodes: extra.nodes ?? b.nodes, values: extra.values ?? b.values, matched: extra.matched ?? b.matched, checks: extra.checks ?? b.checks };
}

/** Number of inputs, not counting trailing absent optional ones. */
function inputCount(n: Node): number {
  let c = n.inputs.length;
  while (c > 0 && n.inputs[c - 1] === null) c--;
  return c;
}

/** Every way `p` matches the value `val`, extending `b` (skeleton only; checks are deferred). */
function matchPattern(p: Pattern, val: Value | null, b: Binding): Binding[] {
  if (val === null) return [];
  switch (p.kind) {
    case 'alt':
      return p.options.flatMap((o) => matchPattern(o, val, b));
    case 'value': {
      if (p.mustBeConstant && !constantTensor(val)) return [];
      if (p.name !== undefined) {
        const bound = b.values.get(p.name);
        if (bound) return bound === val ? [b] : [];
      }
      const values = p.name === undefined ? b.values : new Map(b.values).set(p.name, val);
      const checks = p.checks.length ? [...b.checks, ...p.checks.map((c) => (m: Match) => c(val, m))] : b.checks;
      return [bind(b, { values, checks })];
    }
    case 'op': {
      const node = val.producer;
      if (!node || val.producerIndex !== p.output) return [];
      const domain = node.domain === 'ai.onnx' ? '' : node.domain;
      if (domain !== p.domain || !p.ops.includes(node.opType) || (p.require && !p.require(node))) return [];
      if (p.name !== undefined) {
        const bound = b.nodes.get(p.name);
        if (bound) return bound === node ? [b] : [];
      }
      const count = inputCount(node);
      if (p.extraInputs ? count < p.inputs.length : count !== p.inputs.length) return [];
      const seen = b.matched.some((x) => x.node === node);
      const base = bind(b, {
        nodes: p.name === undefined ? b.nodes : new Map(b.nodes).set(p.name, node),
        matched: seen ? b.matched : [...b.matched, { node, pattern: p }],
        checks: p.checks.length ? [...b.checks, ...p.checks.map((c) => (m: Match) => c(node, m))] : b.checks,
      });
      const orders = p.commutative && p.inputs.length === 2 ? [[0, 1], [1, 0]] : [p.inputs.map((_, i) => i)];
      const out: Binding[] = [];
      for (const order of orders) {
        let partial = [base];
        p.inputs.forEach((ip, i) => {
          partial = partial.flatMap((pb) => matchPattern(ip, node.inputs[order[i]!] ?? null, pb));
        });
        out.push(...partial);
      }
      return out;
    }
  }
}

export function intAttr(name: string, value: number): Attribute {
  return { name, type: 'int', value: BigInt(value) };
}

export function floatAttr(name: string, value: number): Attribute {
  return { name, type: 'float', value: Math.fround(value) };
}

export function intsAttr(name: string, value: readonly number[]): Attribute {
  return { name, type: 'ints', value: value.map((x) => BigInt(x)) };
}

/** What a rewrite may do: add nodes and constants, redirect users, declare opsets it needs. */
export class Rewriter {
  readonly added: Node[] = [];
  readonly replacements: Array<[Value, Value]> = [];

  constructor(
    private readonly m: Match,
    private readonly nodeNames: Set<string>,
  ) {}

  /** Adds a node before the match's root; its outputs get fresh names derived from the scope (`absent` ones are left out). */
  add(opType: string, inputs: Array<Value | null>, options: { domain?: string; attributes?: Attribute[]; outputs?: number; absent?: number[] } = {}): Node {
    const g = this.m.graph;
    const base = `${this.m.scope}${opType}_fused`;
    let name = base;
    for (let i = 1; this.nodeNames.has(name); i++) name = `${base}_${i}`;
    this.nodeNames.add(name);
    const outs = Array.from({ length: options.outputs ?? 1 }, (_, i) => (options.absent?.includes(i) ? '' : g.uniqueName(`${name}_output_${i}`)));
    // Trailing absent optional inputs are left out rather than written as empty names.
    const ins = [...inputs];
    while (ins.length && ins[ins.length - 1] === null) ins.pop();
    const node = g.addNode(opType, ins, outs, { domain: options.domain ?? '', name, attributes: options.attributes ?? [], before: this.m.root });
    this.added.push(node);
    return node;
  }

  /** A new initializer (named after `base`, made unique). */
  constant(base: string, tensor: Tensor): Value {
    return this.m.graph.addInitializer(tensor, this.m.graph.uniqueName(base));
  }

  /** Points every user of `old` (and the graph output, if it is one) at `neu`; `neu` later takes `old`'s name. */
  replace(old: Value, neu: Value): void {
    if (!neu.type && old.type) neu.type = old.type;
    this.m.graph.replaceAllUses(old, neu);
    this.replacements.push([old, neu]);
  }

  /** Makes sure the model imports `domain` at `version` or later. */
  requireOpset(domain: string, version: number): void {
    const model = this.m.model;
    const have = model.opsetVersion(domain);
    if (have === undefined) model.opsetImports.push({ domain, version });
    else if (have < version) throw new PeftcError(`fusion '${this.m.fusion.name}' needs opset ${domain || 'ai.onnx'} ${version}, the model imports ${have}`);
  }
}

export interface ApplyOptions {
  target: FusionTarget;
  /**
   * The element type float32 values will have in the artifact when a precision pass runs after
   * fusion (cuda's fp16/bf16): kernel type checks judge by it. Default float32.
   */
  floatAs?: DataType;
  log?: (message: string) => void;
  maxRounds?: number;
}

export interface ApplyResult {
  applied: FusionApplied[];
  nearMisses: NearMiss[];
  rounds: number;
}

/** Tries every pattern of `fusion` rooted at `node`: a legal match, or the near-miss reason, or nothing. */
export function matchAt(fusion: Fusion, node: Node, model: Model, target: FusionTarget, floatAs: DataType = DataType.FLOAT): { match?: Match; nearMiss?: string } {
  let best: { reason: string; passed: number } | undefined;
  for (const p of fusion.patterns) {
    const root = node.outputs[p.output];
    if (!root) continue;
    for (const b of matchPattern(p, root, EMPTY)) {
      const m = new Match(fusion, node, b, model, node.graph, target, floatAs);
      const verdict = m.judge();
      if (verdict.reason === undefined) return { match: m };
      if (!best || verdict.passed > best.passed) best = { reason: verdict.reason, passed: verdict.passed };
    }
  }
  return best ? { nearMiss: best.reason } : {};
}

/** Applies `fusions` (in order, repeated to a fixpoint) to the model's main graph. */
export function applyFusions(model: Model, fusions: readonly Fusion[], options: ApplyOptions): ApplyResult {
  const g = model.graph;
  const applied: FusionApplied[] = [];
  const maxRounds = options.maxRounds ?? 8;
  const nodeNames = new Set(g.nodes.map((n) => n.name));
  const roots = (f: Fusion) => new Set(f.patterns.flatMap((p) => p.ops.map((o) => `${p.domain}::${o}`)));
  const rootSets = new Map(fusions.map((f) => [f, roots(f)]));
  let rounds = 0;
  // Near-misses by fusion and root node; the latest reason wins. Kept at the end for roots still
  // in the graph: a near-miss of a large fusion stays reported even when a later, smaller fusion
  // changed part of its skeleton (attention whose QK^T MatMul became a FusedMatMul).
  const misses = new Map<string, { node: Node; miss: NearMiss }>();
  for (let round = 1; round <= maxRounds; round++) {
    rounds = round;
    let changed = false;
    for (const fusion of fusions) {
      if (!fusion.targets.includes(options.target)) continue;
      const wanted = rootSets.get(fusion)!;
      const removed = new Set<Node>();
      // Consumers first: the largest form of a pattern (LayerNorm with its scale and shift) is
      // tried at its outermost op before a smaller form could claim the inner part.
      for (const node of [...g.nodes].reverse()) {
        if (removed.has(node)) continue;
        const domain = node.domain === 'ai.onnx' ? '' : node.domain;
        if (!wanted.has(`${domain}::${node.opType}`)) continue;
        const { match, nearMiss } = matchAt(fusion, node, model, options.target, options.floatAs);
        if (nearMiss !== undefined) {
          const key = `${fusion.name}\u0000${node.name}`;
          misses.delete(key);
          misses.set(key, { node, miss: { fusion: fusion.name, at: node.name, scope: scopeOf([node.name]), reason: nearMiss } });
          continue;
        }
        if (!match) continue;
        const record = rewrite(match, nodeNames, removed);
        applied.push(record);
        options.log?.(`fused ${fusion.name} at ${record.scope || record.at}: ${record.removed} nodes -> ${record.added.join(' + ')}`);
        changed = true;
      }
    }
    if (!changed) break;
  }
  const alive = new Set(g.nodes);
  const nearMisses = [...misses.values()].filter((x) => alive.has(x.node)).map((x) => x.miss);
  return { applied, nearMisses, rounds };
}

function rewrite(m: Match, nodeNames: Set<string>, removed: Set<Node>): FusionApplied {
  const g = m.graph;
  const scope = m.scope;
  const r = new Rewriter(m, nodeNames);
  m.fusion.rewrite(m, r);
  for (const out of m.root.outputs) {
    if (out && (out.uses.length || out.isGraphOutput)) {
      throw new Error(`internal: fusion '${m.fusion.name}' at '${m.root.name}' left output '${out.name}' in use`);
    }
  }
  // Matched nodes nobody uses any more (a shared intermediate may still be), last to first.
  const doomed = new Set<Node>();
  const live = (n: Node) => n.outputs.some((o) => o && (o.isGraphOutput || o.uses.some((u) => !doomed.has(u.node))));
  const matched = m.nodes;
  for (let changed = true; changed; ) {
    changed = false;
    for (const n of matched) if (!doomed.has(n) && !live(n)) doomed.add(n), (changed = true);
  }
  // Then whatever only fed them: shape arithmetic, Constant nodes, initializers.
  const feeders = (nodes: Iterable<Node>) => [...nodes].flatMap((n) => n.inputs.filter((x): x is Value => x !== null));
  let frontier = feeders(doomed);
  const orphans = new Set<Value>();
  while (frontier.length) {
    const next: Node[] = [];
    for (const val of frontier) {
      const p = val.producer;
      if (p && p.graph === g && !doomed.has(p) && !live(p) && !p.subgraphs().length) {
        doomed.add(p);
        next.push(p);
      } else if (!p && val.initializer && !val.isGraphInput) orphans.add(val);
    }
    frontier = feeders(next);
  }
  const count = doomed.size;
  g.removeNodes(doomed);
  for (const n of doomed) removed.add(n);
  for (const val of orphans) if (val.uses.length === 0 && !val.isGraphOutput && g.localValue(val.name) === val) g.deleteValue(val);
  for (const [old, neu] of r.replacements) {
    if (g.localValue(old.name) === undefined && neu.graph === g && g.localValue(neu.name) === neu && !neu.isGraphInput) g.renameValue(neu, old.name);
  }
  const order = topologicalOrder(g);
  if (order.some((n, i) => n !== g.nodes[i])) g.nodes.splice(0, g.nodes.length, ...order);
  return { fusion: m.fusion.name, at: m.root.name, scope, removed: count, added: r.added.map((n) => n.qualifiedOp) };
}

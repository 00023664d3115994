/**
 * Graph, Node and Value with use-def lists.
 *
 * A Value knows its producer (node + output index) and its uses (node + input index), so
 * "replace all uses", dead-code removal and pattern matching need no search. Mutate through the
 * Graph/Node methods below; they keep the lists right. A node inside a subgraph may use a Value of
 * an enclosing graph directly (ONNX outer-scope references); that use is recorded on the outer
 * Value like any other, so passes on the outer graph see it.
 */
import { PeftcError } from '../errors.js';
import { attributeGraphs, type Attribute, type AttrValue } from './attribute.js';
import type { MetadataProps, SparseTensor, Tensor } from './tensor.js';
import type { TypeInfo } from './types.js';

export interface Use {
  readonly node: Node;
  readonly index: number;
}

export class Value {
  type: TypeInfo | undefined;
  docString = '';
  metadataProps: MetadataProps = [];
  /** The node producing this value, or null for graph inputs, initializers and outer-scope values. */
  producer: Node | null = null;
  producerIndex = -1;
  /** Constant data bound to this value by the graph's initializer list. */
  initializer: Tensor | undefined;
  /** Sparse constant bound by the graph's sparse_initializer list. */
  sparseInitializer: SparseTensor | undefined;
  readonly uses: Use[] = [];

  constructor(
    readonly graph: Graph,
    public name: string,
  ) {}

  get isGraphInput(): boolean {
    return this.graph.inputs.includes(this);
  }

  get isGraphOutput(): boolean {
    return this.graph.outputs.includes(this);
  }

  /** True when the value is a constant: an initializer that is not also an overridable graph input. */
  get isConstant(): boolean {
    return this.initializer !== undefined && !this.isGraphInput;
  }

  addUse(node: Node, index: number): void {
    this.uses.push({ node, index });
  }

  removeUse(node: Node, index: number): void {
    const i = this.uses.findIndex((u) => u.node === node && u.index === index);
    if (i < 0) throw new Error(`internal: value '${this.name}' has no use by node '${node.name}' input ${index}`);
    this.uses.splice(i, 1);
  }
}

export class Node {
  name: string;
  domain: string;
  overload = '';
  docString = '';
  metadataProps: MetadataProps = [];
  /** NodeProto.device_configurations, kept as encoded bytes (not interpreted by any pass). */
  deviceConfigurations: Uint8Array[] = [];
  readonly inputs: Array<Value | null> = [];
  readonly outputs: Array<Value | null> = [];
  attributes: Attribute[] = [];

  constructor(
    readonly graph: Graph,
    public opType: string,
    domain = '',
    name = '',
  ) {
    this.domain = domain;
    this.name = name;
  }

  /** "Op" for the default domain, "domain::Op" otherwise (ai.onnx counts as default). */
  get qualifiedOp(): string {
    return this.domain === '' || this.domain === 'ai.onnx' ? this.opType : `${this.domain}::${this.opType}`;
  }

  attribute(name: string): Attribute | undefined {
    return this.attributes.find((a) => a.name === name);
  }

  setAttribute(name: string, value: AttrValue): void {
    const a = { ...value, name } as Attribute;
    const i = this.attributes.findIndex((x) => x.name === name);
    if (i >= 0) this.attributes[i] = a;
    else this.attributes.push(a);
  }

  attrInt(name: string, fallback: number): number;
  attrInt(name: string): number | undefined;
  attrInt(name: string, fallback?: number): number | undefined {
    const a = this.attribute(name);
    if (!a) return fallback;
    if (a.type !== 'int') throw new PeftcError(`node '${this.name}' (${this.opType}): attribute '${name}' is ${a.type}, expected int`);
    return Number(a.value);
  }

  attrInts(name: string): number[] | undefined {
    const a = this.attribute(name);
    if (!a) return undefined;
    if (a.type !== 'ints') throw new PeftcError(`node '${this.name}' (${this.opType}): attribute '${name}' is ${a.type}, expected ints`);
    return a.value.map(Number);
  }

  attrFloat(name: string, fallback: number): number {
    const a = this.attribute(name);
    if (!a) return fallback;
    if (a.type !== 'float') throw new PeftcError(`node '${this.name}' (${this.opType}): attribute '${name}' is ${a.type}, expected float`);
    return a.value;
  }

  /** Subgraphs held in this node's attributes (If/Loop/Scan bodies). */
  subgraphs(): Graph[] {
    return this.attributes.flatMap(attributeGraphs);
  }

  setInput(index: number, value: Value | null): void {
    const old = this.inputs[index];
    if (old) old.removeUse(this, index);
    while (this.inputs.length <= index) this.inputs.push(null);
    this.inputs[index] = value;
    value?.addUse(this, index);
  }

  appendInput(value: Value | null): void {
    this.setInput(this.inputs.length, value);
  }

  setOutput(index: number, value: Value | null): void {
    const old = this.outputs[index];
    if (old && old.producer === this) {
      old.producer = null;
      old.producerIndex = -1;
    }
    while (this.outputs.length <= index) this.outputs.push(null);
    if (value) {
      if (value.producer && value.producer !== this) {
        throw new PeftcError(`value '${value.name}' already has producer '${value.producer.name}'; node '${this.name}' cannot also produce it`);
      }
      value.producer = this;
      value.producerIndex = index;
    }
    this.outputs[index] = value;
  }
}

export class Graph {
  name = '';
  docString = '';
  metadataProps: MetadataProps = [];
  readonly nodes: Node[] = [];
  inputs: Value[] = [];
  outputs: Value[] = [];
  /** Values listed in value_info, in order. */
  valueInfos: Value[] = [];
  /** Values bound to an initializer, in initializer order. */
  initializers: Value[] = [];
  /** Values bound to a sparse initializer, in order. */
  sparseInitializers: Value[] = [];
  quantizationAnnotations: Array<{ tensorName: string; params: Array<[string, string]> }> = [];
  private readonly values = new Map<string, Value>();

  /** The graph this one is nested in (through a node attribute), or null at top level. */
  constructor(readonly parent: Graph | null = null) {}

  /** Looks a name up in this graph only. */
  localValue(name: string): Value | undefined {
    return this.values.get(name);
  }

  /** Looks a name up in this graph, then in enclosing graphs (ONNX lexical scoping). */
  lookup(name: string): Value | undefined {
    for (let g: Graph | null = this; g; g = g.parent) {
      const v = g.values.get(name);
      if (v) return v;
    }
    return undefined;
  }

  /** Creates a value owned by this graph. Names must be unique within the graph. */
  createValue(name: string, type?: TypeInfo): Value {
    if (this.values.has(name)) throw new PeftcError(`value name '${name}' is already used in graph '${this.name}'`);
    const v = new Value(this, name);
    v.type = type;
    this.values.set(name, v);
    return v;
  }

  /** A name not yet used in this graph or its enclosing graphs, derived from `base`. */
  uniqueName(base: string): string {
    // A name must also be free in nested graphs, or it would shadow (or be shadowed by) theirs.
    const nested = [...this.subgraphs()];
    const taken = (n: string) => this.lookup(n) !== undefined || nested.some((g) => g.values.has(n));
    if (!taken(base)) return base;
    for (let i = 1; ; i++) {
      const candidate = `${base}_${i}`;
      if (!taken(candidate)) return candidate;
    }
  }

  allValues(): IterableIterator<Value> {
    return this.values.values();
  }

  renameValue(value: Value, name: string): void {
    if (value.graph !== this) throw new Error(`internal: value '${value.name}' belongs to another graph`);
    if (this.values.has(name)) throw new PeftcError(`value name '${name}' is already used in graph '${this.name}'`);
    this.values.delete(value.name);
    value.name = name;
    if (value.initializer) value.initializer.name = name;
    this.values.set(name, value);
  }

  /** Binds constant data to a new value (appended to the initializer list). */
  addInitializer(tensor: Tensor, name = tensor.name): Value {
    const v = this.createValue(name);
    if (tensor.name !== name) tensor = tensor.renamed(name);
    v.initializer = tensor;
    this.initializers.push(v);
    return v;
  }

  /** Creates a node with the given inputs and fresh output values; appends or inserts it. */
  addNode(
    opType: string,
    inputs: Array<Value | null>,
    outputNames: string[],
    options: { domain?: string; name?: string; attributes?: Attribute[]; before?: Node } = {},
  ): Node {
    const node = new Node(this, opType, options.domain ?? '', options.name ?? '');
    inputs.forEach((v, i) => node.setInput(i, v));
    outputNames.forEach((n, i) => node.setOutput(i, n === '' ? null : this.createValue(n)));
    if (options.attributes) node.attributes = options.attributes;
    if (options.before) this.nodes.splice(this.nodes.indexOf(options.before), 0, node);
    else this.nodes.push(node);
    return node;
  }

  /** Appends an already-built node (used by the decoder). */
  appendNode(node: Node): void {
    if (node.graph !== this) throw new Error(`internal: node '${node.name}' belongs to another graph`);
    this.nodes.push(node);
  }

  /**
   * Removes a node. Its outputs must be unused (unless `force`), so no use list is left pointing
   * at a value without a producer. Outputs left with no uses are forgotten.
   */
  removeNode(node: Node, force = false): void {
    this.removeNodes([node], force);
  }

  /** Removes many nodes in one sweep over the node list (linear, for passes that delete a lot). */
  removeNodes(nodes: Iterable<Node>, force = false): void {
    const doomed = new Set(nodes);
    if (doomed.size === 0) return;
    for (const node of doomed) {
      if (node.graph !== this) throw new Error(`internal: node '${node.name}' is not in graph '${this.name}'`);
      if (force) continue;
      for (const out of node.outputs) {
        if (out && (out.uses.some((u) => !doomed.has(u.node)) || out.isGraphOutput)) {
          throw new PeftcError(`cannot remove node '${node.name}': its output '${out.name}' is still used`);
        }
      }
    }
    const forgotten = new Set<Value>();
    for (const node of doomed) {
      node.inputs.forEach((v, i) => v?.removeUse(node, i));
    }
    for (const node of doomed) {
      for (const out of node.outputs) {
        if (!out) continue;
        out.producer = null;
        out.producerIndex = -1;
        if (out.uses.length === 0 && !out.isGraphOutput && !out.initializer) {
          this.values.delete(out.name);
          forgotten.add(out);
        }
      }
    }
    const kept = this.nodes.filter((n) => !doomed.has(n));
    if (kept.length + doomed.size !== this.nodes.length) throw new Error(`internal: some nodes to remove are not in graph '${this.name}'`);
    this.nodes.splice(0, this.nodes.length, ...kept);
    if (forgotten.size) this.valueInfos = this.valueInfos.filter((v) => !forgotten.has(v));
  }

  /** Points every use of `from` (node inputs anywhere, graph outputs that name it) at `to`. */
  replaceAllUses(from: Value, to: Value): void {
    if (from === to) return;
    for (const use of [...from.uses]) use.node.setInput(use.index, to);
    // Graph outputs: the value's own graph, and nested graphs that output an outer value directly.
    for (const g of [from.graph, ...from.graph.subgraphs()]) {
      const outs = g.outputs;
      for (let i = 0; i < outs.length; i++) if (outs[i] === from) outs[i] = to;
    }
  }

  /** Removes a value that nothing refers to any more (no producer, no uses, no role in the graph). */
  deleteValue(value: Value): void {
    if (value.uses.length || value.producer || value.isGraphInput || value.isGraphOutput) {
      throw new PeftcError(`cannot delete value '${value.name}': it is still referenced`);
    }
    this.initializers = this.initializers.filter((v) => v !== value);
    this.sparseInitializers = this.sparseInitializers.filter((v) => v !== value);
    this.valueInfos = this.valueInfos.filter((v) => v !== value);
    this.values.delete(value.name);
  }

  /** Every graph nested in this one's nodes, depth first (not including this graph). */
  *subgraphs(): Generator<Graph> {
    for (const node of this.nodes) {
      for (const g of node.subgraphs()) {
        yield g;
        yield* g.subgraphs();
      }
    }
  }
}

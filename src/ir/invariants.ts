/**
 * The IR invariant checker: tests call it after every mutation, the pass manager after every pass
 * when asked (`--check`). It returns every violation it finds, each naming the graph and the
 * node or value:
 *  - every value has at most one producer, and producer links agree with node outputs;
 *  - use lists agree with node inputs exactly (no dangling or missing uses);
 *  - every used value is defined: by a node, a graph input, an initializer, or an enclosing graph;
 *  - nodes are in topological order (which also rules out cycles);
 *  - value names are unique within a graph and its enclosing graphs; non-empty node names are unique.
 */
import { PeftcError } from '../errors.js';
import type { Graph, Node, Value } from './graph.js';
import type { Model } from './model.js';

export function checkGraph(graph: Graph, where = graph.name || 'main graph'): string[] {
  const problems: string[] = [];
  const nodeNames = new Set<string>();
  const defined = new Set<Value>();
  const nodesInGraph = new Set(graph.nodes);

  for (const v of graph.allValues()) {
    if (v.graph !== graph) problems.push(`${where}: value '${v.name}' is registered in the wrong graph`);
    for (let g = graph.parent; g; g = g.parent) {
      if (g.localValue(v.name)) problems.push(`${where}: value '${v.name}' shadows a value of an enclosing graph`);
    }
    if (v.producer) {
      if (!nodesInGraph.has(v.producer)) problems.push(`${where}: value '${v.name}' has producer '${v.producer.name}' which is not in the graph`);
      else if (v.producer.outputs[v.producerIndex] !== v) problems.push(`${where}: value '${v.name}' producer link disagrees with node '${v.producer.name}' outputs`);
    }
    for (const use of v.uses) {
      if (use.node.inputs[use.index] !== v) problems.push(`${where}: value '${v.name}' lists a use by node '${use.node.name}' input ${use.index} that the node does not have`);
      if (!use.node.graph.nodes.includes(use.node)) problems.push(`${where}: value '${v.name}' is used by removed node '${use.node.name}'`);
    }
    if (v.initializer || v.sparseInitializer || graph.inputs.includes(v)) defined.add(v);
  }
  for (const v of graph.initializers) if (!v.initializer) problems.push(`${where}: initializer list holds '${v.name}' without data`);

  const isDefinedOutside = (v: Value): boolean => {
    for (let g = graph.parent; g; g = g.parent) if (v.graph === g) return true;
    return false;
  };

  for (const node of graph.nodes) {
    const label = `${where}: node '${node.name}' (${node.qualifiedOp})`;
    if (node.graph !== graph) problems.push(`${label} belongs to another graph`);
    if (node.name !== '') {
      if (nodeNames.has(node.name)) problems.push(`${where}: node name '${node.name}' is used twice`);
      nodeNames.add(node.name);
    }
    node.inputs.forEach((v, i) => {
      if (!v) return;
      if (!v.uses.some((u) => u.node === node && u.index === i)) problems.push(`${label} input ${i} '${v.name}' is missing from that value's use list`);
      if (v.graph === graph) {
        if (!defined.has(v)) {
          problems.push(v.producer ? `${label} uses '${v.name}' before it is produced (not topologically sorted, or a cycle)` : `${label} uses '${v.name}', which nothing defines`);
        }
      } else if (!isDefinedOutside(v)) {
        problems.push(`${label} uses '${v.name}' from a graph that does not enclose it`);
      }
    });
    node.outputs.forEach((v, i) => {
      if (!v) return;
      if (v.producer !== node || v.producerIndex !== i) problems.push(`${label} output ${i} '${v.name}' does not name this node as its producer`);
      if (v.graph !== graph) problems.push(`${label} output '${v.name}' is registered in another graph`);
      if (defined.has(v)) problems.push(`${label} output '${v.name}' is defined twice`);
      defined.add(v);
    });
    node.subgraphs().forEach((sub, k) => {
      if (sub.parent !== graph) problems.push(`${label} subgraph ${k} does not name this graph as its parent`);
      problems.push(...checkGraph(sub, `${where} > ${node.name || node.opType} subgraph '${sub.name}'`));
    });
  }
  for (const out of graph.outputs) {
    if (out.graph === graph ? !defined.has(out) : !isDefinedOutside(out)) problems.push(`${where}: graph output '${out.name}' is never defined`);
  }
  return problems;
}

export function checkModel(model: Model): string[] {
  const problems = checkGraph(model.graph);
  for (const fn of model.functions) problems.push(...checkGraph(fn.body, `function '${fn.key}'`));
  return problems;
}

/** Throws a PeftcError listing every violation (at most 20 shown). */
export function assertValidModel(model: Model, context = 'model'): void {
  const problems = checkModel(model);
  if (problems.length === 0) return;
  const shown = problems.slice(0, 20).map((p) => `  - ${p}`).join('\n');
  const more = problems.length > 20 ? `\n  ... and ${problems.length - 20} more` : '';
  throw new PeftcError(`${context}: IR invariants violated:\n${shown}${more}`);
}

/** Nodes that use any output of `node` (deduplicated, in use order). */
export function consumers(node: Node): Node[] {
  const out: Node[] = [];
  for (const v of node.outputs) for (const u of v?.uses ?? []) if (!out.includes(u.node)) out.push(u.node);
  return out;
}

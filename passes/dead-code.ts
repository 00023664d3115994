/**
 * Dead-code elimination.
 *
 * Rewrites, in every graph (subgraphs included, innermost uses counted on outer values):
 *  1. a node none of whose outputs is used (by a node or as a graph output) is removed; nodes are
 *     visited last to first, so whole dead chains go in one pass;
 *  2. an initializer nothing uses (and that is not a graph input or output) is removed;
 *  3. value_info entries for values that no longer exist are dropped.
 * Graph inputs and outputs are never touched: they are the model's interface.
 */
import type { Graph, Node, Value } from '../src/ir/graph.js';
import type { Model } from '../src/ir/model.js';
import type { Pass, PassResult } from './pass.js';


function sweepGraph(g: Graph, counts: { nodes: number; initializers: number; valueInfos: number }): void {
  // Inner graphs first: a node removed there may free a use of an outer value.
  for (const node of g.nodes) for (const sub of node.subgraphs()) sweepGraph(sub, counts);
  // Last to first: a node's consumers come after it, so by the time we reach a node we know
  // whether every consumer is going too.
  const doomed = new Set<Node>();
  const liveUse = (v: Value | null) => v !== null && (v.isGraphOutput || v.uses.some((u) => !doomed.has(u.node)));
  for (let i = g.nodes.length - 1; i >= 0; i--) {
    const node = g.nodes[i]!;
    if (!node.outputs.some(liveUse)) doomed.add(node);
  }
  g.removeNodes(doomed);
  counts.nodes += doomed.size;
  for (const v of [...g.initializers]) {
    if (v.uses.length === 0 && !v.isGraphOutput && !v.isGraphInput) {
      g.deleteValue(v);
      counts.initializers++;
    }
  }
  for (const v of [...g.sparseInitializers]) {
    if (v.uses.length === 0 && !v.isGraphOutput && !v.isGraphInput) {
      g.deleteValue(v);
      counts.initializers++;
    }
  }
  for (const v of [...g.valueInfos]) {
    const stale = v.producer === null && v.uses.length === 0 && !v.isGraphInput && !v.isGraphOutput && !v.initializer && !v.sparseInitializer;
    if (stale) {
      g.deleteValue(v);
      counts.valueInfos++;
    }
  }
}

export const deadCodeElimination: Pass = {
  name: 'dead-code',
  description: 'remove nodes whose outputs are unused, unused initializers and stale value_info',
  run(model: Model): PassResult {
    const counts = { nodes: 0, initializers: 0, valueInfos: 0 };
    sweepGraph(model.graph, counts);
    for (const fn of model.functions) sweepGraph(fn.body, counts);
    return { changed: counts.nodes + counts.initializers + counts.valueInfos > 0, details: { ...counts } };
  },
};

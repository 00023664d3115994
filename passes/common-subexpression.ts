/**
 * Common-subexpression elimination.
 *
 * Two nodes compute the same thing when they have the same domain, op type, overload, inputs
 * (the same values, in order) and attributes (compared by content; tensor attributes by bytes).
 * Visiting nodes in order, the second such node is removed and its users read the first one's
 * outputs. Not merged: nodes with subgraphs, nondeterministic ops (Random*, Multinomial,
 * Bernoulli), and nodes whose outputs are graph outputs (the model's interface keeps its names).
 * Constant nodes with equal values merge too, so duplicated constants from exporters collapse.
 */
import { createHash } from 'node:crypto';
import { bytesText, type Attribute } from '../src/ir/attribute.js';
import type { Graph, Node } from '../src/ir/graph.js';
import type { Model } from '../src/ir/model.js';
import type { Tensor } from '../src/ir/tensor.js';
import type { Pass, PassResult } from './pass.js';

const NONDETERMINISTIC = new Set(['RandomNormal', 'RandomUniform', 'RandomNormalLike', 'RandomUniformLike', 'Multinomial', 'Bernoulli']);

function tensorKey(t: Tensor): string {
  const h = createHash('sha1');
  h.update(`${t.dtype}|${t.dims.join(',')}|`);
  if (t.source.kind === 'strings') for (const s of t.strings()) h.update(`${s.byteLength}:`).update(s);
  else for (const c of t.chunks(undefined, true)) h.update(c);
  return h.digest('hex');
}

function attributeKey(a: Attribute): string | undefined {
  switch (a.type) {
    case 'graph':
    case 'graphs':
      return undefined;
    case 'tensor':
      return `${a.name}=t:${tensorKey(a.value)}`;
    case 'tensors':
      return `${a.name}=ts:${a.value.map(tensorKey).join(',')}`;
    case 'sparse_tensor':
      return `${a.name}=sp:${tensorKey(a.value.values)}/${tensorKey(a.value.indices)}/${a.value.dims.join(',')}`;
    case 'sparse_tensors':
      return undefined;
    case 'string':
      return `${a.name}=s:${JSON.stringify(bytesText(a.value))}`;
    case 'strings':
      return `${a.name}=ss:${JSON.stringify(a.value.map(bytesText))}`;
    case 'float':
      return `${a.name}=f:${Object.is(a.value, -0) ? '-0' : String(a.value)}`;
    case 'floats':
      return `${a.name}=fs:${a.value.map((x) => (Object.is(x, -0) ? '-0' : String(x))).join(',')}`;
    case 'int':
      return `${a.name}=i:${a.value}`;
    case 'ints':
      return `${a.name}=is:${a.value.join(',')}`;
    case 'ref':
      return `${a.name}=ref:${a.refAttrName}`;
    default:
      return `${a.name}=${a.type}:${JSON.stringify(a.value)}`;
  }
}

/** Identity of a value within one pass run (names are unique per scope, but outer values can share names with nothing inner). */
const valueIds = new WeakMap<object, number>();
let nextId = 1;
const idOf = (o: object): number => {
  let id = valueIds.get(o);
  if (id === undefined) valueIds.set(o, (id = nextId++));
  return id;
};

function nodeKey(node: Node): string | undefined {
  if (NONDETERMINISTIC.has(node.opType)) return undefined;
  if (node.outputs.some((v) => v?.isGraphOutput)) return undefined;
  const attrs: string[] = [];
  for (const a of node.attributes) {
    const k = attributeKey(a);
    if (k === undefined) return undefined;
    attrs.push(k);
  }
  attrs.sort();
  const inputs = node.inputs.map((v) => (v ? idOf(v) : 0)).join(',');
  return `${node.domain}|${node.opType}|${node.overload}|${node.outputs.length}|${inputs}|${attrs.join(';')}`;
}

function eliminate(g: Graph): number {
  let merged = 0;
  const seen = new Map<string, Node>();
  const doomed: Node[] = [];
  for (const node of g.nodes) {
    for (const sub of node.subgraphs()) merged += eliminate(sub);
    const key = nodeKey(node);
    if (key === undefined) continue;
    const first = seen.get(key);
    if (!first) {
      seen.set(key, node);
      continue;
    }
    node.outputs.forEach((out, i) => {
      const keep = first.outputs[i];
      if (!out) return;
      if (!keep) return;
      if (!keep.type && out.type) keep.type = out.type;
      g.replaceAllUses(out, keep);
    });
    // A duplicate whose optional output the first node omits still has users: keep it.
    if (node.outputs.some((v) => v && v.uses.length > 0)) continue;
    doomed.push(node);
    merged++;
  }
  g.removeNodes(doomed);
  return merged;
}

export const commonSubexpressionElimination: Pass = {
  name: 'cse',
  description: 'merge nodes that compute the same op on the same inputs with the same attributes',
  run(model: Model): PassResult {
    let merged = eliminate(model.graph);
    for (const fn of model.functions) merged += eliminate(fn.body);
    return { changed: merged > 0, details: { merged } };
  },
};

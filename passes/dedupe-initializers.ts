/**
 * Initializer de-duplication.
 *
 * Initializers with the same dtype, dims and bytes are one constant: users of the later ones are
 * pointed at the first and the copies removed. Candidates are grouped by (dtype, dims) first, so
 * only tensors that could be equal are hashed (SHA-1, streamed chunk by chunk, so external data is
 * never held whole). Initializers that are graph inputs (overridable) or graph outputs are left alone.
 */
import { createHash } from 'node:crypto';
import type { Graph, Value } from '../src/ir/graph.js';
import type { Model } from '../src/ir/model.js';
import type { Tensor } from '../src/ir/tensor.js';
import type { Pass, PassResult } from './pass.js';

function digest(t: Tensor): string {
  const h = createHash('sha1');
  if (t.source.kind === 'strings') for (const s of t.strings()) h.update(`${s.byteLength}:`).update(s);
  else for (const c of t.chunks(undefined, true)) h.update(c);
  return h.digest('hex');
}

function dedupe(g: Graph, stats: { removed: number; bytesSaved: number }): void {
  for (const node of g.nodes) for (const sub of node.subgraphs()) dedupe(sub, stats);
  const groups = new Map<string, Value[]>();
  for (const v of g.initializers) {
    if (v.isGraphInput || v.isGraphOutput) continue;
    const t = v.initializer!;
    // Deferred tensors (e.g. merged LoRA weights) are fresh results; hashing would compute them
    // an extra time for a match that does not happen in practice.
    if (t.source.kind === 'deferred') continue;
    const k = `${t.dtype}|${t.dims.join(',')}`;
    const list = groups.get(k);
    if (list) list.push(v);
    else groups.set(k, [v]);
  }
  for (const list of groups.values()) {
    if (list.length < 2) continue;
    const byDigest = new Map<string, Value>();
    for (const v of list) {
      const d = digest(v.initializer!);
      const first = byDigest.get(d);
      if (!first) {
        byDigest.set(d, v);
        continue;
      }
      g.replaceAllUses(v, first);
      stats.bytesSaved += v.initializer!.byteLength;
      g.deleteValue(v);
      stats.removed++;
    }
  }
}

export const dedupeInitializers: Pass = {
  name: 'dedupe-initializers',
  description: 'merge initializers with identical dtype, shape and bytes',
  run(model: Model): PassResult {
    const stats = { removed: 0, bytesSaved: 0 };
    dedupe(model.graph, stats);
    return { changed: stats.removed > 0, details: stats };
  },
};

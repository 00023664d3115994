/**
 * Initializer de-duplication.
 *
 * Initializers with the same dtype, dims and bytes are one constant: users of the later ones are
 * pointed at the first and the copies removed. Candidates are grouped by (dtype, dims) first, then,
 * for large tensors, by a probe of a few small slices spread over the data: a transformer has
 * dozens of same-shaped weights that are all different, and hashing each of them whole would read
 * the entire model once more (seconds per GiB) for matches that almost never exist. Only tensors
 * whose probes agree are hashed (SHA-1, streamed chunk by chunk, so external data is never held
 * whole); equality is always decided by the full hash. Initializers that are graph inputs
 * (overridable) or graph outputs are left alone.
 */
import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';
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

/** Tensors at least this large are probed before they are hashed whole. */
const PROBE_MIN_BYTES = 1 << 20;
const PROBE_SLICES = 8;
const PROBE_SLICE_BYTES = 4096;

/**
 * SHA-1 of PROBE_SLICES slices at evenly spaced offsets (first and last included). Equal tensors
 * have equal probes; different ones almost always differ. External data is read slice by slice.
 */
function probe(t: Tensor): string {
  const n = t.byteLength;
  const h = createHash('sha1');
  const starts = Array.from({ length: PROBE_SLICES }, (_, i) => Math.floor(((n - PROBE_SLICE_BYTES) * i) / (PROBE_SLICES - 1)));
  const s = t.source;
  if (s.kind === 'external') {
    const buf = Buffer.allocUnsafe(PROBE_SLICE_BYTES);
    const fd = openSync(s.ref.path, 'r');
    try {
      for (const at of starts) {
        const got = readSync(fd, buf, 0, PROBE_SLICE_BYTES, s.ref.offset + at);
        h.update(buf.subarray(0, got)); // a short file is reported when the tensor is read whole
      }
    } finally {
      closeSync(fd);
    }
  } else {
    const all = t.bytes();
    for (const at of starts) h.update(all.subarray(at, at + PROBE_SLICE_BYTES));
  }
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
  const candidates: Value[][] = [];
  for (const list of groups.values()) {
    if (list.length < 2) continue;
    if (list[0]!.initializer!.byteLength < PROBE_MIN_BYTES || list[0]!.initializer!.source.kind === 'strings') {
      candidates.push(list);
      continue;
    }
    const byProbe = new Map<string, Value[]>();
    for (const v of list) {
      const p = probe(v.initializer!);
      const same = byProbe.get(p);
      if (same) same.push(v);
      else byProbe.set(p, [v]);
    }
    for (const same of byProbe.values()) if (same.length > 1) candidates.push(same);
  }
  for (const list of candidates) {
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

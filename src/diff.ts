/**
 * `peftc diff A B`: what changed between two models — op histogram, node count, initializers
 * (added, removed, changed in type, shape or data), the input/output signature, opsets and total
 * weight bytes. Meant for "what did this compile do to my model" and for comparing two exports.
 *
 * Weights are compared by hashing their bytes chunk by chunk (Tensor.chunks), so external data
 * is streamed and two huge tensors are never held whole at the same time.
 */
import { createHash } from 'node:crypto';
import { DataType, dtypeName } from './ir/dtype.js';
import type { Graph, Value } from './ir/graph.js';
import type { Model } from './ir/model.js';
import { STREAM_CHUNK_BYTES, type Tensor } from './ir/tensor.js';
import { shapeOf } from './ir/types.js';
import { formatBytes } from './inspect.js';
import { loadModel } from './onnx/io.js';
import { wrapError } from './errors.js';

/** An op type ("MatMul", or "domain::Op" outside the default domain) whose count differs. */
export interface OpCountChange {
  op: string;
  a: number;
  b: number;
}

export interface InitializerInfo {
  name: string;
  dtype: string;
  shape: number[];
  bytes: number;
}

export interface InitializerChange {
  name: string;
  a: InitializerInfo;
  b: InitializerInfo;
  /** What differs; 'data' only when type and shape agree and the bytes hash differently. */
  differs: Array<'dtype' | 'shape' | 'data'>;
}

export interface IoInfo {
  name: string;
  dtype: string;
  /** Numbers, symbolic dim names, null for unknown dims; null for unknown rank. */
  shape: Array<number | string | null> | null;
}

export interface IoDiff {
  added: IoInfo[];
  removed: IoInfo[];
  changed: Array<{ name: string; a: IoInfo; b: IoInfo }>;
  /** Same names in both but in another order (positional feeds would break). */
  reordered: boolean;
}

export interface OpsetChange {
  /** 'ai.onnx' for the default domain. */
  domain: string;
  /** null when the model does not import the domain. */
  a: number | null;
  b: number | null;
}

export interface ModelDiff {
  a: string;
  b: string;
  /**
   * True when none of the fields below reports a difference. Node wiring and attributes are not
   * compared: two graphs with the same op counts and weights but other edges count as identical.
   */
  identical: boolean;
  irVersion: { a: number; b: number };
  /** Top-level graph nodes (subgraph bodies are not counted, as in `peftc inspect`). */
  nodeCount: { a: number; b: number };
  ops: OpCountChange[];
  opsets: OpsetChange[];
  inputs: IoDiff;
  outputs: IoDiff;
  initializers: {
    count: { a: number; b: number };
    bytes: { a: number; b: number };
    added: InitializerInfo[];
    removed: InitializerInfo[];
    changed: InitializerChange[];
    unchanged: number;
  };
}

/** Loads both models (external data stays on disk until hashed) and compares them. */
export function diffModelFiles(a: string, b: string): ModelDiff {
  const ma = load(a);
  const mb = load(b);
  return diffModels(ma, mb, a, b);
}

function load(path: string): Model {
  try {
    return loadModel(path);
  } catch (err) {
    throw wrapError(path, err);
  }
}

export function diffModels(ma: Model, mb: Model, a = 'A', b = 'B'): ModelDiff {
  const ops = diffOps(ma.graph, mb.graph);
  const opsets = diffOpsets(ma, mb);
  const inputs = diffIo(realInputs(ma.graph), realInputs(mb.graph));
  const outputs = diffIo(ma.graph.outputs, mb.graph.outputs);
  const initializers = diffInitializers(ma.graph, mb.graph, a, b);
  const irVersion = { a: ma.irVersion, b: mb.irVersion };
  const nodeCount = { a: ma.graph.nodes.length, b: mb.graph.nodes.length };
  const identical =
    irVersion.a === irVersion.b &&
    nodeCount.a === nodeCount.b &&
    ops.length === 0 &&
    opsets.length === 0 &&
    ioSame(inputs) &&
    ioSame(outputs) &&
    initializers.added.length + initializers.removed.length + initializers.changed.length === 0;
  return { a, b, identical, irVersion, nodeCount, ops, opsets, inputs, outputs, initializers };
}

// --- ops and opsets ---------------------------------------------------------------------------

function opHistogram(g: Graph): Map<string, number> {
  const hist = new Map<string, number>();
  for (const n of g.nodes) hist.set(n.qualifiedOp, (hist.get(n.qualifiedOp) ?? 0) + 1);
  return hist;
}

function diffOps(ga: Graph, gb: Graph): OpCountChange[] {
  const ha = opHistogram(ga);
  const hb = opHistogram(gb);
  const out: OpCountChange[] = [];
  for (const op of new Set([...ha.keys(), ...hb.keys()])) {
    const a = ha.get(op) ?? 0;
    const b = hb.get(op) ?? 0;
    if (a !== b) out.push({ op, a, b });
  }
  // Biggest changes first: that is what a reader looks for.
  return out.sort((x, y) => Math.abs(y.b - y.a) - Math.abs(x.b - x.a) || x.op.localeCompare(y.op));
}

function opsetMap(m: Model): Map<string, number> {
  const out = new Map<string, number>();
  for (const o of m.opsetImports) out.set(o.domain === '' ? 'ai.onnx' : o.domain, o.version);
  return out;
}

function diffOpsets(ma: Model, mb: Model): OpsetChange[] {
  const oa = opsetMap(ma);
  const ob = opsetMap(mb);
  const out: OpsetChange[] = [];
  for (const domain of [...new Set([...oa.keys(), ...ob.keys()])].sort()) {
    const a = oa.get(domain) ?? null;
    const b = ob.get(domain) ?? null;
    if (a !== b) out.push({ domain, a, b });
  }
  return out;
}

// --- signature --------------------------------------------------------------------------------

/** Graph inputs that are not initializers (IR < 4 models list weights as inputs too). */
function realInputs(g: Graph): Value[] {
  return g.inputs.filter((v) => !v.initializer);
}

function ioInfo(v: Value): IoInfo {
  const t = v.type;
  return {
    name: v.name,
    dtype: t?.kind === 'tensor' || t?.kind === 'sparse_tensor' ? dtypeName(t.elemType) : (t?.kind ?? 'unknown'),
    shape: shapeOf(t) ?? null,
  };
}

function sameIo(x: IoInfo, y: IoInfo): boolean {
  return x.dtype === y.dtype && JSON.stringify(x.shape) === JSON.stringify(y.shape);
}

function diffIo(va: readonly Value[], vb: readonly Value[]): IoDiff {
  const a = va.map(ioInfo);
  const b = vb.map(ioInfo);
  const byName = new Map(b.map((x) => [x.name, x]));
  const namesA = new Set(a.map((x) => x.name));
  const changed: IoDiff['changed'] = [];
  for (const x of a) {
    const y = byName.get(x.name);
    if (y && !sameIo(x, y)) changed.push({ name: x.name, a: x, b: y });
  }
  const common = (list: IoInfo[], other: Set<string>) => list.map((x) => x.name).filter((n) => other.has(n));
  const orderA = common(a, new Set(byName.keys()));
  const orderB = common(b, namesA);
  return {
    added: b.filter((y) => !namesA.has(y.name)),
    removed: a.filter((x) => !byName.has(x.name)),
    changed,
    reordered: orderA.join('\0') !== orderB.join('\0'),
  };
}

function ioSame(d: IoDiff): boolean {
  return d.added.length === 0 && d.removed.length === 0 && d.changed.length === 0 && !d.reordered;
}

// --- initializers -----------------------------------------------------------------------------

function initInfo(t: Tensor, name: string): InitializerInfo {
  return { name, dtype: dtypeName(t.dtype), shape: [...t.dims], bytes: t.byteLength };
}

/**
 * SHA-256 of the tensor's data, streamed in chunks (one reused buffer for external data), so
 * memory stays at one chunk however large the tensor. Strings are hashed with length prefixes so
 * ["ab", "c"] and ["a", "bc"] differ.
 */
function dataDigest(t: Tensor): string {
  const h = createHash('sha256');
  if (t.dtype === DataType.STRING) {
    for (const s of t.strings()) {
      h.update(String(s.byteLength));
      h.update(':');
      h.update(s);
    }
  } else {
    for (const chunk of t.chunks(STREAM_CHUNK_BYTES, true)) h.update(chunk);
  }
  return h.digest('hex');
}

function digestOf(t: Tensor, model: string): string {
  try {
    return dataDigest(t);
  } catch (err) {
    throw wrapError(`${model}: initializer '${t.name}'`, err);
  }
}

function initializerMap(g: Graph): Map<string, Tensor> {
  const m = new Map<string, Tensor>();
  for (const v of g.initializers) m.set(v.name, v.initializer!);
  return m;
}

function totalBytes(m: Map<string, Tensor>): number {
  let n = 0;
  for (const t of m.values()) n += t.byteLength;
  return n;
}

function compareInitializer(name: string, ta: Tensor, tb: Tensor, a: string, b: string): InitializerChange | null {
  const differs: InitializerChange['differs'] = [];
  if (ta.dtype !== tb.dtype) differs.push('dtype');
  if (ta.dims.join(',') !== tb.dims.join(',')) differs.push('shape');
  // Hash only when type and shape agree: otherwise the data differs by construction.
  if (differs.length === 0 && digestOf(ta, a) !== digestOf(tb, b)) differs.push('data');
  return differs.length ? { name, a: initInfo(ta, name), b: initInfo(tb, name), differs } : null;
}

function diffInitializers(ga: Graph, gb: Graph, a: string, b: string): ModelDiff['initializers'] {
  const ia = initializerMap(ga);
  const ib = initializerMap(gb);
  const added: InitializerInfo[] = [];
  const removed: InitializerInfo[] = [];
  const changed: InitializerChange[] = [];
  let unchanged = 0;
  for (const [name, ta] of ia) {
    const tb = ib.get(name);
    if (!tb) {
      removed.push(initInfo(ta, name));
      continue;
    }
    const c = compareInitializer(name, ta, tb, a, b);
    if (c) changed.push(c);
    else unchanged++;
  }
  for (const [name, tb] of ib) if (!ia.has(name)) added.push(initInfo(tb, name));
  return {
    count: { a: ia.size, b: ib.size },
    bytes: { a: totalBytes(ia), b: totalBytes(ib) },
    added,
    removed,
    changed,
    unchanged,
  };
}

// --- text rendering ---------------------------------------------------------------------------

/** Lines per list in the text form; --json has them all. */
const MAX_LISTED = 40;

function signed(n: number): string {
  return n > 0 ? `+${n}` : String(n);
}

function pct(a: number, b: number): string {
  if (a === 0) return b === 0 ? '' : ' (new)';
  const r = ((b - a) / a) * 100;
  return ` (${r > 0 ? '+' : ''}${r.toFixed(1)}%)`;
}

function shapeText(shape: ReadonlyArray<number | string | null> | null): string {
  return shape === null ? '[?]' : `[${shape.map((d) => d ?? '?').join(', ')}]`;
}

function ioText(x: IoInfo): string {
  return `${x.dtype}${shapeText(x.shape)}`;
}

function initText(x: InitializerInfo): string {
  return `${x.dtype}${shapeText(x.shape)} ${formatBytes(x.bytes)}`;
}

function capped(lines: string[], what: string): string[] {
  if (lines.length <= MAX_LISTED) return lines;
  return [...lines.slice(0, MAX_LISTED), `    ... and ${lines.length - MAX_LISTED} more ${what} (--json lists all)`];
}

function renderOps(d: ModelDiff): string[] {
  if (d.ops.length === 0) return [];
  const width = Math.max(...d.ops.map((o) => o.op.length));
  return ['  ops (A -> B):', ...d.ops.map((o) => `    ${o.op.padEnd(width)}  ${String(o.a).padStart(5)} -> ${String(o.b).padEnd(5)} ${signed(o.b - o.a)}`)];
}

function renderOpsets(d: ModelDiff): string[] {
  return d.opsets.map((o) =>
    o.a === null ? `  opset ${o.domain}: added (${o.b})` : o.b === null ? `  opset ${o.domain}: removed (was ${o.a})` : `  opset ${o.domain}: ${o.a} -> ${o.b}`,
  );
}

function renderIo(what: 'input' | 'output', io: IoDiff): string[] {
  const lines = [
    ...io.removed.map((x) => `  ${what} removed: ${x.name}: ${ioText(x)}`),
    ...io.added.map((x) => `  ${what} added:   ${x.name}: ${ioText(x)}`),
    ...io.changed.map((c) => `  ${what} changed: ${c.name}: ${ioText(c.a)} -> ${ioText(c.b)}`),
  ];
  if (io.reordered) lines.push(`  ${what}s reordered`);
  return lines;
}

function renderInitializers(d: ModelDiff): string[] {
  const i = d.initializers;
  const head = `  initializers: ${i.count.a} -> ${i.count.b}, ${formatBytes(i.bytes.a)} -> ${formatBytes(i.bytes.b)}${pct(i.bytes.a, i.bytes.b)}; ${i.removed.length} removed, ${i.added.length} added, ${i.changed.length} changed, ${i.unchanged} unchanged`;
  const changed = i.changed.map((c) =>
    c.differs.includes('data') ? `    ~ ${c.name}  ${initText(c.a)}: data differs` : `    ~ ${c.name}  ${initText(c.a)} -> ${initText(c.b)} (${c.differs.join(', ')})`,
  );
  return [
    head,
    ...capped(i.removed.map((x) => `    - ${x.name}  ${initText(x)}`), 'removed'),
    ...capped(i.added.map((x) => `    + ${x.name}  ${initText(x)}`), 'added'),
    ...capped(changed, 'changed'),
  ];
}

export function renderModelDiff(d: ModelDiff): string {
  const lines = [`A: ${d.a}`, `B: ${d.b}`];
  if (d.identical) return [...lines, '  no differences in op counts, opsets, inputs/outputs or initializers (node wiring and attributes are not compared)'].join('\n');
  if (d.irVersion.a !== d.irVersion.b) lines.push(`  ir version: ${d.irVersion.a} -> ${d.irVersion.b}`);
  lines.push(`  nodes: ${d.nodeCount.a} -> ${d.nodeCount.b} (${signed(d.nodeCount.b - d.nodeCount.a)})`);
  lines.push(...renderOps(d), ...renderOpsets(d), ...renderIo('input', d.inputs), ...renderIo('output', d.outputs), ...renderInitializers(d));
  return lines.join('\n');
}

/**
 * `peftc inspect`: a summary of a model (the JSON contract of issue #2) and its human rendering.
 */
import { DataType, dtypeInfo, dtypeName } from './ir/dtype.js';
import type { Graph } from './ir/graph.js';
import type { Model } from './ir/model.js';
import { shapeOf } from './ir/types.js';

export interface ModelSummary {
  irVersion: number;
  producer: string;
  opsets: Record<string, number>;
  nodeCount: number;
  /** Nodes in subgraphs (If/Loop/Scan bodies) and local functions, not counted in nodeCount. */
  nestedNodeCount: number;
  opHistogram: Record<string, number>;
  /** Elements of floating-point initializers. */
  params: number;
  initializerCount: number;
  initializerBytes: number;
  inputs: Array<{ name: string; dtype: string; shape: Array<number | string | null> | null }>;
  outputs: Array<{ name: string; dtype: string; shape: Array<number | string | null> | null }>;
  externalData: boolean;
  externalBytes: number;
  functions: string[];
}

function io(values: Graph['inputs']) {
  return values.map((v) => ({
    name: v.name,
    dtype: v.type?.kind === 'tensor' ? dtypeName(v.type.elemType) : (v.type?.kind ?? 'unknown'),
    shape: shapeOf(v.type) ?? null,
  }));
}

export function summarizeModel(model: Model): ModelSummary {
  const g = model.graph;
  const hist: Record<string, number> = {};
  for (const n of g.nodes) hist[n.qualifiedOp] = (hist[n.qualifiedOp] ?? 0) + 1;
  let nested = 0;
  for (const sub of g.subgraphs()) nested += sub.nodes.length;
  for (const f of model.functions) nested += f.body.nodes.length;
  let params = 0;
  let bytes = 0;
  let extBytes = 0;
  let external = false;
  for (const v of g.initializers) {
    const t = v.initializer!;
    if (t.dtype !== DataType.STRING && dtypeInfo(t.dtype).isFloat) params += t.elementCount;
    bytes += t.byteLength;
    if (t.isExternal) {
      external = true;
      extBytes += t.byteLength;
    }
  }
  // Only real graph inputs (not initializers listed as inputs, as IR < 4 models do).
  const inputs = g.inputs.filter((v) => !v.initializer);
  const opsets: Record<string, number> = {};
  for (const o of model.opsetImports) opsets[o.domain === '' ? 'ai.onnx' : o.domain] = o.version;
  return {
    irVersion: model.irVersion,
    producer: [model.producerName, model.producerVersion].filter(Boolean).join(' '),
    opsets,
    nodeCount: g.nodes.length,
    nestedNodeCount: nested,
    opHistogram: Object.fromEntries(Object.entries(hist).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))),
    params,
    initializerCount: g.initializers.length,
    initializerBytes: bytes,
    inputs: io(inputs),
    outputs: io(g.outputs),
    externalData: external,
    externalBytes: extBytes,
    functions: model.functions.map((f) => f.key),
  };
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(n < 10 ? 2 : 1)} ${units[i]}`;
}

export function formatCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}K`;
  return String(n);
}

export function renderSummary(file: string, s: ModelSummary): string {
  const shape = (x: ModelSummary['inputs'][number]) => `${x.name}: ${x.dtype}[${(x.shape ?? ['?']).map((d) => d ?? '?').join(', ')}]`;
  const ops = Object.entries(s.opHistogram);
  const top = ops.slice(0, 12).map(([op, n]) => `${op} ${n}`).join(', ') + (ops.length > 12 ? `, ... (${ops.length} op types)` : '');
  const lines = [
    `${file}`,
    `  ir v${s.irVersion}, opsets ${Object.entries(s.opsets).map(([d, v]) => `${d} ${v}`).join(', ')}${s.producer ? `, produced by ${s.producer}` : ''}`,
    `  ${s.nodeCount} nodes${s.nestedNodeCount ? ` (+${s.nestedNodeCount} in subgraphs/functions)` : ''}: ${top || 'none'}`,
    `  ${formatCount(s.params)} parameters in ${s.initializerCount} initializers, ${formatBytes(s.initializerBytes)}` +
      (s.externalData ? ` (${formatBytes(s.externalBytes)} in external data)` : ''),
    `  inputs:  ${s.inputs.map(shape).join('; ') || 'none'}`,
    `  outputs: ${s.outputs.map(shape).join('; ') || 'none'}`,
  ];
  if (s.functions.length) lines.push(`  functions: ${s.functions.join(', ')}`);
  return lines.join('\n');
}

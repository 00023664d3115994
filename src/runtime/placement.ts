/**
 * Which execution provider onnxruntime gave each node, read from onnxruntime's own placement
 * report: with the session log at VERBOSE, session creation prints
 *
 *     Node placements
 *      Node(s) placed on [CUDAExecutionProvider]. Number of nodes: 23
 *       MatMul (/q/MatMul)
 *      Node(s) placed on [CPUExecutionProvider]. Number of nodes: 2
 *       Shape (/Shape)
 *
 * (or "All nodes placed on [X]. Number of nodes: N"). That log goes to the process's stderr from
 * C++, where JavaScript cannot intercept it, so the session is opened in a child process
 * (placement-child.ts) and its stderr parsed here. The node list is after onnxruntime's own graph
 * optimizations: fused nodes carry onnxruntime's names, and the Memcpy nodes it inserts at
 * provider boundaries are counted too.
 */
import { spawn } from 'node:child_process';
import { builtScript } from '../built-script.js';
import { PeftcError } from '../errors.js';
import type { Graph, Node, Value } from '../ir/graph.js';
import type { ExecutionProvider } from './ort.js';

export interface ProviderNodes {
  /** Node count onnxruntime reports for the provider. */
  count: number;
  /** "OpType (node name)" for each node listed (onnxruntime lists none under "All nodes"). */
  nodes: string[];
}

export interface Placement {
  /** onnxruntime provider name (CUDAExecutionProvider, CPUExecutionProvider) -> its nodes. */
  providers: Record<string, ProviderNodes>;
  /** Nodes onnxruntime placed on the CPU provider when another was asked for, without its Memcpy nodes. */
  onCpu: string[];
}

const HEADER = /(Node\(s\)|All nodes) placed on \[(\w+)\]\.\s*Number of nodes:\s*(\d+)/;
const NODE_LINE = /VerifyEachNodeIsAssignedToAnEp\]\s+(\S+) \((.*)\)\s*$/;

/** Parses onnxruntime's VERBOSE session log (exported for tests). */
export function parsePlacement(log: string): Placement {
  const providers: Record<string, ProviderNodes> = {};
  let current: ProviderNodes | undefined;
  for (const line of log.split('\n')) {
    const h = HEADER.exec(line);
    if (h) {
      current = providers[h[2]!] = { count: Number(h[3]), nodes: [] };
      if (h[1] === 'All nodes') current = undefined;
      continue;
    }
    const n = NODE_LINE.exec(line);
    if (n && current) current.nodes.push(`${n[1]} (${n[2]})`);
    else if (!/VerifyEachNodeIsAssignedToAnEp/.test(line)) current = undefined;
  }
  const cpu = providers.CPUExecutionProvider;
  const onlyCpu = Object.keys(providers).length === 1 && cpu;
  const onCpu = !cpu || onlyCpu ? [] : cpu.nodes.filter((n) => !/^Memcpy(To|From)Host /.test(n));
  return { providers, onCpu };
}

/** Opens `model` on `ep` in a child process with onnxruntime's VERBOSE log and parses the placement. */
export async function nodePlacement(model: string, ep: ExecutionProvider): Promise<Placement> {
  const script = builtScript('src/runtime/placement-child.js');
  const child = spawn(process.execPath, [script, model, ep], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  let out = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  const code: number = await new Promise((res) => child.on('close', (c) => res(c ?? 1)));
  if (code !== 0) {
    const why = (out.trim().split('\n').pop() ?? '') || err.trim().split('\n').slice(-3).join('\n');
    throw new PeftcError(`${model}: could not open it on the ${ep} provider to read its node placement: ${why}`);
  }
  const placement = parsePlacement(`${out}\n${err}`);
  if (!Object.keys(placement.providers).length) throw new PeftcError(`${model}: onnxruntime printed no node placement (its VERBOSE log had no "placed on" line)`);
  return placement;
}

/**
 * The names of the nodes that compute shapes: fed only by Shape/Size outputs, constants and other
 * such nodes. onnxruntime keeps these on the CPU on purpose (they feed Reshape/Expand arguments
 * that must be read on the host), so a GPU provider leaving them there is expected, not a finding.
 */
export function shapeSubgraph(graph: Graph): Set<string> {
  const shapeValues = new Set<Value>();
  const names = new Set<string>();
  const derived = (n: Node) => {
    if (n.opType === 'Shape' || n.opType === 'Size') return true;
    const ins = n.inputs.filter((v) => v !== null);
    // a node with no inputs (Constant) is a constant, not shape math of its own
    return ins.length > 0 && ins.every((v) => v!.initializer !== undefined || shapeValues.has(v) || v!.producer?.opType === 'Constant');
  };
  for (const n of graph.nodes) {
    if (!derived(n)) continue;
    names.add(n.name);
    for (const o of n.outputs) if (o) shapeValues.add(o);
  }
  return names;
}

/**
 * The CPU-placed nodes in three groups: shape computations of the artifact, nodes onnxruntime's
 * own graph optimizations made (their names are not in the artifact, e.g. 'Gather_token_3'), and
 * the rest: the artifact's compute nodes the GPU provider did not take, which are the findings.
 */
export function cpuFindings(placement: Placement, graph: Graph): CpuFindings {
  const shape = shapeSubgraph(graph);
  const known = new Set(graph.nodes.map((n) => n.name));
  const nameOf = (entry: string) => /\((.*)\)$/.exec(entry)?.[1] ?? '';
  const out: CpuFindings = { shape: [], runtimeMade: [], compute: [] };
  for (const e of placement.onCpu) {
    const name = nameOf(e);
    (shape.has(name) ? out.shape : known.has(name) ? out.compute : out.runtimeMade).push(e);
  }
  return out;
}

export interface CpuFindings {
  shape: string[];
  runtimeMade: string[];
  compute: string[];
}

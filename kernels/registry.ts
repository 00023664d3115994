/**
 * The reference-kernel registry: TypeScript kernels on typed arrays, keyed by domain, op type and
 * the opset-version range they implement. Constant folding and the reference evaluator look
 * kernels up here.
 *
 * A kernel either computes the exact ONNX result or throws KernelUnsupported (a dtype or
 * attribute combination it declares it does not handle); it never returns a guess. Callers such
 * as constant folding treat KernelUnsupported as "leave this node alone".
 */
import { PeftcError } from '../src/errors.js';
import type { Node } from '../src/ir/graph.js';
import type { Tensor } from '../src/ir/tensor.js';

export interface KernelContext {
  /** The opset version of the node's domain in the model. */
  readonly opsetVersion: number;
}

/**
 * Computes a node's outputs from its input tensors (null for omitted optional inputs). Returns one
 * tensor per node output (null where the output is omitted); names are set by the caller.
 */
export type Kernel = (inputs: ReadonlyArray<Tensor | null>, node: Node, ctx: KernelContext) => Array<Tensor | null>;

export interface KernelEntry {
  readonly domain: string;
  readonly opType: string;
  /** First opset version this kernel implements (inclusive). */
  readonly since: number;
  /** First opset version it no longer implements (exclusive); undefined = up to the latest. */
  readonly until?: number;
  readonly kernel: Kernel;
}

/** A kernel refuses an input it does not support (dtype, attribute value); never a wrong answer. */
export class KernelUnsupported extends PeftcError {
  constructor(opType: string, what: string) {
    super(`${opType}: ${what} is not supported by the reference kernel`);
  }
}

const registry = new Map<string, KernelEntry[]>();
const key = (domain: string, opType: string) => `${domain === 'ai.onnx' ? '' : domain}::${opType}`;

export function registerKernel(entry: KernelEntry): void {
  const k = key(entry.domain, entry.opType);
  const list = registry.get(k) ?? [];
  for (const e of list) {
    const overlaps = entry.since < (e.until ?? Infinity) && e.since < (entry.until ?? Infinity);
    if (overlaps) throw new Error(`kernel ${k} registered twice for overlapping opset ranges`);
  }
  list.push(entry);
  registry.set(k, list);
}

/** Registers one kernel for the default domain from `since` (optionally `until`). */
export function kernel(opType: string, since: number, fn: Kernel, until?: number): void {
  registerKernel({ domain: '', opType, since, until, kernel: fn });
}

export function findKernel(domain: string, opType: string, opsetVersion: number): KernelEntry | undefined {
  return registry.get(key(domain, opType))?.find((e) => opsetVersion >= e.since && opsetVersion < (e.until ?? Infinity));
}

export function registeredOps(): Array<{ domain: string; opType: string }> {
  return [...registry.values()].map((l) => ({ domain: l[0]!.domain, opType: l[0]!.opType }));
}

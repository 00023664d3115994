/**
 * One merged weight as a job: the base weight (where to read it, or a private copy of its bytes),
 * the adapters' A/B as float32 and the DoRA magnitude. Plain data (typed arrays, numbers,
 * strings), so the same job runs in this thread when the writer reaches the tensor or on a worker
 * thread ahead of it (src/workers/precompute.ts), with the same bytes as the result.
 */
import { DataType } from '../ir/dtype.js';
import { Tensor, type DeferredJob, type ExternalRef } from '../ir/tensor.js';
import { addDeltas, applyDoraMagnitude, fromFloat32, toFloat32, type Delta, type WeightLayout } from './merge-math.js';

export interface MergeJob {
  name: string;
  dtype: DataType;
  dims: number[];
  layout: WeightLayout;
  inF: number;
  outF: number;
  /** The base weight: an external-data range (read by whoever runs the job), or bytes the job owns. */
  base: { kind: 'external'; ref: ExternalRef } | { kind: 'owned'; bytes: Uint8Array };
  deltas: Delta[];
  magnitude?: Float32Array;
}

export interface MergeInputs {
  base: Tensor;
  layout: WeightLayout;
  inF: number;
  outF: number;
  /** Each adapter's A, B (as tensors), rank and factor (adapter weight x scale). */
  deltas: ReadonlyArray<{ a: Tensor; b: Tensor; rank: number; factor: number }>;
  magnitude?: Tensor;
}

/** Reads what the job needs besides the base weight (small: the adapters' factors). */
export function mergeJob(m: MergeInputs): MergeJob {
  const w = m.base;
  const s = w.source;
  return {
    name: w.name,
    dtype: w.dtype,
    dims: [...w.dims],
    layout: m.layout,
    inF: m.inF,
    outF: m.outF,
    // External data is read by the job into a fresh buffer; anything else is copied (with the
    // typed-array constructor: Buffer's slice would be a view into the model's buffer), as the
    // merge writes into the buffer and the source may be shared (a view of the model file).
    base: s.kind === 'external' ? { kind: 'external', ref: s.ref } : { kind: 'owned', bytes: new Uint8Array(w.bytes()) },
    deltas: m.deltas.map((d) => ({ a: toFloat32(d.a), b: toFloat32(d.b), rank: d.rank, factor: d.factor })),
    ...(m.magnitude ? { magnitude: toFloat32(m.magnitude) } : {}),
  };
}

/** The buffers a job owns (all of them: toFloat32 and the base copy allocate their own). */
function transferList(job: MergeJob): ArrayBuffer[] {
  const list = job.deltas.flatMap((d) => [d.a.buffer as ArrayBuffer, d.b.buffer as ArrayBuffer]);
  if (job.magnitude) list.push(job.magnitude.buffer as ArrayBuffer);
  if (job.base.kind === 'owned') list.push(job.base.bytes.buffer as ArrayBuffer);
  return list;
}

/** The job in the form a worker runs it (runMergeJob of this module). */
export function mergeDeferredJob(m: MergeInputs): DeferredJob {
  const job = mergeJob(m);
  return { module: import.meta.url, fn: 'runMergeJob', input: job, transfer: transferList(job) };
}

/** The base weight as float32 that the merge may overwrite, without copying float32 data it owns. */
function baseFloat32(job: MergeJob): Float32Array {
  const t =
    job.base.kind === 'external'
      ? new Tensor(job.name, job.dtype, job.dims, { kind: 'external', ref: job.base.ref })
      : Tensor.fromBytes(job.name, job.dtype, job.dims, job.base.bytes);
  if (job.dtype !== DataType.FLOAT) return toFloat32(t);
  const bytes = t.bytes(); // fresh from the file, or the job's own copy
  if (bytes.byteOffset % 4 === 0) return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  const aligned = new Float32Array(bytes.byteLength / 4);
  new Uint8Array(aligned.buffer).set(bytes);
  return aligned;
}

/** W' = W + sum of the deltas (then DoRA's per-feature rescaling), as the weight's raw bytes. */
export function runMergeJob(job: MergeJob): Uint8Array {
  const w = baseFloat32(job);
  addDeltas(w, job.layout, job.inF, job.outF, job.deltas);
  if (job.magnitude) applyDoraMagnitude(w, job.layout, job.inF, job.outF, job.magnitude);
  return fromFloat32(job.name, job.dtype, job.dims, w).bytes();
}

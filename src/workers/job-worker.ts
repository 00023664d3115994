/**
 * Worker-thread entry for deferred-tensor jobs (started by precompute.ts through pool.ts): imports
 * each job's module, runs its function on the job's input and posts the bytes back with their
 * buffer transferred, then bumps the shared counter and wakes the main thread, which waits on it
 * synchronously. Jobs run one at a time, in the order they were posted.
 */
import { workerData, type MessagePort } from 'node:worker_threads';
import type { DeferredJob } from '../ir/tensor.js';

export interface JobMessage {
  id: number;
  job: DeferredJob;
}

export interface JobResult {
  id: number;
  bytes?: Uint8Array;
  /** Why the job failed; the main thread then computes the tensor itself (and reports that error). */
  error?: string;
}

const { signal, port } = workerData as { signal: SharedArrayBuffer; port: MessagePort };
const counter = new Int32Array(signal);

/** The bytes in a buffer of their own, so transferring it moves nothing else. */
function owned(bytes: Uint8Array): Uint8Array {
  const whole = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && bytes.buffer instanceof ArrayBuffer;
  return whole ? bytes : new Uint8Array(bytes); // a copy (Buffer's slice would be a view)
}

async function run({ id, job }: JobMessage): Promise<void> {
  let result: JobResult;
  try {
    const mod = (await import(job.module)) as Record<string, (input: unknown) => Uint8Array>;
    const fn = mod[job.fn];
    if (typeof fn !== 'function') throw new Error(`${job.module} has no export '${job.fn}'`);
    result = { id, bytes: owned(fn(job.input)) };
  } catch (err) {
    result = { id, error: (err as Error).message ?? String(err) };
  }
  try {
    port.postMessage(result, result.bytes ? [result.bytes.buffer as ArrayBuffer] : []);
  } catch (err) {
    // The result could not be sent (e.g. not cloneable): send the reason instead, so the main
    // thread computes the tensor itself rather than waiting for this one.
    port.postMessage({ id, error: `cannot return the result: ${(err as Error).message}` });
  }
  Atomics.add(counter, 0, 1);
  Atomics.notify(counter, 0);
}

let queue = Promise.resolve();
port.on('message', (msg: JobMessage) => {
  queue = queue.then(() => run(msg));
});

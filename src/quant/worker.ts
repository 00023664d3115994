/**
 * Worker-thread entry for quantization (started by pool.ts): runs each task it receives on its
 * port, posts the result back with its buffers transferred, then bumps the shared counter and
 * wakes the main thread, which waits on it synchronously.
 *
 * Memory: every task allocates its codes and packed layouts as fresh ArrayBuffers (megabytes per
 * part). V8 collects those only once an isolate's external memory has grown by about 64 MiB since
 * its last collection, so with one isolate per core dead buffers alone reached a gigabyte on 16
 * threads. After a task that leaves more external memory than the task's `collectAboveBytes` (the
 * pass gives each thread a share of one budget, so few threads rarely collect and many collect
 * often), the worker asks for a full collection, a few milliseconds on its small heap.
 */
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { workerData, type MessagePort } from 'node:worker_threads';
import { resultTransferList, runQuantTask, type QuantTask } from './task.js';

const { signal, port } = workerData as { signal: SharedArrayBuffer; port: MessagePort };
const counter = new Int32Array(signal);

/** External (ArrayBuffer) memory of this isolate above which a task is followed by a collection, unless the task says. */
const EXTERNAL_LIMIT = 64 << 20;
// A handle on V8's collector for this isolate (the flag is read when a context is created).
setFlagsFromString('--expose-gc');
const collect = runInNewContext('gc') as (() => void) | undefined;

port.on('message', (task: QuantTask) => {
  const result = runQuantTask(task);
  try {
    port.postMessage(result, resultTransferList(result));
  } catch (err) {
    port.postMessage({ id: task.id, name: task.name, error: `cannot return the result: ${(err as Error).message}`, ms: result.ms });
  }
  if (collect && getHeapStatistics().external_memory > (task.collectAboveBytes ?? EXTERNAL_LIMIT)) collect();
  Atomics.add(counter, 0, 1);
  Atomics.notify(counter, 0);
});

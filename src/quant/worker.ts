/**
 * Worker-thread entry for quantization (started by pool.ts): runs each task it receives on its
 * port, posts the result back with its buffers transferred, then bumps the shared counter and
 * wakes the main thread, which waits on it synchronously.
 */
import { workerData, type MessagePort } from 'node:worker_threads';
import { resultTransferList, runQuantTask, type QuantTask } from './task.js';

const { signal, port } = workerData as { signal: SharedArrayBuffer; port: MessagePort };
const counter = new Int32Array(signal);

port.on('message', (task: QuantTask) => {
  const result = runQuantTask(task);
  try {
    port.postMessage(result, resultTransferList(result));
  } catch (err) {
    port.postMessage({ id: task.id, name: task.name, error: `cannot return the result: ${(err as Error).message}`, ms: result.ms });
  }
  Atomics.add(counter, 0, 1);
  Atomics.notify(counter, 0);
});

/**
 * Runs quantization tasks on worker threads (src/workers/pool.ts), synchronously (passes are
 * synchronous). At most one task per worker is in flight, and tasks are pulled from the iterable
 * only when a worker is free, so memory holds `workers` source tensors at a time (plus the
 * quantized results). The worker entry is worker.ts/worker.js beside this file.
 */
import { availableParallelism } from 'node:os';
import { siblingModule, WorkerPool } from '../workers/pool.js';
import { runQuantTask, type QuantTask, type QuantTaskResult } from './task.js';

/**
 * Default quantization threads: one per core the process may use, without the pool's general cap
 * of 16. Quantization is compute-bound and its main thread only waits and rewrites the graph, so
 * every core adds throughput. Memory does not grow with the thread count: the weight-quant pass
 * cuts parts so that the parts in flight share one budget (160 MiB by default, about 10 bytes per
 * weight in flight), caps the threads it starts by itself at 16 (each thread holds about 15 MiB of
 * its own, and up to its share of 256 MiB of buffers awaiting collection), and writes quantized weights bound for external data to a temporary file as they
 * come (src/quant/spill.ts) instead of holding them until the model is written.
 */
export function defaultWorkerCount(): number {
  return Math.max(1, availableParallelism());
}

export interface RunTasksOptions {
  /** Worker threads; 0 runs every task in this thread. */
  workers: number;
}

export interface RunTasksReport {
  /** Worker threads used (0: in this thread). */
  workers: number;
  tasks: number;
}

/**
 * Runs every task; `onResult` sees each result (in completion order) before the next task is
 * started on that worker, so a caller can store and drop results as they come.
 */
export function runQuantTasks(tasks: Iterable<QuantTask>, options: RunTasksOptions, onResult: (r: QuantTaskResult) => void): RunTasksReport {
  if (options.workers <= 0) {
    let n = 0;
    for (const t of tasks) {
      onResult(runQuantTask(t));
      n++;
    }
    return { workers: 0, tasks: n };
  }
  const pool = new WorkerPool<QuantTask, QuantTaskResult>(options.workers, siblingModule(import.meta.url, 'worker'), 'quantization');
  try {
    const it = tasks[Symbol.iterator]();
    let started = 0;
    for (;;) {
      while (pool.pending < pool.size) {
        const next = it.next();
        if (next.done) break;
        const task = next.value;
        pool.post(task, task.source.kind === 'bytes' ? [task.source.bytes.buffer as ArrayBuffer] : []);
        started++;
      }
      if (pool.pending === 0) return { workers: options.workers, tasks: started };
      for (const r of pool.collect()) onResult(r);
    }
  } finally {
    pool.close();
  }
}

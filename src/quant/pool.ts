/**
 * Runs quantization tasks on worker threads, synchronously (passes are synchronous): the main
 * thread hands each idle worker the next task, then sleeps in Atomics.wait on a shared counter
 * that workers bump when they post a result, and collects results with receiveMessageOnPort. At
 * most one task per worker is in flight, and tasks are pulled from the iterable only when a worker
 * is free, so memory holds `workers` source tensors at a time (plus the quantized results).
 *
 * Running from compiled JavaScript the worker is worker.js beside this file. Running from
 * TypeScript sources (vitest), the worker starts with a module hook that transpiles .ts files with
 * the project's `typescript` package (a dev dependency), so tests exercise the same threads.
 */
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import { runQuantTask, type QuantTask, type QuantTaskResult } from './task.js';

export interface RunTasksOptions {
  /** Worker threads; 0 runs every task in this thread. */
  workers: number;
}

export interface RunTasksReport {
  /** Worker threads used (0: in this thread). */
  workers: number;
  tasks: number;
}

/** Default thread count: one per core the process may use, at most 16. */
export function defaultWorkerCount(): number {
  return Math.max(1, Math.min(16, availableParallelism()));
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
  const pool = new WorkerPool(options.workers);
  try {
    return { workers: options.workers, tasks: pool.run(tasks, onResult) };
  } finally {
    pool.close();
  }
}

interface Slot {
  worker: Worker;
  port: MessagePort;
  busy: boolean;
}

/** Module hooks used when the worker is TypeScript: .js specifiers fall back to .ts, .ts is transpiled. */
const TS_HOOKS = `
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
let ts;
export function initialize(data) { ts = createRequire(data.packageJson)('typescript'); }
export async function resolve(specifier, context, next) {
  try {
    return await next(specifier, context);
  } catch (err) {
    if (specifier.endsWith('.js') && context.parentURL && context.parentURL.endsWith('.ts')) return next(specifier.slice(0, -3) + '.ts', context);
    throw err;
  }
}
export async function load(url, context, next) {
  if (!url.endsWith('.ts')) return next(url, context);
  const fileName = fileURLToPath(url);
  const out = ts.transpileModule(readFileSync(fileName, 'utf8'), {
    fileName,
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: true },
  });
  return { format: 'module', source: out.outputText, shortCircuit: true };
}`;

/**
 * Worker bootstrap (CommonJS, evaluated): registers the TypeScript hooks when given, imports the
 * entry, and on failure counts itself in the shared failure slot and wakes the main thread, which
 * would otherwise wait for a result that never comes.
 */
const BOOT = `
const { workerData } = require('node:worker_threads');
const fail = (err) => {
  console.error('peftc: quantization worker failed to start:', err);
  const c = new Int32Array(workerData.signal);
  Atomics.add(c, 1, 1);
  Atomics.notify(c, 0);
};
try {
  if (workerData.hooks) {
    require('node:module').register('data:text/javascript,' + encodeURIComponent(workerData.hooks), { data: { packageJson: workerData.packageJson } });
  }
  import(workerData.entry).catch(fail);
} catch (err) {
  fail(err);
}`;

class WorkerPool {
  private readonly slots: Slot[] = [];
  private readonly counter: Int32Array;

  constructor(size: number) {
    // [0]: results posted so far; [1]: workers that failed to start.
    const signal = new SharedArrayBuffer(8);
    this.counter = new Int32Array(signal);
    const here = fileURLToPath(import.meta.url);
    const fromTs = here.endsWith('.ts');
    const entry = pathToFileURL(join(dirname(here), fromTs ? 'worker.ts' : 'worker.js')).href;
    // From sources, typescript resolves from the project root, two levels up (src/quant/pool.ts).
    const ts = fromTs ? { hooks: TS_HOOKS, packageJson: join(dirname(here), '..', '..', 'package.json') } : {};
    for (let i = 0; i < size; i++) {
      const { port1, port2 } = new MessageChannel();
      const worker = new Worker(BOOT, { eval: true, workerData: { signal, port: port2, entry, ...ts }, transferList: [port2] });
      worker.unref();
      this.slots.push({ worker, port: port1, busy: false });
    }
  }

  run(tasks: Iterable<QuantTask>, onResult: (r: QuantTaskResult) => void): number {
    const it = tasks[Symbol.iterator]();
    let exhausted = false;
    let inFlight = 0;
    let started = 0;
    let seen = Atomics.load(this.counter, 0);
    for (;;) {
      for (const slot of this.slots) {
        if (slot.busy || exhausted) continue;
        const next = it.next();
        if (next.done) {
          exhausted = true;
          break;
        }
        const task = next.value;
        const transfer = task.source.kind === 'bytes' ? [task.source.bytes.buffer as ArrayBuffer] : [];
        slot.port.postMessage(task, transfer);
        slot.busy = true;
        inFlight++;
        started++;
      }
      if (inFlight === 0) return started;
      // Sleep until some worker posts a result (a minute at a time, so a stuck worker shows up as
      // a slow run rather than a silent hang of the whole wait).
      Atomics.wait(this.counter, 0, seen, 60_000);
      seen = Atomics.load(this.counter, 0);
      if (Atomics.load(this.counter, 1) > 0) throw new Error('a quantization worker thread failed to start (its error is on stderr)');
      for (const slot of this.slots) {
        if (!slot.busy) continue;
        const msg = receiveMessageOnPort(slot.port);
        if (!msg) continue;
        slot.busy = false;
        inFlight--;
        onResult(msg.message as QuantTaskResult);
      }
    }
  }

  close(): void {
    for (const s of this.slots) {
      s.port.close();
      s.worker.terminate().catch(() => {});
    }
  }
}

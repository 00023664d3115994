/**
 * A fixed set of worker threads driven synchronously (passes and the model writer are
 * synchronous): the main thread posts tasks to workers' ports, then sleeps in Atomics.wait on a
 * shared counter that workers bump after posting a result, and collects results with
 * receiveMessageOnPort. Used by quantization (src/quant/pool.ts) and by the writer's precomputing
 * of deferred tensors (src/onnx/precompute.ts).
 *
 * A worker entry module reads `{ signal, port }` from workerData, answers every message on `port`
 * with one message, then does Atomics.add(counter, 0, 1) and Atomics.notify(counter, 0) on
 * `new Int32Array(signal)`.
 *
 * Running from compiled JavaScript the entry is a .js file. Running from TypeScript sources
 * (vitest), the worker starts with a module hook that transpiles .ts files with the project's
 * `typescript` package (a dev dependency), so tests exercise the same threads.
 */
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort, type TransferListItem } from 'node:worker_threads';

/** Default thread count: one per core the process may use, at most 16. */
export function defaultWorkerCount(): number {
  return Math.max(1, Math.min(16, availableParallelism()));
}

/**
 * The URL of the module `name` (without extension) beside the module at `callerUrl`: `name.ts`
 * when the caller itself runs from TypeScript sources, `name.js` otherwise.
 */
export function siblingModule(callerUrl: string, name: string): string {
  const here = fileURLToPath(callerUrl);
  return pathToFileURL(join(dirname(here), `${name}${here.endsWith('.ts') ? '.ts' : '.js'}`)).href;
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
 * entry, and on failure — to start, or later, an exception nothing caught — counts itself in the
 * shared failure slot and wakes the main thread, which waits synchronously (it cannot see the
 * worker's 'error' event) and would otherwise wait for a result that never comes.
 */
const BOOT = `
const { workerData } = require('node:worker_threads');
const fail = (err, when) => {
  console.error('peftc: ' + workerData.what + ' worker failed' + when + ':', err);
  const c = new Int32Array(workerData.signal);
  Atomics.add(c, 1, 1);
  Atomics.notify(c, 0);
};
process.on('uncaughtException', (err) => fail(err, ''));
process.on('unhandledRejection', (err) => fail(err, ''));
try {
  if (workerData.hooks) {
    require('node:module').register('data:text/javascript,' + encodeURIComponent(workerData.hooks), { data: { packageJson: workerData.packageJson } });
  }
  import(workerData.entry).catch((err) => fail(err, ' to start'));
} catch (err) {
  fail(err, ' to start');
}`;

interface Slot {
  worker: Worker;
  port: MessagePort;
  /** Tasks posted to this worker whose result has not been collected. */
  inFlight: number;
}

export class WorkerPool<Task, Result> {
  private readonly slots: Slot[] = [];
  private readonly counter: Int32Array;
  private seen = 0;
  private pendingCount = 0;

  /**
   * Starts `size` workers running the module at `entry` (a file URL). `what` names the work in
   * messages ("quantization").
   */
  constructor(
    size: number,
    entry: string,
    private readonly what: string,
  ) {
    // [0]: results posted so far; [1]: workers that failed (to start, or with an uncaught error).
    const signal = new SharedArrayBuffer(8);
    this.counter = new Int32Array(signal);
    const fromTs = entry.endsWith('.ts');
    // From sources, typescript resolves from the project root, two levels up (src/workers/pool.ts).
    const here = fileURLToPath(import.meta.url);
    const ts = fromTs ? { hooks: TS_HOOKS, packageJson: join(dirname(here), '..', '..', 'package.json') } : {};
    for (let i = 0; i < size; i++) {
      const { port1, port2 } = new MessageChannel();
      const worker = new Worker(BOOT, { eval: true, workerData: { signal, port: port2, entry, what, ...ts }, transferList: [port2] });
      worker.unref();
      this.slots.push({ worker, port: port1, inFlight: 0 });
    }
  }

  get size(): number {
    return this.slots.length;
  }

  /** Tasks posted whose results have not been collected yet. */
  get pending(): number {
    return this.pendingCount;
  }

  /**
   * Posts `task` to the worker with the fewest tasks in flight (the first such); `transfer` lists
   * buffers that move to the worker instead of being copied. A worker runs its tasks in order.
   */
  post(task: Task, transfer: readonly TransferListItem[] = []): void {
    let best = this.slots[0]!;
    for (const s of this.slots) if (s.inFlight < best.inFlight) best = s;
    best.port.postMessage(task, transfer as TransferListItem[]);
    best.inFlight++;
    this.pendingCount++;
  }

  /**
   * Blocks until at least one posted task's result has arrived and returns every result that has
   * (in arrival order per worker). Returns [] when nothing is pending.
   */
  collect(): Result[] {
    const out: Result[] = [];
    while (this.pendingCount > 0) {
      for (const slot of this.slots) {
        while (slot.inFlight > 0) {
          const msg = receiveMessageOnPort(slot.port);
          if (!msg) break;
          slot.inFlight--;
          this.pendingCount--;
          out.push(msg.message as Result);
        }
      }
      if (out.length) return out;
      // Sleep until some worker posts a result (a minute at a time, so a stuck worker shows up as
      // a slow run rather than a silent hang of the whole wait).
      Atomics.wait(this.counter, 0, this.seen, 60_000);
      this.seen = Atomics.load(this.counter, 0);
      if (Atomics.load(this.counter, 1) > 0) throw new Error(`a ${this.what} worker thread failed (its error is on stderr)`);
    }
    return out;
  }

  close(): void {
    for (const s of this.slots) {
      s.port.close();
      s.worker.terminate().catch(() => {});
    }
  }
}

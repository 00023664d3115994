/**
 * Computes deferred tensors (e.g. merged LoRA weights) on worker threads ahead of the model
 * writer, so the arithmetic of the next tensors overlaps with writing the current one and uses
 * the other cores. The writer asks for tensors in the order it writes them (`take`); jobs are
 * posted in that order, at most `budget` bytes of results ahead of the writer, so memory holds a
 * few tensors, not the model. Workers run the same function the in-thread path runs, so the bytes
 * are the same whichever thread computed them.
 */
import type { DeferredJob, Tensor } from '../ir/tensor.js';
import type { JobMessage, JobResult } from './job-worker.js';
import { defaultWorkerCount, siblingModule, WorkerPool } from './pool.js';

export interface PrecomputeOptions {
  /** Worker threads; 0 turns precomputing off. Default: one per core when the jobs total at least AUTO_MIN_BYTES. */
  workers?: number;
}

/** Below this many bytes of deferred jobs, starting threads costs more than it saves. */
export const AUTO_MIN_BYTES = 64 << 20;

export class Precompute {
  private readonly pool: WorkerPool<JobMessage, JobResult>;
  private readonly results = new Map<number, JobResult>();
  /** Next job to post / to hand to the writer. */
  private next = 0;
  private cursor = 0;
  /** Bytes of jobs posted and not yet taken by the writer. */
  private aheadBytes = 0;
  private readonly budget: number;

  /**
   * Starts workers for the deferred tensors of `order` (the writer's order) that carry a job, or
   * returns undefined when there is nothing worth precomputing or workers are turned off.
   */
  static start(order: readonly Tensor[], options: PrecomputeOptions = {}): Precompute | undefined {
    const jobs = order.filter((t) => t.source.kind === 'deferred' && t.source.job !== undefined);
    if (jobs.length === 0) return undefined;
    const total = jobs.reduce((n, t) => n + t.byteLength, 0);
    const workers = Math.min(jobs.length, options.workers ?? (total >= AUTO_MIN_BYTES ? defaultWorkerCount() : 0));
    return workers > 0 ? new Precompute(jobs, workers) : undefined;
  }

  private constructor(
    private readonly jobs: readonly Tensor[],
    workers: number,
  ) {
    this.pool = new WorkerPool(workers, siblingModule(import.meta.url, 'job-worker'), 'deferred-tensor');
    // One result per worker in progress plus one finished ahead: the writer never waits on a
    // worker that had no work queued, and memory holds workers + 2 of the largest tensors.
    this.budget = (workers + 1) * Math.max(...jobs.map((t) => t.byteLength));
    this.post();
  }

  /** Tensors handed to the writer from a worker's result. */
  taken = 0;

  get workers(): number {
    return this.pool.size;
  }

  /**
   * The bytes of `t` if it is a job of this precompute (waiting for its worker if need be), or
   * undefined: the caller then reads `t` itself (tensors without a job, or a job that failed on
   * its worker, whose error the in-thread computation then reports).
   */
  take(t: Tensor): Uint8Array | undefined {
    const i = this.jobs.indexOf(t, this.cursor);
    if (i < 0) return undefined;
    // Jobs the writer skipped (none when it writes in the announced order) release their budget.
    for (let k = this.cursor; k < i; k++) this.release(k);
    this.cursor = i;
    this.post();
    while (!this.results.has(i)) for (const r of this.pool.collect()) if (r.id >= i) this.results.set(r.id, r);
    const r = this.results.get(i)!;
    this.release(i);
    this.cursor = i + 1;
    this.post(); // before the writer starts on these bytes, so workers keep going meanwhile
    if (!r.bytes || r.bytes.byteLength !== t.byteLength) return undefined;
    this.taken++;
    return r.bytes;
  }

  close(): void {
    this.pool.close();
  }

  private release(i: number): void {
    this.results.delete(i);
    if (i < this.next) this.aheadBytes -= this.jobs[i]!.byteLength;
  }

  /** Posts jobs in order while they fit the budget (always the one the writer needs next). */
  private post(): void {
    if (this.next < this.cursor) this.next = this.cursor;
    while (this.next < this.jobs.length) {
      const t = this.jobs[this.next]!;
      if (this.next > this.cursor && this.aheadBytes + t.byteLength > this.budget) break;
      const job: DeferredJob = (t.source as { job: () => DeferredJob }).job();
      this.pool.post({ id: this.next, job }, job.transfer);
      this.aheadBytes += t.byteLength;
      this.next++;
    }
  }
}

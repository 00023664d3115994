import { pathToFileURL } from 'node:url';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { WorkerPool } from '../src/workers/pool.js';

const ENTRY = pathToFileURL(join(import.meta.dirname, 'fixtures', 'dying-worker.mjs')).href;

describe('worker pool', () => {
  it('returns results, and a worker that dies mid-task makes collect() throw instead of waiting forever', () => {
    const pool = new WorkerPool<string, string>(1, ENTRY, 'test');
    try {
      pool.post('ok');
      expect(pool.collect()).toEqual(['done']);
      pool.post('die');
      const t = Date.now();
      expect(() => pool.collect()).toThrow(/test worker thread failed/);
      expect(Date.now() - t).toBeLessThan(30_000); // well before the 60 s re-check
    } finally {
      pool.close();
    }
  });
});

/**
 * Benchmark plumbing: run a task in a fresh child process (so its peak RSS is its own), time it,
 * print tables, write JSON results.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeFileAtomic } from '../src/atomic-write.js';

const here = dirname(fileURLToPath(import.meta.url));

export interface TaskResult {
  ms: number;
  /** CPU time (user + system) of the same stretch, ms: less sensitive than `ms` to other load. */
  cpuMs?: number;
  /** Peak resident set size of the child process, MiB. */
  peakRssMiB: number;
  /** Task-specific figures (bytes processed, counts...). */
  info: Record<string, number | string | boolean>;
}

/** Runs `bench/tasks.js <name> <args>` in a new Node process and returns what it reports. */
export function runTask(name: string, args: Record<string, unknown>): TaskResult {
  const out = execFileSync(process.execPath, ['--max-old-space-size=8192', join(here, 'tasks.js'), name, JSON.stringify(args)], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 64 << 20,
  });
  const line = out.trim().split('\n').at(-1)!;
  return JSON.parse(line) as TaskResult;
}

/** Median of a task run `repeat` times (each in its own process), peak RSS the max seen. */
export function runTaskMedian(name: string, args: Record<string, unknown>, repeat: number): TaskResult {
  const runs = Array.from({ length: repeat }, () => runTask(name, args));
  runs.sort((a, b) => a.ms - b.ms);
  const mid = runs[Math.floor(runs.length / 2)]!;
  return { ...mid, peakRssMiB: Math.max(...runs.map((r) => r.peakRssMiB)) };
}

export function printTable(title: string, header: string[], rows: Array<Array<string | number>>): void {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  console.log(`\n${title}`);
  console.log(line(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of cells.slice(1)) console.log(line(r));
}

export function writeResults(suite: string, data: unknown): string {
  const dir = join(here, '..', '..', 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${suite}.json`);
  writeFileAtomic(file, `${JSON.stringify(data, null, 2)}\n`);
  return file;
}

export const MiB = 1 << 20;
export const fmt = (n: number, digits = 1) => n.toFixed(digits);

/** Median, fastest and slowest of repeated runs (each in its own process); peak RSS the max seen. */
export interface Summary extends TaskResult {
  runsMs: number[];
  minMs: number;
  maxMs: number;
}

export function summarize(runs: TaskResult[]): Summary;
export function summarize<T extends { ms: number; peakRssMiB: number; cpuMs?: number }>(runs: T[]): T & { runsMs: number[]; minMs: number; maxMs: number };
export function summarize<T extends { ms: number; peakRssMiB: number; cpuMs?: number }>(runs: T[]): T & { runsMs: number[]; minMs: number; maxMs: number } {
  const sorted = [...runs].sort((a, b) => a.ms - b.ms);
  const mid = sorted[Math.floor(sorted.length / 2)]!;
  const cpu = runs.map((r) => r.cpuMs ?? NaN).sort((a, b) => a - b);
  return {
    ...mid,
    cpuMs: cpu[Math.floor(cpu.length / 2)],
    peakRssMiB: Math.max(...runs.map((r) => r.peakRssMiB)),
    runsMs: runs.map((r) => r.ms),
    minMs: sorted[0]!.ms,
    maxMs: sorted.at(-1)!.ms,
  };
}

/** Flushes every dirty page to disk (`sync`), so one run's writeback does not slow the next. */
export function syncDisks(): void {
  execFileSync('sync');
}

/**
 * Bytes of `file` in the page cache (util-linux `fincore`), or undefined where that tool is
 * missing. Used to state, not assume, whether a measurement ran on a warm cache.
 */
export function residentBytes(file: string): number | undefined {
  try {
    return Number(execFileSync('fincore', ['--bytes', '--noheadings', '--output', 'RES', file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
  } catch {
    return undefined;
  }
}

/** Reads `file` once (untimed) so that the next measurement starts on a warm page cache. */
export function warmUp(file: string, chunk = 16 << 20): void {
  const fd = openSync(file, 'r');
  const buf = Buffer.allocUnsafe(chunk);
  try {
    for (let at = 0; ; ) {
      const n = readSync(fd, buf, 0, chunk, at);
      if (n === 0) break;
      at += n;
    }
  } finally {
    closeSync(fd);
  }
}

/** 1-minute load average: other work on the machine skews timings; reported with them. */
export const load1 = (): number => loadavg()[0]!;


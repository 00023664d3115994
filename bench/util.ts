/**
 * Benchmark plumbing: run a task in a fresh child process (so its peak RSS is its own), time it,
 * print tables, write JSON results.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeFileAtomic } from '../src/atomic-write.js';

const here = dirname(fileURLToPath(import.meta.url));

export interface TaskResult {
  ms: number;
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

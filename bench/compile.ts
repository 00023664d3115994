/**
 * Compile benchmark (issue #3): for each model-zoo model, the cleanup pipeline's effect on
 * onnxruntime session creation (load + optimize) time, node count and compile time. Baseline:
 * the original model's session creation, measured in the same run (median of `repeat`).
 */
import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { compileModel } from '../src/compile.js';
import { OrtSession } from '../src/runtime/ort.js';
import { fmt, printTable } from './util.js';

async function sessionMs(path: string, repeat: number): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < repeat; i++) {
    const t0 = performance.now();
    const s = await OrtSession.create(path);
    times.push(performance.now() - t0);
    await s.release();
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}

export async function benchCompile(opts: { dir: string; repeat: number }): Promise<unknown> {
  const zoo = join(process.cwd(), 'models', 'zoo');
  const out = join(opts.dir, 'compile');
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  const rows: Array<Array<string | number>> = [];
  const results: unknown[] = [];
  for (const name of readdirSync(zoo).sort()) {
    const model = join(zoo, name, 'model.onnx');
    if (!existsSync(model)) continue;
    const target = join(out, `${name}.onnx`);
    const r = compileModel(model, { target: 'cpu', quant: 'none', output: target });
    const before = await sessionMs(model, opts.repeat);
    const after = await sessionMs(target, opts.repeat);
    rows.push([name, r.before.nodeCount, r.after.nodeCount, fmt(r.ms.total, 0), fmt(before, 1), fmt(after, 1), fmt(before / after, 2)]);
    results.push({ name, nodesBefore: r.before.nodeCount, nodesAfter: r.after.nodeCount, compileMs: r.ms.total, sessionMsBefore: before, sessionMsAfter: after });
  }
  printTable(
    `compile: cleanup pipeline on the model zoo; onnxruntime session creation (graph optimization 'all'), median of ${opts.repeat}`,
    ['model', 'nodes before', 'nodes after', 'compile ms', 'session ms (original)', 'session ms (peftc)', 'speedup'],
    rows,
  );
  rmSync(out, { recursive: true, force: true });
  return results;
}

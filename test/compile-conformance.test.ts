/**
 * The cleanup pipeline on real exported models: every libonnx-testdata pytorch-converted and
 * pytorch-operator model (and the model zoo in models/zoo when present) is optimized with the
 * invariant checker on; on onnxruntime its outputs must equal the original's within 1e-5
 * relative (atol 1e-6) on the shipped test inputs, and the node counts are reported.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadModel } from '../src/onnx/io.js';
import { encodeModel } from '../src/onnx/encode.js';
import { compareTensors } from '../src/runtime/compare.js';
import { OrtSession } from '../src/runtime/ort.js';
import { listCases, nonTensorIo, readDataSet, type TestCase } from '../src/runtime/testdata.js';
import { countNodes, runPipeline } from '../passes/pass.js';
import { cleanupPipeline } from '../passes/pipelines.js';

const TOL = { rtol: 1e-5, atol: 1e-6 };

async function checkCase(c: TestCase, report: string[], failures: string[], cannot: string[]): Promise<void> {
  const original = loadModel(c.model!);
  if (nonTensorIo(original)) return;
  let before: OrtSession;
  try {
    before = await OrtSession.create(encodeModel(original), { label: c.name });
  } catch (err) {
    cannot.push(`${c.name}: ${(err as Error).message.slice(0, 120)}`);
    return;
  }
  const optimized = loadModel(c.model!);
  const nodesBefore = countNodes(optimized);
  runPipeline(optimized, cleanupPipeline(), { fixpoint: true, check: true });
  const after = await OrtSession.create(optimized, { label: `${c.name} (optimized)` });
  try {
    for (const ds of c.dataSets) {
      const { inputs } = readDataSet(ds, original);
      const e = await before.run(inputs);
      const a = await after.run(inputs);
      for (const [name, t] of Object.entries(e)) {
        const cmp = compareTensors(t, a[name]!, TOL);
        if (!cmp.ok) failures.push(`${c.suite}/${c.name} '${name}': ${cmp.reason}`);
      }
    }
    report.push(`${c.suite}/${c.name}: ${nodesBefore} -> ${countNodes(optimized)}`);
  } finally {
    await before.release();
    await after.release();
  }
}

function zooCases(): TestCase[] {
  const dir = join(process.cwd(), 'models', 'zoo');
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true })
    .filter((d) => d.isDirectory() && existsSync(join(dir, d.name, 'model.onnx')))
    .map((d) => ({
      suite: 'simple' as const,
      name: `zoo/${d.name}`,
      dir: join(dir, d.name),
      model: join(dir, d.name, 'model.onnx'),
      dataSets: readdirSync(join(dir, d.name)).filter((n) => n.startsWith('test_data_set_')).map((n) => join(dir, d.name, n)),
    }));
}

describe('cleanup pipeline keeps outputs of exported models', () => {
  it('pytorch-converted, pytorch-operator and the model zoo: same outputs on onnxruntime, fewer or equal nodes', async () => {
    const cases = [...listCases('pytorch-converted'), ...listCases('pytorch-operator'), ...zooCases()].filter((c) => c.model);
    const report: string[] = [];
    const failures: string[] = [];
    const cannot: string[] = [];
    for (const c of cases) {
      try {
        await checkCase(c, report, failures, cannot);
      } catch (err) {
        failures.push(`${c.suite}/${c.name}: ${(err as Error).message}`);
      }
    }
    const shrunk = report.filter((r) => {
      const [, a, b] = r.match(/(\d+) -> (\d+)$/)!;
      return Number(b) < Number(a);
    });
    console.log(`cleanup pipeline: ${report.length} models checked on onnxruntime (${cannot.length} not runnable there); ${shrunk.length} got smaller:\n  ${shrunk.join('\n  ')}`);
    if (cannot.length) console.log(`not runnable on onnxruntime-node:\n  ${cannot.join('\n  ')}`);
    expect(failures).toEqual([]);
    // Observed: 83 of the 117 pytorch-* models run on onnxruntime 1.30 (the rest use opset-1/6 forms it dropped).
    expect(report.length).toBeGreaterThanOrEqual(75);
  });
});

/**
 * The graph-regression gate (issue 9): the records in golden/ hold on this build; a pass that
 * perturbs one weight, or one that adds a node, is caught by name (model, variant, figure); the
 * CLI gives exit 1 with a readable diff; record and update work on a user's own folder.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Pass } from '../passes/pass.js';
import { checkGolden, recordGolden, renderGoldenResult, updateGolden } from '../src/golden/golden.js';
import { DataType } from '../src/ir/dtype.js';
import { Tensor } from '../src/ir/tensor.js';

const ROOT = resolve(import.meta.dirname, '..');
const GOLDEN = join(ROOT, 'golden');
const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js');

/** A planted change: the first element of the first MatMul weight moves by +10. */
const perturbOneWeight: Pass = {
  name: 'test-perturb-one-weight',
  description: 'adds 10 to one element of the first MatMul weight',
  run(model) {
    const v = model.graph.nodes.find((n) => n.opType === 'MatMul' && n.inputs[1]?.initializer?.dtype === DataType.FLOAT)!.inputs[1]!;
    const t = v.initializer!;
    const data = Float32Array.from(t.toTypedArray<Float32Array>());
    data[0]! += 10;
    v.initializer = Tensor.fromTypedArray(t.name, t.dtype, t.dims, data);
    return { changed: true };
  },
};

/** A planted change: an Identity node on the first graph input, its output unused. */
const addOneNode: Pass = {
  name: 'test-add-one-node',
  description: 'adds an Identity node nobody reads',
  run(model) {
    const g = model.graph;
    const input = g.inputs.find((x) => !x.initializer)!;
    g.addNode('Identity', [input], [g.uniqueName('planted')], { name: 'planted_identity' });
    return { changed: true };
  },
};

describe('golden check over models/', () => {
  it('every recorded variant of every shipped model holds its record', async () => {
    const r = await checkGolden({ dir: GOLDEN });
    const text = renderGoldenResult(r, 'check');
    if (!r.ok) console.error(text);
    expect(r.variants.length).toBeGreaterThanOrEqual(40);
    // Every model that ships in models/ is covered: the zoo, models/lm and the PEFT fixtures.
    const models = new Set(r.variants.map((v) => v.model));
    for (const m of ['zoo-bert-static', 'zoo-vit-static', 'zoo-cnn-bn', 'zoo-llama-dynamo', 'lm', 'peft-llama-dora', 'peft-gpt2-lora', 'peft-llama-two-adapters']) expect(models.has(m)).toBe(true);
    expect(r.variants.filter((v) => !v.ok).map((v) => `${v.model}/${v.variant}: ${v.failures.join('; ')}`)).toEqual([]);
    // Unchanged compiles are byte-identical, so nothing may even move within tolerance.
    expect(r.variants.filter((v) => v.changes.length).map((v) => `${v.model}/${v.variant}`)).toEqual([]);
  });

  it('fails on a pass that perturbs one weight, naming the model, the variant and the figures', async () => {
    const r = await checkGolden({ dir: GOLDEN, only: ['zoo-bert-static'], compileHook: (o) => ({ ...o, extraPasses: [perturbOneWeight] }) });
    expect(r.ok).toBe(false);
    const none = r.variants.find((v) => v.variant === 'cpu-none')!;
    expect(none.ok).toBe(false);
    expect(none.failures.some((f) => f.startsWith('artifact bytes changed: sha256'))).toBe(true);
    // A float artifact must match to 1e-4 relative: +10 on one weight breaks that too (+1 gives 6.5e-5 on BERT: only the bytes catch it).
    expect(none.failures.some((f) => f.startsWith('fidelity outside tolerance: relative error'))).toBe(true);
    // Node count and histogram did not change, and the diff does not claim they did.
    expect(none.failures.some((f) => f.startsWith('node count') || f.startsWith('op histogram'))).toBe(false);
    const text = renderGoldenResult(r, 'check');
    expect(text).toMatch(/FAIL\s+zoo-bert-static\/cpu-none/);
    // Every variant of the model (cpu and cuda) carries the perturbed weight.
    expect(r.variants.length).toBeGreaterThanOrEqual(2);
    expect(text).toContain(`golden check: ${r.variants.length} variant(s), ${r.variants.length} failed`);
  });

  it('fails on a pass that adds a node: node count and op histogram', async () => {
    const r = await checkGolden({ dir: GOLDEN, only: ['zoo-cnn-static/cpu-none'], compileHook: (o) => ({ ...o, extraPasses: [addOneNode] }) });
    expect(r.variants).toHaveLength(1);
    const v = r.variants[0]!;
    expect(v.ok).toBe(false);
    expect(v.failures).toContain(`node count ${v.record.artifact.nodes} -> ${v.record.artifact.nodes + 1}`);
    expect(v.failures).toContain('op histogram: Identity 0 -> 1');
    // The outputs are untouched, so fidelity is not among the failures.
    expect(v.failures.some((f) => f.startsWith('fidelity'))).toBe(false);
  });
});

describe('golden gate on a user folder, through the CLI', () => {
  let work: string;
  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), 'peftc-golden-test-'));
    cpSync(join(ROOT, 'models', 'zoo', 'cnn-static'), join(work, 'models', 'cnn'), { recursive: true });
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  const peftc = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { cwd: work, encoding: 'utf8' });

  it('record, check (exit 0), a tampered record (exit 1 with the diff), update, check again', () => {
    for (const q of ['none', 'int4']) {
      const r = peftc('golden', 'record', 'models/cnn/model.onnx', '--target', 'cpu', '--quant', q, '--dir', 'ci-golden');
      expect(r.status, r.stderr).toBe(0);
    }
    const ref = JSON.parse(readFileSync(join(work, 'ci-golden', 'cnn', 'reference.json'), 'utf8'));
    expect(ref.reference).toBe('models/cnn/model.onnx');
    expect(ref.inputSource).toBe('models/cnn/test_data_set_0');
    let check = peftc('golden', 'check', '--dir', 'ci-golden', '--json');
    expect(check.status, check.stderr).toBe(0);
    const json = JSON.parse(check.stdout);
    expect(json.ok).toBe(true);
    expect(json.variants.map((v: { variant: string }) => v.variant).sort()).toEqual(['cpu-int4', 'cpu-none']);

    // Tamper with a record as a regression would look: another node count and histogram.
    const file = join(work, 'ci-golden', 'cnn', 'cpu-int4.json');
    const rec = JSON.parse(readFileSync(file, 'utf8'));
    rec.artifact.nodes -= 1;
    rec.artifact.opHistogram.Gemm = 1;
    writeFileSync(file, JSON.stringify(rec));
    check = peftc('golden', 'check', '--dir', 'ci-golden');
    expect(check.status).toBe(1);
    expect(check.stdout).toMatch(/FAIL\s+cnn\/cpu-int4/);
    expect(check.stdout).toContain(`node count ${rec.artifact.nodes} -> ${rec.artifact.nodes + 1}`);
    expect(check.stdout).toMatch(/op histogram: .*Gemm 1 -> 0/);
    expect(check.stdout).toMatch(/^ok\s+cnn\/cpu-none/m);

    const update = peftc('golden', 'update', '--dir', 'ci-golden');
    expect(update.status, update.stdout + update.stderr).toBe(0);
    expect(update.stdout).toMatch(/updated\s+cnn\/cpu-int4/);
    expect(update.stdout).toContain('golden update: 2 variant(s), 1 rewritten, 0 not updated');
    check = peftc('golden', 'check', '--dir', 'ci-golden');
    expect(check.status, check.stdout).toBe(0);
  });

  it('refuses bad input with exit 2 and writes nothing', () => {
    const r = peftc('golden', 'record', 'models/nope.onnx', '--dir', 'other-golden');
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('models/nope.onnx');
    const c = peftc('golden', 'check', '--dir', 'missing-golden');
    expect(c.status).toBe(2);
    expect(c.stderr).toContain('missing-golden');
    expect(spawnSync('ls', [join(work, 'other-golden')]).status).not.toBe(0);
  });

  it('a record whose compile no longer holds a tight tolerance is refused at record time (exit 1)', async () => {
    await expect(
      recordGolden({ dir: join(work, 'tight'), model: join(work, 'models', 'cnn', 'model.onnx'), target: 'cpu', quant: 'int4', tolerance: { relErr: 1e-9 } }),
    ).rejects.toThrow(/does not hold the tolerance.*relative error/);
  });

  it('update keeps tolerances: a figure that breaks one is not written', async () => {
    const dir = join(work, 'keep');
    const { file } = await recordGolden({ dir, model: join(work, 'models', 'cnn', 'model.onnx'), target: 'cpu', quant: 'int4' });
    const rec = JSON.parse(readFileSync(file, 'utf8'));
    rec.tolerance.relErr = 1e-9;
    rec.artifact.sha256 = '0'.repeat(64);
    writeFileSync(file, JSON.stringify(rec));
    const r = await updateGolden({ dir });
    expect(r.ok).toBe(false);
    expect(r.variants[0]!.failures[0]).toMatch(/not updated: relative error .* breaks the recorded tolerance/);
    expect(JSON.parse(readFileSync(file, 'utf8')).artifact.sha256).toBe('0'.repeat(64));
  });
});

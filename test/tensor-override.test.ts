/**
 * --override FILE.safetensors (BitFit biases, re-trained weights): the compiled model differs from
 * the plain compile in exactly the named tensors, and computes what the same change made by hand
 * to the original graph computes on onnxruntime (the transposition to the graph's [in, out]
 * layout is done independently in the test). Bad files are refused with exit 2, nothing written.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { compileModel } from '../src/compile.js';
import { diffModelFiles } from '../src/diff.js';
import { DataType } from '../src/ir/dtype.js';
import { Tensor } from '../src/ir/tensor.js';
import { loadModel } from '../src/onnx/io.js';
import { compareTensors } from '../src/runtime/compare.js';
import { readDataSet } from '../src/runtime/testdata.js';
import { runModel } from '../src/runtime/ort.js';
import { f32, writeSafetensors } from './helpers-safetensors.js';
import { mulberry32 } from './rng.js';

const ROOT = resolve(import.meta.dirname, '..');
const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js');
const BERT = join(ROOT, 'models', 'zoo', 'bert-static', 'model.onnx');
const work = mkdtempSync(join(tmpdir(), 'peftc-override-test-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const rand = (n: number, seed: number) => {
  const r = mulberry32(seed);
  return Float32Array.from({ length: n }, () => r() - 0.5);
};

describe('--override', () => {
  // Three kinds of name: a bias the exporter kept as an initializer, a bias it shared through an
  // Identity, and a Linear weight it stores transposed as a MatMul operand.
  const dense = rand(128, 1);
  const query = rand(64, 2);
  const outW = rand(64 * 64, 3); // torch layout [out, in]
  const file = join(work, 'bitfit.safetensors');
  writeSafetensors(file, {
    'encoder.layer.0.intermediate.dense.bias': { dtype: 'F32', shape: [128], data: f32(dense) },
    'encoder.layer.0.attention.self.query.bias': { dtype: 'F32', shape: [64], data: f32(query) },
    'encoder.layer.1.attention.output.dense.weight': { dtype: 'F32', shape: [64, 64], data: f32(outW) },
  });

  it('changes exactly the named tensors, and the outputs as the same change made by hand', async () => {
    const plain = join(work, 'plain.onnx');
    const over = join(work, 'override.onnx');
    // Without fusion, so the named tensors keep their own initializers (the attention fusion packs
    // Q/K/V weights and biases into one tensor).
    compileModel(BERT, { target: 'cpu', quant: 'none', output: plain, fuse: [] });
    const r = compileModel(BERT, { target: 'cpu', quant: 'none', output: over, overrides: [{ path: file, mode: 'replace' }], fuse: [] });
    expect(r.passes.find((p) => p.pass === 'tensor-override')!.details.overridden).toBe(3);
    const d = diffModelFiles(plain, over);
    const touched = [...d.initializers.added.map((x) => x.name), ...d.initializers.changed.map((x) => x.name)].sort();
    expect(d.initializers.removed).toEqual([]);
    // The kept and the shared bias by their own names; the weight under its ONNX name.
    expect(touched).toHaveLength(3);
    expect(touched).toContain('encoder.layer.0.intermediate.dense.bias');
    expect(touched).toContain('encoder.layer.0.attention.self.query.bias');
    expect(d.nodeCount.a).toBe(d.nodeCount.b);

    // The same change, by hand, on the original graph.
    const m = loadModel(BERT);
    const g = m.graph;
    g.initializers.find((v) => v.name === 'encoder.layer.0.intermediate.dense.bias')!.initializer = Tensor.fromTypedArray('encoder.layer.0.intermediate.dense.bias', DataType.FLOAT, [128], dense);
    const q = g.lookup('encoder.layer.0.attention.self.query.bias')!;
    const own = g.addInitializer(Tensor.fromTypedArray('q_bias_by_hand', DataType.FLOAT, [64], query));
    g.replaceAllUses(q, own);
    const mm = g.nodes.find((n) => n.name === '/encoder/layer.1/attention/output/dense/MatMul')!;
    const wT = new Float32Array(64 * 64);
    for (let o = 0; o < 64; o++) for (let i = 0; i < 64; i++) wT[i * 64 + o] = outW[o * 64 + i]!;
    mm.setInput(1, g.addInitializer(Tensor.fromTypedArray('w_by_hand', DataType.FLOAT, [64, 64], wT)));
    const feeds = readDataSet(join(ROOT, 'models', 'zoo', 'bert-static', 'test_data_set_0'), m).inputs;
    const expected = await runModel(m, feeds);
    const actual = await runModel(over, feeds);
    const before = await runModel(BERT, feeds);
    for (const [k, e] of Object.entries(expected)) {
      expect(compareTensors(e, actual[k]!, { rtol: 1e-5, atol: 1e-6 }).ok).toBe(true);
      expect(compareTensors(e, before[k]!, { rtol: 1e-3, atol: 1e-3 }).ok).toBe(false); // the override mattered
    }
  });

  it(':add adds the tensor as a delta', async () => {
    const delta = join(work, 'delta.safetensors');
    writeSafetensors(delta, { 'encoder.layer.0.intermediate.dense.bias': { dtype: 'F32', shape: [128], data: f32(new Float32Array(128).fill(0.25)) } });
    const out = join(work, 'add.onnx');
    compileModel(BERT, { target: 'cpu', quant: 'none', output: out, overrides: [{ path: delta, mode: 'add' }] });
    const orig = loadModel(BERT).graph.initializers.find((v) => v.name === 'encoder.layer.0.intermediate.dense.bias')!.initializer!.toTypedArray<Float32Array>();
    const got = loadModel(out).graph.initializers.find((v) => v.name === 'encoder.layer.0.intermediate.dense.bias')!.initializer!.toTypedArray<Float32Array>();
    for (let i = 0; i < 128; i++) expect(got[i]).toBeCloseTo(orig[i]! + 0.25, 6);
  });

  it('refuses unknown names (with suggestions), wrong shapes and dtypes: exit 2, nothing written', () => {
    const cases: Array<[string, Record<string, { dtype: string; shape: number[]; data: Uint8Array }>, RegExp]> = [
      ['typo', { 'encoder.layer.0.intermediat.dense.bias': { dtype: 'F32', shape: [128], data: f32(new Float32Array(128)) } }, /nothing in the graph; nearest: .*encoder\.layer\.0\.intermediate\.dense\.bias/],
      ['shape', { 'encoder.layer.0.intermediate.dense.bias': { dtype: 'F32', shape: [64], data: f32(new Float32Array(64)) } }, /shape \[64\] does not fit/],
      ['dtype', { 'encoder.layer.0.intermediate.dense.bias': { dtype: 'F64', shape: [128], data: new Uint8Array(128 * 8) } }, /float64, but .* is float32/],
    ];
    for (const [label, tensors, message] of cases) {
      const f = join(work, `${label}.safetensors`);
      writeSafetensors(f, tensors);
      const out = join(work, `${label}.onnx`);
      const r = spawnSync(process.execPath, [CLI, 'compile', BERT, '--override', f, '-o', out], { encoding: 'utf8' });
      expect(r.status, label).toBe(2);
      expect(r.stderr, label).toMatch(message);
      expect(r.stderr).toContain(f);
      expect(existsSync(out), label).toBe(false);
    }
  });
});

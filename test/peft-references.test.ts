/**
 * LoRA/DoRA merge against PEFT itself (fixtures made on the GPU machine by
 * models/export_peft.py: merge_and_unload() references, see models/README.md):
 *  - form 2 (base.onnx + adapter folders): peftc's merged model gives PEFT's merged outputs
 *    (max abs difference <= 1e-4 on onnxruntime) and PEFT's merged weights (within 1e-6 relative
 *    to the weight's scale);
 *  - form 1 (unmerged.onnx, the PEFT model exported with its LoRA branches; DoRA's with its
 *    weight-norm subgraph): every branch is found and merged, the outputs match PEFT's merged
 *    outputs, and the merged weights equal form 2's within 1e-6 relative.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Model } from '../src/ir/model.js';
import type { Tensor } from '../src/ir/tensor.js';
import { decodeTensor } from '../src/onnx/decode.js';
import { loadModel } from '../src/onnx/io.js';
import { loadAdapter } from '../src/peft/adapter.js';
import { toFloat32 } from '../src/peft/merge-math.js';
import { readSafetensors } from '../src/peft/safetensors.js';
import { runModel } from '../src/runtime/ort.js';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { compileModel } from '../src/compile.js';
import { locate, mergeAdapters } from '../passes/lora-adapter-merge.js';
import { mergeLoraBranches } from '../passes/lora-branch-merge.js';
import { runPipeline } from '../passes/pass.js';
import { cleanupPipeline } from '../passes/pipelines.js';

const ROOT = join(process.cwd(), 'models', 'peft');
const cases = existsSync(ROOT) ? readdirSync(ROOT).filter((d) => existsSync(join(ROOT, d, 'base.onnx'))) : [];

function inputsAndReference(dir: string): { feeds: Record<string, Tensor>; expected: Tensor } {
  const ds = join(dir, 'test_data_set_0');
  const ids = decodeTensor(readFileSync(join(ds, 'input_0.pb')));
  const expected = decodeTensor(readFileSync(join(ds, 'output_0.pb')));
  return { feeds: { input_ids: ids }, expected };
}

function maxAbsDiff(a: Tensor, b: Tensor): number {
  expect(a.dims).toEqual(b.dims);
  const x = toFloat32(a);
  const y = toFloat32(b);
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]! - y[i]!));
  return m;
}

/** A merged weight in torch layout ([out, in] for Linear, [in, out] for GPT-2 Conv1D). */
function torchLayout(model: Model, path: string, kind: 'linear', fanInFanOut: boolean, a: Tensor, b: Tensor): Float32Array {
  const target = locate(model.graph, { path, kind, a, b, rank: a.dims[0]!, alpha: 1, scale: 1 }, fanInFanOut);
  if (!target) throw new Error(`module ${path} not found`);
  const w = toFloat32(target.value.initializer!);
  const want = fanInFanOut ? 'in_out' : 'out_in';
  if (target.layout === want) return w;
  const [r, c] = target.value.initializer!.dims as [number, number];
  const t = new Float32Array(w.length);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) t[j * r + i] = w[i * c + j]!;
  return t;
}

describe('LoRA/DoRA merge matches PEFT', () => {
  it('has the PEFT fixtures (models/export_peft.py output)', () => {
    expect(cases.sort()).toEqual(['bert-lora', 'bert-lora-bias-all', 'bert-lora-bias-lora-only', 'gpt2-lora', 'llama-dora', 'llama-lora', 'llama-modules-to-save', 'llama-rslora', 'llama-two-adapters']);
  });

  for (const name of cases) {
    const dir = join(ROOT, name);
    const adapterDirs = ['adapter', 'adapter2'].map((d) => join(dir, d)).filter(existsSync);
    const weights = adapterDirs.length === 2 ? [0.7, 0.3] : [1];

    it(`${name}: adapter folders merged into base.onnx give PEFT's outputs and weights`, async () => {
      const adapters = adapterDirs.map((d, i) => loadAdapter(d, weights[i]));
      const model = loadModel(join(dir, 'base.onnx'));
      const [report] = runPipeline(model, [mergeAdapters(adapters)], { check: true });
      expect(report!.details.merged).toBe(adapters[0]!.modules.length);
      // Weights, before any other pass touches them.
      const reference = readSafetensors(join(dir, 'merged_weights.safetensors'));
      let worst = 0;
      for (const m of adapters[0]!.modules) {
        const ours = torchLayout(model, m.path, 'linear', adapters[0]!.config.fanInFanOut, m.a, m.b);
        const theirs = toFloat32(reference.tensors.get(`${m.path}.weight`)!);
        const scale = theirs.reduce((s, v) => Math.max(s, Math.abs(v)), 0);
        let d = 0;
        for (let i = 0; i < theirs.length; i++) d = Math.max(d, Math.abs(ours[i]! - theirs[i]!));
        worst = Math.max(worst, d / scale);
      }
      console.log(`${name} (adapter folders): ${adapters[0]!.modules.length} modules merged; worst weight difference ${worst.toExponential(2)} of the weight's scale`);
      expect(worst).toBeLessThanOrEqual(1e-6);
      // the merge pass alone: outputs match where PEFT trained nothing but LoRA (the trained
      // biases and saved modules are compile's tensor overrides, checked below)
      if (adapters.some((a) => a.replaced.size)) return;
      runPipeline(model, cleanupPipeline(), { fixpoint: true, check: true });
      const { feeds, expected } = inputsAndReference(dir);
      const out = await runModel(model, feeds);
      const diff = maxAbsDiff(expected, Object.values(out)[0]!);
      console.log(`${name} (adapter folders): max abs output difference vs PEFT merged ${diff.toExponential(2)}`);
      expect(diff).toBeLessThanOrEqual(1e-4);
    });

    // What a user runs (peftc compile base.onnx --lora adapter/): the LoRA merge plus what PEFT
    // trained beside it (bias='all'/'lora_only' biases, modules_to_save layers) as merge_and_unload
    // keeps them; outputs within 1e-5 relative (L2) of PEFT's merged model on onnxruntime.
    it(`${name}: peftc compile --lora gives PEFT's merged outputs within 1e-5 relative`, async () => {
      const out = join(mkdtempSync(join(tmpdir(), 'peft-ref-')), 'merged.onnx');
      const r = compileModel(join(dir, 'base.onnx'), { target: 'cpu', quant: 'none', output: out, fuse: [], lora: adapterDirs.map((d, i) => ({ dir: d, weight: weights[i]! })) });
      const { feeds, expected } = inputsAndReference(dir);
      const got = Object.values(await runModel(loadModel(r.written.path), feeds))[0]!;
      const x = toFloat32(got);
      const y = toFloat32(expected);
      let num = 0;
      let den = 0;
      for (let i = 0; i < y.length; i++) {
        num += (x[i]! - y[i]!) ** 2;
        den += y[i]! ** 2;
      }
      const rel = Math.sqrt(num / den);
      const trained = adapterDirs.map((d) => loadAdapter(d).replaced.size).reduce((a, b) => a + b, 0);
      console.log(`${name} (compile --lora): relative L2 difference vs PEFT merged ${rel.toExponential(2)}; ${trained} trained tensor(s) besides LoRA`);
      expect(rel).toBeLessThanOrEqual(1e-5);
      if (/bias|modules-to-save/.test(name)) expect(trained).toBeGreaterThan(0);
    });

    if (!existsSync(join(dir, 'unmerged.onnx'))) continue;
    it(`${name}: the exported unmerged graph is merged in place (form 1) to the same weights and outputs`, async () => {
      const model = loadModel(join(dir, 'unmerged.onnx'));
      const adapter = loadAdapter(adapterDirs[0]!);
      let merged: number;
      if (adapter.config.useDora) {
        // DoRA's export computes the weight norm in the graph: constant folding turns it into
        // vectors first, so the merge happens in the pipeline's second round.
        const reports = runPipeline(model, cleanupPipeline(), { fixpoint: true, check: true });
        merged = reports.filter((x) => x.pass === 'lora-branch-merge').reduce((n, x) => n + Number(x.details.dora ?? 0), 0);
      } else {
        const [r] = runPipeline(model, [mergeLoraBranches()], { check: true });
        merged = Number(r!.details.merged);
      }
      expect(merged).toBe(adapter.modules.length);
      // Same weights as form 2 (the base weights live under <module>.base_layer in the PEFT graph).
      const form2 = loadModel(join(dir, 'base.onnx'));
      runPipeline(form2, [mergeAdapters([adapter])]);
      let worst = 0;
      for (const m of adapter.modules) {
        const fanInFanOut = adapter.config.fanInFanOut;
        const a = torchLayout(model, `${m.path}.base_layer`, 'linear', fanInFanOut, m.a, m.b);
        const b = torchLayout(form2, m.path, 'linear', fanInFanOut, m.a, m.b);
        const scale = b.reduce((s, v) => Math.max(s, Math.abs(v)), 0);
        for (let i = 0; i < b.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!) / scale);
      }
      console.log(`${name} (unmerged graph): ${adapter.modules.length} branches merged; worst weight difference vs adapter-folder merge ${worst.toExponential(2)}`);
      expect(worst).toBeLessThanOrEqual(1e-6);
      runPipeline(model, cleanupPipeline(), { fixpoint: true, check: true });
      expect(model.graph.nodes.filter((n) => n.opType === 'MatMul').length).toBeLessThan(loadModel(join(dir, 'unmerged.onnx')).graph.nodes.filter((n) => n.opType === 'MatMul').length);
      const { feeds, expected } = inputsAndReference(dir);
      const out = await runModel(model, feeds);
      const diff = maxAbsDiff(expected, Object.values(out)[0]!);
      console.log(`${name} (unmerged graph): max abs output difference vs PEFT merged ${diff.toExponential(2)}`);
      expect(diff).toBeLessThanOrEqual(1e-4);
    });
  }
});

/**
 * Fusion on real exported models. For every model in models/zoo (TorchScript and dynamo exports of
 * BERT, ViT, GPT-2, Llama, CNNs) and models/lm: cleanup + fusion for target cpu (its default set)
 * and with every fusion the CPU EP runs (the Skip* ones included), then onnxruntime on each of the
 * model's test_data_set_N (for models/lm, two windows of its calibration tokens): outputs within
 * 1e-4 relative L2 of the original's (fusion-helpers.ts), and the number of fusions applied per
 * model equal to a count taken independently from the original graph's op histogram (one gelu
 * per Erf, one attention per Softmax in BERT/ViT/GPT-2 and in Llamas without a padding mask, one
 * rms-norm per Sqrt in Llama...). The
 * fused model must also survive the cleanup pipeline run again (compile may run passes after).
 * Then every libonnx-testdata pytorch-converted model: same outputs after cleanup + every fusion.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DataType } from '../src/ir/dtype.js';
import { checkModel } from '../src/ir/invariants.js';
import type { Model } from '../src/ir/model.js';
import { Tensor } from '../src/ir/tensor.js';
import { loadModel } from '../src/onnx/io.js';
import { readArrays } from '../src/runtime/npy.js';
import { listCases, nonTensorIo, readDataSet } from '../src/runtime/testdata.js';
import { runPipeline } from '../passes/pass.js';
import { cleanupPipeline } from '../passes/pipelines.js';
import { FUSIONS } from '../passes/fusion.js';
import { compareRuns, fuse, ops, REL_L2 } from './fusion-helpers.js';

const ZOO = join(process.cwd(), 'models', 'zoo');
/** Every fusion the CPU EP runs, including those left out of cpu's default set as slower there. */
const EVERY_CPU_FUSION = FUSIONS.filter((f) => f.targets.includes('cpu')).map((f) => f.name);
const LM = join(process.cwd(), 'models', 'lm', 'model.onnx');

type Counts = Record<string, number>;

/**
 * Fusions expected, from the original graph's histogram and inputs (not from what the pass
 * reports). Llama attention becomes GroupQueryAttention unless the model takes an attention_mask
 * (a padding mask is not causal-only); then only its QK^T MatMul is fused.
 */
function expectedCounts(name: string, h: Counts, all: boolean, paddingMask: boolean): Counts {
  const n = (op: string) => h[op] ?? 0;
  const out: Counts = {};
  const set = (k: string, v: number) => v > 0 && (out[k] = v);
  set('conv-bn', n('BatchNormalization'));
  set('gelu', n('Erf'));
  set('bias-gelu', n('Erf'));
  set('fast-gelu', n('Tanh'));
  set('silu', n('Sigmoid'));
  const llama = name.startsWith('llama') || name === 'lm';
  if (llama) {
    set('rms-norm', n('Sqrt'));
    set(paddingMask ? 'fused-matmul' : 'rotary-attention', n('Softmax'));
    if (all) set('skip-rms-norm', n('Sqrt') - 1); // every norm but the first reads a residual sum
  } else {
    set('attention', n('Softmax'));
    if (all) set('skip-layer-norm', n('LayerNormalization'));
  }
  return out;
}

function lmFeeds(): Array<Record<string, Tensor>> {
  const ids = [...readArrays(join(process.cwd(), 'models', 'lm', 'calib.npy')).values()][0]!.toTypedArray() as BigInt64Array;
  return [
    { input_ids: Tensor.fromTypedArray('input_ids', DataType.INT64, [2, 64], ids.slice(0, 128)) },
    { input_ids: Tensor.fromTypedArray('input_ids', DataType.INT64, [1, 200], ids.slice(256, 456)) },
  ];
}

const zooModels = existsSync(ZOO) ? readdirSync(ZOO).filter((d) => existsSync(join(ZOO, d, 'model.onnx'))).sort() : [];

function feedsFor(name: string, model: Model): Array<Record<string, Tensor>> {
  if (name === 'lm') return lmFeeds();
  return readdirSync(join(ZOO, name))
    .filter((d) => d.startsWith('test_data_set_'))
    .sort()
    .map((d) => readDataSet(join(ZOO, name, d), model).inputs);
}

describe('fusion on the model zoo and models/lm', () => {
  it('finds the zoo', () => {
    expect(zooModels.length).toBeGreaterThanOrEqual(11);
  });

  for (const name of [...zooModels, 'lm']) {
    for (const variant of ['cpu', 'all'] as const) {
      it(`${name} (${variant === 'cpu' ? 'target cpu' : 'every fusion'}): same outputs, the expected fusions`, async () => {
        const path = name === 'lm' ? LM : join(ZOO, name, 'model.onnx');
        const original = loadModel(path);
        const model = loadModel(path);
        runPipeline(model, cleanupPipeline(), { fixpoint: true });
        const before = model.graph.nodes.length;
        const pass = fuse(model, variant === 'cpu' ? {} : { only: EVERY_CPU_FUSION });
        const counts: Counts = {};
        for (const a of pass.applied) counts[a.fusion] = (counts[a.fusion] ?? 0) + 1;
        const paddingMask = original.graph.inputs.some((i) => i.name === 'attention_mask');
        expect(counts).toEqual(expectedCounts(name, ops(original), variant === 'all', paddingMask));
        expect(checkModel(model)).toEqual([]);
        let worst = 0;
        for (const feeds of feedsFor(name, original)) {
          const { relErr, failures } = await compareRuns(original, model, feeds);
          expect(failures).toEqual([]);
          worst = Math.max(worst, relErr);
        }
        expect(worst).toBeLessThanOrEqual(REL_L2);
        // Passes that may run after fusion leave the fused ops alone and the outputs unchanged.
        runPipeline(model, cleanupPipeline(), { fixpoint: true, check: true });
        for (const feeds of feedsFor(name, original).slice(0, 1)) expect((await compareRuns(original, model, feeds)).failures).toEqual([]);
        console.log(`${name} ${variant}: ${before} -> ${model.graph.nodes.length} nodes, ${JSON.stringify(counts)}, near-misses ${pass.nearMisses.length}, rel err ${worst.toExponential(1)}`);
      });
    }
  }

  it('libonnx-testdata pytorch-converted models: same outputs after cleanup + every fusion', async () => {
    const failures: string[] = [];
    const applied: string[] = [];
    let checked = 0;
    for (const c of listCases('pytorch-converted').filter((x) => x.model)) {
      const original = loadModel(c.model!);
      if (nonTensorIo(original)) continue;
      const model = loadModel(c.model!);
      runPipeline(model, cleanupPipeline(), { fixpoint: true });
      const pass = fuse(model, { only: EVERY_CPU_FUSION });
      applied.push(...pass.applied.map((a) => `${c.name}:${a.fusion}`));
      for (const ds of c.dataSets) {
        try {
          const r = await compareRuns(original, model, readDataSet(ds, original).inputs);
          failures.push(...r.failures.map((f) => `${c.name}: ${f}`));
          if (r.relErr > REL_L2) failures.push(`${c.name}: relative error ${r.relErr}`);
        } catch (err) {
          // Models onnxruntime cannot load to begin with are the conformance test's business.
          if (!String(err).includes('cannot load')) failures.push(`${c.name}: ${String(err).slice(0, 200)}`);
        }
      }
      checked++;
    }
    console.log(`pytorch-converted: ${checked} models, fusions applied: ${applied.join(', ') || 'none'}`);
    expect(checked).toBeGreaterThan(50);
    expect(failures).toEqual([]);
  });
});

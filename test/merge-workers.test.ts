/**
 * Merged weights computed on worker threads ahead of the writer (src/workers/precompute.ts) must
 * give the very bytes of computing each in the writing thread: same model file, same side file.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DataType, float32ToFloat16Bits } from '../src/ir/dtype.js';
import type { Model } from '../src/ir/model.js';
import { Tensor } from '../src/ir/tensor.js';
import { loadModel, saveModel } from '../src/onnx/io.js';
import { loadAdapter } from '../src/peft/adapter.js';
import { Precompute } from '../src/workers/precompute.js';
import { ModelBuilder } from '../models/builder.js';
import { mergeAdapters } from '../passes/lora-adapter-merge.js';
import { runPipeline } from '../passes/pass.js';
import { randomFloats } from './arbitrary-graph.js';
import { f32, writeSafetensors } from './helpers-safetensors.js';

const dir = mkdtempSync(join(tmpdir(), 'peftc-merge-workers-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const LAYERS = 6;
const inF = 24;
const outF = 40;

/** Layers of MatMul ([in, out]) and Gemm transB ([out, in]) weights; float16 ones when asked. */
function baseModel(path: string, dtype: DataType): void {
  const b = new ModelBuilder();
  let x = b.input('x', DataType.FLOAT, [2, inF]);
  for (let l = 0; l < LAYERS; l++) {
    const raw = randomFloats(inF * outF, 100 + l);
    const data = dtype === DataType.FLOAT16 ? Uint16Array.from(raw, float32ToFloat16Bits) : raw;
    if (l % 2 === 0) {
      const w = b.initializer(`onnx::MatMul_${l}`, dtype, [inF, outF], data);
      x = b.op('MatMul', [x, w], {}, { name: `/model/layers.${l}/up/MatMul` });
    } else {
      const w = b.initializer(`model.layers.${l}.down.weight`, dtype, [inF, outF], data);
      x = b.op('Gemm', [x, w], { transB: 1 }, { name: `/model/layers.${l}/down/Gemm` });
    }
  }
  b.output(x);
  saveModel(b.build(), path, { externalData: dtype === DataType.FLOAT ? 'all' : 'none', durable: false });
}

function adapter(name: string, r: number, extra: Record<string, unknown> = {}): string {
  const d = join(dir, name);
  mkdirSync(d);
  writeFileSync(join(d, 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', bias: 'none', r, lora_alpha: 2 * r, ...extra }));
  const tensors: Record<string, { dtype: string; shape: number[]; data: Uint8Array }> = {};
  for (let l = 0; l < LAYERS; l++) {
    const path = l % 2 === 0 ? `model.layers.${l}.up` : `model.layers.${l}.down`;
    // Gemm transB weights are [out, in] = [inF, outF] here: in = outF, out = inF.
    const [i, o] = l % 2 === 0 ? [inF, outF] : [outF, inF];
    tensors[`base_model.model.${path}.lora_A.weight`] = { dtype: 'F32', shape: [r, i], data: f32(randomFloats(r * i, 7 * l + r)) };
    tensors[`base_model.model.${path}.lora_B.weight`] = { dtype: 'F32', shape: [o, r], data: f32(randomFloats(o * r, 7 * l + r + 1)) };
    if (extra.use_dora) tensors[`base_model.model.${path}.lora_magnitude_vector`] = { dtype: 'F32', shape: [o], data: f32(randomFloats(o, l + 50).map(Math.abs)) };
  }
  writeSafetensors(join(d, 'adapter_model.safetensors'), tensors);
  return d;
}

function merged(model: string, adapters: Array<[string, number]>): Model {
  const m = loadModel(model);
  runPipeline(m, [mergeAdapters(adapters.map(([d, w]) => loadAdapter(d, w)))], { check: true });
  return m;
}

/** Saves the merged model under `name`/model.onnx and returns the written files' bytes. */
function save(m: Model, name: string, workers: number): Buffer[] {
  const out = join(dir, name);
  mkdirSync(out);
  const r = saveModel(m, join(out, 'model.onnx'), { workers, durable: false });
  expect(r.workers).toBe(workers);
  expect(r.precomputedTensors).toBe(workers ? LAYERS : 0);
  return [readFileSync(r.path), ...(r.externalDataPath ? [readFileSync(r.externalDataPath)] : [])];
}

describe('merge on worker threads', () => {
  const cases: Array<{ name: string; dtype: DataType; adapters: () => Array<[string, number]> }> = [
    { name: 'float32 external data, two weighted adapters (rank 5 and 8)', dtype: DataType.FLOAT, adapters: () => [[adapter('a5', 5), 0.7], [adapter('a8', 8), -0.4]] },
    { name: 'float16 inline weights, DoRA', dtype: DataType.FLOAT16, adapters: () => [[adapter('dora', 4, { use_dora: true }), 1]] },
  ];
  for (const c of cases) {
    it(`${c.name}: workers 0, 1 and 3 write the same bytes`, () => {
      const base = join(dir, `base-${c.dtype}`);
      mkdirSync(base);
      baseModel(join(base, 'model.onnx'), c.dtype);
      const adapters = c.adapters();
      const inThread = save(merged(join(base, 'model.onnx'), adapters), `${c.dtype}-w0`, 0);
      expect(inThread.length).toBe(c.dtype === DataType.FLOAT ? 2 : 1);
      for (const workers of [1, 3]) {
        const threaded = save(merged(join(base, 'model.onnx'), adapters), `${c.dtype}-w${workers}`, workers);
        expect(threaded.length).toBe(inThread.length);
        threaded.forEach((bytes, i) => expect(bytes.equals(inThread[i]!)).toBe(true));
      }
    });
  }

  it('precomputes in write order within its budget; a failing job falls back to the writing thread', () => {
    const job = (fail: boolean) => () => ({ module: new URL('../src/peft/merge-job.ts', import.meta.url).href, fn: fail ? 'noSuchExport' : 'runMergeJob', input: {}, transfer: [] });
    const plain = Tensor.fromBytes('plain', DataType.FLOAT, [2], new Uint8Array(8));
    const failing = Tensor.deferred('failing', DataType.FLOAT, [2], () => new Uint8Array(8), true, job(true));
    const pc = Precompute.start([plain, failing], { workers: 2 })!;
    try {
      expect(pc.workers).toBe(1); // never more threads than jobs
      expect(pc.take(plain)).toBeUndefined();
      expect(pc.take(failing)).toBeUndefined(); // the writer then computes it itself
    } finally {
      pc.close();
    }
    expect(Precompute.start([plain], { workers: 2 })).toBeUndefined();
    expect(Precompute.start([failing], { workers: 0 })).toBeUndefined();
    expect(Precompute.start([failing])).toBeUndefined(); // small: not worth threads by default
  });
});

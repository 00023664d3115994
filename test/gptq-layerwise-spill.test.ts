/**
 * Memory bounds of the weight-quant pass that layer-by-layer quantization relies on (and that keep
 * the quant-speed bench under 1 GiB at any core count):
 *  - quantized weights bound for external data go to a temporary file as they are made (their
 *    tensors read it back), and the model written is byte for byte the one kept in memory;
 *  - a small in-flight budget cuts the weights into more, smaller parts across the threads,
 *    without changing a byte of the output.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ModelBuilder } from '../models/builder.js';
import { runPipeline } from '../passes/pass.js';
import { weightQuantization, type WeightQuantOptions } from '../passes/weight-quant.js';
import { DataType } from '../src/ir/dtype.js';
import { loadModel, saveModel } from '../src/onnx/io.js';
import { weightsF32 } from './helpers-calibration.js';

const tmp = mkdtempSync(join(tmpdir(), 'peftc-spill-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const K = 1024;
const source = join(tmp, 'src.onnx');
{
  const b = new ModelBuilder({ opset: 21, irVersion: 10 });
  let h = b.input('x', DataType.FLOAT, ['n', K]);
  for (let l = 0; l < 3; l++) h = b.op('MatMul', [h, b.initializer(`w${l}`, DataType.FLOAT, [K, K], weightsF32(K * K, 50 + l, 0.05))], {}, { name: `mm${l}` });
  b.output(h, { dtype: DataType.FLOAT, shape: ['n', K] });
  saveModel(b.build(), source, { externalData: 'all', durable: false });
}

function quantize(label: string, options: Partial<WeightQuantOptions>) {
  const model = loadModel(source);
  const pass = weightQuantization({ mode: 'int4', method: 'mse', workers: 2, ...options });
  const logs: string[] = [];
  const [report] = runPipeline(model, [pass], { log: (m) => logs.push(m) });
  const out = join(tmp, `${label}.onnx`);
  saveModel(model, out, { externalData: 'all', durable: false });
  return { model, report: report!, data: readFileSync(`${out}.data`), logs };
}

describe('quantized weights of an external-data model', () => {
  it('are spilled to a temporary file and written out unchanged', () => {
    const spilled = quantize('spilled', {});
    const kept = quantize('kept', { spill: false });
    const q = spilled.model.graph.initializers.map((v) => v.initializer!).filter((t) => t.name.endsWith('_Q4'));
    expect(q).toHaveLength(3);
    for (const t of q) {
      expect(t.source.kind).toBe('external');
      if (t.source.kind === 'external') expect(t.source.ref.path.startsWith(tmpdir())).toBe(true);
    }
    const inMemory = kept.model.graph.initializers.map((v) => v.initializer!).filter((t) => t.name.endsWith('_Q4'));
    expect(inMemory.every((t) => t.source.kind === 'deferred')).toBe(true);
    expect(spilled.data.equals(kept.data)).toBe(true);
  });

  it("a small in-flight budget: fewer threads, parts of at most 400K weights (three per weight here), the same bytes", () => {
    const whole = quantize('whole', { spill: false });
    const small = quantize('small', { spill: false, maxInFlightBytes: 4 << 20 });
    expect(whole.report.details.workers).toBe(2);
    expect(small.report.details.workers).toBe(1); // 4 MiB cannot hold two parts of 256K weights: one thread
    expect(small.logs.some((l) => /more than 4 MiB of weights in flight: 1 worker thread/.test(l))).toBe(true);
    expect(small.data.equals(whole.data)).toBe(true);
  });
});

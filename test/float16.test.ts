/**
 * The float16/bfloat16 precision pass (passes/float16.ts) and the CPU emulation that verifies its
 * artifacts here (targets/low-precision-emulation.ts). Reference outputs come from onnxruntime
 * running the float32 originals. Tolerances: one float16 rounding per stored value is 2^-11
 * relative, so random graphs of up to 14 ops must hold relative L2 error <= 2e-2 (stated per test).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ModelBuilder } from '../models/builder.js';
import { precisionConversion } from '../passes/float16.js';
import { runPipeline } from '../passes/pass.js';
import { cleanupPipeline } from '../passes/pipelines.js';
import { DataType } from '../src/ir/dtype.js';
import type { Model } from '../src/ir/model.js';
import { Tensor } from '../src/ir/tensor.js';
import { decodeModel } from '../src/onnx/decode.js';
import { encodeModel } from '../src/onnx/encode.js';
import { runModel } from '../src/runtime/ort.js';
import { ErrorAccumulator } from '../src/verify/metrics.js';
import { emulateLowPrecision } from '../targets/low-precision-emulation.js';
import { buildRecipe, graphRecipe, recipeFeeds } from './arbitrary-graph.js';

/** Runs `model` converted to `to` (through an encode/decode, as an artifact would be) in emulation. */
async function emulated(model: Model, feeds: Record<string, Tensor>, to: 'float16' | 'bfloat16', overflowing?: Set<string>) {
  const pass = precisionConversion({ to, ...(overflowing ? { overflowing } : {}) });
  runPipeline(model, [pass], { check: true });
  const artifact = decodeModel(encodeModel(model));
  emulateLowPrecision(artifact);
  return { outputs: await runModel(artifact, feeds, { graphOptimization: 'disabled' }), report: pass.report, artifact: model };
}

const ops = (m: Model) => m.graph.nodes.map((n) => n.opType);

describe('precision pass: what is lowered, kept, cast', () => {
  function small() {
    const b = new ModelBuilder();
    const x = b.input('x', DataType.FLOAT, [2, 8]);
    const w = b.initializer('w', DataType.FLOAT, [8, 8], Float32Array.from({ length: 64 }, (_, i) => ((i * 37) % 17) / 17 - 0.5));
    const bias = b.initializer('bias', DataType.FLOAT, [16], Float32Array.from({ length: 16 }, (_, i) => i / 16));
    const shape = b.initializer('shape', DataType.INT64, [1], BigInt64Array.from([16n]));
    const mm = b.op('MatMul', [x, w], {}, { name: 'mm' });
    const sm = b.op('Softmax', [mm], { axis: -1 }, { name: 'softmax' });
    const flat = b.op('Reshape', [sm, shape], {}, { name: 'flat' });
    const y = b.op('Add', [flat, bias], {}, { name: 'add' });
    b.output(y);
    const model = b.build();
    runPipeline(model, [...cleanupPipeline().filter((p) => p.name === 'shape-inference')]);
    return model;
  }

  it('Softmax stays float32, Reshape follows it, Casts only at class boundaries, the output keeps its name and float32', async () => {
    const model = small();
    const outName = model.graph.outputs[0]!.name;
    const feeds = { x: Tensor.fromTypedArray('x', DataType.FLOAT, [2, 8], Float32Array.from({ length: 16 }, (_, i) => Math.sin(i))) };
    const expected = (await runModel(encodeModel(model), feeds))[outName]!;
    const { outputs, report, artifact } = await emulated(model, feeds, 'float16');
    expect(report.keptNodes.map((k) => k.node)).toEqual(['softmax']);
    expect(report.keptNodes[0]!.reason).toContain('block list');
    // x -> fp16 for MatMul; MatMul -> fp32 for Softmax; Reshape (following Softmax: fp32) -> fp16 for Add; Add -> fp32 output.
    expect(report.castsInserted).toBe(4);
    expect(ops(artifact).filter((o) => o === 'Cast')).toHaveLength(4);
    const out = artifact.graph.outputs[0]!;
    expect(out.name).toBe(outName);
    expect(out.type?.kind === 'tensor' && out.type.elemType).toBe(DataType.FLOAT);
    const w = artifact.graph.initializers.find((v) => v.name.startsWith('w'))!;
    expect(w.initializer!.dtype).toBe(DataType.FLOAT16);
    // The float32 originals of converted weights are gone (nothing else reads them).
    expect(artifact.graph.initializers.filter((v) => v.initializer!.dtype === DataType.FLOAT).map((v) => v.name)).toEqual([]);
    const acc = new ErrorAccumulator();
    acc.add(expected, outputs[outName]!);
    expect(acc.stats().relErr).toBeLessThan(2e-3);
    expect(acc.stats().relErr).toBeGreaterThan(0); // it really ran in reduced precision
  });

  it('weights beyond float16 range are clamped and counted; bfloat16 keeps them', () => {
    for (const to of ['float16', 'bfloat16'] as const) {
      const b = new ModelBuilder();
      const x = b.input('x', DataType.FLOAT, [1, 2]);
      const w = b.initializer('w', DataType.FLOAT, [2, 2], Float32Array.from([1e6, -1e6, 1, 70000]));
      b.output(b.op('MatMul', [x, w]));
      const model = b.build();
      const pass = precisionConversion({ to });
      runPipeline(model, [pass], { check: true });
      expect(pass.report.clampedElements).toBe(to === 'float16' ? 3 : 0);
      const t = model.graph.initializers[0]!.initializer!;
      expect(t.dtype).toBe(to === 'float16' ? DataType.FLOAT16 : DataType.BFLOAT16);
    }
  });

  it('an activation that overflows float16 keeps its producer and readers in float32, and the result stays finite', async () => {
    const build = () => {
      const b = new ModelBuilder();
      const x = b.input('x', DataType.FLOAT, [4]);
      const big = b.initializer('big', DataType.FLOAT, [], Float32Array.from([1e5]));
      const small = b.initializer('small', DataType.FLOAT, [], Float32Array.from([1e-5]));
      const up = b.op('Mul', [x, big], {}, { name: 'scale_up' });
      const down = b.op('Mul', [up, small], {}, { name: 'scale_down' });
      b.output(b.op('Relu', [down], {}, { name: 'relu' }));
      return { model: b.build(), up: up.name };
    };
    const feeds = { x: Tensor.fromTypedArray('x', DataType.FLOAT, [4], Float32Array.from([1, 2, -3, 0.5])) };
    const plain = build();
    const outName = plain.model.graph.outputs[0]!.name;
    const naive = await emulated(plain.model, feeds, 'float16');
    expect([...naive.outputs[outName]!.toTypedArray<Float32Array>()].some((v) => !Number.isFinite(v))).toBe(true);
    const guarded = build();
    const safe = await emulated(guarded.model, feeds, 'float16', new Set([guarded.up]));
    expect(safe.report.keptNodes.map((k) => k.node).sort()).toEqual(['scale_down', 'scale_up']);
    expect(safe.report.keptNodes[0]!.reason).toMatch(/overflows float16 on the calibration data/);
    const got = [...safe.outputs[outName]!.toTypedArray<Float32Array>()];
    [1, 2, 0, 0.5].forEach((v, i) => expect(got[i]).toBeCloseTo(v, 2));
  });

  it('a Cast to float32 in the model is retargeted, not wrapped in a pair', () => {
    const b = new ModelBuilder();
    const ids = b.input('ids', DataType.INT64, [3]);
    const f = b.op('Cast', [ids], { to: DataType.FLOAT }, { name: 'to_float' });
    b.output(b.op('Sigmoid', [f], {}, { name: 'sig' }));
    const model = b.build();
    const pass = precisionConversion({ to: 'float16' });
    runPipeline(model, [pass], { check: true });
    const cast = model.graph.nodes.find((n) => n.name === 'to_float')!;
    expect(cast.attrInt('to', 0)).toBe(DataType.FLOAT16);
    expect(pass.report.castsInserted).toBe(1); // only the output's, back to float32
  });
});

describe('property: random graphs converted and emulated compute the float32 outputs (onnxruntime)', () => {
  for (const to of ['float16', 'bfloat16'] as const) {
    it(`${to}: relative L2 error <= ${to === 'float16' ? '2e-2' : '1e-1'} per output, IR valid, emulation really rounds`, async () => {
      let rounded = 0;
      await fc.assert(
        fc.asyncProperty(graphRecipe, async (recipe) => {
          const bytes = encodeModel(buildRecipe(recipe));
          const feeds = recipeFeeds(recipe);
          const expected = await runModel(bytes, feeds);
          const model = decodeModel(bytes);
          runPipeline(model, cleanupPipeline(), { fixpoint: true });
          const { outputs, report } = await emulated(model, feeds, to);
          rounded += report.lowered;
          for (const [name, e] of Object.entries(expected)) {
            const acc = new ErrorAccumulator();
            acc.add(e, outputs[name]!);
            const s = acc.stats();
            // bfloat16 keeps 8 bits of mantissa: 2^-9 per rounding.
            const bound = to === 'float16' ? 2e-2 : 1e-1;
            if (!(s.relErr <= bound) && s.maxAbs > 1e-3) throw new Error(`output '${name}': relative error ${s.relErr} > ${bound} (max abs ${s.maxAbs})`);
          }
        }),
        { numRuns: 60 },
      );
      expect(rounded).toBeGreaterThan(60);
    });
  }
});

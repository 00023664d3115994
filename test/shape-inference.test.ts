/**
 * Shape inference against data we did not write: for every single-graph model of libonnx-testdata
 * (node/, pytorch-converted/, pytorch-operator/, simple/), all declared types except the graph
 * inputs' are erased, the pass runs, and every output type it infers must match the actual output
 * tensors of test_data_set_0 (element type, and every dim it claims to know).
 */
import { describe, expect, it } from 'vitest';
import { DataType, dtypeName } from '../src/ir/dtype.js';
import { loadModel } from '../src/onnx/io.js';
import { listCases, nonTensorIo, readDataSet, type Suite } from '../src/runtime/testdata.js';
import { runPipeline } from '../passes/pass.js';
import { shapeInference } from '../passes/shape-inference.js';
import { ModelBuilder } from '../models/builder.js';
import { shapeOf } from '../src/ir/types.js';

describe('shape inference', () => {
  it('agrees with the actual outputs of ONNX test models (declared types erased first)', () => {
    let outputs = 0;
    let typed = 0;
    let fullyStatic = 0;
    const wrong: string[] = [];
    for (const suite of ['node', 'pytorch-converted', 'pytorch-operator', 'simple'] as Suite[]) {
      for (const c of listCases(suite)) {
        if (!c.model || c.dataSets.length === 0) continue;
        const model = loadModel(c.model);
        if (nonTensorIo(model) || [...model.graph.subgraphs()].length) continue;
        const { outputs: actual } = readDataSet(c.dataSets[0]!, model);
        for (const v of model.graph.allValues()) if (!v.isGraphInput && !v.initializer) v.type = undefined;
        model.graph.valueInfos = [];
        runPipeline(model, [shapeInference], { check: true });
        for (const out of model.graph.outputs) {
          const t = actual[out.name];
          if (!t) continue;
          outputs++;
          if (out.type?.kind !== 'tensor') continue;
          typed++;
          const shape = shapeOf(out.type);
          // ONNX 1.12 data stores bfloat16 as uint16: compare the bits' type as the model declares it.
          const actualType = t.dtype === DataType.UINT16 && out.type.elemType === DataType.BFLOAT16 ? DataType.BFLOAT16 : t.dtype;
          if (out.type.elemType !== actualType) wrong.push(`${suite}/${c.name} '${out.name}': inferred ${dtypeName(out.type.elemType)}, actual ${dtypeName(t.dtype)}`);
          if (shape) {
            if (shape.length !== t.dims.length) wrong.push(`${suite}/${c.name} '${out.name}': inferred rank ${shape.length}, actual [${t.dims.join(',')}]`);
            else if (shape.some((d, i) => typeof d === 'number' && d !== t.dims[i])) wrong.push(`${suite}/${c.name} '${out.name}': inferred [${shape.join(',')}], actual [${t.dims.join(',')}]`);
            if (shape.every((d) => typeof d === 'number')) fullyStatic++;
          }
        }
      }
    }
    console.log(`shape inference on testdata: ${outputs} graph outputs; ${typed} typed, ${fullyStatic} with a full static shape; ${wrong.length} wrong`);
    expect(wrong).toEqual([]);
    expect(fullyStatic).toBeGreaterThan(outputs * 0.5);
  });

  it('works out shapes by hand-checked examples: Reshape 0/-1, broadcasting, Conv with pads and strides, batch MatMul', () => {
    const b = new ModelBuilder({ opset: 17 });
    const x = b.input('x', DataType.FLOAT, ['batch', 3, 32, 32]);
    const w = b.initializer('w', DataType.FLOAT, [8, 3, 3, 3], new Float32Array(8 * 27));
    // (32 + 1 + 1 - 3) / 2 + 1 = 16 (floor)
    const conv = b.op('Conv', [x, w], { pads: [1, 1, 1, 1], strides: [2, 2] });
    // [batch, 8, 16, 16] -> Reshape [0, -1] keeps batch symbolic... -1 is unknown without a static batch.
    const flat = b.op('Reshape', [conv, b.initializer(undefined, DataType.INT64, [2], BigInt64Array.of(0n, -1n))]);
    const y = b.input('y', DataType.FLOAT, [2, 1, 4, 5]);
    const z = b.input('z', DataType.FLOAT, [3, 5, 6]);
    const mm = b.op('MatMul', [y, z]); // batch [2,1] x [3] -> [2,3], then [4,6]
    const sum = b.op('Add', [y, b.initializer(undefined, DataType.FLOAT, [5], new Float32Array(5))]);
    for (const v of [conv, flat, mm, sum]) b.output(v);
    const m = b.build();
    runPipeline(m, [shapeInference], { check: true });
    expect(shapeOf(conv.type)).toEqual(['batch', 8, 16, 16]);
    expect(shapeOf(flat.type)).toEqual(['batch', null]);
    expect(shapeOf(mm.type)).toEqual([2, 3, 4, 6]);
    expect(shapeOf(sum.type)).toEqual([2, 1, 4, 5]);
  });
});

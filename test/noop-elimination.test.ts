import { describe, expect, it } from 'vitest';
import { DataType } from '../src/ir/dtype.js';
import { tensorType } from '../src/ir/types.js';
import { ModelBuilder } from '../models/builder.js';
import { noopElimination } from '../passes/noop-elimination.js';
import { runPipeline } from '../passes/pass.js';

const i64 = (b: ModelBuilder, v: number[]) => b.initializer(undefined, DataType.INT64, [v.length], BigInt64Array.from(v, BigInt));

describe('no-op elimination', () => {
  it('removes Identity, inference Dropout, Cast to the same type, Reshape to the same shape, identity Transpose', () => {
    const b = new ModelBuilder();
    const x = b.input('x', DataType.FLOAT, [2, 3]);
    let v = b.op('Identity', [x]);
    v = b.op('Dropout', [v]);
    v = b.op('Cast', [v], { to: DataType.FLOAT });
    v = b.op('Reshape', [v, i64(b, [2, -1])]);
    v = b.op('Transpose', [v], { perm: [0, 1] });
    const y = b.op('Relu', [v]);
    b.output(y, { dtype: DataType.FLOAT, shape: [2, 3] });
    const m = b.build();
    // Shapes of intermediate values come from shape inference in the pipeline; set them here.
    for (const n of m.graph.nodes) n.outputs[0]!.type = tensorType(DataType.FLOAT, [2, 3]);
    const [r] = runPipeline(m, [noopElimination], { check: true });
    expect(m.graph.nodes.map((n) => n.opType)).toEqual(['Relu']);
    expect(m.graph.nodes[0]!.inputs[0]).toBe(x);
    expect(r!.details).toEqual({ removed: 5 });
  });

  it('keeps what is not a no-op: Cast to another type, Reshape that changes shape, Dropout in training, Dropout whose mask is used', () => {
    const b = new ModelBuilder({ opset: 17 });
    const x = b.input('x', DataType.FLOAT, [2, 3]);
    const training = b.initializer('training', DataType.BOOL, [], Uint8Array.of(1));
    const a = b.op('Cast', [x], { to: DataType.FLOAT16 });
    const r = b.op('Reshape', [x, i64(b, [3, 2])]);
    const d = b.op('Dropout', [x, null, training]);
    const [d2, mask] = b.opMulti('Dropout', [x], {}, { outputs: 2 });
    b.output(a);
    b.output(r);
    b.output(d);
    b.output(d2!);
    b.output(mask!);
    const m = b.build();
    const [rep] = runPipeline(m, [noopElimination], { check: true });
    expect(rep!.changed).toBe(false);
    expect(m.graph.nodes).toHaveLength(4);
  });

  it('keeps graph output names: the producer of the input takes over the name', () => {
    const b = new ModelBuilder();
    const x = b.input('x', DataType.FLOAT, [2]);
    const h = b.op('Relu', [x]);
    const y = b.op('Identity', [h], {}, { name: 'final' });
    b.graph.renameValue(y, 'logits');
    b.output(y, { dtype: DataType.FLOAT, shape: [2] });
    const m = b.build();
    runPipeline(m, [noopElimination], { check: true });
    expect(m.graph.nodes.map((n) => n.opType)).toEqual(['Relu']);
    expect(m.graph.outputs.map((o) => o.name)).toEqual(['logits']);
    expect(m.graph.outputs[0]!.producer!.opType).toBe('Relu');
  });

  it('keeps an Identity that maps a graph input straight to a graph output', () => {
    const b = new ModelBuilder();
    const x = b.input('x', DataType.FLOAT, [2]);
    b.output(b.op('Identity', [x]), { dtype: DataType.FLOAT, shape: [2] });
    const m = b.build();
    runPipeline(m, [noopElimination], { check: true });
    expect(m.graph.nodes.map((n) => n.opType)).toEqual(['Identity']);
  });
});

import { describe, expect, it } from 'vitest';
import { DataType } from '../src/ir/dtype.js';
import { Tensor } from '../src/ir/tensor.js';
import { ModelBuilder } from '../models/builder.js';
import { commonSubexpressionElimination } from '../passes/common-subexpression.js';
import { runPipeline } from '../passes/pass.js';

describe('common-subexpression elimination', () => {
  it('merges equal nodes and equal Constants, rewiring users', () => {
    const b = new ModelBuilder();
    const x = b.input('x', DataType.FLOAT, [2]);
    const c1 = b.op('Constant', [], { value: Tensor.fromTypedArray('v', DataType.FLOAT, [2], Float32Array.of(1, 2)) });
    const c2 = b.op('Constant', [], { value: Tensor.fromTypedArray('v', DataType.FLOAT, [2], Float32Array.of(1, 2)) });
    const p = b.op('Add', [x, c1]);
    const q = b.op('Add', [x, c2]);
    b.output(b.op('Mul', [p, q]), { dtype: DataType.FLOAT, shape: [2] });
    const m = b.build();
    const [r] = runPipeline(m, [commonSubexpressionElimination], { check: true });
    expect(r!.details).toEqual({ merged: 2 });
    expect(m.graph.nodes.map((n) => n.opType)).toEqual(['Constant', 'Add', 'Mul']);
    const mul = m.graph.nodes[2]!;
    expect(mul.inputs[0]).toBe(mul.inputs[1]);
  });

  it('does not merge different attributes, random ops, or nodes producing graph outputs', () => {
    const b = new ModelBuilder();
    const x = b.input('x', DataType.FLOAT, [2, 2]);
    const t1 = b.op('Transpose', [x], { perm: [1, 0] });
    const t2 = b.op('Transpose', [x], { perm: [0, 1] });
    const r1 = b.op('RandomNormalLike', [x]);
    const r2 = b.op('RandomNormalLike', [x]);
    const o1 = b.op('Relu', [x]);
    const o2 = b.op('Relu', [x]);
    for (const v of [t1, t2, r1, r2, o1, o2]) b.output(v);
    const m = b.build();
    const [r] = runPipeline(m, [commonSubexpressionElimination], { check: true });
    expect(r!.changed).toBe(false);
    expect(m.graph.nodes).toHaveLength(6);
  });

  it('distinguishes float attributes 0 and -0 and integer widths exactly', () => {
    const b = new ModelBuilder();
    const x = b.input('x', DataType.FLOAT, [2]);
    const a = b.op('LeakyRelu', [x], { alpha: { float: 0 } });
    const c = b.op('LeakyRelu', [x], { alpha: { float: -0 } });
    b.output(b.op('Add', [a, c]));
    const m = b.build();
    const [r] = runPipeline(m, [commonSubexpressionElimination], { check: true });
    expect(r!.changed).toBe(false);
  });
});

import { describe, expect, it } from 'vitest';
import { DataType } from '../src/ir/dtype.js';
import { Graph } from '../src/ir/graph.js';
import { checkModel } from '../src/ir/invariants.js';
import { ModelBuilder } from '../models/builder.js';
import { deadCodeElimination } from '../passes/dead-code.js';
import { runPipeline } from '../passes/pass.js';

function ops(m: ReturnType<ModelBuilder['build']>): string[] {
  return m.graph.nodes.map((n) => n.opType);
}

describe('dead-code elimination', () => {
  it('removes a dead chain, unused initializers and stale value_info, keeps the live path', () => {
    const b = new ModelBuilder();
    const x = b.input('x', DataType.FLOAT, [2]);
    const c = b.initializer('c', DataType.FLOAT, [2], Float32Array.of(1, 2));
    b.initializer('unused', DataType.FLOAT, [1], Float32Array.of(3));
    const live = b.op('Relu', [x]);
    const dead1 = b.op('Add', [x, c]);
    const dead2 = b.op('Neg', [dead1]);
    b.graph.valueInfos.push(dead2);
    b.output(live, { dtype: DataType.FLOAT, shape: [2] });
    const m = b.build();
    const [report] = runPipeline(m, [deadCodeElimination], { check: true });
    expect(ops(m)).toEqual(['Relu']);
    expect(m.graph.initializers.map((v) => v.name)).toEqual([]);
    expect(m.graph.valueInfos).toEqual([]);
    expect(report!.details).toMatchObject({ nodes: 2, initializers: 2 });
    expect(checkModel(m)).toEqual([]);
  });

  it('keeps nodes whose outputs feed a subgraph through an outer-scope reference', () => {
    const b = new ModelBuilder();
    const cond = b.input('cond', DataType.BOOL, []);
    const x = b.input('x', DataType.FLOAT, [2]);
    const outer = b.op('Neg', [x]); // used only inside the branches
    const makeBranch = (op: string) => {
      const g = new Graph(b.graph);
      g.name = `${op}_branch`;
      const n = g.addNode(op, [outer], [`${op}_y`]);
      g.outputs.push(n.outputs[0]!);
      return g;
    };
    const y = b.op('If', [cond], { then_branch: makeBranch('Relu'), else_branch: makeBranch('Abs') });
    b.output(y, { dtype: DataType.FLOAT, shape: [2] });
    const m = b.build();
    runPipeline(m, [deadCodeElimination], { check: true });
    expect(ops(m)).toEqual(['Neg', 'If']);
  });

  it('never removes graph inputs or outputs, even when unused', () => {
    const b = new ModelBuilder();
    const x = b.input('x', DataType.FLOAT, [2]);
    b.input('y', DataType.FLOAT, [2]);
    b.output(x);
    const m = b.build();
    const [r] = runPipeline(m, [deadCodeElimination], { check: true });
    expect(r!.changed).toBe(false);
    expect(m.graph.inputs.map((v) => v.name)).toEqual(['x', 'y']);
  });
});

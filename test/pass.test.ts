import { describe, expect, it } from 'vitest';
import { PeftcError } from '../src/errors.js';
import { DataType } from '../src/ir/dtype.js';
import { ModelBuilder } from '../models/builder.js';
import { runPipeline, type Pass } from '../passes/pass.js';

const model = () => {
  const b = new ModelBuilder();
  const x = b.input('x', DataType.FLOAT, [2]);
  b.output(b.op('Relu', [b.op('Relu', [x])]), { dtype: DataType.FLOAT, shape: [2] });
  return b.build();
};

describe('pass manager', () => {
  it('runs to a fixpoint and reports node counts per pass', () => {
    let calls = 0;
    const removeOneRelu: Pass = {
      name: 'drop-double-relu',
      description: 'test pass',
      run(m) {
        calls++;
        const n = m.graph.nodes.find((k) => k.opType === 'Relu' && k.inputs[0]?.producer?.opType === 'Relu');
        if (!n) return { changed: false };
        m.graph.replaceAllUses(n.outputs[0]!, n.inputs[0]!);
        m.graph.removeNode(n);
        return { changed: true, details: { removed: 1 } };
      },
    };
    const m = model();
    const reports = runPipeline(m, [removeOneRelu], { fixpoint: true, check: true });
    expect(calls).toBe(2);
    expect(reports.map((r) => [r.iteration, r.changed, r.nodesBefore, r.nodesAfter])).toEqual([
      [1, true, 2, 1],
      [2, false, 1, 1],
    ]);
  });

  it('names the failing pass and the passes before it', () => {
    const ok: Pass = { name: 'first', description: '', run: () => ({ changed: false }) };
    const bad: Pass = { name: 'second', description: '', run: () => { throw new Error('boom'); } };
    expect(() => runPipeline(model(), [ok, bad])).toThrowError(/pass 'second' failed \(after first\): boom/);
  });

  it('catches a pass that breaks the IR when checking is on', () => {
    const breaker: Pass = {
      name: 'breaker',
      description: '',
      run(m) {
        // Reorder nodes so a use precedes its definition.
        m.graph.nodes.reverse();
        return { changed: true };
      },
    };
    expect(() => runPipeline(model(), [breaker], { check: true })).toThrowError(PeftcError);
    expect(() => runPipeline(model(), [breaker], { check: true })).toThrowError(/left the IR invalid[\s\S]*before it is produced/);
  });
});

/**
 * The fusion engine's mechanics on small hand-made fusions and graphs: commutative operands,
 * repeated captures, alternatives, near-miss reasons (from the binding that got furthest),
 * single-consumer intermediates, graph outputs keeping their names, removal of what only fed the
 * match, re-sorting, the fixpoint, and the pass's selection of fusions per target.
 */
import { describe, expect, it } from 'vitest';
import { DataType } from '../src/ir/dtype.js';
import { PeftcError } from '../src/errors.js';
import { checkModel } from '../src/ir/invariants.js';
import { Tensor } from '../src/ir/tensor.js';
import { runPipeline } from '../passes/pass.js';
import { fusionPass } from '../passes/fusion.js';
import { ModelBuilder } from '../models/builder.js';
import { alt, applyFusions, k, op, v, type Fusion } from '../passes/fuse/engine.js';
import { FUSIONS, selectFusions } from '../passes/fusion.js';
import { copy, expectSameOutputs, floatInput, fuse, inferShapes, ops } from './fusion-helpers.js';

/** Toy fusion: x * 2 + x (any operand order, 2 as Mul or as x + x) -> Mul(x, 3). */
const times3: Fusion = {
  name: 'times3',
  description: 'x * 2 + x -> x * 3',
  targets: ['cpu'],
  patterns: [op('Add', [alt(op('Mul', [v('x'), k('two', 2, 'the factor')], { commutative: true, name: 'mul' }), op('Add', [v('x'), v('x')], { name: 'mul' })), v('x')], { commutative: true })],
  rewrite(m, r) {
    const three = r.constant('three', Tensor.fromTypedArray('', DataType.FLOAT, [], Float32Array.of(3)));
    const n = r.add('Mul', [m.value('x'), three]);
    r.replace(m.root.outputs[0]!, n.outputs[0]!);
  },
};

function toy(build: (b: ModelBuilder) => void) {
  const b = new ModelBuilder({ opset: 17 });
  build(b);
  return inferShapes(b.build());
}

const c = (b: ModelBuilder, x: number) => b.initializer(undefined, DataType.FLOAT, [], Float32Array.of(x));

describe('fusion engine', () => {
  it('matches commutative operands in either order and binds a repeated capture to one value', async () => {
    for (const order of ['x*2', '2*x', 'x+x']) {
      const m = toy((b) => {
        const x = b.input('x', DataType.FLOAT, [3]);
        const two = c(b, 2);
        const prod = order === 'x*2' ? b.op('Mul', [x, two]) : order === '2*x' ? b.op('Mul', [two, x]) : b.op('Add', [x, x]);
        b.output(b.op('Add', [x, prod]));
      });
      const original = copy(m);
      const res = applyFusions(m, [times3], { target: 'cpu' });
      expect(res.applied.map((a) => a.fusion), order).toEqual(['times3']);
      expect(ops(m)).toEqual({ Mul: 1 });
      expect(checkModel(m)).toEqual([]);
      await expectSameOutputs(original, m, { x: floatInput('x', [3], 1) });
    }
  });

  it('does not match when a repeated capture meets two different values (no near-miss either)', () => {
    const m = toy((b) => {
      const x = b.input('x', DataType.FLOAT, [3]);
      const y = b.input('y', DataType.FLOAT, [3]);
      b.output(b.op('Add', [b.op('Mul', [x, c(b, 2)]), y]));
    });
    const res = applyFusions(m, [times3], { target: 'cpu' });
    expect(res.applied).toEqual([]);
    expect(res.nearMisses).toEqual([]);
  });

  it('reports a near-miss with the failing check of the binding that got furthest', () => {
    const m = toy((b) => {
      const x = b.input('x', DataType.FLOAT, [3]);
      const s = b.input('s', DataType.FLOAT, []);
      b.output(b.op('Add', [x, b.op('Mul', [x, c(b, 2.5)], {}, { name: '/blk/Mul' })], {}, { name: '/blk/Add' }));
      b.output(b.op('Add', [x, b.op('Mul', [x, s], {}, { name: '/blk2/Mul' })], {}, { name: '/blk2/Add' }));
    });
    const res = applyFusions(m, [times3], { target: 'cpu' });
    expect(res.applied).toEqual([]);
    expect(res.nearMisses.map((n) => [n.at, n.scope, n.reason])).toEqual([
      ['/blk2/Add', '/blk2/', "the factor is not a constant (graph input 's')"],
      ['/blk/Add', '/blk/', 'the factor is 2.5, expected 2'],
    ]);
  });

  it('leaves a match alone when an intermediate has a consumer outside it, and says which', () => {
    const m = toy((b) => {
      const x = b.input('x', DataType.FLOAT, [3]);
      const prod = b.op('Mul', [x, c(b, 2)], {}, { name: 'double' });
      b.output(b.op('Add', [prod, x]));
      b.output(b.op('Neg', [prod], {}, { name: 'other' }));
    });
    const res = applyFusions(m, [times3], { target: 'cpu' });
    expect(res.applied).toEqual([]);
    expect(res.nearMisses[0]!.reason).toBe("intermediate 'double' (Mul) is also used by 'other' (Neg)");
  });

  it('keeps a graph output name, removes what only fed the match (initializers too), keeps the rest', () => {
    const m = toy((b) => {
      const x = b.input('x', DataType.FLOAT, [3]);
      const out = b.op('Add', [b.op('Mul', [x, c(b, 2)]), x]);
      b.output(out);
    });
    const name = m.graph.outputs[0]!.name;
    const initializersBefore = m.graph.initializers.length;
    applyFusions(m, [times3], { target: 'cpu' });
    expect(m.graph.outputs[0]!.name).toBe(name);
    expect(m.graph.outputs[0]!.producer!.opType).toBe('Mul');
    // The constant 2 went with the match; the new constant 3 came.
    expect(m.graph.initializers.length).toBe(initializersBefore);
    expect(m.graph.initializers.map((i) => i.name)).toContain('three');
  });

  it('re-sorts the node list when a redirected user comes before the fused node', async () => {
    // The residual sum's other user (Neg) is listed before the norm; after skip-rms-norm it reads
    // output 3 of a node inserted where the norm was.
    const m = toy((b) => {
      const x = b.input('x', DataType.FLOAT, [2, 3, 8]);
      const y = b.input('y', DataType.FLOAT, [2, 3, 8]);
      const sum = b.op('Add', [x, y]);
      const early = b.op('Neg', [sum]);
      const ms = b.op('ReduceMean', [b.op('Pow', [sum, c(b, 2)])], { axes: [-1], keepdims: 1 });
      const norm = b.op('Div', [sum, b.op('Sqrt', [b.op('Add', [ms, c(b, 1e-6)])])]);
      b.output(b.op('Add', [norm, early]));
    });
    const original = copy(m);
    const pass = fuse(m, { only: ['rms-norm', 'skip-rms-norm'] });
    expect(pass.applied.map((a) => a.fusion)).toEqual(['rms-norm', 'skip-rms-norm']);
    expect(checkModel(m)).toEqual([]);
    await expectSameOutputs(original, m, { x: floatInput('x', [2, 3, 8], 1), y: floatInput('y', [2, 3, 8], 2) });
  });

  it('runs to a fixpoint: a fusion builds on another one applied in the same pass', () => {
    const m = toy((b) => {
      const x = b.input('x', DataType.FLOAT, [2, 4, 8]);
      const pre = b.op('Add', [x, b.initializer(undefined, DataType.FLOAT, [8], Float32Array.from({ length: 8 }, (_, i) => i / 8))]);
      const g = b.op('Mul', [b.op('Mul', [pre, b.op('Add', [b.op('Erf', [b.op('Div', [pre, c(b, Math.SQRT2)])]), c(b, 1)])]), c(b, 0.5)]);
      b.output(g);
    });
    const res = applyFusions(m, selectFusions({ target: 'cpu' }), { target: 'cpu' });
    expect(res.applied.map((a) => a.fusion)).toEqual(['gelu', 'bias-gelu']);
    expect(ops(m)).toEqual({ 'com.microsoft::BiasGelu': 1 });
    expect(res.rounds).toBe(2);
    expect(m.opsetVersion('com.microsoft')).toBe(1);
  });
});

describe('fusion selection per target', () => {
  it('every fusion has a unique name, a description and at least one target', () => {
    const names = FUSIONS.map((f) => f.name);
    expect(new Set(names).size).toBe(names.length);
    for (const f of FUSIONS) {
      expect(f.description.length).toBeGreaterThan(10);
      expect(f.targets.length).toBeGreaterThan(0);
    }
  });

  it('cpu leaves out the fusions measured slower there unless named; cuda takes them', () => {
    const cpu = selectFusions({ target: 'cpu' }).map((f) => f.name);
    expect(cpu).not.toContain('skip-layer-norm');
    expect(cpu).not.toContain('skip-rms-norm');
    expect(cpu).toContain('attention');
    expect(selectFusions({ target: 'cpu', only: ['skip-layer-norm', 'gelu'] }).map((f) => f.name)).toEqual(['skip-layer-norm', 'gelu']);
    expect(selectFusions({ target: 'cuda' }).map((f) => f.name)).toEqual(FUSIONS.map((f) => f.name));
  });

  it('refuses unknown fusion names and unknown targets, naming the valid ones', () => {
    expect(() => selectFusions({ target: 'cpu', only: ['gelu', 'teleport'] })).toThrow(PeftcError);
    expect(() => selectFusions({ target: 'cpu', only: ['teleport'] })).toThrow(/unknown fusion 'teleport' \(fusions: conv-bn, /);
    expect(() => selectFusions({ target: 'xla' as never })).toThrow(/no target 'xla'/);
  });

  it('reports counts per fusion in the pass details and logs each application and near-miss', () => {
    const m = toy((b) => {
      const x = b.input('x', DataType.FLOAT, [2, 8]);
      b.output(b.op('Mul', [x, b.op('Sigmoid', [x], {}, { name: '/mlp/act/Sigmoid' })], {}, { name: '/mlp/act/Mul' }));
      const h = b.input('h', DataType.FLOAT16, [2, 8]);
      b.output(b.op('Mul', [h, b.op('Sigmoid', [h], {}, { name: '/mlp2/act/Sigmoid' })], {}, { name: '/mlp2/act/Mul' }));
    });
    const lines: string[] = [];
    const pass = fusionPass({ target: 'cpu' });
    const [report] = runPipeline(m, [pass], { check: true, log: (s) => lines.push(s) });
    expect(pass.applied.map((a) => [a.fusion, a.scope, a.added])).toEqual([['silu', '/mlp/act/', ['com.microsoft::QuickGelu']]]);
    expect(pass.nearMisses).toEqual([{ fusion: 'silu', at: '/mlp2/act/Mul', scope: '/mlp2/act/', reason: 'the cpu QuickGelu kernel does not take float16' }]);
    expect(report!.details).toMatchObject({ applied: 1, nearMisses: 1, 'fused:silu': 1, 'near-miss:silu': 1 });
    expect(lines).toEqual([
      'fused silu at /mlp/act/: 2 nodes -> com.microsoft::QuickGelu',
      'near-miss silu at /mlp2/act/Mul: the cpu QuickGelu kernel does not take float16',
    ]);
  });
});

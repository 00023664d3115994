import { describe, expect, it } from 'vitest';
import { DataType } from '../src/ir/dtype.js';
import { ModelBuilder } from '../models/builder.js';
import { dedupeInitializers } from '../passes/dedupe-initializers.js';
import { runPipeline } from '../passes/pass.js';

describe('initializer de-duplication', () => {
  it('merges byte-identical initializers of the same dtype and shape only', () => {
    const b = new ModelBuilder();
    const x = b.input('x', DataType.FLOAT, [2]);
    const w1 = b.initializer('w1', DataType.FLOAT, [2], Float32Array.of(1, 2));
    const w2 = b.initializer('w2', DataType.FLOAT, [2], Float32Array.of(1, 2));
    const w3 = b.initializer('w3', DataType.INT32, [2], Float32Array.of(1, 2) as unknown as Int32Array); // same bytes, other dtype
    const w4 = b.initializer('w4', DataType.FLOAT, [1, 2], Float32Array.of(1, 2)); // same bytes, other shape
    const w5 = b.initializer('w5', DataType.FLOAT, [2], Float32Array.of(1, -2));
    const y = b.op('Add', [b.op('Add', [x, w1]), w2]);
    b.output(b.op('Add', [y, w5]));
    b.output(b.op('Cast', [w3], { to: DataType.FLOAT }));
    b.output(b.op('Identity', [w4]));
    const m = b.build();
    const [r] = runPipeline(m, [dedupeInitializers], { check: true });
    expect(r!.details).toEqual({ removed: 1, bytesSaved: 8 });
    expect(m.graph.initializers.map((v) => v.name)).toEqual(['w1', 'w3', 'w4', 'w5']);
    expect(m.graph.nodes[1]!.inputs[1]!.name).toBe('w1');
  });

  it('leaves initializers that are also graph inputs alone (they can be overridden)', () => {
    const b = new ModelBuilder();
    const w1 = b.initializer('w1', DataType.FLOAT, [2], Float32Array.of(1, 2));
    const w2 = b.initializer('w2', DataType.FLOAT, [2], Float32Array.of(1, 2));
    b.graph.inputs.push(w2);
    b.output(b.op('Add', [w1, w2]));
    const m = b.build();
    const [r] = runPipeline(m, [dedupeInitializers], { check: true });
    expect(r!.changed).toBe(false);
  });
});

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DataType } from '../src/ir/dtype.js';
import { loadModel, saveModel } from '../src/onnx/io.js';
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

  // Large tensors are probed (a few slices) before being hashed whole; the probe only pre-filters.
  for (const external of [false, true]) {
    it(`large tensors: equal ones merge, ones differing only between probe slices do not (${external ? 'external data' : 'in memory'})`, () => {
      const n = 1 << 19; // 2 MiB of float32, above the probe threshold
      const base = new Float32Array(n).map((_, i) => Math.sin(i));
      const twin = base.slice();
      const odd = base.slice();
      odd[(n >> 1) + 777] = 42; // between probe slices: only the full hash sees it
      const b = new ModelBuilder();
      const x = b.input('x', DataType.FLOAT, [n]);
      const ws = [b.initializer('a', DataType.FLOAT, [n], base), b.initializer('b', DataType.FLOAT, [n], twin), b.initializer('c', DataType.FLOAT, [n], odd)];
      b.output(b.op('Add', [b.op('Add', [b.op('Add', [x, ws[0]!]), ws[1]!]), ws[2]!]));
      let m = b.build();
      const dir = mkdtempSync(join(tmpdir(), 'peftc-dedupe-'));
      try {
        if (external) {
          saveModel(m, join(dir, 'm.onnx'), { externalData: 'all', durable: false });
          m = loadModel(join(dir, 'm.onnx'));
          expect(m.graph.initializers.every((v) => v.initializer!.source.kind === 'external')).toBe(true);
        }
        const [r] = runPipeline(m, [dedupeInitializers], { check: true });
        expect(r!.details).toEqual({ removed: 1, bytesSaved: n * 4 });
        expect(m.graph.initializers.map((v) => v.name)).toEqual(['a', 'c']);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});

/**
 * The xla lowering against data we did not write: every ONNX node test (Debian's
 * libonnx-testdata) whose ops all have an entry in targets/xla/lowerings.ts is compiled with
 * --target xla (static shapes from its data set where the model leaves them symbolic), run in the
 * StableHLO reference interpreter, and compared with ONNX's expected outputs (|got - want| <=
 * 1e-6 + 1e-3 |want|, NaN matching NaN). A case is either computed right or refused with its node
 * named (an input that must be constant but is fed at run time, a mode the entry does not
 * implement, a string tensor); none may compute a wrong answer. Cases refused only because a
 * shape-like input (Reshape's shape, Slice's starts, ...) is fed at run time are compiled again
 * with their integer inputs bound to the test data as constants, the form a deployed model has,
 * so those lowerings are checked too.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { compileModel } from '../src/compile.js';
import { PeftcError } from '../src/errors.js';
import type { Model } from '../src/ir/model.js';
import { loadModel } from '../src/onnx/io.js';
import { listCases, readDataSet } from '../src/runtime/testdata.js';
import { saveModel } from '../src/onnx/io.js';
import { dtypeInfo } from '../src/ir/dtype.js';
import type { Tensor } from '../src/ir/tensor.js';
import { openStablehloArtifact } from '../src/stablehlo/artifact.js';
import { LOWERINGS } from '../targets/xla/lowerings.js';

const work = mkdtempSync(join(tmpdir(), 'peftc-xla-conformance-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Inputs whose test data disagree with the model's own static shape (ONNX 1.12's bf16 CastLike cases). */
function dataMismatch(model: Model, inputs: Record<string, { dims: readonly number[] }>): boolean {
  return model.graph.inputs.some((v) => {
    const t = inputs[v.name];
    const shape = v.type?.kind === 'tensor' ? v.type.shape : undefined;
    return !!t && !!shape && shape.every((d) => d.value !== undefined) && (shape.length !== t.dims.length || shape.some((d, i) => d.value !== t.dims[i]));
  });
}

/** The model with its integer graph inputs bound to the data set's values (constants, no longer inputs). */
function withConstantIntegerInputs(model: Model, inputs: Record<string, Tensor>): string[] {
  const g = model.graph;
  const bound: string[] = [];
  for (const v of [...g.inputs]) {
    const t = inputs[v.name];
    if (!t || v.initializer || !dtypeInfo(t.dtype).isInteger) continue;
    v.initializer = t.renamed(v.name);
    g.initializers.push(v);
    g.inputs = g.inputs.filter((x) => x !== v);
    bound.push(v.name);
  }
  return bound;
}

describe('xla: ONNX node conformance tests in the reference interpreter', () => {
  it('computes every covered case right or refuses it by name; none wrong', async () => {
    const passed: string[] = [];
    const refused = new Map<string, string[]>();
    const wrong: string[] = [];
    const constantInputs: string[] = [];
    for (const c of listCases('node')) {
      if (!c.model || !c.dataSets.length) continue;
      const model = loadModel(c.model);
      if (!model.graph.nodes.every((n) => LOWERINGS[n.qualifiedOp])) continue;
      let data: ReturnType<typeof readDataSet>;
      try {
        data = readDataSet(c.dataSets[0]!, model); // refuses sequence/optional inputs: not tensors, not for XLA
      } catch (err) {
        if (err instanceof PeftcError) continue;
        throw err;
      }
      if (dataMismatch(model, data.inputs)) continue;
      const shapes: Record<string, number[]> = {};
      for (const v of model.graph.inputs) {
        const t = data.inputs[v.name];
        if (t && v.type?.kind === 'tensor' && v.type.shape?.some((d) => d.value === undefined)) shapes[v.name] = [...t.dims];
      }
      const out = join(work, c.name);
      const compile = (path: string) => compileModel(path, { target: 'xla', quant: 'none', output: out, shapes, log: () => {} });
      let feeds = data.inputs;
      try {
        try {
          compile(c.model);
        } catch (err) {
          if (!(err instanceof PeftcError) || !/is computed at run time/.test(err.message)) throw err;
          const bound = withConstantIntegerInputs(model, data.inputs);
          if (!bound.length) throw err;
          const path = join(work, `${c.name}.onnx`);
          saveModel(model, path, { durable: false });
          compile(path);
          feeds = Object.fromEntries(Object.entries(data.inputs).filter(([k]) => !bound.includes(k)));
          constantInputs.push(c.name);
        }
      } catch (err) {
        if (!(err instanceof PeftcError)) throw err;
        const reason = /\): (.*)$/m.exec(err.message)?.[1] ?? err.message.split('\n')[0]!;
        const key = reason.replace(/\(input \d+, '[^']*'\)/, '(input)').replace(/'[^']*'/g, "'…'");
        refused.set(key, [...(refused.get(key) ?? []), c.name]);
        continue;
      }
      const got = await openStablehloArtifact(out).run(feeds);
      let bad: string | undefined;
      for (const [name, want] of Object.entries(data.outputs)) {
        const g = got[name];
        if (!g) {
          bad = `no output '${name}'`;
          break;
        }
        if (g.dims.join() !== want.dims.join()) {
          bad = `'${name}' has shape [${g.dims}], expected [${want.dims}]`;
          break;
        }
        const a = want.toTypedArray() as ArrayLike<number | bigint>;
        const b = g.toTypedArray() as ArrayLike<number | bigint>;
        for (let i = 0; i < a.length && !bad; i++) {
          const x = Number(a[i]);
          const y = Number(b[i]);
          if (x !== y && !(Math.abs(x - y) <= 1e-6 + 1e-3 * Math.abs(x)) && !(Number.isNaN(x) && Number.isNaN(y))) bad = `'${name}'[${i}] = ${y}, expected ${x}`;
        }
        if (bad) break;
      }
      if (bad) wrong.push(`${c.name}: ${bad}`);
      else passed.push(c.name);
      rmSync(out, { recursive: true, force: true });
    }
    const refusals = [...refused].map(([why, names]) => `  ${names.length} x ${why}: ${names.slice(0, 4).join(', ')}${names.length > 4 ? ', ...' : ''}`);
    console.log(
      `ONNX node tests with --target xla: ${passed.length} computed right (${constantInputs.length} of them with their integer inputs bound as constants), ${[...refused.values()].flat().length} refused, ${wrong.length} wrong\n${refusals.join('\n')}`,
    );
    expect(wrong).toEqual([]);
    expect(passed.length).toBeGreaterThanOrEqual(450);
  });
});

/**
 * Reference kernels against ONNX's own node tests (libonnx-testdata node/): every single-node test
 * whose op has a registered kernel at its opset is run on its inputs and compared with the
 * expected outputs: exact for integers, bool and strings; floats within rtol 1e-5 / atol 1e-6
 * (float32/64) or one unit in the last place of the type (float16/bfloat16, whose expected data is
 * itself rounded). A kernel that declares an input unsupported (KernelUnsupported) is listed, not
 * failed; any other error or mismatch fails with the test's name.
 */
import { describe, expect, it } from 'vitest';
import { DataType } from '../src/ir/dtype.js';
import { loadModel } from '../src/onnx/io.js';
import { compareTensors } from '../src/runtime/compare.js';
import { listCases, nonTensorIo, readDataSet } from '../src/runtime/testdata.js';
import { findKernel, KernelUnsupported, registeredOps } from '../kernels/index.js';

interface Outcome {
  op: string;
  test: string;
  result: 'pass' | 'unsupported' | 'fail';
  detail?: string;
}

function runNodeTests(): Outcome[] {
  const outcomes: Outcome[] = [];
  for (const c of listCases('node')) {
    if (!c.model) continue;
    const model = loadModel(c.model);
    if (model.graph.nodes.length !== 1 || nonTensorIo(model)) continue;
    const node = model.graph.nodes[0]!;
    const opset = model.opsetVersion(node.domain) ?? 0;
    const entry = findKernel(node.domain, node.opType, opset);
    if (!entry) continue;
    const op = node.qualifiedOp;
    for (const ds of c.dataSets) {
      const { inputs, outputs } = readDataSet(ds, model);
      const args = node.inputs.map((v) => (v ? (inputs[v.name] ?? v.initializer ?? null) : null));
      let got;
      try {
        got = entry.kernel(args, node, { opsetVersion: opset });
      } catch (err) {
        if (err instanceof KernelUnsupported) outcomes.push({ op, test: c.name, result: 'unsupported', detail: err.message });
        else outcomes.push({ op, test: c.name, result: 'fail', detail: `threw ${(err as Error).message}` });
        break;
      }
      let failure: string | undefined;
      node.outputs.forEach((v, i) => {
        if (!v || failure) return;
        const expected = outputs[v.name];
        const actual = got[i];
        if (!expected) return;
        if (!actual) {
          failure = `no output ${i}`;
          return;
        }
        const half = expected.dtype === DataType.FLOAT16 || expected.dtype === DataType.BFLOAT16;
        const cmp = compareTensors(expected, actual, half ? { rtol: expected.dtype === DataType.FLOAT16 ? 1e-3 : 8e-3, atol: 1e-3 } : { rtol: 1e-5, atol: 1e-6 });
        if (!cmp.ok) failure = `output '${v.name}': ${cmp.reason}`;
      });
      outcomes.push({ op, test: c.name, result: failure ? 'fail' : 'pass', detail: failure });
      if (failure) break;
    }
  }
  return outcomes;
}

describe('reference kernels on ONNX node tests', () => {
  it('pass every node test they claim, declare the rest unsupported', () => {
    const outcomes = runNodeTests();
    const byOp = new Map<string, { pass: number; unsupported: number; fail: number }>();
    const tests = new Map<string, Outcome['result']>();
    for (const o of outcomes) {
      const s = byOp.get(o.op) ?? { pass: 0, unsupported: 0, fail: 0 };
      s[o.result]++;
      byOp.set(o.op, s);
      const prev = tests.get(o.test);
      if (prev !== 'fail') tests.set(o.test, o.result === 'pass' && prev === 'unsupported' ? prev : o.result);
    }
    const count = (r: Outcome['result']) => [...tests.values()].filter((x) => x === r).length;
    const passed = count('pass');
    console.log(
      `kernels: ${registeredOps().length} ops registered; node tests for them: ${tests.size}; passed ${passed}, declared unsupported ${count('unsupported')}, failed ${count('fail')}`,
    );
    console.log([...byOp].sort().map(([op, s]) => `  ${op}: ${s.pass} pass${s.unsupported ? `, ${s.unsupported} unsupported` : ''}${s.fail ? `, ${s.fail} FAIL` : ''}`).join('\n'));
    const unsupported = outcomes.filter((o) => o.result === 'unsupported');
    if (unsupported.length) console.log(`declared unsupported:\n  ${unsupported.map((o) => `${o.test}: ${o.detail}`).join('\n  ')}`);
    const failures = outcomes.filter((o) => o.result === 'fail').map((o) => `${o.test} (${o.op}): ${o.detail}`);
    expect(failures).toEqual([]);
    // Floor: the covered ops have hundreds of node tests; far fewer means the data or the registry is broken.
    expect(passed).toBeGreaterThanOrEqual(250);
  });
});

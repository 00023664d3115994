/**
 * The default-domain opset upgrade (passes/opset-upgrade.ts), judged by onnxruntime-node and by
 * data we did not write:
 *  1. every ONNX conformance model (Debian libonnx-testdata: node/, pytorch-converted/,
 *     pytorch-operator/, all below opset 21) that onnxruntime runs as shipped is upgraded to 21
 *     and must give the shipped expected outputs (rtol 1e-4 / atol 1e-5, the codec conformance
 *     tolerance) on onnxruntime, or be refused with a PeftcError. Where onnxruntime's own
 *     numerics already miss the shipped data before upgrading, the upgraded model must give
 *     what the original gives on onnxruntime instead. Counts and refusal reasons are printed;
 *     any wrong output fails;
 *  2. the zoo models (opset 17/18) and models/lm upgrade and give the same outputs within 1e-5;
 *  3. fast-check: random Reduce* graphs at opsets 11..17 upgraded to 18..21 compute the same;
 *  4. unit cases for each rewrite and refusal (DFT axis, GridSample modes, GroupNormalization
 *     per-channel expansion, subgraphs and functions, other domains untouched);
 *  5. `peftc compile models/lm/model.onnx --quant int4 --quant-format qdq` raises the opset
 *     itself and its output runs on onnxruntime.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ModelBuilder } from '../models/builder.js';
import { opsetUpgrade, MAX_TARGET_OPSET, MIN_SOURCE_OPSET } from '../passes/opset-upgrade.js';
import { runPipeline } from '../passes/pass.js';
import { PeftcError } from '../src/errors.js';
import { bytesText } from '../src/ir/attribute.js';
import { DataType } from '../src/ir/dtype.js';
import { Graph } from '../src/ir/graph.js';
import { IrFunction, type Model } from '../src/ir/model.js';
import { Tensor } from '../src/ir/tensor.js';
import { tensorType } from '../src/ir/types.js';
import { decodeModel } from '../src/onnx/decode.js';
import { encodeModel } from '../src/onnx/encode.js';
import { loadModel } from '../src/onnx/io.js';
import { compareTensors } from '../src/runtime/compare.js';
import { OrtSession, runModel } from '../src/runtime/ort.js';
import { listCases, nonTensorIo, readDataSet, type TestCase } from '../src/runtime/testdata.js';
import { mulberry32 as mulberry } from './rng.js';

const TOL = { rtol: 1e-4, atol: 1e-5 };
const ZOO_TOL = { rtol: 1e-5, atol: 1e-5 };

function upgraded(model: Model, target = 21): Model {
  runPipeline(model, [opsetUpgrade(target)], { check: true });
  return model;
}

const first = (msg: string) => msg.split('\n')[0]!;
/** A refusal's reason without node names, for grouping. */
function refusalKind(msg: string): string {
  const lines = msg.split('\n').filter((l) => l.startsWith('  - '));
  if (!lines.length) return first(msg).replace(/^pass '[^']*' failed: opset upgrade: /, '').replace(/function '[^']*'/, 'function').replace(/opset \d+;/, 'opset N;');
  return lines[0]!.replace(/^ {2}- node '[^']*' \(([^) ]+)[^)]*\): /, '$1: ').replace(/'[^']*'/g, "'…'").slice(0, 150);
}

/** Shorter onnxruntime failure text. */
const ortReason = (err: unknown) => (err instanceof Error ? err.message : String(err)).replace(/\s+/g, ' ').slice(0, 160);

describe('opset upgrade on ONNX conformance data (onnxruntime-node)', () => {
  const cases: TestCase[] = (['node', 'pytorch-converted', 'pytorch-operator'] as const).flatMap((s) => listCases(s)).filter((c) => c.model && c.dataSets.length);

  it('upgraded models give the expected outputs, or are refused with a reason', async () => {
    let passed = 0;
    let passedViaOriginal = 0;
    let nondeterministic = 0;
    let notRunnable = 0;
    let alreadyCurrent = 0;
    let nonTensor = 0;
    const refused = new Map<string, string[]>();
    const rewrites = new Map<string, number>(); // op -> nodes rewritten, over the models that upgraded
    const failures: string[] = [];
    for (const c of cases) {
      const id = `${c.suite}/${c.name}`;
      const model = loadModel(c.model!);
      if (nonTensorIo(model)) {
        nonTensor++;
        continue;
      }
      if ((model.opsetVersion('') ?? 0) >= 21) {
        alreadyCurrent++;
        continue;
      }
      // Only what onnxruntime runs as shipped is counted.
      let original: OrtSession;
      try {
        original = await OrtSession.create(readFileSync(c.model!), { label: id });
      } catch {
        notRunnable++;
        continue;
      }
      try {
        const sets = c.dataSets.map((ds) => readDataSet(ds, model));
        const originalOut: Array<Record<string, Tensor>> = [];
        try {
          for (const s of sets) originalOut.push(await original.run(s.inputs));
        } catch {
          notRunnable++;
          continue;
        }
        try {
          const [report] = runPipeline(model, [opsetUpgrade(21)], { check: true });
          for (const [k, v] of Object.entries(report!.details)) if (k !== 'from' && k !== 'to') rewrites.set(k, (rewrites.get(k) ?? 0) + Number(v));
        } catch (err) {
          if (!(err instanceof PeftcError)) {
            failures.push(`${id}: upgrade threw a non-PeftcError: ${(err as Error).stack}`);
            continue;
          }
          const k = refusalKind(err.message);
          refused.set(k, [...(refused.get(k) ?? []), id]);
          continue;
        }
        let up: OrtSession;
        try {
          up = await OrtSession.create(encodeModel(model), { label: `${id} (opset 21)` });
        } catch (err) {
          failures.push(`${id}: onnxruntime runs the original but cannot load the upgraded model: ${ortReason(err)}`);
          continue;
        }
        try {
          let ok = true;
          let viaOriginal = false;
          for (const [i, s] of sets.entries()) {
            let got: Record<string, Tensor>;
            try {
              got = await up.run(s.inputs);
            } catch (err) {
              failures.push(`${id}: the upgraded model fails on onnxruntime: ${ortReason(err)}`);
              ok = false;
              break;
            }
            for (const [name, e] of Object.entries(s.outputs)) {
              const o = originalOut[i]![name]!;
              const g = got[name];
              if (!g) {
                failures.push(`${id}: upgraded model has no output '${name}'`);
                ok = false;
                continue;
              }
              if (compareTensors(e, g, TOL).ok) continue;
              if (compareTensors(e, o, TOL).ok) {
                failures.push(`${id} output '${name}': the original matches the expected data, the upgraded model does not: ${compareTensors(e, g, TOL).reason}`);
                ok = false;
                continue;
              }
              // onnxruntime misses the shipped data even before upgrading: hold the upgraded model to the original's result.
              const vs = compareTensors(o, g, TOL);
              if (vs.ok) {
                viaOriginal = true;
                continue;
              }
              const again = (await original.run(s.inputs))[name]!;
              if (!compareTensors(o, again, TOL).ok) {
                nondeterministic++;
                viaOriginal = true;
                continue;
              }
              failures.push(`${id} output '${name}': upgraded differs from the original on onnxruntime: ${vs.reason}`);
              ok = false;
            }
          }
          if (ok) {
            if (viaOriginal) passedViaOriginal++;
            else passed++;
          }
        } finally {
          await up.release();
        }
      } finally {
        await original.release();
      }
    }
    const refusedCount = [...refused.values()].reduce((s, l) => s + l.length, 0);
    console.log(
      [
        `opset upgrade to 21 on ${cases.length} conformance cases:`,
        `  upgraded and passed: ${passed + passedViaOriginal} (${passed} against the expected data; ${passedViaOriginal} where onnxruntime already missed the expected data and the upgraded model matches the original${nondeterministic ? `, ${nondeterministic} random outputs` : ''})`,
        `  nodes rewritten in those: ${[...rewrites].map(([k, v]) => `${k} ${v}`).join(', ')}`,
        `  refused: ${refusedCount}, by reason:`,
        ...[...refused].sort((a, b) => b[1].length - a[1].length).map(([k, l]) => `    ${String(l.length).padStart(4)}  ${k}  (e.g. ${l.slice(0, 3).join(', ')})`),
        `  not counted: ${notRunnable} that onnxruntime cannot run as shipped, ${nonTensor} with non-tensor inputs/outputs, ${alreadyCurrent} already at opset >= 21`,
        `  wrong: ${failures.length}`,
        ...failures.map((f) => `    ${f}`),
      ].join('\n'),
    );
    expect(failures).toEqual([]);
    // Floor, about 90% of what ONNX 1.12's data in Debian gives with onnxruntime-node 1.30
    // (observed: 774 upgraded and passed, 189 refused, all but one for a source below opset 11):
    // a broken install or a pass that starts refusing more fails here.
    expect(passed + passedViaOriginal).toBeGreaterThanOrEqual(700);
  }, 600_000);
});

/** Runs a model (IR) on the data sets of a zoo case; returns output maps per set. */
async function runSets(model: Model | Uint8Array, sets: Array<{ inputs: Record<string, Tensor> }>): Promise<Array<Record<string, Tensor>>> {
  const s = await OrtSession.create(model);
  try {
    const out = [];
    for (const ds of sets) out.push(await s.run(ds.inputs));
    return out;
  } finally {
    await s.release();
  }
}

describe('opset upgrade on the model zoo and models/lm', () => {
  const zoo = readdirSync('models/zoo').filter((n) => existsSync(join('models/zoo', n, 'model.onnx')));

  it.each(zoo)('%s: upgraded to 21, same outputs within 1e-5 on onnxruntime', async (name) => {
    const dir = join('models/zoo', name);
    const model = loadModel(join(dir, 'model.onnx'));
    const sets = readdirSync(dir)
      .filter((n) => n.startsWith('test_data_set_'))
      .map((n) => readDataSet(join(dir, n), model));
    expect(sets.length).toBeGreaterThan(0);
    const before = await runSets(readFileSync(join(dir, 'model.onnx')), sets);
    const from = model.opsetVersion('');
    expect(from).toBeLessThan(21);
    upgraded(model);
    expect(model.opsetVersion('')).toBe(21);
    expect(model.irVersion).toBeGreaterThanOrEqual(10);
    const after = await runSets(encodeModel(model), sets);
    for (const [i, s] of sets.entries()) {
      for (const [out, e] of Object.entries(s.outputs)) {
        const c = compareTensors(e, after[i]![out]!, ZOO_TOL);
        expect(c.ok, `${name} '${out}' vs expected: ${c.reason}`).toBe(true);
        const d = compareTensors(before[i]![out]!, after[i]![out]!, ZOO_TOL);
        expect(d.ok, `${name} '${out}' vs original: ${d.reason}`).toBe(true);
      }
    }
  });

  it('models/lm/model.onnx: upgraded to 21, same logits within 1e-5 on text from its eval set', async () => {
    const path = 'models/lm/model.onnx';
    const model = loadModel(path);
    const feeds = lmFeeds(model);
    const before = await runModel(readFileSync(path), feeds);
    const pass = opsetUpgrade(21);
    const [report] = runPipeline(model, [pass], { check: true });
    expect(report!.details).toMatchObject({ from: 17, to: 21, ReduceMean: expect.any(Number) });
    const after = await runModel(encodeModel(model), feeds);
    for (const [name, e] of Object.entries(before)) {
      const c = compareTensors(e, after[name]!, ZOO_TOL);
      expect(c.ok, `'${name}': ${c.reason}`).toBe(true);
    }
  });
});

/** Feeds for the byte-level LM: the first bytes of its held-out text, positions/mask where asked. */
function lmFeeds(model: Model): Record<string, Tensor> {
  const text = readFileSync('models/lm/eval.bin').subarray(0, 64);
  const n = text.length;
  const feeds: Record<string, Tensor> = {};
  for (const v of model.graph.inputs.filter((i) => !i.initializer)) {
    const t = v.type;
    if (t?.kind !== 'tensor') throw new Error(`lm input '${v.name}' is not a tensor`);
    const rank = t.shape?.length ?? 2;
    const values =
      v.name.includes('position') ? BigInt64Array.from({ length: n }, (_, i) => BigInt(i))
      : v.name.includes('mask') ? new BigInt64Array(n).fill(1n)
      : BigInt64Array.from(text, (b) => BigInt(b));
    const dims = rank === 2 ? [1, n] : [n];
    if (t.elemType === DataType.INT64) feeds[v.name] = Tensor.fromTypedArray(v.name, DataType.INT64, dims, values);
    else if (t.elemType === DataType.INT32) feeds[v.name] = Tensor.fromTypedArray(v.name, DataType.INT32, dims, Int32Array.from(values, Number));
    else throw new Error(`lm input '${v.name}' has element type ${t.elemType}`);
  }
  return feeds;
}

const REDUCE_OPS = ['ReduceL1', 'ReduceL2', 'ReduceLogSum', 'ReduceLogSumExp', 'ReduceMax', 'ReduceMean', 'ReduceMin', 'ReduceProd', 'ReduceSumSquare', 'ReduceSum'] as const;

describe('opset upgrade property: Reduce* graphs (onnxruntime)', () => {
  it('random Reduce* chains at opsets 11..17 compute the same after upgrading to 18..21', async () => {
    const step = fc.record({
      op: fc.constantFrom(...REDUCE_OPS),
      axes: fc.option(fc.array(fc.integer({ min: -3, max: 2 }), { maxLength: 3 }), { nil: undefined }),
      keepdims: fc.option(fc.constantFrom(0, 1), { nil: undefined }),
    });
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 1, maxLength: 3 }),
        fc.array(step, { minLength: 1, maxLength: 3 }),
        fc.integer({ min: 11, max: 17 }),
        fc.integer({ min: 18, max: 21 }),
        fc.nat(),
        async (dims, steps, from, to, seed) => {
          // Build the chain, keeping only steps whose axes are valid for the current rank.
          const b = new ModelBuilder({ opset: from });
          const x = b.input('x', DataType.FLOAT, dims);
          let cur = x;
          let rank = dims.length;
          let used = 0;
          for (const s of steps) {
            if (rank === 0) break;
            const attrs: Record<string, number | number[]> = {};
            if (s.keepdims !== undefined) attrs.keepdims = s.keepdims;
            let axes = s.axes?.filter((a) => a >= -rank && a < rank);
            if (axes) axes = [...new Set(axes.map((a) => (a + rank) % rank))].map((a, i) => (i % 2 ? a - rank : a)); // mix negative forms
            if (s.op === 'ReduceSum' && from >= 13) {
              // ReduceSum takes axes as an input from 13 on (unchanged by the upgrade); before, as an attribute (rewritten).
              const inputs = axes?.length ? [cur, b.initializer(undefined, DataType.INT64, [axes.length], BigInt64Array.from(axes.map(BigInt)))] : [cur];
              cur = b.op('ReduceSum', inputs, attrs);
            } else {
              if (axes?.length) attrs.axes = axes;
              cur = b.op(s.op, [cur], attrs);
            }
            used++;
            const reduced = axes?.length ? new Set(axes.map((a) => (a + rank) % rank)).size : rank;
            if ((s.keepdims ?? 1) === 0) rank -= reduced;
          }
          fc.pre(used > 0);
          b.output(cur);
          const model = b.build();
          const rng = mulberry(seed);
          // Positive inputs so ReduceLogSum/L1/L2 stay finite and comparable.
          const data = Float32Array.from({ length: dims.reduce((p, d) => p * d, 1) }, () => 0.25 + rng() * 1.5);
          const feeds = { x: Tensor.fromTypedArray('x', DataType.FLOAT, dims, data) };
          const bytes = encodeModel(model);
          const expected = await runModel(bytes, feeds);
          const m = decodeModel(bytes);
          upgraded(m, to);
          expect(m.opsetVersion('')).toBe(to);
          for (const n of m.graph.nodes) expect(n.attribute('axes'), `${n.opType} kept an axes attribute`).toBeUndefined();
          const actual = await runModel(encodeModel(m), feeds);
          for (const [name, e] of Object.entries(expected)) {
            const c = compareTensors(e, actual[name]!, { rtol: 1e-6, atol: 1e-6 });
            if (!c.ok) throw new Error(`output '${name}': ${c.reason}`);
          }
        },
      ),
      { numRuns: 60 },
    );
  });
});


describe('opset upgrade: rewrites and refusals', () => {
  const floats = (n: number, f = (i: number) => i * 0.37 - 1) => Float32Array.from({ length: n }, (_, i) => f(i));

  it('refuses targets above 21 and sources below 11, naming the limits', () => {
    expect(() => opsetUpgrade(22)).toThrow(/up to 21/);
    expect(MAX_TARGET_OPSET).toBe(21);
    expect(MIN_SOURCE_OPSET).toBe(11);
    const b = new ModelBuilder({ opset: 10 });
    b.output(b.op('Relu', [b.input('x', DataType.FLOAT, [2])]));
    expect(() => upgraded(b.build())).toThrow(new RegExp(`opset 10.*opset ${MIN_SOURCE_OPSET} or newer`));
  });

  it('opset-13 changes from 11: Softmax family axis, Split/Squeeze/Unsqueeze/ReduceSum attributes, Dropout ratio; same results on onnxruntime', async () => {
    const cases: Array<{ what: string; build: (b: ModelBuilder, x: ReturnType<ModelBuilder['input']>) => void; check?: (m: Model) => void }> = [];
    for (const op of ['Softmax', 'LogSoftmax', 'Hardmax']) {
      for (const axis of [undefined, 0, 1, 2, -1, -2]) {
        cases.push({
          what: `${op} axis ${axis}`,
          build: (b, x) => b.output(b.op(op, [x], axis === undefined ? {} : { axis }, { name: 'sm' })),
          check: (m) => {
            const sm = m.graph.nodes.find((n) => n.name === 'sm')!;
            // The last axis (2 or -1) keeps a single node; others are spelled out through Flatten.
            expect(m.graph.nodes.length).toBe(axis === 2 || axis === -1 ? 1 : 4);
            expect(sm.attrInt('axis')).toBe(axis === 2 || axis === -1 ? 2 : 1);
          },
        });
      }
    }
    cases.push({
      what: 'Split with sizes, Squeeze, Unsqueeze, ReduceSum, Dropout',
      build: (b, x) => {
        const [p, q] = b.opMulti('Split', [x], { axis: 1, split: [1, 2] }, { name: 'split', outputs: 2 });
        const sq = b.op('Squeeze', [p!], { axes: [1] }, { name: 'sq' });
        b.output(b.op('Unsqueeze', [sq], { axes: [0, -1] }, { name: 'unsq' }));
        b.output(b.op('ReduceSum', [q!], { axes: [1, -1], keepdims: 0 }, { name: 'rs' }));
        b.output(b.op('ReduceSum', [x], {}, { name: 'rs_all' }));
        b.output(b.op('Dropout', [x], { ratio: { float: 0.3 } }, { name: 'drop' }));
      },
      check: (m) => {
        for (const n of m.graph.nodes) expect(n.attributes.map((a) => a.name), n.name).not.toContain(n.opType === 'Split' ? 'split' : 'axes');
        expect(m.graph.nodes.find((n) => n.name === 'split')!.attribute('num_outputs')).toBeUndefined();
        expect(m.graph.nodes.find((n) => n.name === 'drop')!.inputs.length).toBe(2);
      },
    });
    for (const c of cases) {
      const b = new ModelBuilder({ opset: 11, irVersion: 6 });
      const x = b.input('x', DataType.FLOAT, [2, 3, 4]);
      c.build(b, x);
      const m = b.build();
      const feeds = { x: Tensor.fromTypedArray('x', DataType.FLOAT, [2, 3, 4], floats(24, (i) => Math.sin(i * 0.9) * 3)) };
      const before = await runModel(encodeModel(m), feeds);
      upgraded(m);
      c.check?.(m);
      const after = await runModel(encodeModel(m), feeds);
      for (const [k, v] of Object.entries(before)) {
        const cmp = compareTensors(v, after[k]!, { rtol: 1e-6, atol: 1e-6 });
        expect(cmp.ok, `${c.what} '${k}': ${cmp.reason}`).toBe(true);
      }
    }
  });

  it('Softmax-11 with an input of unknown rank is spelled out through Flatten; Erf-9 on integers is refused', async () => {
    const b = new ModelBuilder({ opset: 11 });
    const x = b.input('x', DataType.FLOAT, [2, 3, 4]);
    const y = b.op('Identity', [x]);
    y.type = undefined;
    b.output(b.op('Softmax', [y], { axis: -1 }, { name: 'sm' }));
    const m = b.build();
    upgraded(m);
    expect(m.graph.nodes.map((n) => n.opType)).toEqual(['Identity', 'Flatten', 'Shape', 'Softmax', 'Reshape']);
    const b2 = new ModelBuilder({ opset: 11 });
    b2.output(b2.op('Erf', [b2.input('i', DataType.INT32, [2])], {}, { name: 'erf' }));
    expect(() => upgraded(b2.build())).toThrow(/node 'erf' \(Erf\).*float types only/);
  });

  it('refuses lowering and leaves a model at the target alone', () => {
    const b = new ModelBuilder({ opset: 21 });
    b.output(b.op('Relu', [b.input('x', DataType.FLOAT, [2])]));
    const [r] = runPipeline(b.build(), [opsetUpgrade(21)]);
    expect(r!.changed).toBe(false);
    expect(() => runPipeline(b.build(), [opsetUpgrade(19)])).toThrow(/does not lower/);
  });

  it('refuses, naming node and op, an op that did not exist at the source opset and an unknown op; changes nothing', () => {
    const b = new ModelBuilder({ opset: 16 });
    const x = b.input('x', DataType.FLOAT, [2, 4]);
    const y = b.op('ReduceMean', [x], { axes: [1] }, { name: 'rm' });
    b.output(b.op('LayerNormalization', [y, b.initializer('s', DataType.FLOAT, [1], floats(1))], {}, { name: 'ln' }));
    b.output(b.op('Frobnicate', [x], {}, { name: 'fz' }));
    const m = b.build();
    const err = (() => {
      try {
        upgraded(m);
      } catch (e) {
        return e as Error;
      }
      throw new Error('not refused');
    })();
    expect(err).toBeInstanceOf(PeftcError);
    expect(err.message).toMatch(/node 'ln' \(LayerNormalization\).*does not exist at opset 16/);
    expect(err.message).toMatch(/node 'fz' \(Frobnicate\).*not an ONNX operator/);
    // Planned first, applied only when nothing is refused.
    expect(m.opsetVersion('')).toBe(16);
    expect(m.graph.nodes.find((n) => n.name === 'rm')!.attribute('axes')).toBeDefined();
  });

  it('refuses BatchNormalization-9 training outputs; keeps the inference form', () => {
    const mk = (outputs: number) => {
      const b = new ModelBuilder({ opset: 13 });
      const x = b.input('x', DataType.FLOAT, [1, 2, 3]);
      const p = () => b.initializer(undefined, DataType.FLOAT, [2], floats(2, (i) => i + 1));
      const outs = b.opMulti('BatchNormalization', [x, p(), p(), p(), p()], {}, { name: 'bn', outputs });
      outs.forEach((o) => b.output(o));
      return b.build();
    };
    expect(() => upgraded(mk(3))).toThrow(/node 'bn' \(BatchNormalization\).*training outputs/);
    expect(upgraded(mk(1)).opsetVersion('')).toBe(21);
  });

  it('DFT-17 axis (default 1) becomes the third input; same result on onnxruntime', async () => {
    for (const axis of [undefined, 1, 2, -2]) {
      const b = new ModelBuilder({ opset: 17 });
      const x = b.input('x', DataType.FLOAT, [2, 4, 3, 1]);
      b.output(b.op('DFT', [x], axis === undefined ? {} : { axis }, { name: 'dft' }));
      const m = b.build();
      const feeds = { x: Tensor.fromTypedArray('x', DataType.FLOAT, [2, 4, 3, 1], floats(24)) };
      const before = await runModel(encodeModel(m), feeds);
      upgraded(m);
      const node = m.graph.nodes.find((n) => n.name === 'dft')!;
      expect(node.attribute('axis')).toBeUndefined();
      expect(node.inputs[1]).toBeNull();
      expect(node.inputs[2]!.initializer!.toTypedArray<BigInt64Array>()[0]).toBe(BigInt(axis ?? 1));
      const after = await runModel(encodeModel(m), feeds);
      const c = compareTensors(Object.values(before)[0]!, Object.values(after)[0]!, { rtol: 1e-5, atol: 1e-5 });
      expect(c.ok, `axis ${axis}: ${c.reason}`).toBe(true);
    }
  });

  it('GridSample-16 modes are renamed for 20; same result on onnxruntime', async () => {
    for (const mode of [undefined, 'bilinear', 'nearest', 'bicubic']) {
      const b = new ModelBuilder({ opset: 16 });
      const x = b.input('x', DataType.FLOAT, [1, 2, 4, 5]);
      const g = b.input('g', DataType.FLOAT, [1, 3, 3, 2]);
      b.output(b.op('GridSample', [x, g], mode ? { mode } : {}, { name: 'gs' }));
      const m = b.build();
      const feeds = {
        x: Tensor.fromTypedArray('x', DataType.FLOAT, [1, 2, 4, 5], floats(40)),
        g: Tensor.fromTypedArray('g', DataType.FLOAT, [1, 3, 3, 2], floats(18, (i) => Math.sin(i * 1.3) * 0.9)),
      };
      const before = await runModel(encodeModel(m), feeds);
      upgraded(m);
      const a = m.graph.nodes[0]!.attribute('mode');
      expect(a && a.type === 'string' ? bytesText(a.value) : undefined).toBe(mode && { bilinear: 'linear', bicubic: 'cubic', nearest: 'nearest' }[mode]);
      const after = await runModel(encodeModel(m), feeds);
      const c = compareTensors(Object.values(before)[0]!, Object.values(after)[0]!, { rtol: 1e-5, atol: 1e-5 });
      expect(c.ok, `mode ${mode}: ${c.reason}`).toBe(true);
    }
  });

  it('GroupNormalization-18 per-group scale/bias become per-channel for 21; matches a reference computation', async () => {
    const [n, c, h, groups] = [2, 6, 4, 3];
    const b = new ModelBuilder({ opset: 18 });
    const x = b.input('x', DataType.FLOAT, [n, c, h]);
    const scale = floats(groups, (i) => 0.5 + i);
    const bias = floats(groups, (i) => i - 1);
    b.output(b.op('GroupNormalization', [x, b.initializer('scale', DataType.FLOAT, [groups], scale), b.initializer('bias', DataType.FLOAT, [groups], bias)], { num_groups: groups, epsilon: { float: 1e-5 } }, { name: 'gn' }));
    const m = b.build();
    const [report] = runPipeline(m, [opsetUpgrade(21)], { check: true });
    expect(report!.details).toMatchObject({ GroupNormalization: 1 });
    const node = m.graph.nodes[0]!;
    expect(Array.from(node.inputs[1]!.initializer!.toTypedArray<Float32Array>())).toEqual([0.5, 0.5, 1.5, 1.5, 2.5, 2.5]);
    expect(m.graph.localValue('scale')).toBeUndefined(); // the per-group tensor is gone
    const xs = floats(n * c * h, (i) => Math.cos(i * 0.7) * 2);
    const got = (await runModel(encodeModel(m), { x: Tensor.fromTypedArray('x', DataType.FLOAT, [n, c, h], xs) }))[node.outputs[0]!.name]!.toTypedArray<Float32Array>();
    // Reference: normalize each (sample, group) over its C/G channels x H, then the group's scale/bias.
    const per = c / groups;
    for (let s = 0; s < n; s++) {
      for (let g = 0; g < groups; g++) {
        const idx: number[] = [];
        for (let ch = g * per; ch < (g + 1) * per; ch++) for (let k = 0; k < h; k++) idx.push((s * c + ch) * h + k);
        const mean = idx.reduce((a, i) => a + xs[i]!, 0) / idx.length;
        const v = idx.reduce((a, i) => a + (xs[i]! - mean) ** 2, 0) / idx.length;
        for (const i of idx) expect(got[i]!).toBeCloseTo(((xs[i]! - mean) / Math.sqrt(v + 1e-5)) * scale[g]! + bias[g]!, 4);
      }
    }
  });

  it('GroupNormalization-18 with scale from a graph input or unknown channels is refused by name', () => {
    const b = new ModelBuilder({ opset: 18 });
    const x = b.input('x', DataType.FLOAT, [1, 4, 2]);
    b.output(b.op('GroupNormalization', [x, b.input('s', DataType.FLOAT, [2]), b.initializer('b', DataType.FLOAT, [2], floats(2))], { num_groups: 2 }, { name: 'gn' }));
    expect(() => upgraded(b.build())).toThrow(/node 'gn' \(GroupNormalization\).*'s' is not an initializer/);
    const b2 = new ModelBuilder({ opset: 18 });
    const x2 = b2.input('x', DataType.FLOAT, [1, 'C', 2]);
    b2.output(b2.op('GroupNormalization', [x2, b2.initializer('s', DataType.FLOAT, [2], floats(2)), b2.initializer('b', DataType.FLOAT, [2], floats(2))], { num_groups: 2 }, { name: 'gn' }));
    expect(() => upgraded(b2.build())).toThrow(/node 'gn'.*channel count .* not known/);
  });

  it('Split-13 without sizes gets num_outputs; with sizes it is unchanged; same result', async () => {
    const b = new ModelBuilder({ opset: 13 });
    const x = b.input('x', DataType.FLOAT, [6, 2]);
    b.opMulti('Split', [x], { axis: 0 }, { name: 'even', outputs: 3 }).forEach((o) => b.output(o));
    b.opMulti('Split', [x, b.initializer('sz', DataType.INT64, [2], BigInt64Array.from([1n, 5n]))], {}, { name: 'sized', outputs: 2 }).forEach((o) => b.output(o));
    const m = b.build();
    const feeds = { x: Tensor.fromTypedArray('x', DataType.FLOAT, [6, 2], floats(12)) };
    const before = await runModel(encodeModel(m), feeds);
    upgraded(m, 18);
    expect(m.graph.nodes[0]!.attrInt('num_outputs')).toBe(3);
    expect(m.graph.nodes[1]!.attribute('num_outputs')).toBeUndefined();
    const after = await runModel(encodeModel(m), feeds);
    for (const [k, v] of Object.entries(before)) expect(compareTensors(v, after[k]!, { rtol: 0, atol: 0 }).ok).toBe(true);
  });

  it('rewrites inside If branches and local functions (Constant node there); other domains untouched', async () => {
    const b = new ModelBuilder({ opset: 17, extraOpsets: { 'com.microsoft': 1, local: 1 } });
    const x = b.input('x', DataType.FLOAT, [2, 3]);
    const cond = b.input('c', DataType.BOOL, []);
    // A branch graph reducing the outer x over axis 1.
    const branch = (op: string) => {
      const g = new Graph(b.graph);
      g.name = `${op}_branch`;
      const out = g.addNode(op, [x], [`${op}_y`], { name: `${op}_in_branch`, attributes: [{ name: 'axes', type: 'ints', value: [1n] }, { name: 'keepdims', type: 'int', value: 0n }] }).outputs[0]!;
      out.type = tensorType(DataType.FLOAT, [2]);
      g.outputs.push(out);
      return g;
    };
    const ifOut = b.op('If', [cond], { then_branch: branch('ReduceMax'), else_branch: branch('ReduceMin') }, { name: 'if' });
    // A local function whose body reduces with an axes attribute.
    const fn = new IrFunction();
    fn.name = 'RowMean';
    fn.domain = 'local';
    fn.opsetImports = [{ domain: '', version: 17 }];
    const fx = fn.body.createValue('fx');
    fn.body.inputs.push(fx);
    const fy = fn.body.addNode('ReduceMean', [fx], ['fy'], { name: 'fn_mean', attributes: [{ name: 'axes', type: 'ints', value: [-1n] }, { name: 'keepdims', type: 'int', value: 0n }] }).outputs[0]!;
    fn.body.outputs.push(fy);
    b.model.functions.push(fn);
    const fnOut = b.op('RowMean', [x], {}, { domain: 'local', name: 'call' });
    const ms = b.op('Gelu', [x], {}, { domain: 'com.microsoft', name: 'ms_gelu' });
    b.output(b.op('Add', [ifOut, fnOut]));
    b.output(ms);
    const m = b.build();
    const feeds = (c: boolean) => ({
      x: Tensor.fromTypedArray('x', DataType.FLOAT, [2, 3], floats(6)),
      c: Tensor.fromTypedArray('c', DataType.BOOL, [], Uint8Array.from([c ? 1 : 0])),
    });
    const before = [await runModel(encodeModel(m), feeds(true)), await runModel(encodeModel(m), feeds(false))];
    const [report] = runPipeline(m, [opsetUpgrade(21)], { check: true });
    expect(report!.details).toMatchObject({ from: 17, to: 21, ReduceMax: 1, ReduceMin: 1, ReduceMean: 1 });
    expect(fn.opsetImports).toEqual([{ domain: '', version: 21 }]);
    expect(fn.body.nodes.map((n) => n.opType)).toEqual(['Constant', 'ReduceMean']);
    expect(m.opsetVersion('com.microsoft')).toBe(1);
    expect(m.graph.nodes.find((n) => n.name === 'ms_gelu')!.attributes).toEqual([]);
    const after = [await runModel(encodeModel(m), feeds(true)), await runModel(encodeModel(m), feeds(false))];
    for (const i of [0, 1]) for (const [k, v] of Object.entries(before[i]!)) expect(compareTensors(v, after[i]![k]!, { rtol: 0, atol: 0 }).ok, `${k}`).toBe(true);
  });

  it('refuses a Reduce axes given by a function attribute reference', () => {
    const b = new ModelBuilder({ opset: 17, extraOpsets: { local: 1 } });
    const fn = new IrFunction();
    fn.name = 'Red';
    fn.domain = 'local';
    fn.opsetImports = [{ domain: '', version: 17 }];
    fn.attributeNames = ['ax'];
    const fx = fn.body.createValue('fx');
    fn.body.inputs.push(fx);
    fn.body.outputs.push(fn.body.addNode('ReduceMax', [fx], ['fy'], { name: 'inner', attributes: [{ name: 'axes', type: 'ref', refAttrName: 'ax', declaredType: 7 }] }).outputs[0]!);
    b.model.functions.push(fn);
    b.output(b.op('Red', [b.input('x', DataType.FLOAT, [2, 3])], { ax: [1] }, { domain: 'local' }));
    expect(() => upgraded(b.build())).toThrow(/node 'inner' \(ReduceMax in function 'Red'\).*function attribute 'ax'/);
  });
});

describe('peftc compile --quant int4 --quant-format qdq on models/lm (opset 17)', () => {
  it('raises the opset itself, logs it, and the output runs on onnxruntime', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'peftc-opset-'));
    try {
      const out = join(dir, 'lm-qdq.onnx');
      const r = spawnSync(process.execPath, ['dist/src/cli/main.js', 'compile', 'models/lm/model.onnx', '--quant', 'int4', '--quant-format', 'qdq', '--quant-method', 'rtn', '-o', out], { encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr).toContain('raised default-domain opset 17 -> 21 for blocked DequantizeLinear');
      const model = loadModel(out);
      expect(model.opsetVersion('')).toBe(21);
      expect(model.graph.nodes.some((n) => n.opType === 'DequantizeLinear')).toBe(true);
      const feeds = lmFeeds(model);
      const got = await runModel(out, feeds);
      const ref = await runModel('models/lm/model.onnx', lmFeeds(loadModel('models/lm/model.onnx')));
      // int4 weights: close to the float model, not equal; finite and the same shapes.
      for (const [k, v] of Object.entries(ref)) {
        const g = got[k]!;
        expect(g.dims).toEqual(v.dims);
        const a = g.toTypedArray<Float32Array>();
        expect(a.every(Number.isFinite)).toBe(true);
        const e = v.toTypedArray<Float32Array>();
        let num = 0;
        let den = 0;
        for (let i = 0; i < e.length; i++) {
          num += (a[i]! - e[i]!) ** 2;
          den += e[i]! ** 2;
        }
        expect(Math.sqrt(num / den)).toBeLessThan(0.2);
      }
      // --opset below what qdq needs is a clear error; --opset 19 alone upgrades explicitly.
      const o19 = join(dir, 'lm-19.onnx');
      const r19 = spawnSync(process.execPath, ['dist/src/cli/main.js', 'compile', 'models/lm/model.onnx', '--opset', '19', '-o', o19], { encoding: 'utf8' });
      expect(r19.status, r19.stderr).toBe(0);
      expect(loadModel(o19).opsetVersion('')).toBe(19);
      const r22 = spawnSync(process.execPath, ['dist/src/cli/main.js', 'compile', 'models/lm/model.onnx', '--opset', '22', '-o', join(dir, 'x.onnx')], { encoding: 'utf8' });
      expect(r22.status).toBe(2);
      expect(r22.stderr).toMatch(/up to 21/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

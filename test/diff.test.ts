/**
 * `peftc diff`: the library (diffModelFiles / renderModelDiff) on models built here and on the
 * zoo BERT before and after an int4 compile, and the `diff` yargs command run in-process (its
 * registration in src/cli/main.ts is tested through the built CLI when it is there).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import yargs from 'yargs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModelBuilder } from '../models/builder.js';
import { diffModelFiles, renderModelDiff, type ModelDiff } from '../src/diff.js';
import { diffCommand } from '../src/cli/diff-command.js';
import { compileModel } from '../src/compile.js';
import { DataType } from '../src/ir/dtype.js';
import type { Model } from '../src/ir/model.js';
import { saveModel } from '../src/onnx/io.js';
import { PeftcError } from '../src/errors.js';

const ROOT = resolve(import.meta.dirname, '..');
const BERT = join(ROOT, 'models', 'zoo', 'bert-static', 'model.onnx');
const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js');

const tmp = mkdtempSync(join(tmpdir(), 'peftc-diff-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

interface Variant {
  w1?: Float32Array;
  /** w1 (and the input, so MatMul stays valid) in float16 instead of float32. */
  half?: boolean;
  scaleDims?: number[];
  batchDim?: string;
  opset?: number;
  extraOpsets?: Record<string, number>;
  extraAdd?: boolean;
}

/** x[batch, 4] -> MatMul w1[4, 3] -> Relu (-> Add bias) -> y: small, with every knob a test turns. */
function buildModel(v: Variant = {}): Model {
  const b = new ModelBuilder({ opset: v.opset ?? 17, extraOpsets: v.extraOpsets ?? {} });
  const type = v.half ? DataType.FLOAT16 : DataType.FLOAT;
  const x = b.input('x', type, [v.batchDim ?? 'batch', 4]);
  const w1Data = v.half ? new Uint16Array(12).fill(0x3c00) : (v.w1 ?? Float32Array.from({ length: 12 }, (_, i) => i / 10));
  const w1 = b.initializer('w1', type, [4, 3], w1Data);
  const scale = b.initializer('scale', type, v.scaleDims ?? [3], v.half ? new Uint16Array(3).fill(0x4000) : Float32Array.from([1, 2, 3]));
  let h = b.op('Relu', [b.op('Mul', [b.op('MatMul', [x, w1]), scale])]);
  if (v.extraAdd) h = b.op('Add', [h, b.initializer('bias', type, [3], v.half ? new Uint16Array(3) : Float32Array.from([0.5, 0.5, 0.5]))]);
  b.graph.renameValue(h, 'y'); // a fixed output name, whichever op comes last
  b.output(h, { dtype: type, shape: [v.batchDim ?? 'batch', 3] });
  return b.build();
}

let counter = 0;
function save(model: Model, options: Parameters<typeof saveModel>[2] = {}): string {
  const path = join(tmp, `m${counter++}.onnx`);
  saveModel(model, path, { durable: false, ...options });
  return path;
}

function expectEmpty(d: ModelDiff): void {
  expect(d.identical).toBe(true);
  expect(d.ops).toEqual([]);
  expect(d.opsets).toEqual([]);
  expect(d.nodeCount.a).toBe(d.nodeCount.b);
  for (const io of [d.inputs, d.outputs]) expect(io).toEqual({ added: [], removed: [], changed: [], reordered: false });
  expect(d.initializers.added).toEqual([]);
  expect(d.initializers.removed).toEqual([]);
  expect(d.initializers.changed).toEqual([]);
  expect(d.initializers.bytes.a).toBe(d.initializers.bytes.b);
}

describe('diffModelFiles on built models', () => {
  it('gives an empty diff for the same file and for two copies', () => {
    const a = save(buildModel());
    const b = save(buildModel());
    expectEmpty(diffModelFiles(a, a));
    const d = diffModelFiles(a, b);
    expectEmpty(d);
    expect(d.initializers.unchanged).toBe(2);
    expect(renderModelDiff(d)).toContain('no differences');
  });

  it('compares data, not storage: inline weights vs the same weights in external data are the same', () => {
    const inline = save(buildModel());
    const external = save(buildModel(), { externalData: 'all', threshold: 0 });
    expect(existsSync(`${external}.data`)).toBe(true);
    expectEmpty(diffModelFiles(inline, external));
  });

  it('reports one changed weight value as "changed" by name, with nothing else', () => {
    const w = Float32Array.from({ length: 12 }, (_, i) => i / 10);
    const a = save(buildModel({ w1: w }));
    const w2 = w.slice();
    w2[7] = w2[7]! + 1e-6; // one element, one ulp-ish step: the hash must still see it
    const d = diffModelFiles(a, save(buildModel({ w1: w2 })));
    expect(d.identical).toBe(false);
    expect(d.initializers.changed).toEqual([
      { name: 'w1', a: { name: 'w1', dtype: 'float32', shape: [4, 3], bytes: 48 }, b: { name: 'w1', dtype: 'float32', shape: [4, 3], bytes: 48 }, differs: ['data'] },
    ]);
    expect(d.initializers.unchanged).toBe(1);
    expect(d.ops).toEqual([]);
    expect(d.initializers.added).toEqual([]);
    expect(d.initializers.removed).toEqual([]);
    const text = renderModelDiff(d);
    expect(text).toMatch(/~ w1 +float32\[4, 3\] 48 B: data differs/);
    expect(text).toContain('1 changed');
  });

  it('reports shape/dtype changes, added ops and weights, signature and opset changes', () => {
    const a = save(buildModel());
    const b = save(
      buildModel({ half: true, scaleDims: [1, 3], batchDim: 'N', opset: 18, extraOpsets: { 'com.microsoft': 1 }, extraAdd: true }),
    );
    const d = diffModelFiles(a, b);
    expect(d.nodeCount).toEqual({ a: 3, b: 4 });
    expect(d.ops).toEqual([{ op: 'Add', a: 0, b: 1 }]);
    expect(d.opsets).toEqual([
      { domain: 'ai.onnx', a: 17, b: 18 },
      { domain: 'com.microsoft', a: null, b: 1 },
    ]);
    expect(d.inputs.changed).toEqual([{ name: 'x', a: { name: 'x', dtype: 'float32', shape: ['batch', 4] }, b: { name: 'x', dtype: 'float16', shape: ['N', 4] } }]);
    expect(d.outputs.changed).toEqual([{ name: 'y', a: { name: 'y', dtype: 'float32', shape: ['batch', 3] }, b: { name: 'y', dtype: 'float16', shape: ['N', 3] } }]);
    expect(d.outputs.added.length + d.outputs.removed.length + d.inputs.added.length + d.inputs.removed.length).toBe(0);
    expect(d.initializers.added).toEqual([{ name: 'bias', dtype: 'float16', shape: [3], bytes: 6 }]);
    expect(d.initializers.removed).toEqual([]);
    expect(d.initializers.changed.map((c) => [c.name, c.differs])).toEqual([
      ['w1', ['dtype']],
      ['scale', ['dtype', 'shape']],
    ]);
    expect(d.initializers.bytes).toEqual({ a: 48 + 12, b: 24 + 6 + 6 });
    const text = renderModelDiff(d);
    expect(text).toContain('nodes: 3 -> 4 (+1)');
    expect(text).toContain('opset com.microsoft: added (1)');
    expect(text).toContain('opset ai.onnx: 17 -> 18');
    expect(text).toContain('input changed: x: float32[batch, 4] -> float16[N, 4]');
    expect(text).toMatch(/\+ bias +float16\[3\] 6 B/);
    expect(text).toMatch(/~ scale +float32\[3\] 12 B -> float16\[1, 3\] 6 B \(dtype, shape\)/);
    expect(text).toContain('initializers: 2 -> 3, 60 B -> 36 B (-40.0%)');
  });

  it('names the file it cannot read (PeftcError, exit code 2)', () => {
    const a = save(buildModel());
    const missing = join(tmp, 'nope.onnx');
    expect(() => diffModelFiles(a, missing)).toThrow(PeftcError);
    expect(() => diffModelFiles(a, missing)).toThrow(/nope\.onnx/);
    const junk = join(tmp, 'junk.onnx');
    writeFileSync(junk, 'not a model at all');
    try {
      diffModelFiles(junk, a);
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(PeftcError);
      expect((err as PeftcError).exitCode).toBe(2);
      expect((err as Error).message).toContain('junk.onnx');
    }
  });
});

describe('diffModelFiles on the zoo BERT, before and after compile --quant int4', () => {
  it('shows MatMul going to com.microsoft::MatMulNBits, float weights replaced by packed ones', () => {
    const out = join(tmp, 'bert-int4.onnx');
    const r = compileModel(BERT, { target: 'cpu', quant: 'int4', output: out, workers: 0, weightQuant: { method: 'rtn' } });
    const quantized = r.quantization!.length;
    expect(quantized).toBeGreaterThan(0);
    const d = diffModelFiles(BERT, out);
    expect(d.identical).toBe(false);

    const op = (name: string) => d.ops.find((o) => o.op === name);
    const matmul = op('MatMul')!;
    expect(matmul.b).toBeLessThan(matmul.a);
    expect(op('com.microsoft::MatMulNBits')).toEqual({ op: 'com.microsoft::MatMulNBits', a: 0, b: quantized });
    expect(d.opsets).toContainEqual({ domain: 'com.microsoft', a: null, b: 1 });
    // Same signature: quantization does not touch inputs or outputs.
    for (const io of [d.inputs, d.outputs]) expect(io).toEqual({ added: [], removed: [], changed: [], reordered: false });

    // Each quantized weight left as float32 [K, N] and came back as packed uint8 codes + scales.
    expect(d.initializers.removed.length).toBeGreaterThanOrEqual(quantized);
    expect(d.initializers.removed.filter((x) => x.dtype === 'float32' && x.shape.length === 2).length).toBeGreaterThanOrEqual(quantized);
    expect(d.initializers.added.filter((x) => x.dtype === 'uint8').length).toBeGreaterThanOrEqual(quantized);
    expect(d.initializers.bytes.b).toBeLessThan(d.initializers.bytes.a / 2);
    const sum = (xs: Array<{ bytes: number }>) => xs.reduce((s, x) => s + x.bytes, 0);
    const i = d.initializers;
    expect(i.bytes.a - sum(i.removed) - sum(i.changed.map((c) => c.a))).toBe(i.bytes.b - sum(i.added) - sum(i.changed.map((c) => c.b)));

    const text = renderModelDiff(d);
    expect(text).toMatch(/com\.microsoft::MatMulNBits +0 -> \d+/);
    expect(text).toContain('opset com.microsoft: added (1)');
    expect(text).toMatch(/^ {4}- \S+ +float32\[\d+, \d+\]/m);
    expect(text).toMatch(/^ {4}\+ \S+ +uint8\[/m);
  });
});

/** Runs the yargs command module in-process, as main.ts will, capturing stdout. */
async function runDiffCommand(args: string[]): Promise<{ stdout: string; error: unknown }> {
  let stdout = '';
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((chunk: string | Uint8Array) => {
    stdout += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
    return true;
  }) as typeof process.stdout.write;
  let error: unknown;
  try {
    await yargs(args)
      .command(diffCommand)
      .strict()
      .fail((msg, err) => {
        throw err ?? new Error(msg);
      })
      .parseAsync();
  } catch (err) {
    error = err;
  } finally {
    process.stdout.write = write;
  }
  return { stdout, error };
}

describe('the diff command', () => {
  it('prints text, or JSON with --json, for two models', async () => {
    const a = save(buildModel());
    const b = save(buildModel({ extraAdd: true }));
    const text = await runDiffCommand(['diff', a, b]);
    expect(text.error).toBeUndefined();
    expect(text.stdout).toContain(`A: ${a}`);
    expect(text.stdout).toMatch(/Add +0 -> 1/);
    const json = await runDiffCommand(['diff', a, b, '--json']);
    expect(json.error).toBeUndefined();
    const d = JSON.parse(json.stdout) as ModelDiff;
    expect(d.ops).toEqual([{ op: 'Add', a: 0, b: 1 }]);
    expect(d.initializers.added.map((x) => x.name)).toEqual(['bias']);
  });

  it('fails with a PeftcError naming an unreadable file', async () => {
    const r = await runDiffCommand(['diff', save(buildModel()), join(tmp, 'missing.onnx')]);
    expect(r.error).toBeInstanceOf(PeftcError);
    expect((r.error as PeftcError).exitCode).toBe(2);
    expect((r.error as Error).message).toContain('missing.onnx');
    expect(r.stdout).toBe('');
  });
});

// The built CLI, once src/cli/main.ts registers diffCommand (the command module is tested above
// either way). Registered but not built is a failure, not a skip.
const registered = readFileSync(join(ROOT, 'src', 'cli', 'main.ts'), 'utf8').includes('diffCommand');
describe.runIf(registered)('peftc diff (built CLI)', () => {
  beforeAll(() => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: build the CLI first (npm run build; npm test does it before vitest)`);
  });
  const peftc = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60_000 });

  it('exits 0 on different models and on identical ones, 2 with the file named when one is missing', () => {
    const a = save(buildModel());
    const b = save(buildModel({ extraAdd: true }));
    const diff = peftc('diff', a, b, '--json');
    expect(diff.status, diff.stderr).toBe(0);
    expect((JSON.parse(diff.stdout) as ModelDiff).ops).toEqual([{ op: 'Add', a: 0, b: 1 }]);
    const same = peftc('diff', a, a);
    expect(same.status, same.stderr).toBe(0);
    expect(same.stdout).toContain('no differences');
    const missing = peftc('diff', a, join(tmp, 'gone.onnx'));
    expect(missing.status).toBe(2);
    expect(missing.stderr).toContain('gone.onnx');
    expect(missing.stdout).toBe('');
  });
});

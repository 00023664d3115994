/**
 * src/runtime/input-data.ts: the one rule for what an array means (whole, stack of samples, rows of
 * an input fixed at batch 1, chunking along a free batch axis), its refusals, and inputs generated
 * from the declared shapes. Data files are written with the test's own .npy writer
 * (test/helpers-npy.ts) and read back through readInputArrays, as the CLI reads them; generated
 * token ids are fed to onnxruntime, which refuses out-of-range Gather indices.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ModelBuilder } from '../models/builder.js';
import { PeftcError } from '../src/errors.js';
import { DataType } from '../src/ir/dtype.js';
import type { Model } from '../src/ir/model.js';
import { loadModel } from '../src/onnx/io.js';
import { CHUNK_ROWS, matchInputData, readInputArrays, synthesizeInputs, type InputData } from '../src/runtime/input-data.js';
import { runModel } from '../src/runtime/ort.js';
import { writeNpy, writeNpz, type NpyArray } from './helpers-npy.js';
import { mulberry32 } from './rng.js';

const ROOT = resolve(import.meta.dirname, '..');
const ZOO = join(ROOT, 'models', 'zoo');
const tmp = mkdtempSync(join(tmpdir(), 'peftc-input-data-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

let fileNo = 0;
/** Writes arrays (one: .npy; several: .npz keyed by name) and returns the path. */
function dataFile(arrays: Record<string, NpyArray>, npy = false): string {
  const path = join(tmp, `data-${fileNo++}.${npy ? 'npy' : 'npz'}`);
  if (npy) writeNpy(path, Object.values(arrays)[0]!);
  else writeNpz(path, arrays);
  return path;
}

const rand = mulberry32(7);
const f32 = (dims: number[]): NpyArray => ({ descr: '<f4', dims, data: Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, () => rand() * 2 - 1) });
const i64 = (dims: number[], high = 100): NpyArray => ({ descr: '<i8', dims, data: BigInt64Array.from({ length: dims.reduce((a, b) => a * b, 1) }, () => BigInt(Math.floor(rand() * high))) });
const i32 = (dims: number[]): NpyArray => ({ descr: '<i4', dims, data: Int32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, () => Math.floor(rand() * 100)) });

/** A model with the given inputs, each passed through Identity to an output. */
function model(inputs: Array<[string, DataType, Array<number | string | null>]>): Model {
  const b = new ModelBuilder({ opset: 17 });
  for (const [name, dtype, shape] of inputs) {
    const v = b.input(name, dtype, shape);
    b.output(b.op('Identity', [v], {}, { name: `id_${name}` }), { dtype, shape });
  }
  return b.build();
}

const match = (path: string, m: Model, options?: { chunkRows?: number }) => matchInputData(readInputArrays(path), m, options);

/** The message of the PeftcError `f` throws (fails the test if it throws nothing or something else). */
function refusal(f: () => unknown): string {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(PeftcError);
    return (err as Error).message;
  }
  throw new Error('expected a PeftcError, nothing was thrown');
}

/** Elements of a typed array as numbers. */
const nums = (a: ArrayLike<number | bigint>) => Array.from(a, Number);
/** Rows [from, to) of a row-major array whose rows hold `per` elements. */
const rows = (a: NpyArray, from: number, to: number, per: number) => nums(a.data as ArrayLike<number | bigint>).slice(from * per, to * per);
const fed = (d: InputData, run: number, name: string) => d.feed(run)[name]!;

describe('matchInputData: layouts', () => {
  it('an input fixed at [1, 128] given [N, 128]: N runs of one row each, with a note naming the input', () => {
    const m = model([['x', DataType.FLOAT, [1, 128]]]);
    const a = f32([5, 128]);
    const d = match(dataFile({ x: a }, true), m);
    expect(d.runs).toBe(5);
    expect(d.samples).toBe(5);
    expect(d.notes).toHaveLength(1);
    expect(d.notes[0]).toContain("'x'");
    expect(d.notes[0]).toContain('[5, 128]');
    expect(d.notes[0]).toContain('5 samples of [1, 128]');
    for (const run of [0, 3, 4]) {
      const t = fed(d, run, 'x');
      expect(t.dims).toEqual([1, 128]);
      expect(nums(t.toTypedArray())).toEqual(rows(a, run, run + 1, 128));
    }
  });

  it('[1, 128] as it is and [3, 1, 128] as a stack: no note', () => {
    const m = model([['x', DataType.FLOAT, [1, 128]]]);
    const whole = match(dataFile({ x: f32([1, 128]) }, true), m);
    expect([whole.runs, whole.samples, whole.notes.length]).toEqual([1, 1, 0]);
    const stack = match(dataFile({ x: f32([3, 1, 128]) }, true), m);
    expect([stack.runs, stack.samples, stack.notes.length]).toEqual([3, 3, 0]);
    expect(fed(stack, 2, 'x').dims).toEqual([1, 128]);
  });

  it('a stack of samples: one rank more than the input, fed one sample per run', () => {
    const m = model([
      ['x', DataType.FLOAT, [2, 4]],
      ['ids', DataType.INT64, [2, 3]],
    ]);
    const x = f32([3, 2, 4]);
    const ids = i64([3, 2, 3]);
    const d = match(dataFile({ x, ids }), m);
    expect(d.runs).toBe(3);
    expect(d.samples).toBe(6); // 3 runs x batch 2
    expect(d.notes).toEqual([]);
    for (let run = 0; run < 3; run++) {
      expect(fed(d, run, 'x').dims).toEqual([2, 4]);
      expect(nums(fed(d, run, 'x').toTypedArray())).toEqual(rows(x, run, run + 1, 8));
      expect(nums(fed(d, run, 'ids').toTypedArray())).toEqual(rows(ids, run, run + 1, 6));
    }
  });

  it(`whole arrays along a free batch axis: more than ${CHUNK_ROWS} rows go in runs of ${CHUNK_ROWS}, which concatenate to the array`, () => {
    expect(CHUNK_ROWS).toBe(8);
    const m = model([
      ['x', DataType.FLOAT, ['batch', 4]],
      ['ids', DataType.INT64, ['batch', 'seq']],
    ]);
    const x = f32([20, 4]);
    const ids = i64([20, 3]);
    const path = dataFile({ x, ids });
    const d = match(path, m);
    expect(d.runs).toBe(3);
    expect(d.samples).toBe(20);
    expect(d.notes).toEqual([]);
    expect([0, 1, 2].map((r) => fed(d, r, 'x').dims)).toEqual([
      [8, 4],
      [8, 4],
      [4, 4],
    ]);
    expect([0, 1, 2].map((r) => fed(d, r, 'ids').dims)).toEqual([
      [8, 3],
      [8, 3],
      [4, 3],
    ]);
    // Concatenated runs are the arrays, row for row (x and ids stay aligned).
    expect([0, 1, 2].flatMap((r) => nums(fed(d, r, 'x').toTypedArray()))).toEqual(nums(x.data as Float32Array));
    expect([0, 1, 2].flatMap((r) => nums(fed(d, r, 'ids').toTypedArray()))).toEqual(nums(ids.data as BigInt64Array));
    // Another chunk size.
    const five = match(path, m, { chunkRows: 5 });
    expect(five.runs).toBe(4);
    expect(nums(fed(five, 3, 'x').toTypedArray())).toEqual(rows(x, 15, 20, 4));
  });

  it('no chunking at 8 rows, nor along a fixed leading axis', () => {
    const free = model([['x', DataType.FLOAT, ['batch', 4]]]);
    const eight = match(dataFile({ x: f32([8, 4]) }, true), free);
    expect([eight.runs, eight.samples]).toEqual([1, 8]);
    expect(fed(eight, 0, 'x').dims).toEqual([8, 4]);
    const nine = match(dataFile({ x: f32([9, 4]) }, true), free);
    expect([nine.runs, nine.samples]).toEqual([2, 9]);
    const fixed = model([['x', DataType.FLOAT, [20, 4]]]);
    const d = match(dataFile({ x: f32([20, 4]) }, true), fixed);
    expect([d.runs, d.samples]).toEqual([1, 20]);
    expect(fed(d, 0, 'x').dims).toEqual([20, 4]);
  });

  it('models/lm: eval.bin as int64 [128, 256] is 16 runs of 8 windows', () => {
    const lm = loadModel(join(ROOT, 'models', 'lm', 'model.onnx'));
    const bytes = readFileSync(join(ROOT, 'models', 'lm', 'eval.bin')).subarray(0, 128 * 256);
    const ids: NpyArray = { descr: '<i8', dims: [128, 256], data: BigInt64Array.from(bytes, (b) => BigInt(b)) };
    const d = match(dataFile({ ids }, true), lm);
    expect(d.runs).toBe(16);
    expect(d.samples).toBe(128);
    const last = fed(d, 15, 'input_ids');
    expect(last.dims).toEqual([8, 256]);
    expect(nums(last.toTypedArray())).toEqual(Array.from(bytes.subarray(120 * 256)));
  });
});

describe('matchInputData: refusals name the file, the array and the input', () => {
  const two = model([
    ['x', DataType.FLOAT, [2, 4]],
    ['y', DataType.FLOAT, [2, 4]],
  ]);

  it('wrong element type', () => {
    const m = model([['x', DataType.FLOAT, [2, 4]]]);
    const path = dataFile({ x: i32([2, 4]) }, true);
    const msg = refusal(() => match(path, m));
    expect(msg).toContain(path);
    expect(msg).toContain("array 'x' is int32");
    expect(msg).toContain("input 'x' takes float32");
    // A zoo model: float token ids.
    const llama = loadModel(join(ZOO, 'llama-static', 'model.onnx'));
    const p2 = dataFile({ input_ids: f32([2, 16]) }, true);
    const m2 = refusal(() => match(p2, llama));
    expect(m2).toContain(p2);
    expect(m2).toContain("input 'input_ids' takes int64");
  });

  it('wrong shape', () => {
    const m = model([['x', DataType.FLOAT, [2, 4]]]);
    const path = dataFile({ x: f32([3, 5]) }, true);
    const msg = refusal(() => match(path, m));
    expect(msg).toContain(path);
    expect(msg).toContain("array 'x' has shape [3, 5]");
    expect(msg).toContain("input 'x' takes [2, 4]");
    // [N, 4] for an input fixed at [2, 4] is not read as rows (only batch 1 is).
    expect(refusal(() => match(dataFile({ x: f32([6, 4]) }, true), m))).toContain('[6, 4]');
    // llama-static is fixed at [2, 16]: [2, 17] is refused.
    const llama = loadModel(join(ZOO, 'llama-static', 'model.onnx'));
    const p2 = dataFile({ input_ids: i64([2, 17]) }, true);
    expect(refusal(() => match(p2, llama))).toContain("input 'input_ids' takes [2, 16]");
  });

  it('an array no input takes', () => {
    const m = model([['x', DataType.FLOAT, [2, 4]]]);
    const path = dataFile({ x: f32([2, 4]), z: f32([2, 4]) });
    const msg = refusal(() => match(path, m));
    expect(msg).toContain(path);
    expect(msg).toContain("'z' match no model input");
    expect(msg).toContain("'x'");
  });

  it('an input with no array', () => {
    const path = dataFile({ x: f32([2, 4]) });
    const msg = refusal(() => match(path, two));
    expect(msg).toContain(path);
    expect(msg).toContain("no array for model input(s) 'y'");
  });

  it('a .npy for a model of two inputs', () => {
    const path = dataFile({ x: f32([2, 4]) }, true);
    const msg = refusal(() => match(path, two));
    expect(msg).toContain(path);
    expect(msg).toContain('.npz');
    expect(msg).toContain("'x', 'y'");
  });

  it('mixed layouts, and stacks of different lengths', () => {
    const path = dataFile({ x: f32([3, 2, 4]), y: f32([2, 4]) });
    const msg = refusal(() => match(path, two));
    expect(msg).toContain(path);
    expect(msg).toContain("arrays 'x' are stacks of samples but 'y' are not");
    const p2 = dataFile({ x: f32([3, 2, 4]), y: f32([4, 2, 4]) });
    const m2 = refusal(() => match(p2, two));
    expect(m2).toContain(p2);
    expect(m2).toContain("'y' holds 4 samples");
  });

  it('empty data', () => {
    const m = model([['x', DataType.FLOAT, ['batch', 4]]]);
    const path = dataFile({ x: f32([0, 4]) }, true);
    expect(refusal(() => match(path, m))).toContain(`${path}: the data is empty`);
  });

  it('a file that is not there', () => {
    const path = join(tmp, 'missing.npz');
    expect(refusal(() => readInputArrays(path))).toContain(path);
  });
});

describe('synthesizeInputs', () => {
  const VOCAB = 256; // models/export_zoo.py: VOCAB = 256 for every zoo language model

  it('llama-static: int64 token ids within the embedding rows, a stack of samples; onnxruntime runs them', async () => {
    const path = join(ZOO, 'llama-static', 'model.onnx');
    const m = loadModel(path);
    const gen = synthesizeInputs(m, { seed: 5, samples: 3 });
    const ids = gen.arrays.get('input_ids')!;
    expect(ids.dtype).toBe(DataType.INT64);
    expect(ids.dims).toEqual([3, 2, 16]);
    const v = nums(ids.toTypedArray());
    expect(v.every((x) => Number.isInteger(x) && x >= 0 && x < VOCAB)).toBe(true);
    // Spread over the table, not the 0/1 fallback for integers of unknown use.
    expect(Math.max(...v)).toBeGreaterThan(VOCAB / 2);
    expect(new Set(v).size).toBeGreaterThan(40);
    // Same seed, same data; another seed, other data.
    const again = synthesizeInputs(loadModel(path), { seed: 5, samples: 3 }).arrays.get('input_ids')!;
    expect(nums(again.toTypedArray())).toEqual(v);
    const other = synthesizeInputs(m, { seed: 6, samples: 3 }).arrays.get('input_ids')!;
    expect(nums(other.toTypedArray())).not.toEqual(v);
    // Read as a stack: 3 runs of [2, 16].
    const d = matchInputData(gen, m);
    expect([d.runs, d.samples]).toEqual([3, 6]);
    const out = await runModel(path, d.feed(2));
    expect(out['logits']!.dims).toEqual([2, 16, VOCAB]);
  });

  it('bert-static: ids within the vocabulary, attention_mask all ones', async () => {
    const path = join(ZOO, 'bert-static', 'model.onnx');
    const m = loadModel(path);
    const gen = synthesizeInputs(m, { samples: 2 });
    const ids = nums(gen.arrays.get('input_ids')!.toTypedArray());
    const mask = gen.arrays.get('attention_mask')!;
    expect(gen.arrays.get('input_ids')!.dims).toEqual([2, 2, 16]);
    expect(ids.every((x) => x >= 0 && x < VOCAB)).toBe(true);
    expect(Math.max(...ids)).toBeGreaterThan(VOCAB / 2);
    expect(mask.dtype).toBe(DataType.INT64);
    expect(mask.dims).toEqual([2, 2, 16]);
    expect(nums(mask.toTypedArray())).toEqual(new Array(64).fill(1));
    // No seed means seed 0.
    expect(nums(synthesizeInputs(m, { seed: 0, samples: 2 }).arrays.get('input_ids')!.toTypedArray())).toEqual(ids);
    const out = await runModel(path, matchInputData(gen, m).feed(1));
    expect(out['last_hidden_state']!.dims).toEqual([2, 16, 64]);
  });

  it('ids through a Cast into a small table, position ids 0..n-1, masks, floats, symbolic dims', () => {
    const b = new ModelBuilder({ opset: 17 });
    const ids = b.input('input_ids', DataType.INT32, [1, 6]);
    const pos = b.input('position_ids', DataType.INT64, [1, 6]);
    const mask = b.input('attention_mask', DataType.INT64, [1, 6]);
    const x = b.input('x', DataType.FLOAT, ['batch', 'seq', 3]);
    const table = b.initializer('table', DataType.FLOAT, [10, 4], new Float32Array(40));
    const posTable = b.initializer('pos_table', DataType.FLOAT, [6, 4], new Float32Array(24));
    const wide = b.op('Cast', [ids], { to: DataType.INT64 });
    b.output(b.op('Gather', [table, wide]));
    b.output(b.op('Gather', [posTable, pos]));
    b.output(b.op('Identity', [mask]));
    b.output(b.op('Identity', [x]));
    const m = b.build();
    const gen = synthesizeInputs(m, { samples: 4, seed: 1 });
    const idv = nums(gen.arrays.get('input_ids')!.toTypedArray());
    expect(gen.arrays.get('input_ids')!.dtype).toBe(DataType.INT32);
    expect(idv.every((v) => v >= 0 && v < 10)).toBe(true);
    expect(Math.max(...idv)).toBeGreaterThanOrEqual(2); // the table's 10 rows, not 0/1
    expect(nums(gen.arrays.get('position_ids')!.toTypedArray())).toEqual([0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5]);
    expect(nums(gen.arrays.get('attention_mask')!.toTypedArray())).toEqual(new Array(24).fill(1));
    // Symbolic dims: a leading one defaults to 1, others to 16.
    const xs = gen.arrays.get('x')!;
    expect(xs.dims).toEqual([4, 1, 16, 3]);
    expect(nums(xs.toTypedArray()).every((v) => v >= -1 && v < 1)).toBe(true);
    const sized = synthesizeInputs(m, { samples: 1, dims: { batch: 2, seq: 5 } }).arrays.get('x')!;
    expect(sized.dims).toEqual([1, 2, 5, 3]);
  });
});

/**
 * Input data for running a model: read from NumPy files (`--calib DATA`, `--inputs DATA`) or
 * generated from the declared input shapes. One rule says what an array means, for calibration,
 * `verify`, `bench` and the golden records alike:
 *
 * - A .npy file holds the array of a single-input model; a .npz holds one array per input name.
 * - An array of the input's rank whose fixed dimensions match is fed as it is. When its leading
 *   axis is the input's free (batch) axis and it is long, it is fed in runs of CHUNK_ROWS rows
 *   (one run over [512, 2048] token ids would hold every sequence's activations at once).
 * - An array one rank higher is a stack of samples, fed one at a time.
 * - An array of the input's rank whose leading axis differs from an input fixed at batch 1
 *   ([64, 128] for an input fixed at [1, 128]) is 64 samples of [1, 128], fed one at a time; a note
 *   says so (the caller logs it), since a new user should not have to reshape by hand.
 *
 * Element types must be the inputs' own; anything else is refused naming the file, the array
 * and the input.
 */
import { PeftcError } from '../errors.js';
import { DataType, dtypeName, elementCount } from '../ir/dtype.js';
import type { Graph, Value } from '../ir/graph.js';
import type { Model } from '../ir/model.js';
import { Tensor } from '../ir/tensor.js';
import { shapeOf } from '../ir/types.js';
import { readArrays } from './npy.js';
import { mulberry32 } from '../random.js';

/** Rows of a batch-axis array fed per onnxruntime run (bounds the activations held). */
export const CHUNK_ROWS = 8;

/** Name given to the array of a .npy file until it is matched to the model's only input. */
const SINGLE_ARRAY = '\u0000npy';

/** Arrays as read from a file (or generated), not yet matched to a model. */
export interface InputArrays {
  path: string;
  arrays: Map<string, Tensor>;
}

/** Reads a .npy / .npz file (errors name the file). */
export function readInputArrays(path: string): InputArrays {
  return { path, arrays: readArrays(path, SINGLE_ARRAY) };
}

/** Arrays matched to a model: `runs` feeds. */
export interface InputData {
  path: string;
  runs: number;
  /** Samples in all (runs x batch). */
  samples: number;
  /** How the arrays were read, where that is not the obvious reading (for the log). */
  notes: string[];
  feed(run: number): Record<string, Tensor>;
}

const fmt = (dims: ReadonlyArray<number | string | null>) => `[${dims.map((d) => (d === null ? '?' : d)).join(', ')}]`;

/** The graph inputs a caller must feed (initializer-backed inputs may be left out). */
export function feedableInputs(g: Graph): Value[] {
  return g.inputs.filter((v) => !v.initializer);
}

type Plan = { name: string; tensor: Tensor; layout: 'whole' | 'stack' | 'rows' };

/** Checks the arrays against the model's inputs; the errors name the file, the array and the input. */
export function matchInputData(data: InputArrays, model: Model, options: { chunkRows?: number } = {}): InputData {
  const { path } = data;
  const chunkRows = options.chunkRows ?? CHUNK_ROWS;
  const g = model.graph;
  const inputs = feedableInputs(g);
  const overridable = new Set(g.inputs.filter((v) => v.initializer).map((v) => v.name));
  const arrays = new Map(data.arrays);
  const single = arrays.get(SINGLE_ARRAY);
  if (single) {
    if (inputs.length !== 1) {
      throw new PeftcError(`${path}: a .npy file holds one array, but the model takes ${inputs.length} inputs (${inputs.map((v) => `'${v.name}'`).join(', ')}); give a .npz archive with one array per input name`);
    }
    arrays.delete(SINGLE_ARRAY);
    arrays.set(inputs[0]!.name, single);
  }
  const unknown = [...arrays.keys()].filter((k) => !inputs.some((v) => v.name === k) && !overridable.has(k));
  if (unknown.length) {
    throw new PeftcError(`${path}: array(s) ${unknown.map((k) => `'${k}'`).join(', ')} match no model input (inputs: ${inputs.map((v) => `'${v.name}'`).join(', ')})`);
  }
  const missing = inputs.filter((v) => !arrays.has(v.name));
  if (missing.length) {
    throw new PeftcError(`${path}: no array for model input(s) ${missing.map((v) => `'${v.name}'`).join(', ')} (the file holds ${[...arrays.keys()].map((k) => `'${k}'`).join(', ')})`);
  }
  const notes: string[] = [];
  const plans: Plan[] = [];
  for (const [name, tensor] of arrays) {
    const type = g.inputs.find((x) => x.name === name)!.type;
    if (type?.kind === 'tensor' && type.elemType !== tensor.dtype) {
      throw new PeftcError(`${path}: array '${name}' is ${dtypeName(tensor.dtype)}, but input '${name}' takes ${dtypeName(type.elemType)}; save it as ${dtypeName(type.elemType)}`);
    }
    const want = shapeOf(type);
    const dims = tensor.dims;
    if (!want) {
      plans.push({ name, tensor, layout: 'whole' });
      continue;
    }
    const fits = (got: readonly number[], w: ReadonlyArray<number | string | null>) => got.length === w.length && w.every((d, i) => typeof d !== 'number' || d === got[i]);
    if (fits(dims, want)) plans.push({ name, tensor, layout: 'whole' });
    else if (dims.length === want.length + 1 && fits(dims.slice(1), want)) plans.push({ name, tensor, layout: 'stack' });
    else if (dims.length === want.length && want[0] === 1 && dims[0]! > 1 && fits(dims.slice(1), want.slice(1))) {
      notes.push(`array '${name}' ${fmt(dims)} read as ${dims[0]} samples of ${fmt([1, ...dims.slice(1)])}: input '${name}' is fixed at ${fmt(want)}`);
      plans.push({ name, tensor, layout: 'rows' });
    } else {
      throw new PeftcError(
        `${path}: array '${name}' has shape ${fmt(dims)}, but input '${name}' takes ${fmt(want)} (or a stack of samples ${fmt(['samples', ...want])}); '?' and names are free dimensions`,
      );
    }
  }
  const stacked = plans.filter((p) => p.layout !== 'whole');
  if (stacked.length && stacked.length !== plans.length) {
    throw new PeftcError(
      `${path}: arrays ${stacked.map((p) => `'${p.name}'`).join(', ')} are stacks of samples but ${plans.filter((p) => p.layout === 'whole').map((p) => `'${p.name}'`).join(', ')} are not; give every input the same layout`,
    );
  }
  const runs = stacked.length ? stacked[0]!.tensor.dims[0]! : 1;
  for (const p of stacked) {
    if (p.tensor.dims[0] !== runs) throw new PeftcError(`${path}: array '${p.name}' holds ${p.tensor.dims[0]} samples, '${stacked[0]!.name}' ${runs}; every input needs the same number`);
  }
  if (runs === 0 || plans.some((p) => p.tensor.dims.includes(0))) throw new PeftcError(`${path}: the data is empty`);
  // Arrays fed whole whose leading axis is a free (batch) dimension of every input are cut into
  // runs of at most chunkRows rows. Rows are independent samples, so the cut changes no result.
  const leading = plans.map((p) => p.tensor.dims[0]);
  const free0 = plans.every((p) => {
    const want = shapeOf(g.inputs.find((x) => x.name === p.name)!.type);
    return want !== undefined && want.length > 0 && typeof want[0] !== 'number' && p.tensor.dims.length > 0;
  });
  const chunked = !stacked.length && free0 && leading.every((d) => d === leading[0]) && leading[0]! > chunkRows;
  if (chunked) {
    const rows = leading[0]!;
    return {
      path,
      runs: Math.ceil(rows / chunkRows),
      samples: rows,
      notes,
      feed(run: number): Record<string, Tensor> {
        const out: Record<string, Tensor> = {};
        const from = run * chunkRows;
        const to = Math.min(rows, from + chunkRows);
        for (const p of plans) out[p.name] = sliceRows(p.tensor, from, to, [to - from, ...p.tensor.dims.slice(1)]);
        return out;
      },
    };
  }
  // Samples: runs times the leading (batch) axis of what each run feeds.
  const first = plans[0]!;
  const batch = (first.layout === 'stack' ? first.tensor.dims[1] : first.layout === 'rows' ? 1 : first.tensor.dims[0]) ?? 1;
  return {
    path,
    runs,
    samples: runs * batch,
    notes,
    feed(run: number): Record<string, Tensor> {
      const out: Record<string, Tensor> = {};
      for (const p of plans) {
        if (p.layout === 'whole') out[p.name] = p.tensor;
        else if (p.layout === 'stack') out[p.name] = sliceRows(p.tensor, run, run + 1, p.tensor.dims.slice(1));
        else out[p.name] = sliceRows(p.tensor, run, run + 1, [1, ...p.tensor.dims.slice(1)]);
      }
      return out;
    },
  };
}

/** Rows [from, to) of the leading axis, as a view with the given dims (no copy). */
function sliceRows(t: Tensor, from: number, to: number, dims: number[]): Tensor {
  const bytes = t.bytes();
  const per = bytes.byteLength / t.dims[0]!;
  return Tensor.fromBytes(t.name, t.dtype, dims, bytes.subarray(from * per, to * per));
}

export interface SynthesizeOptions {
  /** PRNG seed (default 0): the same model and seed give the same data. */
  seed?: number;
  /** Values for symbolic dimensions by name (`--shape`-like: { seq: 128 }); default 1 for a leading axis, else 16. */
  dims?: Record<string, number>;
  /** Samples (runs) to generate (default 1). */
  samples?: number;
}

/**
 * Inputs generated from the declared shapes with a fixed seed: floats uniform in [-1, 1); integer
 * inputs used as Gather indices uniform over the table's rows (token ids stay in the vocabulary);
 * inputs named like a mask all ones; position ids 0, 1, 2... along the last axis; other integers
 * 0 or 1; bools true. The result reads like a .npz of stacked samples.
 */
export function synthesizeInputs(model: Model, options: SynthesizeOptions = {}): InputArrays {
  const rand = mulberry32(options.seed ?? 0);
  const samples = options.samples ?? 1;
  const g = model.graph;
  const arrays = new Map<string, Tensor>();
  for (const v of feedableInputs(g)) {
    if (v.type?.kind !== 'tensor') throw new PeftcError(`input '${v.name}' is not a tensor; give its data with --inputs DATA`);
    const dtype = v.type.elemType as DataType;
    const want = shapeOf(v.type);
    if (!want) throw new PeftcError(`input '${v.name}' has no declared shape; give its data with --inputs DATA`);
    const dims = want.map((d, i) => {
      if (typeof d === 'number') return d;
      const given = typeof d === 'string' ? options.dims?.[d] : undefined;
      return given ?? (i === 0 ? 1 : 16);
    });
    const n = elementCount(dims);
    const total = n * samples;
    let data: Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array;
    if (dtype === DataType.FLOAT) data = Float32Array.from({ length: total }, () => rand() * 2 - 1);
    else if (dtype === DataType.DOUBLE) data = Float64Array.from({ length: total }, () => rand() * 2 - 1);
    else if (dtype === DataType.INT64 || dtype === DataType.INT32) {
      const ints = integerFill(g, v, dims, samples, rand);
      data = dtype === DataType.INT64 ? BigInt64Array.from(ints, (x) => BigInt(x)) : Int32Array.from(ints);
    } else if (dtype === DataType.BOOL) data = new Uint8Array(total).fill(1);
    else throw new PeftcError(`input '${v.name}' is ${dtypeName(dtype)}; peftc generates float32/float64/int32/int64/bool inputs only: give its data with --inputs DATA`);
    arrays.set(v.name, Tensor.fromTypedArray(v.name, dtype, [samples, ...dims], data));
  }
  return { path: `generated inputs (seed ${options.seed ?? 0})`, arrays };
}

/** Integer input values by what the input is used for (see synthesizeInputs). */
function integerFill(g: Graph, v: Value, dims: number[], samples: number, rand: () => number): number[] {
  const n = elementCount(dims) * samples;
  if (/mask/i.test(v.name)) return new Array<number>(n).fill(1);
  if (/position/i.test(v.name)) {
    const last = dims[dims.length - 1] ?? 1;
    return Array.from({ length: n }, (_, i) => i % last);
  }
  const rows = gatherRows(g, v);
  const high = rows ?? 2;
  return Array.from({ length: n }, () => Math.floor(rand() * high));
}

/** Rows of the smallest constant table that `v` indexes through Gather (following Casts), if any. */
function gatherRows(g: Graph, v: Value, depth = 0): number | undefined {
  let best: number | undefined;
  for (const use of v.uses) {
    const node = use.node;
    if (node.opType === 'Cast' && node.domain === '' && depth < 3) {
      for (const out of node.outputs) {
        if (!out) continue;
        const r = gatherRows(g, out, depth + 1);
        if (r !== undefined) best = Math.min(best ?? r, r);
      }
    } else if (node.opType === 'Gather' && node.domain === '' && use.index === 1) {
      const table = node.inputs[0]?.initializer;
      const axis = node.attrInt('axis', 0);
      const rows = table?.dims[axis < 0 ? axis + table.dims.length : axis];
      if (rows !== undefined) best = Math.min(best ?? rows, rows);
    }
  }
  return best;
}

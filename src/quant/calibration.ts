/**
 * Calibration for data-aware weight quantization (`--calib DATA`): reading the data, matching it
 * to the model's inputs, and capturing, for every MatMul/Gemm input A whose weight will be
 * quantized, H = X^T X (X: the rows of A over all calibration runs, leading axes flattened).
 *
 * Data: a .npy array for a single-input model, or a .npz archive keyed by input name. An array
 * whose rank is the input's is fed as it is (its leading axis being the model's batch axis); one
 * rank higher is a stack of samples, fed one at a time. Element types must be the inputs' own, and
 * every fixed dimension of the model must match.
 *
 * Capture: the activations are listed as extra graph outputs while onnxruntime-node loads the model
 * (then the model is restored exactly as given), and the session runs the data. Each run fetches the
 * activations in groups sized so that at most `budgetBytes` of them are alive at once (sizes are
 * learnt from the first activation fetched: the row count of activations is assumed alike), and
 * each group is folded into its Hessians before the next is fetched.
 */
import { availableParallelism } from 'node:os';
import { PeftcError } from '../errors.js';
import { DataType, dtypeName, float16BitsToFloat32 } from '../ir/dtype.js';
import type { Value } from '../ir/graph.js';
import type { Model } from '../ir/model.js';
import { Tensor } from '../ir/tensor.js';
import { shapeOf, tensorType } from '../ir/types.js';
import { readArrays } from '../runtime/npy.js';
import { OrtSession } from '../runtime/ort.js';
import { accumulateHessian, mirrorUpper, sharedFloat64 } from './hessian.js';

/** Rows of a batch-axis calibration array fed per onnxruntime run (bounds the activations held). */
export const CALIB_BATCH = 8;

/** Name given to the array of a .npy file until it is matched to the model's only input. */
const SINGLE_ARRAY = '\u0000npy';

/** Calibration arrays as read from the file, not yet matched to a model. */
export interface CalibrationArrays {
  path: string;
  arrays: Map<string, Tensor>;
}

/** Reads a .npy / .npz calibration file (errors name the file). */
export function readCalibrationArrays(path: string): CalibrationArrays {
  return { path, arrays: readArrays(path, SINGLE_ARRAY) };
}

/** Calibration data matched to a model: `runs` feeds. */
export interface CalibrationData {
  path: string;
  runs: number;
  /** Samples in all (runs x batch). */
  samples: number;
  feed(run: number): Record<string, Tensor>;
}

const fmt = (dims: ReadonlyArray<number | string | null>) => `[${dims.map((d) => (d === null ? '?' : d)).join(', ')}]`;

/** Checks the arrays against the model's inputs; the errors name the file, the array and the input. */
export function matchCalibrationData(data: CalibrationArrays, model: Model): CalibrationData {
  const { path } = data;
  const g = model.graph;
  const inputs = g.inputs.filter((v) => !v.initializer);
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
    throw new PeftcError(`${path}: no array for model input(s) ${missing.map((v) => `'${v.name}'`).join(', ')} (the archive holds ${[...arrays.keys()].map((k) => `'${k}'`).join(', ')})`);
  }
  // Per input: fed whole ('batch') or one sample at a time along a leading axis ('stack').
  const plans: Array<{ name: string; tensor: Tensor; stacked: boolean }> = [];
  for (const [name, tensor] of arrays) {
    const v = g.inputs.find((x) => x.name === name)!;
    const type = v.type;
    if (type?.kind === 'tensor' && type.elemType !== tensor.dtype) {
      throw new PeftcError(`${path}: array '${name}' is ${dtypeName(tensor.dtype)}, but input '${name}' takes ${dtypeName(type.elemType)}; save it as ${dtypeName(type.elemType)}`);
    }
    const want = shapeOf(type);
    const dims = tensor.dims;
    if (!want) {
      plans.push({ name, tensor, stacked: false });
      continue;
    }
    const fits = (got: readonly number[]) => got.length === want.length && want.every((d, i) => typeof d !== 'number' || d === got[i]);
    if (fits(dims)) plans.push({ name, tensor, stacked: false });
    else if (dims.length === want.length + 1 && fits(dims.slice(1))) plans.push({ name, tensor, stacked: true });
    else {
      throw new PeftcError(
        `${path}: array '${name}' has shape ${fmt(dims)}, but input '${name}' takes ${fmt(want)} (or a stack of samples ${fmt(['samples', ...want])}); '?' and names are free dimensions`,
      );
    }
  }
  const stacked = plans.filter((p) => p.stacked);
  if (stacked.length && stacked.length !== plans.length) {
    throw new PeftcError(
      `${path}: arrays ${stacked.map((p) => `'${p.name}'`).join(', ')} are stacks of samples but ${plans.filter((p) => !p.stacked).map((p) => `'${p.name}'`).join(', ')} are not; give every input the same layout`,
    );
  }
  const runs = stacked.length ? stacked[0]!.tensor.dims[0]! : 1;
  for (const p of stacked) {
    if (p.tensor.dims[0] !== runs) throw new PeftcError(`${path}: array '${p.name}' holds ${p.tensor.dims[0]} samples, '${stacked[0]!.name}' ${runs}; every input needs the same number`);
  }
  if (runs === 0 || plans.some((p) => p.tensor.dims.includes(0))) throw new PeftcError(`${path}: the calibration data is empty`);
  // Arrays fed whole whose leading axis is a free (batch) dimension of every input are cut into
  // runs of at most CALIB_BATCH rows: one run over [512, 2048] token ids would hold the
  // activations of all 512 sequences at once. H sums over rows, so the cut changes nothing else.
  const leading = plans.map((p) => p.tensor.dims[0]);
  const free0 = plans.every((p) => {
    const want = shapeOf(g.inputs.find((x) => x.name === p.name)!.type);
    return want !== undefined && want.length > 0 && typeof want[0] !== 'number' && p.tensor.dims.length > 0;
  });
  const chunked = !stacked.length && free0 && leading.every((d) => d === leading[0]) && leading[0]! > CALIB_BATCH;
  if (chunked) {
    const rows = leading[0]!;
    const chunks = Math.ceil(rows / CALIB_BATCH);
    return {
      path,
      runs: chunks,
      samples: rows,
      feed(run: number): Record<string, Tensor> {
        const out: Record<string, Tensor> = {};
        const from = run * CALIB_BATCH;
        const to = Math.min(rows, from + CALIB_BATCH);
        for (const p of plans) {
          const bytes = p.tensor.bytes();
          const per = bytes.byteLength / rows;
          out[p.name] = Tensor.fromBytes(p.name, p.tensor.dtype, [to - from, ...p.tensor.dims.slice(1)], bytes.subarray(from * per, to * per));
        }
        return out;
      },
    };
  }
  // Samples: runs times the leading (batch) axis of what each run feeds.
  const batch = (stacked.length ? plans[0]!.tensor.dims[1] : plans[0]!.tensor.dims[0]) ?? 1;
  return {
    path,
    runs,
    samples: runs * batch,
    feed(run: number): Record<string, Tensor> {
      const out: Record<string, Tensor> = {};
      for (const p of plans) {
        if (!p.stacked) {
          out[p.name] = p.tensor;
          continue;
        }
        const bytes = p.tensor.bytes();
        const per = bytes.byteLength / runs;
        out[p.name] = Tensor.fromBytes(p.name, p.tensor.dtype, p.tensor.dims.slice(1), bytes.subarray(run * per, (run + 1) * per));
      }
      return out;
    },
  };
}

/** An activation to capture: a value name, its last axis K and its element type. */
export interface CaptureTarget {
  activation: string;
  k: number;
  dtype: DataType;
}

export interface CaptureOptions {
  /** Activation bytes alive at once at most (default 256 MiB; one activation may exceed it). */
  budgetBytes?: number;
  log?: (message: string) => void;
}

export interface CaptureResult {
  /** H = X^T X per activation name, K x K float64 in shared memory (symmetric). */
  hessians: Map<string, Float64Array>;
  /** Rows of X per activation. */
  rows: Map<string, number>;
  /** onnxruntime runs made (runs x groups). */
  sessionRuns: number;
  ms: number;
}

const DEFAULT_BUDGET = 256 << 20;

let half: Float32Array | undefined;
const halfToFloat = (h: number) => (half ??= Float32Array.from({ length: 65536 }, (_, i) => float16BitsToFloat32(i)))[h]!;

/** Runs the calibration data through `model` (with the targets as outputs) and accumulates each target's Hessian. */
export async function captureHessians(model: Model, targets: readonly CaptureTarget[], data: CalibrationData, options: CaptureOptions = {}): Promise<CaptureResult> {
  const t0 = performance.now();
  const log = options.log ?? (() => {});
  const budget = options.budgetBytes ?? DEFAULT_BUDGET;
  const hessians = new Map<string, Float64Array>();
  const rows = new Map<string, number>();
  for (const t of targets) {
    if (t.dtype !== DataType.FLOAT && t.dtype !== DataType.FLOAT16) throw new PeftcError(`activation '${t.activation}' is ${dtypeName(t.dtype)}; calibration reads float32/float16 activations`);
    hessians.set(t.activation, sharedFloat64(t.k * t.k));
    rows.set(t.activation, 0);
  }
  const fromInputs = targets.filter((t) => model.graph.inputs.some((v) => v.name === t.activation));
  const computed = targets.filter((t) => !fromInputs.includes(t));

  const fold = (t: CaptureTarget, tensor: Tensor) => {
    const k = t.k;
    const n = tensor.dims.length ? tensor.dims.reduce((a, b) => a * b, 1) : 1;
    if (tensor.dims[tensor.dims.length - 1] !== k) {
      throw new PeftcError(`${data.path}: activation '${t.activation}' has shape ${fmt(tensor.dims)} in calibration; its last axis should be ${k}`);
    }
    const r = n / k;
    if (tensor.dtype === DataType.FLOAT16) accumulateHessian(hessians.get(t.activation)!, k, tensor.toTypedArray<Uint16Array>(), r, halfToFloat);
    else if (tensor.dtype === DataType.FLOAT) accumulateHessian(hessians.get(t.activation)!, k, tensor.toTypedArray<Float32Array>(), r);
    else throw new PeftcError(`activation '${t.activation}' came back as ${dtypeName(tensor.dtype)}; calibration reads float32/float16 activations`);
    rows.set(t.activation, rows.get(t.activation)! + r);
    return r;
  };

  let sessionRuns = 0;
  let session: OrtSession | undefined;
  try {
    if (computed.length) {
      // The activations are exposed as extra outputs only while onnxruntime takes the model in
      // (OrtSession.create encodes it, or writes it out when it is large): a copy of the model
      // made for this would cost a second full encode, or a second temporary copy on disk.
      const restore = exposeOutputs(model, computed);
      try {
        session = await OrtSession.create(model, { label: 'the model with its quantized layers\' inputs as outputs (calibration)', intraOpThreads: availableParallelism() });
      } finally {
        restore();
      }
    }
    let rowsSeen = 0;
    for (let run = 0; run < data.runs; run++) {
      const feed = data.feed(run);
      // An overridable initializer the data leaves out feeds its own value.
      for (const t of fromInputs) fold(t, feed[t.activation] ?? model.graph.inputs.find((v) => v.name === t.activation)!.initializer!);
      let next = 0;
      while (next < computed.length) {
        // A group: as many activations as fit the budget (one alone while sizes are unknown).
        const group: CaptureTarget[] = [];
        let bytes = 0;
        while (next < computed.length) {
          const t = computed[next]!;
          const est = rowsSeen > 0 ? rowsSeen * t.k * (t.dtype === DataType.FLOAT16 ? 2 : 4) : undefined;
          if (group.length && (est === undefined || bytes + est > budget)) break;
          group.push(t);
          next++;
          if (est === undefined) break;
          bytes += est;
        }
        const out = await session!.run(feed, group.map((t) => t.activation));
        sessionRuns++;
        for (const t of group) {
          rowsSeen = Math.max(rowsSeen, fold(t, out[t.activation]!));
          delete out[t.activation];
        }
      }
      if (data.runs > 1 && (run + 1) % Math.max(1, Math.floor(data.runs / 10)) === 0) log(`calibration: ${run + 1}/${data.runs} runs`);
    }
  } finally {
    await session?.release();
  }
  for (const t of targets) {
    const h = hessians.get(t.activation)!;
    mirrorUpper(h, t.k);
    for (let i = 0; i < t.k; i++) {
      if (!Number.isFinite(h[i * t.k + i]!)) throw new PeftcError(`${data.path}: activation '${t.activation}' holds non-finite values on the calibration data`);
    }
  }
  return { hessians, rows, sessionRuns, ms: performance.now() - t0 };
}

/** Adds the targets to the model's graph outputs; the returned function undoes exactly that. */
function exposeOutputs(model: Model, targets: readonly CaptureTarget[]): () => void {
  const g = model.graph;
  const outputs = [...g.outputs];
  const types: Array<[Value, Value['type']]> = [];
  for (const t of targets) {
    const v = g.localValue(t.activation);
    if (!v) throw new PeftcError(`internal: activation '${t.activation}' is not a value of the main graph`);
    if (v.isGraphOutput) continue;
    if (v.type?.kind !== 'tensor') {
      types.push([v, v.type]);
      v.type = tensorType(t.dtype);
    }
    g.outputs.push(v);
  }
  return () => {
    g.outputs.length = 0;
    g.outputs.push(...outputs);
    for (const [v, type] of types) v.type = type;
  };
}

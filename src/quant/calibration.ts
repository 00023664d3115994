/**
 * Calibration for data-aware weight quantization (`--calib DATA`): reading the data, matching it
 * to the model's inputs, and capturing, for every MatMul/Gemm input A whose weight will be
 * quantized, H = X^T X (X: the rows of A over all calibration runs, leading axes flattened).
 *
 * Data: a .npy array for a single-input model, or a .npz archive keyed by input name, read by the
 * one rule that verify and bench use too (src/runtime/input-data.ts).
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
import { CHUNK_ROWS, matchInputData, readInputArrays, type InputArrays, type InputData } from '../runtime/input-data.js';
import { OrtSession } from '../runtime/ort.js';
import { accumulateAbs, accumulateHessian, mirrorUpper, sharedFloat64 } from './hessian.js';

/** Rows of a batch-axis calibration array fed per onnxruntime run (bounds the activations held). */
export const CALIB_BATCH = CHUNK_ROWS;

const fmt = (dims: readonly number[]) => `[${dims.join(', ')}]`;

/** Calibration arrays as read from the file, not yet matched to a model. */
export type CalibrationArrays = InputArrays;
/** Calibration data matched to a model: `runs` feeds. */
export type CalibrationData = InputData;

/** Reads a .npy / .npz calibration file (errors name the file). */
export const readCalibrationArrays = readInputArrays;

/** Checks the arrays against the model's inputs (the shared rule of src/runtime/input-data.ts). */
export function matchCalibrationData(data: CalibrationArrays, model: Model): CalibrationData {
  return matchInputData(data, model, { chunkRows: CALIB_BATCH });
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
  /** Also gather each activation's mean |x| per channel (AWQ's activation magnitude). */
  absMeans?: boolean;
  log?: (message: string) => void;
}

export interface CaptureResult {
  /** H = X^T X per activation name, K x K float64 in shared memory (symmetric). */
  hessians: Map<string, Float64Array>;
  /** Rows of X per activation. */
  rows: Map<string, number>;
  /** With `absMeans`: mean |x| per channel (K values) per activation. */
  absMeans?: Map<string, Float64Array>;
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
  const absSums = options.absMeans ? new Map<string, Float64Array>() : undefined;
  for (const t of targets) {
    absSums?.set(t.activation, new Float64Array(t.k));
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
    const sums = absSums?.get(t.activation);
    if (tensor.dtype === DataType.FLOAT16) {
      const x = tensor.toTypedArray<Uint16Array>();
      accumulateHessian(hessians.get(t.activation)!, k, x, r, halfToFloat);
      if (sums) accumulateAbs(sums, k, x, halfToFloat);
    } else if (tensor.dtype === DataType.FLOAT) {
      const x = tensor.toTypedArray<Float32Array>();
      accumulateHessian(hessians.get(t.activation)!, k, x, r);
      if (sums) accumulateAbs(sums, k, x);
    } else throw new PeftcError(`activation '${t.activation}' came back as ${dtypeName(tensor.dtype)}; calibration reads float32/float16 activations`);
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
  let absMeans: Map<string, Float64Array> | undefined;
  if (absSums) {
    absMeans = new Map();
    for (const [name, sums] of absSums) {
      const n = rows.get(name)!;
      absMeans.set(name, sums.map((v) => (n > 0 ? v / n : 0)));
    }
  }
  return { hessians, rows, ...(absMeans ? { absMeans } : {}), sessionRuns, ms: performance.now() - t0 };
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

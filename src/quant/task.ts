/**
 * One unit of quantization work: a weight tensor's bytes (or where to read them), how to view them
 * as rows, and the configuration. Tasks and their results are plain data (typed arrays and
 * numbers), so they cross to worker threads with their buffers transferred, not copied.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { DataType, float16BitsToFloat32 } from '../ir/dtype.js';
import { dequantizeRows, quantInputBuffer, quantizeRows, transposeFloats, type QuantConfig, type QuantizedRows } from './blockwise.js';
import { gptqQuantizeRows, type GptqOptions } from './gptq.js';
import { outputError } from './hessian.js';
import { layoutBuffers, packLayouts, type LayoutKind, type PackedLayouts } from './layouts.js';

export interface QuantTask {
  id: number;
  /** For messages: the weight's name. */
  name: string;
  /** Element type of the source: float32 or float16. */
  dtype: typeof DataType.FLOAT | typeof DataType.FLOAT16;
  /** The quantized view: `rows` rows blocked along `cols`. */
  rows: number;
  cols: number;
  /** The source is stored [cols, rows] (a MatMul weight [K, N]) and is transposed first. */
  transpose: boolean;
  /** A factor folded into the weights before quantizing (Gemm alpha); 1 when absent. */
  multiplier: number;
  /** The raw little-endian bytes (owned by the task: their buffer may be transferred), or a file range. */
  source: { kind: 'bytes'; bytes: Uint8Array } | { kind: 'file'; path: string; offset: number; length: number };
  config: QuantConfig;
  /** The layouts to pack the result into (in the thread that quantized it). */
  layouts: LayoutKind[];
  /**
   * Calibration: H = X^T X of the layer input, [cols, cols] float64 (never modified). Over a
   * SharedArrayBuffer it is shared with the worker, not copied (layers with the same input share
   * one); otherwise its buffer is transferred and the task owns it. With it the result carries the
   * output error.
   */
  hessian?: Float64Array;
  /** GPTQ against `hessian` (config.method then names the block scale search). */
  gptq?: Partial<GptqOptions>;
  /**
   * Worker threads: after this task, collect garbage when the thread's ArrayBuffer memory is above
   * this many bytes (worker.ts); the pass sets it from its thread count.
   */
  collectAboveBytes?: number;
}

/** What a task returns besides the packed layouts: shape, settings and error statistics. */
export type QuantizedSummary = Omit<QuantizedRows, 'codes' | 'scales' | 'zeroPoints' | 'scaleCodes' | 'scaleGroupScales'>;

export interface QuantTaskResult {
  id: number;
  name: string;
  result?: QuantizedSummary;
  layouts?: PackedLayouts;
  /** The error message when the task failed. */
  error?: string;
  /** Milliseconds spent quantizing (in whichever thread ran it). */
  ms: number;
}

let halfTable: Float32Array | undefined;

/** All 65536 float16 bit patterns as float32 (256 KiB, built once per thread). */
function float16Table(): Float32Array {
  if (!halfTable) {
    halfTable = new Float32Array(65536);
    for (let i = 0; i < 65536; i++) halfTable[i] = float16BitsToFloat32(i);
  }
  return halfTable;
}

function readSource(task: QuantTask, into?: (length: number) => Uint8Array | null): Uint8Array {
  const s = task.source;
  if (s.kind === 'bytes') return s.bytes;
  const out = into?.(s.length) ?? new Uint8Array(s.length);
  const fd = openSync(s.path, 'r');
  try {
    for (let done = 0; done < s.length; ) {
      const n = readSync(fd, out, done, Math.min(s.length - done, 1 << 30), s.offset + done);
      if (n === 0) throw new Error(`${s.path} ends early (wanted ${s.length} bytes at offset ${s.offset})`);
      done += n;
    }
  } finally {
    closeSync(fd);
  }
  return out;
}

/**
 * The task's weights as float32 in the source's own layout: [cols, rows] when `transposed` (a
 * MatMul weight W[K, N]), else [rows, cols]. Aligned float32 bytes are read in place (the source is
 * never written); float16, unaligned bytes or a multiplier cost one sequential pass into a copy.
 */
export function taskValues(task: QuantTask, into?: (length: number) => Uint8Array | null): { values: Float32Array; transposed: boolean } {
  // Only float32 is read as is; anything converted goes through a copy anyway.
  const bytes = readSource(task, task.dtype === DataType.FLOAT && task.multiplier === 1 ? into : undefined);
  const n = task.rows * task.cols;
  const elemBytes = task.dtype === DataType.FLOAT ? 4 : 2;
  if (bytes.byteLength !== n * elemBytes) throw new Error(`expected ${n * elemBytes} bytes, got ${bytes.byteLength}`);
  const aligned = bytes.byteOffset % elemBytes === 0;
  const m = task.multiplier;
  let values: Float32Array;
  if (task.dtype === DataType.FLOAT && aligned) {
    values = new Float32Array(bytes.buffer, bytes.byteOffset, n);
    if (m !== 1) {
      const f = values;
      values = new Float32Array(n);
      for (let i = 0; i < n; i++) values[i] = Math.fround(f[i]! * m);
    }
  } else {
    values = new Float32Array(n);
    if (task.dtype === DataType.FLOAT) {
      const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      for (let i = 0; i < n; i++) values[i] = dv.getFloat32(i * 4, true);
    } else {
      const table = float16Table();
      if (aligned) {
        const h = new Uint16Array(bytes.buffer, bytes.byteOffset, n);
        for (let i = 0; i < n; i++) values[i] = table[h[i]!]!;
      } else {
        const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
        for (let i = 0; i < n; i++) values[i] = table[dv.getUint16(i * 2, true)]!;
      }
    }
    if (m !== 1) for (let i = 0; i < n; i++) values[i] = Math.fround(values[i]! * m);
  }
  return { values, transposed: task.transpose };
}

/** The task's weights as float32 rows [rows, cols] (GPTQ and the output error need them so). */
export function taskRows(task: QuantTask): Float32Array {
  const { values, transposed } = taskValues(task);
  return transposed ? transposeFloats(values, task.cols, task.rows) : values;
}

/** Runs a task in this thread; failures come back as `error`, never thrown. */
export function runQuantTask(task: QuantTask): QuantTaskResult {
  const t0 = performance.now();
  try {
    const { rows, cols, hessian } = task;
    if (task.gptq && !hessian) throw new Error('GPTQ needs the calibration Hessian');
    let q: QuantizedRows;
    if (!hessian) {
      // Plain blocks read a MatMul weight in place (quantizeRows gathers tiles of it); integer
      // codes read it from a file straight into the SIMD kernels' memory (no second copy there).
      // `values` may be detached by quantizeRows then, and is not used after it.
      const { values, transposed } = taskValues(task, task.config.format === 'int' ? quantInputBuffer : undefined);
      q = quantizeRows(values, rows, cols, task.config, transposed);
    } else {
      const values = taskRows(task);
      if (task.gptq) {
        // GPTQ gives its output error itself; one pass over H gives what plain rounding with the
        // same scale search leaves (for comparison in the report) and ||X W||^2.
        q = gptqQuantizeRows(values, rows, cols, hessian, task.config, task.gptq);
        const e = outputError(values, dequantizeRows(quantizeRows(values, rows, cols, task.config)), rows, cols, hessian);
        q.stats.nearestOutputSse = e.sse;
        q.stats.outputNorm = e.norm;
      } else {
        q = quantizeRows(values, rows, cols, task.config);
        const e = outputError(values, dequantizeRows(q), rows, cols, hessian);
        q.stats.outputSse = e.sse;
        q.stats.outputNorm = e.norm;
      }
    }
    const layouts = packLayouts(q, task.layouts);
    const { codes: _c, scales: _s, zeroPoints: _z, scaleCodes: _sc, scaleGroupScales: _sg, ...result } = q;
    return { id: task.id, name: task.name, result, layouts, ms: performance.now() - t0 };
  } catch (err) {
    return { id: task.id, name: task.name, error: err instanceof Error ? err.message : String(err), ms: performance.now() - t0 };
  }
}

/** The buffers of a result that can be transferred instead of copied. */
export function resultTransferList(r: QuantTaskResult): ArrayBuffer[] {
  return r.layouts ? layoutBuffers(r.layouts) : [];
}

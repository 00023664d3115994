/**
 * One unit of quantization work: a weight tensor's bytes (or where to read them), how to view them
 * as rows, and the configuration. Tasks and their results are plain data (typed arrays and
 * numbers), so they cross to worker threads with their buffers transferred, not copied.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { DataType, float16BitsToFloat32 } from '../ir/dtype.js';
import { dequantizeRows, quantizeRows, type QuantConfig, type QuantizedRows } from './blockwise.js';
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

function readSource(task: QuantTask): Uint8Array {
  const s = task.source;
  if (s.kind === 'bytes') return s.bytes;
  const out = new Uint8Array(s.length);
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

/** The task's weights as float32 rows [rows, cols]. */
export function taskRows(task: QuantTask): Float32Array {
  const bytes = readSource(task);
  const n = task.rows * task.cols;
  const elemBytes = task.dtype === DataType.FLOAT ? 4 : 2;
  if (bytes.byteLength !== n * elemBytes) throw new Error(`expected ${n * elemBytes} bytes, got ${bytes.byteLength}`);
  // Element i of the source, as float32 (aligned views when possible, DataView otherwise).
  const aligned = bytes.byteOffset % elemBytes === 0;
  let get: (i: number) => number;
  if (task.dtype === DataType.FLOAT) {
    if (aligned) {
      const f = new Float32Array(bytes.buffer, bytes.byteOffset, n);
      get = (i) => f[i]!;
    } else {
      const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      get = (i) => dv.getFloat32(i * 4, true);
    }
  } else {
    const table = float16Table();
    if (aligned) {
      const h = new Uint16Array(bytes.buffer, bytes.byteOffset, n);
      get = (i) => table[h[i]!]!;
    } else {
      const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      get = (i) => table[dv.getUint16(i * 2, true)]!;
    }
  }
  const { rows, cols } = task;
  if (task.dtype === DataType.FLOAT && aligned) {
    // The common case, without a call per element.
    const f = new Float32Array(bytes.buffer, bytes.byteOffset, n);
    if (task.transpose) {
      const out = transposeFloats(f, cols, rows);
      if (task.multiplier !== 1) for (let i = 0; i < n; i++) out[i] = Math.fround(out[i]! * task.multiplier);
      return out;
    }
    // Read in place (the source is never written); a copy only to fold a multiplier.
    return task.multiplier === 1 ? f : Float32Array.from(f, (v) => Math.fround(v * task.multiplier));
  }
  const out = new Float32Array(n);
  if (!task.transpose) {
    for (let i = 0; i < n; i++) out[i] = get(i);
  } else {
    // Source [cols, rows] -> out [rows, cols], in tiles so both sides stay in cache.
    const T = 64;
    for (let c0 = 0; c0 < cols; c0 += T) {
      const c1 = Math.min(cols, c0 + T);
      for (let r0 = 0; r0 < rows; r0 += T) {
        const r1 = Math.min(rows, r0 + T);
        for (let c = c0; c < c1; c++) for (let r = r0; r < r1; r++) out[r * cols + c] = get(c * rows + r);
      }
    }
  }
  if (task.multiplier !== 1) {
    const m = task.multiplier;
    for (let i = 0; i < n; i++) out[i] = Math.fround(out[i]! * m);
  }
  return out;
}

/** [rows, cols] -> [cols, rows], in tiles so both sides stay in cache. */
function transposeFloats(a: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(a.length);
  const T = 64;
  for (let r0 = 0; r0 < rows; r0 += T) {
    const r1 = Math.min(rows, r0 + T);
    for (let c0 = 0; c0 < cols; c0 += T) {
      const c1 = Math.min(cols, c0 + T);
      for (let r = r0; r < r1; r++) {
        const base = r * cols;
        for (let c = c0; c < c1; c++) out[c * rows + r] = a[base + c]!;
      }
    }
  }
  return out;
}

/** Runs a task in this thread; failures come back as `error`, never thrown. */
export function runQuantTask(task: QuantTask): QuantTaskResult {
  const t0 = performance.now();
  try {
    const values = taskRows(task);
    const { rows, cols, hessian } = task;
    if (task.gptq && !hessian) throw new Error('GPTQ needs the calibration Hessian');
    const q = task.gptq ? gptqQuantizeRows(values, rows, cols, hessian!, task.config, task.gptq) : quantizeRows(values, rows, cols, task.config);
    if (hessian) {
      const e = outputError(values, dequantizeRows(q), rows, cols, hessian);
      q.stats.outputSse = e.sse;
      q.stats.outputNorm = e.norm;
      // What plain rounding with the same scale search leaves, for comparison in the report.
      if (task.gptq) q.stats.nearestOutputSse = outputError(values, dequantizeRows(quantizeRows(values, rows, cols, task.config)), rows, cols, hessian, false).sse;
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

/**
 * The weights of a TF.js graph model: one weight group whose constants are concatenated in
 * manifest order and cut into shard files of 4 MiB (`group1-shard1of3.bin`...), as TF.js's own
 * converter writes them (its default --weight_shard_size_bytes, 4194304); a constant may span two
 * shards, TF.js concatenates a group's shards before slicing. Constants are computed and written
 * one at a time, so memory holds one constant and one shard buffer.
 *
 * Weight quantization in the forms TF.js dequantizes on load (tfjs-core io.decodeWeights):
 *  - fp16: IEEE half bits (round to nearest even); values beyond ±65504 are clamped (counted);
 *  - uint8 / uint16: affine per tensor, value = q * scale + min, with min nudged so that 0.0 is
 *    exactly representable when the range covers it (zero padding and ReLU zeros stay exact).
 * Only float32 constants of at least `minElements` elements are quantized (the weight matrices,
 * embeddings and filters); biases, norms, scalars and every int32/bool constant stay exact.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { float16BitsToFloat32, float32ToFloat16Bits } from '../../src/ir/dtype.js';
import type { TfConst } from './graphdef.js';

export type TfjsWeightQuant = 'none' | 'fp16' | 'uint8' | 'uint16';
export const TFJS_WEIGHT_QUANTS: readonly TfjsWeightQuant[] = ['none', 'fp16', 'uint8', 'uint16'];

/** TF.js's converter default shard size. */
export const SHARD_BYTES = 4 * 1024 * 1024;
/** float32 constants smaller than this stay float32 under quantization (default). */
export const DEFAULT_MIN_ELEMENTS = 1024;

export interface ManifestEntry {
  name: string;
  shape: number[];
  dtype: 'float32' | 'int32' | 'bool';
  quantization?: { dtype: 'float16' | 'uint8' | 'uint16'; scale?: number; min?: number };
}

export interface WeightsManifestGroup {
  paths: string[];
  weights: ManifestEntry[];
}

/** Per quantized constant: how far the stored values are from the float32 ones. */
export interface QuantizedWeight {
  name: string;
  origin: string;
  form: 'float16' | 'uint8' | 'uint16';
  elements: number;
  /** max |w - ŵ| */
  maxAbsError: number;
  /** ‖w - ŵ‖ / ‖w‖ */
  relError: number;
  scale?: number;
  min?: number;
}

export interface WrittenWeights {
  manifest: WeightsManifestGroup[];
  files: string[];
  /** Bytes written over all shards. */
  bytes: number;
  /** Bytes the same constants take as float32/int32/bool. */
  unquantizedBytes: number;
  quantized: QuantizedWeight[];
  /** fp16: values clamped to ±65504. */
  clamped: number;
}

export interface WriteWeightsOptions {
  quant: TfjsWeightQuant;
  minElements?: number;
  shardBytes?: number;
}

const BYTES: Record<ManifestEntry['dtype'], number> = { float32: 4, int32: 4, bool: 1 };
const elements = (shape: readonly number[]) => shape.reduce((a, d) => a * d, 1);

/** The form a constant is stored in under `quant`. */
function formOf(c: TfConst, quant: TfjsWeightQuant, minElements: number): QuantizedWeight['form'] | undefined {
  if (quant === 'none' || c.dtype !== 'float32' || elements(c.shape) < minElements) return undefined;
  return quant === 'fp16' ? 'float16' : quant;
}

const FORM_BYTES = { float16: 2, uint8: 1, uint16: 2 } as const;
const FLOAT16_MAX = 65504;

/**
 * The affine parameters TF.js decodes with (value = q * scale + min): the tensor's range over
 * 2^bits - 1 steps, with min moved onto the grid point that makes 0.0 exact when 0 is in range.
 */
export function affineParams(data: Float32Array, bits: 8 | 16, search = bits === 8): { scale: number; min: number } {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < data.length; i++) {
    const x = data[i]!;
    if (x < lo) lo = x;
    if (x > hi) hi = x;
  }
  if (!(hi > lo)) return { scale: 1, min: Number.isFinite(lo) ? lo : 0 };
  const qmax = 2 ** bits - 1;
  const params = (a: number, b: number) => {
    const scale = (b - a) / qmax;
    return a <= 0 && b >= 0 ? { scale, min: -Math.round(-a / scale) * scale } : { scale, min: a };
  };
  if (!search) return params(lo, hi);
  // One scale for a whole tensor: a few outliers can cost every other weight its resolution.
  // Shrink the range towards its midpoint (or towards 0 when it covers 0) while the squared error falls.
  let best = params(lo, hi);
  let bestErr = affineError(data, best.scale, best.min, qmax);
  const centre = lo <= 0 && hi >= 0 ? 0 : (lo + hi) / 2;
  for (const f of CLIP_FACTORS) {
    const p = params(centre + (lo - centre) * f, centre + (hi - centre) * f);
    const err = affineError(data, p.scale, p.min, qmax);
    if (err < bestErr) {
      best = p;
      bestErr = err;
    }
  }
  return best;
}

/** Range factors tried for uint8 (1 = the full min..max range). */
const CLIP_FACTORS = [0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.6, 0.5];

/** Σ (x - dequantized x)² for an affine form (a strided sample for large tensors). */
function affineError(data: Float32Array, scale: number, min: number, qmax: number): number {
  const step = Math.max(1, Math.floor(data.length / 262144));
  let err = 0;
  for (let i = 0; i < data.length; i += step) {
    const x = data[i]!;
    const q = Math.min(qmax, Math.max(0, Math.round((x - min) / scale)));
    const d = x - (q * scale + min);
    err += d * d;
  }
  return err;
}

/** Encodes one constant in its stored form; reports the quantization error when it has one. */
export function encodeConst(c: TfConst, form: QuantizedWeight['form'] | undefined): { bytes: Uint8Array; entry: ManifestEntry; report?: QuantizedWeight; clamped: number } {
  const data = c.data();
  const entry: ManifestEntry = { name: c.name, shape: c.shape, dtype: c.dtype };
  if (!form) return { bytes: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), entry, clamped: 0 };
  const x = data as Float32Array;
  let clamped = 0;
  let maxAbs = 0;
  let errSq = 0;
  let refSq = 0;
  const note = (v: number, back: number) => {
    const e = Math.abs(v - back);
    if (e > maxAbs) maxAbs = e;
    errSq += e * e;
    refSq += v * v;
  };
  const report = (extra: Partial<QuantizedWeight>): QuantizedWeight => ({ name: c.name, origin: c.origin, form, elements: x.length, maxAbsError: maxAbs, relError: refSq > 0 ? Math.sqrt(errSq / refSq) : Math.sqrt(errSq), ...extra });
  if (form === 'float16') {
    const out = new Uint16Array(x.length);
    for (let i = 0; i < x.length; i++) {
      let v = x[i]!;
      if (v > FLOAT16_MAX || v < -FLOAT16_MAX) {
        v = Math.sign(v) * FLOAT16_MAX;
        clamped++;
      }
      out[i] = float32ToFloat16Bits(v);
      note(x[i]!, float16BitsToFloat32(out[i]!));
    }
    entry.quantization = { dtype: 'float16' };
    return { bytes: new Uint8Array(out.buffer), entry, report: report({}), clamped };
  }
  const bits = form === 'uint8' ? 8 : 16;
  const { scale, min } = affineParams(x, bits);
  const qmax = 2 ** bits - 1;
  const out = bits === 8 ? new Uint8Array(x.length) : new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const q = Math.min(qmax, Math.max(0, Math.round((x[i]! - min) / scale)));
    out[i] = q;
    // TF.js decodes in double precision and stores float32.
    note(x[i]!, Math.fround(q * scale + min));
  }
  entry.quantization = { dtype: form, scale, min };
  return { bytes: new Uint8Array(out.buffer), entry, report: report({ scale, min }), clamped };
}

/** Writes the constants as the shards of one weight group into `dir` (file names as TF.js's converter gives them). */
export function writeWeightShards(dir: string, consts: readonly TfConst[], options: WriteWeightsOptions): WrittenWeights {
  const shardBytes = options.shardBytes ?? SHARD_BYTES;
  const minElements = options.minElements ?? DEFAULT_MIN_ELEMENTS;
  const forms = consts.map((c) => formOf(c, options.quant, minElements));
  const sizes = consts.map((c, i) => elements(c.shape) * (forms[i] ? FORM_BYTES[forms[i]!] : BYTES[c.dtype]));
  const total = sizes.reduce((a, b) => a + b, 0);
  const count = Math.max(1, Math.ceil(total / shardBytes));
  const files = Array.from({ length: count }, (_, i) => `group1-shard${i + 1}of${count}.bin`);
  const entries: ManifestEntry[] = [];
  const quantized: QuantizedWeight[] = [];
  let clamped = 0;
  let shard = 0;
  let inShard = 0;
  let fd = openSync(join(dir, files[0]!), 'wx');
  let written = 0;
  try {
    const put = (bytes: Uint8Array) => {
      let at = 0;
      while (at < bytes.byteLength) {
        if (inShard === shardBytes) {
          closeSync(fd);
          shard++;
          inShard = 0;
          fd = openSync(join(dir, files[shard]!), 'wx');
        }
        const n = Math.min(bytes.byteLength - at, shardBytes - inShard);
        let done = 0;
        while (done < n) done += writeSync(fd, bytes, at + done, n - done);
        at += n;
        inShard += n;
        written += n;
      }
    };
    consts.forEach((c, i) => {
      const enc = encodeConst(c, forms[i]);
      if (enc.bytes.byteLength !== sizes[i]) throw new Error(`internal: constant '${c.name}' encoded to ${enc.bytes.byteLength} bytes, expected ${sizes[i]}`);
      put(enc.bytes);
      entries.push(enc.entry);
      if (enc.report) quantized.push(enc.report);
      clamped += enc.clamped;
    });
  } finally {
    closeSync(fd);
  }
  if (written !== total || (total > 0 && shard !== count - 1)) throw new Error(`internal: wrote ${written} of ${total} weight bytes into ${shard + 1} of ${count} shards`);
  const unquantizedBytes = consts.reduce((a, c) => a + elements(c.shape) * BYTES[c.dtype], 0);
  return { manifest: [{ paths: files, weights: entries }], files, bytes: written, unquantizedBytes, quantized, clamped };
}

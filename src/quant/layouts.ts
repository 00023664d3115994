/**
 * How quantized rows (see blockwise.ts) are laid out in each emitted form. Pure byte shuffling: the
 * numbers were decided by the quantizer; these functions only place them where each operator reads
 * them.
 *
 * com.microsoft MatMulNBits (onnxruntime docs/ContribOperators.md, "com.microsoft.MatMulNBits";
 * the Python quantizer onnxruntime/python/tools/quantization/matmul_nbits_quantizer.py,
 * DefaultWeightOnlyQuantizer.qbits_block_quant; the MLAS blockwise quantizer q4_dq.cpp):
 *  - B: uint8 [N, n_blocks, blob_size], blob_size = block_size * bits / 8. Row n holds output
 *    column n of W[K, N]; block b holds W[b*bs .. b*bs+bs-1, n]. 4-bit: element j of a block sits
 *    in byte j/2, low nibble for even j, high nibble for odd j; 8-bit: one byte per element.
 *    Padding past K (last block) holds the zero point, so it dequantizes to 0.
 *  - scales: [N, n_blocks] (the spec's shape; onnxruntime's quantizer writes the same numbers flat
 *    as [N * n_blocks]), the type of A.
 *  - zero_points (asymmetric only): uint8 [N, ceil(n_blocks * bits / 8)], packed like B along the
 *    blocks of one row: 4-bit block b of row n in byte n * ceil(n_blocks / 2) + b / 2, low nibble
 *    for even b; the unused high nibble of an odd count is 0. Without zero_points the zero point is
 *    2^(bits-1) (8 for 4 bits, 128 for 8 bits) — the symmetric form.
 *  - dequantized W[k, n] = (q - zero_point) * scale in the type of A; with accuracy_level 0 (unset)
 *    or 1 (fp32) onnxruntime's CPU kernel computes exactly this (checked bit for bit in
 *    test/weight-quant.test.ts).
 *
 * com.microsoft MatMulBnb4 (ContribOperators.md; contrib_ops/cpu/quantization/
 * blockwise_quant_block_bnb4.h): B is the [N, K] weight flattened and cut into blocks of
 * block_size along the flat index; uint8 [(N*K + 1) / 2] with the FIRST element of a pair in the
 * HIGH nibble; absmax [(N*K + bs - 1) / bs]; dequantized = code[q] * absmax. peftc emits it only
 * when K is a multiple of the block size, so flat blocks are the same as blocks along K.
 *
 * ONNX DequantizeLinear-21 (blocked): data int4/uint4/int8/uint8 with the weight's own shape, packed
 * low nibble first in row-major order; scale and zero point with the block axis shortened to
 * ceil(dim / block_size); output (data - zero_point) * scale.
 */
import { float32ToFloat16Bits, packSubByte } from '../ir/dtype.js';
import type { QuantizedRows } from './blockwise.js';
import { NF4_ZERO_CODE } from './nf4.js';

function mid(q: QuantizedRows): number {
  return 1 << (q.bits - 1);
}

/** Zero point of block `bi` ([rows, blocks] index). */
function zeroPointOf(q: QuantizedRows, bi: number): number {
  return q.zeroPoints ? q.zeroPoints[bi]! : mid(q);
}

export interface MatMulNBitsTensors {
  /** uint8 [N, blocks, blobSize]. */
  B: Uint8Array;
  blobSize: number;
  /** [N, blocks]. */
  scales: Float32Array;
  /** uint8 [N, zpBytesPerRow], asymmetric only. */
  zeroPoints: Uint8Array | null;
  zpBytesPerRow: number;
}

export function matMulNBitsLayout(q: QuantizedRows): MatMulNBitsTensors {
  if (q.format !== 'int') throw new Error('internal: MatMulNBits takes integer codes');
  const { rows: N, cols: K, blockSize: bs, blocks: nb, bits, codes } = q;
  const blobSize = (bs * bits) / 8;
  const B = new Uint8Array(N * nb * blobSize);
  // 4-bit with every row of codes and every blob 4-byte aligned (K and the block size multiples of
  // 4): whole blocks four codes at a time, one 32-bit load and one 16-bit store (little-endian, as
  // the typed-array views of tensor bytes elsewhere assume). A short last block of a row goes
  // through the general loop below (it pads with the zero point).
  const wide = bits === 4 && K % 4 === 0 && bs % 4 === 0 && codes.byteOffset % 4 === 0;
  const c32 = wide ? new Uint32Array(codes.buffer, codes.byteOffset, codes.length >> 2) : null;
  const b16 = wide ? new Uint16Array(B.buffer, B.byteOffset, B.length >> 1) : null;
  const fastBlocks = !wide ? 0 : K % bs === 0 ? nb : nb - 1;
  for (let n = 0; n < N; n++) {
    if (c32 && b16) {
      const quads = bs >> 2;
      for (let b = 0; b < fastBlocks; b++) {
        let from = (n * K + b * bs) >> 2;
        let to = ((n * nb + b) * blobSize) >> 1;
        for (let t = 0; t < quads; t++, from++, to++) {
          const w = c32[from]!;
          b16[to] = (w & 0xf) | ((w >>> 4) & 0xf0) | ((w >>> 8) & 0xf00) | ((w >>> 12) & 0xf000);
        }
      }
    }
    for (let b = fastBlocks; b < nb; b++) {
      const z = zeroPointOf(q, n * nb + b);
      const src = n * K + b * bs;
      const len = Math.min(bs, K - b * bs);
      let o = (n * nb + b) * blobSize;
      if (bits === 8) {
        B.set(codes.subarray(src, src + len), o);
        B.fill(z, o + len, o + bs);
        continue;
      }
      let j = 0;
      for (; j + 1 < len; j += 2) B[o++] = codes[src + j]! | (codes[src + j + 1]! << 4);
      // Tail of the last block: the zero point pads past K.
      for (; j < bs; j += 2) B[o++] = (j < len ? codes[src + j]! : z) | (z << 4);
    }
  }
  let zeroPoints: Uint8Array | null = null;
  const zpBytesPerRow = Math.ceil((nb * bits) / 8);
  if (q.zeroPoints) {
    zeroPoints = new Uint8Array(N * zpBytesPerRow);
    for (let n = 0; n < N; n++) {
      for (let b = 0; b < nb; b++) {
        const z = q.zeroPoints[n * nb + b]!;
        if (bits === 8) zeroPoints[n * zpBytesPerRow + b] = z;
        else zeroPoints[n * zpBytesPerRow + (b >> 1)]! |= (z & 0xf) << ((b & 1) * 4);
      }
    }
  }
  return { B, blobSize, scales: q.scales, zeroPoints, zpBytesPerRow };
}

/** MatMulBnb4 (NF4, quant_type 1): needs K % blockSize === 0. */
export function bnb4Layout(q: QuantizedRows): { B: Uint8Array; absmax: Float32Array } {
  if (q.format !== 'nf4') throw new Error('internal: MatMulBnb4 takes NF4 codes');
  if (q.cols % q.blockSize !== 0) throw new Error('internal: MatMulBnb4 needs K to be a multiple of the block size');
  const n = q.rows * q.cols;
  const B = new Uint8Array(Math.ceil(n / 2));
  for (let i = 0; i < n; i++) B[i >> 1]! |= q.codes[i]! << (i & 1 ? 0 : 4);
  return { B, absmax: q.scales };
}

export interface QdqTensors {
  /** Packed data (int4/uint4: two per byte, low nibble first) in the weight's own layout. */
  data: Uint8Array;
  signed: boolean;
  dims: number[];
  /** Scales with the block axis shortened. */
  scales: Float32Array;
  scaleDims: number[];
  /** Packed zero points (same type as data), asymmetric only. */
  zeroPoints: Uint8Array | null;
}

/**
 * DequantizeLinear operands for a weight whose blocks run along `axis` of a 2-D tensor: axis 0 for
 * a MatMul weight [K, N] (the rows of `q` are its columns), axis 1 for a [N, K] weight (Gemm with
 * transB, Gather tables: the rows of `q` are its rows). Symmetric codes become signed values
 * (q - 2^(bits-1)) with no zero point input.
 */
export function qdqLayout(q: QuantizedRows, axis: 0 | 1): QdqTensors {
  if (q.format !== 'int') throw new Error('internal: DequantizeLinear takes integer codes');
  const { rows, cols, blocks } = q;
  const signed = q.zeroPoints === null;
  const shift = signed ? mid(q) : 0;
  const count = rows * cols;
  const values = new Int16Array(count);
  if (axis === 1) {
    for (let i = 0; i < count; i++) values[i] = q.codes[i]! - shift;
  } else {
    // [cols, rows]: element (k, n) = codes[n, k].
    for (let n = 0; n < rows; n++) for (let k = 0; k < cols; k++) values[k * rows + n] = q.codes[n * cols + k]! - shift;
  }
  const dims = axis === 1 ? [rows, cols] : [cols, rows];
  const scaleDims = axis === 1 ? [rows, blocks] : [blocks, rows];
  const scales = axis === 1 ? q.scales : transpose(q.scales, rows, blocks);
  let zp: Uint8Array | null = null;
  if (q.zeroPoints) zp = axis === 1 ? q.zeroPoints : transposeBytes(q.zeroPoints, rows, blocks);
  return {
    data: q.bits === 4 ? packSubByte(values, 4) : Uint8Array.from(values, (v) => v & 0xff),
    signed,
    dims,
    scales,
    scaleDims,
    zeroPoints: zp ? (q.bits === 4 ? packSubByte(zp, 4) : zp) : null,
  };
}

export interface GatherTensors {
  /** int4 (symmetric) / uint4 packed, or uint8 codes (8-bit: zero point 128 when absent), [rows, cols]. */
  data: Uint8Array;
  /** 4-bit: int4 when true, uint4 otherwise; 8-bit data is always uint8. */
  signed: boolean;
  /** [rows, blocks]. */
  scales: Float32Array;
  /** Same type as data, [rows, blocks] (packed for 4-bit); asymmetric only. */
  zeroPoints: Uint8Array | null;
}

/** com.microsoft GatherBlockQuantized operands for a table [rows, cols] blocked along cols. */
export function gatherLayout(q: QuantizedRows): GatherTensors {
  if (q.bits === 8) return { data: q.codes, signed: false, scales: q.scales, zeroPoints: q.zeroPoints };
  const l = qdqLayout(q, 1);
  return { data: l.data, signed: l.signed, scales: l.scales, zeroPoints: l.zeroPoints };
}

export interface Nf4StandardTensors {
  /** uint4 codes [paddedK, N] (padding rows hold the zero code), packed low nibble first. */
  codes: Uint8Array;
  paddedK: number;
  /** [blocks, 1, N] scales (the dequantized values when double-quantized). */
  scales: Float32Array;
  /** Double quantization: uint8 [blocks, 1, N] and float32 [blocks, 1, ceil(N / 256)]. */
  scaleCodes?: Uint8Array;
  scaleGroupScales?: Float32Array;
}

/** NF4 with standard ops: codes as a uint4 [K, N] table for Gather, scales per (block, column). */
export function nf4StandardLayout(q: QuantizedRows): Nf4StandardTensors {
  if (q.format !== 'nf4') throw new Error('internal: expected NF4 codes');
  const { rows: N, cols: K, blocks: nb, blockSize: bs } = q;
  const paddedK = nb * bs;
  const values = new Uint8Array(paddedK * N).fill(NF4_ZERO_CODE);
  for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) values[k * N + n] = q.codes[n * K + k]!;
  const out: Nf4StandardTensors = { codes: packSubByte(values, 4), paddedK, scales: transpose(q.scales, N, nb) };
  if (q.scaleCodes && q.scaleGroupScales) {
    out.scaleCodes = transposeBytes(q.scaleCodes, N, nb);
    out.scaleGroupScales = transpose(q.scaleGroupScales, Math.ceil(N / 256), nb);
  }
  return out;
}

/** The layouts an emitted form reads; computed where the quantization ran (a worker thread). */
export type LayoutKind = 'matmulnbits' | 'bnb4' | 'qdq0' | 'qdq1' | 'gather' | 'nf4';

export interface PackedLayouts {
  matmulnbits?: MatMulNBitsTensors;
  bnb4?: { B: Uint8Array; absmax: Float32Array };
  qdq0?: QdqTensors;
  qdq1?: QdqTensors;
  gather?: GatherTensors;
  nf4?: Nf4StandardTensors;
}

export function packLayouts(q: QuantizedRows, kinds: readonly LayoutKind[]): PackedLayouts {
  const out: PackedLayouts = {};
  for (const k of kinds) {
    if (k === 'matmulnbits') out.matmulnbits = matMulNBitsLayout(q);
    else if (k === 'bnb4') out.bnb4 = bnb4Layout(q);
    else if (k === 'qdq0') out.qdq0 = qdqLayout(q, 0);
    else if (k === 'qdq1') out.qdq1 = qdqLayout(q, 1);
    else if (k === 'gather') out.gather = gatherLayout(q);
    else out.nf4 = nf4StandardLayout(q);
  }
  return out;
}

/** Every distinct buffer in the layouts (for transferring them across threads). */
export function layoutBuffers(l: PackedLayouts): ArrayBuffer[] {
  const set = new Set<ArrayBuffer>();
  for (const part of Object.values(l)) {
    for (const v of Object.values(part as object)) if (ArrayBuffer.isView(v)) set.add(v.buffer as ArrayBuffer);
  }
  return [...set];
}

function transpose(a: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(a.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = a[r * cols + c]!;
  return out;
}

function transposeBytes(a: Uint8Array, rows: number, cols: number): Uint8Array {
  const out = new Uint8Array(a.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = a[r * cols + c]!;
  return out;
}

/** float32 values as float16 bit patterns (the values are float16-exact when scaleDtype is float16). */
export function toFloat16Bits(a: Float32Array): Uint16Array {
  return Uint16Array.from(a, float32ToFloat16Bits);
}

/**
 * Large weights are quantized in parts, so no single tensor sets the wall time (one thread per
 * part) or the memory (a part's source, its float32 rows and its codes are all a thread holds).
 * A part is a contiguous byte range of the source weight:
 *  - a MatMul weight W[K, N] (quantized rows = its N columns, blocked along K) is cut along K at
 *    multiples of 2 * blockSize: part t holds W[k0:k1, :], i.e. blocks b0..b1 of every row;
 *  - a weight whose quantized rows are its own rows (Gemm transB, Gather tables) is cut into row
 *    ranges at multiples of 256 (so NF4 double-quantization groups stay whole).
 * Cuts at those multiples keep every packed 4-bit layout byte-aligned at the seams, so merging is
 * concatenation: whole, or row by row for layouts whose rows run across the cut (the K cuts).
 */
import type { ErrorStats } from './blockwise.js';
import type { MatMulNBitsTensors, Nf4StandardTensors, PackedLayouts, QdqTensors } from './layouts.js';

export interface PartRange {
  /** K range [start, end) for 'cols' cuts, row range for 'rows' cuts. */
  start: number;
  end: number;
}

/**
 * Splits [0, length) into parts of at most about `maxWeights` weights (`weightsPerUnit` per
 * index), cut at multiples of `unit`. One part when the whole is small enough.
 */
export function planParts(length: number, unit: number, weightsPerUnit: number, maxWeights: number): PartRange[] {
  const unitsPerPart = Math.max(1, Math.floor(maxWeights / (weightsPerUnit * unit)));
  const step = unitsPerPart * unit;
  const parts: PartRange[] = [];
  for (let start = 0; start < length; start += step) parts.push({ start, end: Math.min(length, start + step) });
  return parts;
}

export function mergeStats(stats: ErrorStats[]): ErrorStats {
  const out: ErrorStats = { count: 0, sse: 0, maxAbs: 0, sumSquares: 0 };
  let rtn = 0;
  let hasRtn = true;
  for (const s of stats) {
    out.count += s.count;
    out.sse += s.sse;
    out.maxAbs = Math.max(out.maxAbs, s.maxAbs);
    out.sumSquares += s.sumSquares;
    if (s.rtnSse === undefined) hasRtn = false;
    else rtn += s.rtnSse;
  }
  if (hasRtn) out.rtnSse = rtn;
  // Output errors are sums over rows, so they add up across parts cut along the rows (a weight
  // with a Hessian is never cut along K).
  for (const key of ['outputSse', 'outputNorm', 'nearestOutputSse'] as const) {
    if (stats.every((s) => s[key] !== undefined)) out[key] = stats.reduce((a, s) => a + s[key]!, 0);
  }
  return out;
}

function concat<T extends Uint8Array | Float32Array>(parts: T[]): T {
  if (parts.length === 1) return parts[0]!;
  const Ctor = parts[0]!.constructor as new (n: number) => T;
  const out = new Ctor(parts.reduce((s, p) => s + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p as never, at);
    at += p.length;
  }
  return out;
}

/** Row r of the result is row r of part 0, then row r of part 1, ...; `widths[t]` is part t's row length. */
function concatRows<T extends Uint8Array | Float32Array>(parts: T[], rows: number, widths: number[]): T {
  if (parts.length === 1) return parts[0]!;
  const total = widths.reduce((a, b) => a + b, 0);
  const Ctor = parts[0]!.constructor as new (n: number) => T;
  const out = new Ctor(rows * total);
  for (let r = 0; r < rows; r++) {
    let at = r * total;
    parts.forEach((p, t) => {
      const w = widths[t]!;
      out.set(p.subarray(r * w, (r + 1) * w) as never, at);
      at += w;
    });
  }
  return out;
}

export interface PartShape {
  rows: number;
  cols: number;
  blocks: number;
}

/**
 * Merges the packed layouts of a weight's parts (in order). `cut` says how the parts were made;
 * `shapes` are the parts' quantized shapes; `bits` the code width.
 */
export function mergeLayouts(parts: PackedLayouts[], shapes: PartShape[], cut: 'cols' | 'rows', bits: 4 | 8): PackedLayouts {
  if (parts.length === 1) return parts[0]!;
  const out: PackedLayouts = {};
  const rows = shapes[0]!.rows;
  const blocks = shapes.map((s) => s.blocks);
  const first = parts[0]!;

  if (first.matmulnbits) {
    const ls = parts.map((p) => p.matmulnbits!) as MatMulNBitsTensors[];
    const blob = ls[0]!.blobSize;
    const nb = blocks.reduce((a, b) => a + b, 0);
    const zpBytesPerRow = Math.ceil((nb * bits) / 8);
    out.matmulnbits =
      cut === 'rows'
        ? { B: concat(ls.map((l) => l.B)), blobSize: blob, scales: concat(ls.map((l) => l.scales)), zeroPoints: ls[0]!.zeroPoints ? concat(ls.map((l) => l.zeroPoints!)) : null, zpBytesPerRow: ls[0]!.zpBytesPerRow }
        : {
            B: concatRows(ls.map((l) => l.B), rows, blocks.map((b) => b * blob)),
            blobSize: blob,
            scales: concatRows(ls.map((l) => l.scales), rows, blocks),
            zeroPoints: ls[0]!.zeroPoints ? concatRows(ls.map((l) => l.zeroPoints!), rows, ls.map((l) => l.zpBytesPerRow)) : null,
            zpBytesPerRow,
          };
  }
  if (first.bnb4) {
    const ls = parts.map((p) => p.bnb4!);
    out.bnb4 =
      cut === 'rows'
        ? { B: concat(ls.map((l) => l.B)), absmax: concat(ls.map((l) => l.absmax)) }
        : { B: concatRows(ls.map((l) => l.B), rows, shapes.map((s) => s.cols / 2)), absmax: concatRows(ls.map((l) => l.absmax), rows, blocks) };
  }
  // Layouts whose rows are the weight's own rows: a cut along them is plain concatenation.
  const concatQdq = (ls: QdqTensors[], dims: number[], scaleDims: number[]): QdqTensors => ({
    data: concat(ls.map((l) => l.data)),
    signed: ls[0]!.signed,
    dims,
    scales: concat(ls.map((l) => l.scales)),
    scaleDims,
    zeroPoints: ls[0]!.zeroPoints ? concat(ls.map((l) => l.zeroPoints!)) : null,
  });
  const K = shapes.reduce((a, s) => a + s.cols, 0);
  const nb = blocks.reduce((a, b) => a + b, 0);
  if (first.qdq0) {
    // [K, N] blocked along axis 0: only cut along K.
    if (cut !== 'cols') throw new Error('internal: an axis-0 DequantizeLinear weight is cut along K');
    out.qdq0 = concatQdq(parts.map((p) => p.qdq0!), [K, rows], [nb, rows]);
  }
  if (first.qdq1) {
    if (cut !== 'rows') throw new Error('internal: an axis-1 DequantizeLinear weight is cut along its rows');
    const R = shapes.reduce((a, s) => a + s.rows, 0);
    out.qdq1 = concatQdq(parts.map((p) => p.qdq1!), [R, shapes[0]!.cols], [R, shapes[0]!.blocks]);
  }
  if (first.gather) {
    if (cut !== 'rows') throw new Error('internal: a Gather table is cut along its rows');
    const ls = parts.map((p) => p.gather!);
    out.gather = { data: concat(ls.map((l) => l.data)), signed: ls[0]!.signed, scales: concat(ls.map((l) => l.scales)), zeroPoints: ls[0]!.zeroPoints ? concat(ls.map((l) => l.zeroPoints!)) : null };
  }
  if (first.nf4) {
    if (cut !== 'cols') throw new Error('internal: NF4 standard-op weights are cut along K');
    const ls = parts.map((p) => p.nf4!) as Nf4StandardTensors[];
    out.nf4 = {
      codes: concat(ls.map((l) => l.codes)),
      paddedK: ls.reduce((a, l) => a + l.paddedK, 0),
      scales: concat(ls.map((l) => l.scales)),
      ...(ls[0]!.scaleCodes ? { scaleCodes: concat(ls.map((l) => l.scaleCodes!)), scaleGroupScales: concat(ls.map((l) => l.scaleGroupScales!)) } : {}),
    };
  }
  return out;
}

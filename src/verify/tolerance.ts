/**
 * Tolerances a candidate's outputs must hold against the reference's: `--tolerance
 * rel=1e-3,cos=0.999,top1=0.99,ppl=1.02,abs=0.01,greedy=0.9`. A bound left out is not checked.
 * Without `--tolerance`, the bound depends on what the candidate was compiled with: a float
 * artifact must match to 1e-4 relative error, a quantized one within what its method can hold.
 */
import { PeftcError } from '../errors.js';
import type { ErrorStats } from './metrics.js';

export interface Tolerance {
  /** Largest relative L2 error over all float outputs. */
  relErr?: number;
  /** Largest elementwise absolute error. */
  maxAbs?: number;
  /** Smallest cosine similarity. */
  cosine?: number;
  /** Smallest top-1 agreement (share of positions). */
  top1?: number;
  /** Largest candidate / reference perplexity ratio (causal LMs). */
  perplexityRatio?: number;
  /** Smallest greedy-continuation token agreement (causal LMs, `verify` only). */
  greedy?: number;
}

const KEYS: Record<string, keyof Tolerance> = {
  rel: 'relErr',
  abs: 'maxAbs',
  cos: 'cosine',
  top1: 'top1',
  ppl: 'perplexityRatio',
  greedy: 'greedy',
};

/** Parses `rel=1e-3,cos=0.999`; errors name the bad part. */
export function parseTolerance(text: string): Tolerance {
  const out: Tolerance = {};
  for (const part of text.split(',').map((s) => s.trim()).filter(Boolean)) {
    const m = /^([a-z0-9]+)=(.+)$/.exec(part);
    const key = m ? KEYS[m[1]!] : undefined;
    const value = m ? Number(m[2]) : NaN;
    if (!m || !key) throw new PeftcError(`--tolerance: '${part}' is not one of ${Object.keys(KEYS).map((k) => `${k}=N`).join(', ')}`);
    if (!Number.isFinite(value) || value < 0) throw new PeftcError(`--tolerance: '${part}' needs a finite number >= 0`);
    out[key] = value;
  }
  return out;
}

/**
 * Default bounds by how the candidate was made. Float artifacts: the passes only reorder float
 * arithmetic, so 1e-4 relative. Weight-only quantization: bounds that every zoo model meets with
 * room to spare at block 32 (measured in test/verify.test.ts), loose enough for real models.
 */
export function defaultTolerance(quant: string): Tolerance {
  switch (quant) {
    case 'none':
      return { relErr: 1e-4 };
    case 'fp16':
      return { relErr: 2e-2, cosine: 0.999 };
    case 'bf16':
      // 8 bits of mantissa: about 8x float16's rounding error.
      return { relErr: 6e-2, cosine: 0.998 };
    case 'uint16':
      return { relErr: 2e-3, cosine: 0.99999 };
    case 'uint8':
      // TF.js's uint8 weights: one scale per tensor, no per-channel form.
      return { relErr: 0.15, cosine: 0.99 };
    case 'int8':
      return { relErr: 0.15, cosine: 0.99, perplexityRatio: 1.03 };
    case 'int8-dynamic':
      return { relErr: 0.05, cosine: 0.995, perplexityRatio: 1.01 };
    case 'int8-weight':
      return { relErr: 5e-2, cosine: 0.998 };
    default:
      return { relErr: 0.25, cosine: 0.97 };
  }
}

/** The bound a golden record keeps: what was measured, with headroom for a fresh record. */
export function recordedTolerance(quant: string, measured: ErrorStats, perplexityRatio?: number): Tolerance {
  if (quant === 'none') return { relErr: 1e-4, ...(perplexityRatio !== undefined ? { perplexityRatio: 1.001 } : {}) };
  // Bounds are rounded outwards to 3 significant digits, so a fresh record always holds them.
  const t: Tolerance = {
    relErr: up(measured.relErr * 1.25 + 1e-6),
    cosine: 1 - up((1 - measured.cosine) * 1.25 + 1e-6),
  };
  if (measured.top1 !== undefined) t.top1 = Math.max(0, down(measured.top1 - 0.02));
  if (perplexityRatio !== undefined) t.perplexityRatio = 1 + up(Math.max(0, perplexityRatio - 1) * 1.25 + 1e-4);
  return t;
}

/** x rounded up / down to 3 significant digits. */
function up(x: number): number {
  const e = 10 ** (Math.floor(Math.log10(Math.abs(x))) - 2);
  return Math.ceil(x / e) * e;
}
function down(x: number): number {
  if (x <= 0) return 0;
  const e = 10 ** (Math.floor(Math.log10(x)) - 2);
  return Math.floor(x / e) * e;
}

export interface Measured {
  overall: ErrorStats;
  perplexityRatio?: number;
  greedy?: number;
}

/** Which bounds the measured figures break, in words; empty when all hold. */
export function checkTolerance(m: Measured, t: Tolerance): string[] {
  const out: string[] = [];
  const o = m.overall;
  if (o.nonFinite) out.push(`${o.nonFinite} non-finite value(s) where the reference is finite`);
  if (o.mismatches) out.push(`${o.mismatches} integer/bool element(s) differ`);
  if (t.relErr !== undefined && !(o.relErr <= t.relErr)) out.push(`relative error ${fmt(o.relErr)} > ${fmt(t.relErr)}`);
  if (t.maxAbs !== undefined && !(o.maxAbs <= t.maxAbs)) out.push(`max abs error ${fmt(o.maxAbs)} > ${fmt(t.maxAbs)}`);
  if (t.cosine !== undefined && !(o.cosine >= t.cosine)) out.push(`cosine ${o.cosine.toFixed(6)} < ${t.cosine}`);
  if (t.top1 !== undefined && o.top1 !== undefined && !(o.top1 >= t.top1)) out.push(`top-1 agreement ${o.top1.toFixed(4)} < ${t.top1}`);
  if (t.perplexityRatio !== undefined && m.perplexityRatio !== undefined && !(m.perplexityRatio <= t.perplexityRatio)) {
    out.push(`perplexity ratio ${m.perplexityRatio.toFixed(5)} > ${t.perplexityRatio}`);
  }
  if (t.greedy !== undefined && m.greedy !== undefined && !(m.greedy >= t.greedy)) out.push(`greedy agreement ${m.greedy.toFixed(4)} < ${t.greedy}`);
  return out;
}

export const fmt = (x: number) => (x === 0 ? '0' : Math.abs(x) >= 1e-3 && Math.abs(x) < 1e4 ? x.toPrecision(4) : x.toExponential(3));

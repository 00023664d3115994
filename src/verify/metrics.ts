/**
 * Fidelity metrics of a candidate model's outputs against a reference's: elementwise error,
 * relative L2 error and cosine over whole outputs, top-1 agreement along the last axis, perplexity
 * for causal language models, and the text metrics the LLM-quantization literature reports for
 * generated continuations (ROUGE-L, BLEU) computed on token sequences.
 *
 * Accumulators take outputs run by run, so memory does not grow with the number of samples.
 */
import { dtypeInfo } from '../ir/dtype.js';
import type { Tensor } from '../ir/tensor.js';
import { numericValues } from '../runtime/compare.js';

/** Error statistics of one output (or of all float outputs together). */
export interface ErrorStats {
  elements: number;
  maxAbs: number;
  meanAbs: number;
  /** ||c - r||_2 / ||r||_2 (0 when both are zero). */
  relErr: number;
  /** c·r / (||c|| ||r||); 1 when both are zero. */
  cosine: number;
  /** Rows (positions over the last axis) whose argmax agrees, when top-1 applies. */
  top1?: number;
  /** Elements that differ, for integer and bool outputs (compared exactly). */
  mismatches?: number;
  /** Non-finite values where the reference is finite (or the other way round). */
  nonFinite: number;
}

/** Running sums for ErrorStats. */
export class ErrorAccumulator {
  private n = 0;
  private maxAbs = 0;
  private sumAbs = 0;
  private sumSqDiff = 0;
  private sumSqRef = 0;
  private sumSqCand = 0;
  private dot = 0;
  private rows = 0;
  private agree = 0;
  private mismatches = 0;
  private nonFinite = 0;
  private integer = false;
  private top1Applies: boolean | undefined;

  /**
   * @param top1 whether argmax agreement along the last axis means something for this output
   *   (scores over classes or a vocabulary; not hidden states)
   */
  constructor(private readonly top1 = false) {}

  /** Adds one run's output pair (same dtype and shape; the caller checks). */
  add(reference: Tensor, candidate: Tensor): void {
    const info = dtypeInfo(reference.dtype);
    const r = numericValues(reference);
    const c = numericValues(candidate);
    if (!info.isFloat) {
      this.integer = true;
      for (let i = 0; i < r.length; i++) {
        const d = Math.abs(Number(r[i]!) - Number(c[i]!));
        if (d !== 0) this.mismatches++;
        this.maxAbs = Math.max(this.maxAbs, d);
        this.sumAbs += d;
      }
      this.n += r.length;
      return;
    }
    const rf = r as ArrayLike<number>;
    const cf = c as ArrayLike<number>;
    for (let i = 0; i < rf.length; i++) {
      const x = rf[i]!;
      const y = cf[i]!;
      if (!Number.isFinite(x) || !Number.isFinite(y)) {
        if (!Object.is(x, y)) this.nonFinite++;
        continue;
      }
      const d = Math.abs(x - y);
      if (d > this.maxAbs) this.maxAbs = d;
      this.sumAbs += d;
      this.sumSqDiff += d * d;
      this.sumSqRef += x * x;
      this.sumSqCand += y * y;
      this.dot += x * y;
    }
    this.n += rf.length;
    // Top-1 along the last axis: meaningful for scores over classes or a vocabulary.
    const last = reference.dims[reference.dims.length - 1] ?? 1;
    this.top1Applies ??= this.top1 && reference.dims.length >= 2 && last >= 2;
    if (this.top1Applies) {
      const rowCount = rf.length / last;
      for (let row = 0; row < rowCount; row++) {
        if (argmax(rf, row * last, last) === argmax(cf, row * last, last)) this.agree++;
      }
      this.rows += rowCount;
    }
  }

  stats(): ErrorStats {
    const norms = Math.sqrt(this.sumSqRef) * Math.sqrt(this.sumSqCand);
    return {
      elements: this.n,
      maxAbs: this.maxAbs,
      meanAbs: this.n ? this.sumAbs / this.n : 0,
      relErr: this.sumSqRef > 0 ? Math.sqrt(this.sumSqDiff / this.sumSqRef) : this.sumSqDiff > 0 ? Infinity : 0,
      // Clamped: sqrt(a) * sqrt(a) can round below a, which put the cosine of identical arrays at
      // 1 + 2^-52 (and of negated ones below -1); a cosine is in [-1, 1] by definition.
      cosine: norms > 0 ? Math.min(1, Math.max(-1, this.dot / norms)) : this.sumSqRef === 0 && this.sumSqCand === 0 ? 1 : 0,
      ...(this.rows ? { top1: this.agree / this.rows } : {}),
      ...(this.integer ? { mismatches: this.mismatches } : {}),
      nonFinite: this.nonFinite,
    };
  }

  /** Folds another accumulator's sums into this one (for an over-all figure). */
  merge(o: ErrorAccumulator): void {
    this.n += o.n;
    this.maxAbs = Math.max(this.maxAbs, o.maxAbs);
    this.sumAbs += o.sumAbs;
    this.sumSqDiff += o.sumSqDiff;
    this.sumSqRef += o.sumSqRef;
    this.sumSqCand += o.sumSqCand;
    this.dot += o.dot;
    this.rows += o.rows;
    this.agree += o.agree;
    this.mismatches += o.mismatches;
    this.nonFinite += o.nonFinite;
    this.integer ||= o.integer;
  }
}

/** Index of the largest value in a[from, from + n) (the first one on ties). */
export function argmax(a: ArrayLike<number>, from: number, n: number): number {
  let best = 0;
  let max = -Infinity;
  for (let i = 0; i < n; i++) {
    const v = a[from + i]!;
    if (v > max) {
      max = v;
      best = i;
    }
  }
  return best;
}

/**
 * Next-token negative log-likelihood sums: perplexity = exp(mean NLL of token t+1 given the
 * logits at t) over every window (row) fed.
 */
export class PerplexityAccumulator {
  private nll = 0;
  private count = 0;

  /** logits [rows, seq, vocab] (any leading axes flattened into rows), ids [rows, seq]. */
  add(logits: Float32Array, ids: ArrayLike<number | bigint>, rows: number, seq: number): void {
    const vocab = logits.length / (rows * seq);
    for (let r = 0; r < rows; r++) {
      for (let t = 0; t < seq - 1; t++) {
        const base = (r * seq + t) * vocab;
        let max = -Infinity;
        for (let v = 0; v < vocab; v++) max = Math.max(max, logits[base + v]!);
        let sum = 0;
        for (let v = 0; v < vocab; v++) sum += Math.exp(logits[base + v]! - max);
        const target = Number(ids[r * seq + t + 1]!);
        this.nll += max + Math.log(sum) - logits[base + target]!;
        this.count++;
      }
    }
  }

  get tokens(): number {
    return this.count;
  }

  perplexity(): number {
    return this.count ? Math.exp(this.nll / this.count) : NaN;
  }
}

/** Length of the longest common subsequence of two token sequences (O(n m) time, O(m) memory). */
export function lcsLength(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let prev = new Uint32Array(b.length + 1);
  let cur = new Uint32Array(b.length + 1);
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      cur[j] = a[i - 1] === b[j - 1] ? prev[j - 1]! + 1 : Math.max(prev[j]!, cur[j - 1]!);
    }
    [prev, cur] = [cur, prev];
  }
  return prev[b.length]!;
}

/** ROUGE-L F1 (Lin 2004, beta = 1) of a candidate sequence against one reference. */
export function rougeL(candidate: ArrayLike<number>, reference: ArrayLike<number>): number {
  if (candidate.length === 0 && reference.length === 0) return 1;
  const lcs = lcsLength(candidate, reference);
  if (lcs === 0) return 0;
  const p = lcs / candidate.length;
  const r = lcs / reference.length;
  return (2 * p * r) / (p + r);
}

/**
 * Corpus BLEU (Papineni et al. 2002): geometric mean of clipped n-gram precisions for n = 1..4
 * summed over the corpus, times the brevity penalty, one reference per candidate. A precision
 * with no matches counts as 0.1 / total (sacrebleu's 'floor' smoothing), so short continuations
 * that share nothing of an order do not make the whole score 0.
 */
export function corpusBleu(candidates: ReadonlyArray<ArrayLike<number>>, references: ReadonlyArray<ArrayLike<number>>, maxN = 4): number {
  const matches = new Array<number>(maxN).fill(0);
  const totals = new Array<number>(maxN).fill(0);
  let candLen = 0;
  let refLen = 0;
  for (let s = 0; s < candidates.length; s++) {
    const c = candidates[s]!;
    const r = references[s]!;
    candLen += c.length;
    refLen += r.length;
    for (let n = 1; n <= maxN; n++) {
      const refCounts = ngramCounts(r, n);
      const candCounts = ngramCounts(c, n);
      for (const [gram, count] of candCounts) matches[n - 1]! += Math.min(count, refCounts.get(gram) ?? 0);
      totals[n - 1]! += Math.max(0, c.length - n + 1);
    }
  }
  if (candLen === 0) return refLen === 0 ? 1 : 0;
  let logSum = 0;
  for (let n = 0; n < maxN; n++) {
    if (totals[n] === 0) return 0;
    const m = matches[n]! > 0 ? matches[n]! : 0.1;
    logSum += Math.log(m / totals[n]!);
  }
  const bp = candLen >= refLen ? 1 : Math.exp(1 - refLen / candLen);
  return bp * Math.exp(logSum / maxN);
}

function ngramCounts(seq: ArrayLike<number>, n: number): Map<string, number> {
  const counts = new Map<string, number>();
  for (let i = 0; i + n <= seq.length; i++) {
    let key = '';
    for (let j = 0; j < n; j++) key += `${seq[i + j]},`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}

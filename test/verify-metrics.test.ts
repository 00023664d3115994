/**
 * The fidelity metrics of src/verify/metrics.ts against values worked out by hand from their
 * definitions (written out next to each expectation), textbook examples (CLRS's LCS, Lin 2004's
 * ROUGE-L sentences), and fast-check properties that hold for any input.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DataType } from '../src/ir/dtype.js';
import { Tensor } from '../src/ir/tensor.js';
import { argmax, corpusBleu, ErrorAccumulator, lcsLength, PerplexityAccumulator, rougeL } from '../src/verify/metrics.js';

const f32 = (dims: number[], values: number[]) => Tensor.fromTypedArray('t', DataType.FLOAT, dims, Float32Array.from(values));
const i64 = (dims: number[], values: number[]) => Tensor.fromTypedArray('t', DataType.INT64, dims, BigInt64Array.from(values, BigInt));

/** Words to token ids (one id per distinct word), for the text examples. */
function tokens(...sentences: string[]): number[][] {
  const ids = new Map<string, number>();
  return sentences.map((s) => s.split(' ').map((w) => ids.get(w) ?? (ids.set(w, ids.size), ids.size - 1)));
}
const chars = (s: string) => Array.from(s, (ch) => ch.charCodeAt(0));

describe('ErrorAccumulator', () => {
  it('r = [1, 2, 2], c = [1, 2, 3]: figures worked out by hand', () => {
    const acc = new ErrorAccumulator();
    acc.add(f32([3], [1, 2, 2]), f32([3], [1, 2, 3]));
    const s = acc.stats();
    // |c - r| = [0, 0, 1]: max 1, mean 1/3; ||c - r|| = 1, ||r|| = sqrt(1 + 4 + 4) = 3.
    expect(s.elements).toBe(3);
    expect(s.maxAbs).toBe(1);
    expect(s.meanAbs).toBeCloseTo(1 / 3, 15);
    expect(s.relErr).toBeCloseTo(1 / 3, 15);
    // c.r = 1 + 4 + 6 = 11; ||c|| = sqrt(14): cosine = 11 / (3 sqrt 14) = 0.97996...
    expect(s.cosine).toBeCloseTo(11 / (3 * Math.sqrt(14)), 15);
    expect(s.cosine).toBeCloseTo(0.979958, 6);
    expect(s.top1).toBeUndefined(); // constructed without top-1
    expect(s.mismatches).toBeUndefined(); // float output
    expect(s.nonFinite).toBe(0);
  });

  it('sums over runs: two runs give the figures of their concatenation', () => {
    const acc = new ErrorAccumulator();
    acc.add(f32([2], [3, 4]), f32([2], [4, 3]));
    acc.add(f32([2], [0, 0]), f32([2], [0, 2]));
    const s = acc.stats();
    // All of r = [3, 4, 0, 0], c = [4, 3, 0, 2]: |d| = [1, 1, 0, 2], ||d||^2 = 6, ||r|| = 5,
    // ||c||^2 = 16 + 9 + 4 = 29, c.r = 12 + 12 = 24.
    expect(s.elements).toBe(4);
    expect(s.maxAbs).toBe(2);
    expect(s.meanAbs).toBeCloseTo(4 / 4, 15);
    expect(s.relErr).toBeCloseTo(Math.sqrt(6) / 5, 15);
    expect(s.cosine).toBeCloseTo(24 / (5 * Math.sqrt(29)), 15);
  });

  it('merge folds two outputs into one overall figure (as if one array)', () => {
    const a = new ErrorAccumulator();
    a.add(f32([2], [3, 4]), f32([2], [4, 3]));
    const b = new ErrorAccumulator();
    b.add(f32([2], [0, 0]), f32([2], [0, 2]));
    const all = new ErrorAccumulator();
    all.merge(a);
    all.merge(b);
    const s = all.stats();
    expect(s.relErr).toBeCloseTo(Math.sqrt(6) / 5, 15);
    expect(s.cosine).toBeCloseTo(24 / (5 * Math.sqrt(29)), 15);
    expect(s.maxAbs).toBe(2);
    expect(s.elements).toBe(4);
  });

  it('top-1 along the last axis when asked for (scores), not for hidden states', () => {
    // Rows: r [0, 1, 0] -> 1, c [0, 2, 0] -> 1 (agree); r [5, 0, 0] -> 0, c [0, 0, 5] -> 2 (differ);
    // r [1, 1, 0] -> 0 (first of a tie), c [1, 1, 0] -> 0 (agree).
    const r = f32([3, 3], [0, 1, 0, 5, 0, 0, 1, 1, 0]);
    const c = f32([3, 3], [0, 2, 0, 0, 0, 5, 1, 1, 0]);
    const scores = new ErrorAccumulator(true);
    scores.add(r, c);
    expect(scores.stats().top1).toBeCloseTo(2 / 3, 15);
    // A second run adds its row: [1, 0] vs [0, 1] differ, so 2 of 4 rows agree.
    scores.add(f32([1, 2], [1, 0]), f32([1, 2], [0, 1]));
    expect(scores.stats().top1).toBeCloseTo(2 / 4, 15);

    const hidden = new ErrorAccumulator(false);
    hidden.add(r, c);
    expect(hidden.stats().top1).toBeUndefined();
    // Rank 1 or a last axis of 1: no classes to pick from, so no top-1 even when asked.
    const flat = new ErrorAccumulator(true);
    flat.add(f32([3], [1, 2, 3]), f32([3], [3, 2, 1]));
    expect(flat.stats().top1).toBeUndefined();
    const single = new ErrorAccumulator(true);
    single.add(f32([3, 1], [1, 2, 3]), f32([3, 1], [3, 2, 1]));
    expect(single.stats().top1).toBeUndefined();
  });

  it('merged top-1 counts rows of every output that has it', () => {
    const a = new ErrorAccumulator(true);
    a.add(f32([2, 2], [1, 0, 1, 0]), f32([2, 2], [1, 0, 0, 1])); // 1 of 2 rows agree
    const b = new ErrorAccumulator(true);
    b.add(f32([2, 2], [0, 1, 0, 1]), f32([2, 2], [0, 1, 0, 1])); // 2 of 2
    const all = new ErrorAccumulator();
    all.merge(a);
    all.merge(b);
    expect(all.stats().top1).toBeCloseTo(3 / 4, 15);
  });

  it('integer outputs: exact mismatches', () => {
    const acc = new ErrorAccumulator();
    acc.add(i64([4], [1, 2, 3, 4]), i64([4], [1, 5, 3, 3]));
    const s = acc.stats();
    // |d| = [0, 3, 0, 1]
    expect(s.mismatches).toBe(2);
    expect(s.maxAbs).toBe(3);
    expect(s.meanAbs).toBe(1);
  });

  it('non-finite values count where only one side has them; equal infinities do not', () => {
    const acc = new ErrorAccumulator();
    acc.add(f32([4], [1, NaN, Infinity, 2]), f32([4], [1, 2, Infinity, -Infinity]));
    const s = acc.stats();
    expect(s.nonFinite).toBe(2);
    // The finite pair (1, 1) alone is compared.
    expect(s.relErr).toBe(0);
    expect(s.maxAbs).toBe(0);
  });

  it('zero arrays: relErr 0 and cosine 1 when both are zero; Infinity and 0 when only the reference is', () => {
    const both = new ErrorAccumulator();
    both.add(f32([2], [0, 0]), f32([2], [0, 0]));
    expect(both.stats().relErr).toBe(0);
    expect(both.stats().cosine).toBe(1);
    const one = new ErrorAccumulator();
    one.add(f32([2], [0, 0]), f32([2], [0, 1]));
    expect(one.stats().relErr).toBe(Infinity);
    expect(one.stats().cosine).toBe(0);
  });

  it('argmax takes the first of equal maxima', () => {
    expect(argmax([0, 3, 3, 1], 0, 4)).toBe(1);
    expect(argmax([9, 0, 3, 3, 1], 1, 4)).toBe(1);
    expect(argmax([-5, -2, -7], 0, 3)).toBe(1);
  });
});

describe('PerplexityAccumulator', () => {
  it('uniform logits give perplexity = vocab', () => {
    for (const vocab of [2, 5, 256]) {
      const rows = 2;
      const seq = 4;
      const ppl = new PerplexityAccumulator();
      const ids = Array.from({ length: rows * seq }, (_, i) => (i * 7) % vocab);
      ppl.add(new Float32Array(rows * seq * vocab).fill(0.25), ids, rows, seq);
      // Each position scores the next token: rows x (seq - 1) tokens, each with probability 1/vocab.
      expect(ppl.tokens).toBe(rows * (seq - 1));
      expect(ppl.perplexity()).toBeCloseTo(vocab, 10);
    }
  });

  it('a worked example: the logits at t score token t + 1; the last position is not scored', () => {
    const vocab = 3;
    // One window of 3 ids [2, 0, 1]: position 0 scores id 0, position 1 scores id 1.
    const ids = BigInt64Array.from([2n, 0n, 1n]);
    const logits = Float32Array.from([
      2, 0, 0, // position 0: p(0) = e^2 / (e^2 + 2), NLL = log(e^2 + 2) - 2
      0, 0, 0, // position 1: p(1) = 1/3, NLL = log 3
      -50, 99, 1e4, // position 2: nothing follows; if it were scored the result would be far off
    ]);
    const ppl = new PerplexityAccumulator();
    ppl.add(logits, ids, 1, 3);
    expect(ppl.tokens).toBe(2);
    // exp(((log(e^2 + 2) - 2) + log 3) / 2) = sqrt(3 (1 + 2 e^-2)) = 1.952437...
    expect(ppl.perplexity()).toBeCloseTo(Math.sqrt(3 * (1 + 2 * Math.exp(-2))), 12);
    expect(ppl.perplexity()).toBeCloseTo(1.952437, 6);
  });

  it('confident right predictions with large logits: perplexity near 1, no overflow', () => {
    const ppl = new PerplexityAccumulator();
    // vocab 2, ids [0, 1, 1]: logits predict 1 with a margin of 1000 at both scored positions.
    ppl.add(Float32Array.from([0, 1000, 0, 1000, 0, 0]), [0, 1, 1], 1, 3);
    expect(ppl.perplexity()).toBe(1);
    // ... and confidently wrong: NLL = 1000 per token, exp(1000) overflows to Infinity, not NaN.
    const wrong = new PerplexityAccumulator();
    wrong.add(Float32Array.from([1000, 0, 1000, 0, 0, 0]), [0, 1, 1], 1, 3);
    expect(wrong.perplexity()).toBe(Infinity);
    expect(new PerplexityAccumulator().perplexity()).toBeNaN();
  });
});

describe('LCS and ROUGE-L', () => {
  it('LCS of textbook pairs', () => {
    // CLRS 15.4: LCS(ABCBDAB, BDCABA) = 4 (BCBA).
    expect(lcsLength(chars('ABCBDAB'), chars('BDCABA'))).toBe(4);
    expect(lcsLength(chars('AGGTAB'), chars('GXTXAYB'))).toBe(4); // GTAB
    expect(lcsLength(chars('ABC'), chars('DEF'))).toBe(0);
    expect(lcsLength(chars(''), chars('ABC'))).toBe(0);
    expect(lcsLength(chars('ABCDEF'), chars('ABCDEF'))).toBe(6);
  });

  it("Lin (2004)'s examples: police killed the gunman", () => {
    const [s1, s2, s3] = tokens('police killed the gunman', 'police kill the gunman', 'the gunman kill police');
    // S2 against S1: LCS "police the gunman" = 3, P = R = 3/4, F = 0.75.
    expect(rougeL(s2!, s1!)).toBeCloseTo(0.75, 15);
    // S3 against S1: LCS "the gunman" = 2, P = R = 1/2, F = 0.5.
    expect(rougeL(s3!, s1!)).toBeCloseTo(0.5, 15);
  });

  it('different lengths: F1 by hand', () => {
    const [ref, cand] = tokens('the cat sat on the mat', 'the cat on the mat');
    // LCS = 5 ("the cat on the mat"); P = 5/5 = 1, R = 5/6: F = 2 (5/6) / (11/6) = 10/11.
    expect(rougeL(cand!, ref!)).toBeCloseTo(10 / 11, 15);
    // [1, 2, 3, 4] against [4, 3, 2, 1, 9]: LCS 1, P = 1/4, R = 1/5, F = 2 (1/20) / (9/20) = 2/9.
    expect(rougeL([1, 2, 3, 4], [4, 3, 2, 1, 9])).toBeCloseTo(2 / 9, 15);
    expect(rougeL([1, 2], [3, 4])).toBe(0);
    expect(rougeL([], [])).toBe(1);
    expect(rougeL([], [1])).toBe(0);
  });
});

describe('corpus BLEU', () => {
  it('identical corpora score 1', () => {
    const seqs = [
      [1, 2, 3, 4, 5],
      [7, 7, 8, 9, 10, 11, 12],
    ];
    expect(corpusBleu(seqs, seqs)).toBeCloseTo(1, 15);
  });

  it('disjoint sequences score only the floor: 0.1 / (5 * 4 * 3 * 2)^(1/4)', () => {
    // No n-gram matches: p_n = 0.1 / total_n with totals 5, 4, 3, 2; equal lengths, BP = 1.
    const bleu = corpusBleu([[1, 2, 3, 4, 5]], [[6, 7, 8, 9, 10]]);
    expect(bleu).toBeCloseTo(0.1 / 120 ** 0.25, 15);
    expect(bleu).toBeLessThan(0.031);
  });

  it('a worked example: clipped counts summed over the corpus, brevity penalty', () => {
    // Sentence 1: candidate [1, 1, 1, 2], reference [1, 2, 3, 1, 2].
    //   1-grams: cand {1: 3, 2: 1}, ref {1: 2, 2: 2, 3: 1}; clipped min(3, 2) + min(1, 2) = 3 of 4.
    //   2-grams: cand {11: 2, 12: 1}, ref {12: 2, 23: 1, 31: 1}; clipped 0 + 1 = 1 of 3.
    //   3-grams: cand {111, 112}, ref {123, 231, 312}; 0 of 2.
    //   4-grams: cand {1112}, ref {1231, 2312}; 0 of 1.
    // Sentence 2: candidate [4, 5, 6, 7, 8], reference [4, 5, 6, 7, 8, 9]: 5/5, 4/4, 3/3, 2/2.
    // Corpus: p = 8/9, 5/7, 3/5, 2/3 (no zero order, so no smoothing).
    // Lengths: candidate 4 + 5 = 9, reference 5 + 6 = 11 -> BP = exp(1 - 11/9) = exp(-2/9).
    // BLEU = exp(-2/9) * (8/9 * 5/7 * 3/5 * 2/3)^(1/4) = exp(-2/9) * (16/63)^(1/4) = 0.80074 * 0.70990 = 0.56844...
    const bleu = corpusBleu(
      [
        [1, 1, 1, 2],
        [4, 5, 6, 7, 8],
      ],
      [
        [1, 2, 3, 1, 2],
        [4, 5, 6, 7, 8, 9],
      ],
    );
    expect(bleu).toBeCloseTo(Math.exp(-2 / 9) * (16 / 63) ** 0.25, 14);
    expect(bleu).toBeCloseTo(0.56844, 5);
  });

  it('floor smoothing for an order with no match: [1, 2, 3, 4] against [1, 2, 3, 5]', () => {
    // Matches 3/4, 2/3, 1/2, 0/1 -> p4 = 0.1 / 1; BP = 1: (3/4 * 2/3 * 1/2 * 0.1)^(1/4) = 0.025^(1/4).
    expect(corpusBleu([[1, 2, 3, 4]], [[1, 2, 3, 5]])).toBeCloseTo(0.025 ** 0.25, 15);
  });

  it('a candidate longer than its reference has no brevity penalty; too short for 4-grams scores 0', () => {
    // Candidate [1, 2, 3, 4, 9] vs [1, 2, 3, 4]: p = 4/5, 3/4, 2/3, 1/2; BP = 1.
    expect(corpusBleu([[1, 2, 3, 4, 9]], [[1, 2, 3, 4]])).toBeCloseTo((4 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25, 15);
    // Three tokens hold no 4-gram: total_4 = 0 (sacrebleu without effective order: 0).
    expect(corpusBleu([[1, 2, 3]], [[1, 2, 3]])).toBe(0);
  });
});

describe('properties', () => {
  const seq = fc.array(fc.integer({ min: 0, max: 5 }), { minLength: 1, maxLength: 20 });
  const floats = (n: number) => fc.array(fc.float({ min: -1e3, max: 1e3, noNaN: true, noDefaultInfinity: true }), { minLength: n, maxLength: n });
  const pair = fc.integer({ min: 1, max: 40 }).chain((n) => fc.tuple(floats(n), floats(n)));

  it('ROUGE-L F1 is symmetric, in [0, 1], and 1 exactly when the sequences are equal', () => {
    fc.assert(
      fc.property(seq, seq, (a, b) => {
        const ab = rougeL(a, b);
        expect(ab).toBe(rougeL(b, a));
        expect(ab).toBeGreaterThanOrEqual(0);
        expect(ab).toBeLessThanOrEqual(1);
        const equal = a.length === b.length && a.every((x, i) => x === b[i]);
        expect(ab === 1).toBe(equal);
        expect(rougeL(a, a)).toBe(1);
      }),
      { numRuns: 500, seed: 1 },
    );
  });

  it('LCS is at most the shorter length and symmetric', () => {
    fc.assert(
      fc.property(seq, seq, (a, b) => {
        const l = lcsLength(a, b);
        expect(l).toBe(lcsLength(b, a));
        expect(l).toBeLessThanOrEqual(Math.min(a.length, b.length));
      }),
      { numRuns: 300, seed: 2 },
    );
  });

  it('cosine is in [-1, 1] and relErr is 0 for identical arrays', () => {
    fc.assert(
      fc.property(pair, ([r, c]) => {
        const acc = new ErrorAccumulator(true);
        acc.add(f32([r.length], r), f32([c.length], c));
        const s = acc.stats();
        expect(s.cosine).toBeGreaterThanOrEqual(-1);
        expect(s.cosine).toBeLessThanOrEqual(1);
        const same = new ErrorAccumulator();
        same.add(f32([r.length], r), f32([r.length], r));
        expect(same.stats().relErr).toBe(0);
        expect(same.stats().maxAbs).toBe(0);
        expect(same.stats().cosine).toBeLessThanOrEqual(1);
        if (r.some((x) => x !== 0)) expect(same.stats().cosine).toBeCloseTo(1, 12);
        // Negated arrays point the other way.
        const neg = new ErrorAccumulator();
        neg.add(f32([r.length], r), f32([r.length], r.map((x) => -x)));
        expect(neg.stats().cosine).toBeGreaterThanOrEqual(-1);
      }),
      { numRuns: 500, seed: 3 },
    );
  });

  it('BLEU is in [0, 1] and 1 for identical corpora of 4 tokens or more', () => {
    const long = fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 4, maxLength: 16 });
    fc.assert(
      fc.property(fc.array(fc.tuple(long, long), { minLength: 1, maxLength: 4 }), (pairs) => {
        const c = pairs.map((p) => p[0]);
        const r = pairs.map((p) => p[1]);
        const b = corpusBleu(c, r);
        expect(b).toBeGreaterThanOrEqual(0);
        expect(b).toBeLessThanOrEqual(1 + 1e-12);
        expect(corpusBleu(r, r)).toBeCloseTo(1, 12);
      }),
      { numRuns: 300, seed: 4 },
    );
  });
});

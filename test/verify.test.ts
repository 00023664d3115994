/**
 * `peftc verify` (src/verify/verify.ts) and `compile --verify`, end to end on onnxruntime:
 *  - an exact copy of a zoo model passes with zero error; a copy with one MatMul weight element
 *    changed fails on relative error, and the report's figures (relative error, cosine, max/mean
 *    abs, top-1, perplexity ratio) equal the ones computed here from onnxruntime's own outputs of
 *    both models;
 *  - top-1 is reported for a classifier's logits and not for an encoder's hidden states;
 *  - the CLI's exit codes: 0 within tolerance, 1 over it, 2 for bad input with the file named;
 *  - models/lm: perplexity over the 128 held-out windows equals the value computed in Python with
 *    onnxruntime when the model was trained (models/lm/manifest.json), for the float model and for
 *    onnxruntime's own int4 quantization of it; peftc's int4 artifact stays within a few percent
 *    of the float model's perplexity, and its greedy-continuation figures equal those of
 *    continuations decoded here.
 * `npm test` builds dist/ before vitest (the CLI tests run dist/).
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileModel } from '../src/compile.js';
import { DataType } from '../src/ir/dtype.js';
import type { Value } from '../src/ir/graph.js';
import { Tensor } from '../src/ir/tensor.js';
import { loadModel, saveModel } from '../src/onnx/io.js';
import { createSession, type OrtSession } from '../src/runtime/ort.js';
import { corpusBleu, rougeL } from '../src/verify/metrics.js';
import { defaultTolerance } from '../src/verify/tolerance.js';
import { verifyModels } from '../src/verify/verify.js';
import { writeNpy, type NpyArray } from './helpers-npy.js';
import { mulberry32 } from './rng.js';

const ROOT = resolve(import.meta.dirname, '..');
const ZOO = join(ROOT, 'models', 'zoo');
const LM = join(ROOT, 'models', 'lm');
const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js');
const tmp = mkdtempSync(join(tmpdir(), 'peftc-verify-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Writes a copy of a zoo model with one initializer changed by `edit` (on a float32 copy of its data). */
function perturbed(zoo: string, pick: (m: ReturnType<typeof loadModel>) => Value, edit: (w: Float32Array) => void, out: string): void {
  const m = loadModel(join(ZOO, zoo, 'model.onnx'));
  const v = pick(m);
  const old = v.initializer!;
  const w = Float32Array.from(old.toTypedArray<Float32Array>());
  edit(w);
  v.initializer = Tensor.fromTypedArray(old.name, old.dtype, old.dims, w);
  saveModel(m, out, { durable: false });
}

/** Relative error, cosine, max/mean abs and top-1 over the last axis, summed over runs, in plain loops. */
function expectedStats(pairs: Array<[Float32Array, Float32Array]>, last: number) {
  let n = 0, sumAbs = 0, maxAbs = 0, dd = 0, rr = 0, cc = 0, rc = 0, rows = 0, agree = 0;
  const argmax = (a: Float32Array, from: number) => {
    let best = from;
    for (let i = from; i < from + last; i++) if (a[i]! > a[best]!) best = i;
    return best - from;
  };
  for (const [r, c] of pairs) {
    for (let i = 0; i < r.length; i++) {
      const d = c[i]! - r[i]!;
      n++;
      sumAbs += Math.abs(d);
      maxAbs = Math.max(maxAbs, Math.abs(d));
      dd += d * d;
      rr += r[i]! * r[i]!;
      cc += c[i]! * c[i]!;
      rc += r[i]! * c[i]!;
    }
    for (let row = 0; row < r.length / last; row++, rows++) if (argmax(r, row * last) === argmax(c, row * last)) agree++;
  }
  return { elements: n, meanAbs: sumAbs / n, maxAbs, relErr: Math.sqrt(dd / rr), cosine: rc / Math.sqrt(rr * cc), top1: agree / rows };
}

/** Sum of next-token NLLs and their count for logits [rows, seq, vocab] and ids [rows, seq] (float64). */
function nll(logits: Float32Array, ids: ArrayLike<number>, rows: number, seq: number): [number, number] {
  const vocab = logits.length / (rows * seq);
  let sum = 0;
  let count = 0;
  for (let r = 0; r < rows; r++) {
    for (let t = 0; t + 1 < seq; t++) {
      const row = logits.subarray((r * seq + t) * vocab, (r * seq + t + 1) * vocab);
      const max = Math.max(...row);
      const lse = max + Math.log(row.reduce((s, x) => s + Math.exp(x - max), 0));
      sum += lse - row[ids[r * seq + t + 1]!]!;
      count++;
    }
  }
  return [sum, count];
}

async function runAll(session: OrtSession, feeds: Array<Record<string, Tensor>>, output: string): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  for (const f of feeds) out.push((await session.run(f, [output]))[output]!.toTypedArray<Float32Array>());
  return out;
}

describe('verify: zoo models', () => {
  const llama = join(ZOO, 'llama-static', 'model.onnx');
  const llamaCopy = join(tmp, 'llama-copy.onnx');
  const llamaBad = join(tmp, 'llama-perturbed.onnx');
  const idsPath = join(tmp, 'llama-ids.npy');
  const rand = mulberry32(11);
  // Three samples of llama-static's [2, 16] token ids (a stack): three runs.
  const ids: NpyArray = { descr: '<i8', dims: [3, 2, 16], data: BigInt64Array.from({ length: 96 }, () => BigInt(Math.floor(rand() * 256))) };
  const feeds = [0, 1, 2].map((k) => ({ input_ids: Tensor.fromTypedArray('input_ids', DataType.INT64, [2, 16], (ids.data as BigInt64Array).slice(k * 32, (k + 1) * 32)) }));

  beforeAll(() => {
    copyFileSync(llama, llamaCopy);
    writeNpy(idsPath, ids);
    // The largest 2-D MatMul weight (the LM head, [64, 256]): one element moved by 1.0 (weights are < 0.1).
    perturbed(
      'llama-static',
      (m) => {
        const ws = m.graph.nodes.filter((n) => n.opType === 'MatMul' && n.inputs[1]?.initializer?.dims.length === 2).map((n) => n.inputs[1]!);
        return ws.reduce((a, b) => (b.initializer!.elementCount > a.initializer!.elementCount ? b : a));
      },
      (w) => {
        expect(w.length).toBe(64 * 256);
        expect(Math.max(...w.map(Math.abs))).toBeLessThan(0.5);
        w[5] = w[5]! + 1;
      },
      llamaBad,
    );
  });

  it('an exact copy passes: ok, relative error 0, top-1 1, perplexity ratio 1', async () => {
    const r = await verifyModels(llama, llamaCopy, { inputs: idsPath, continuationTokens: 4 });
    expect(r.ok).toBe(true);
    expect(r.failures).toEqual([]);
    expect([r.runs, r.samples]).toEqual([3, 6]);
    expect(r.inputs.source).toBe(idsPath);
    expect(r.outputs.map((o) => [o.name, o.dtype, o.shape])).toEqual([['logits', 'float32', [2, 16, 256]]]);
    expect(r.overall.elements).toBe(3 * 2 * 16 * 256);
    expect(r.overall.relErr).toBe(0);
    expect(r.overall.maxAbs).toBe(0);
    expect(r.overall.cosine).toBeCloseTo(1, 12);
    expect(r.overall.top1).toBe(1);
    expect(r.tolerance).toEqual({ relErr: 1e-4 });
    expect(r.lm!.ids).toBe('input_ids');
    expect(r.lm!.tokens).toBe(3 * 2 * 15);
    expect(r.lm!.perplexityRatio).toBe(1);
    // 2 rows (the first run's batch) x 4 tokens: one 4-gram each, all matching, so BLEU is 1 too.
    expect(r.lm!.continuations).toEqual({ rows: 2, tokens: 4, agreement: 1, prefix: 1, rougeL: 1, bleu: 1 });
    // --task generic: no LM figures.
    const g = await verifyModels(llama, llamaCopy, { inputs: idsPath, task: 'generic' });
    expect(g.lm).toBeUndefined();
    expect(g.ok).toBe(true);
  });

  it("a changed weight element fails on relative error; the figures equal those computed from onnxruntime's outputs", async () => {
    const r = await verifyModels(llama, llamaBad, { inputs: idsPath, continuationTokens: 0 });
    expect(r.ok).toBe(false);
    expect(r.failures).toHaveLength(1);
    expect(r.failures[0]).toMatch(/^relative error \S+ > 1\.000e-4$/);
    const ref = await createSession(llama);
    const cand = await createSession(llamaBad);
    const a = await runAll(ref, feeds, 'logits');
    const b = await runAll(cand, feeds, 'logits');
    await ref.release();
    await cand.release();
    const want = expectedStats(
      a.map((x, i) => [x, b[i]!]),
      256,
    );
    expect(want.relErr).toBeGreaterThan(1e-2); // the change is large enough to matter
    expect(want.top1).toBeLessThan(1);
    const o = r.outputs[0]!;
    for (const s of [o, r.overall]) {
      expect(s.elements).toBe(want.elements);
      expect(s.relErr).toBeCloseTo(want.relErr, 10);
      expect(s.cosine).toBeCloseTo(want.cosine, 10);
      expect(s.maxAbs).toBeCloseTo(want.maxAbs, 10);
      expect(s.meanAbs).toBeCloseTo(want.meanAbs, 10);
      expect(s.top1).toBe(want.top1);
    }
    // Perplexity of each model from its logits, over the same 3 x 2 x 15 next tokens.
    const idn = Array.from(ids.data as BigInt64Array, Number);
    const sums = (ls: Float32Array[]) => ls.map((l, k) => nll(l, idn.slice(k * 32, (k + 1) * 32), 2, 16)).reduce((s, [x, c]) => [s[0]! + x, s[1]! + c], [0, 0]);
    const [refNll, count] = sums(a);
    const [candNll] = sums(b);
    expect(r.lm!.tokens).toBe(count);
    expect(r.lm!.referencePerplexity).toBeCloseTo(Math.exp(refNll / count), 9);
    expect(r.lm!.perplexity).toBeCloseTo(Math.exp(candNll / count), 9);
    expect(r.lm!.perplexityRatio).toBeCloseTo(Math.exp((candNll - refNll) / count), 12);
    expect(r.lm!.continuations).toBeUndefined(); // continuationTokens 0
  });

  it('a classifier (cnn-static logits [2, 10]) gets top-1; it counts the rows whose argmax moved', async () => {
    const cnn = join(ZOO, 'cnn-static', 'model.onnx');
    const rand2 = mulberry32(3);
    const images: NpyArray = { descr: '<f4', dims: [8, 2, 3, 32, 32], data: Float32Array.from({ length: 8 * 2 * 3 * 32 * 32 }, () => rand2() * 2 - 1) };
    const imgPath = join(tmp, 'images.npy');
    writeNpy(imgPath, images);
    const imgFeeds = Array.from({ length: 8 }, (_, k) => ({ image: Tensor.fromTypedArray('image', DataType.FLOAT, [2, 3, 32, 32], (images.data as Float32Array).slice(k * 6144, (k + 1) * 6144)) }));
    const ref = await createSession(cnn);
    const refLogits = await runAll(ref, imgFeeds, 'logits');
    await ref.release();
    // Raise class 3's bias by the median margin it lacks to win, so that some rows (not all) flip.
    const gaps = refLogits.flatMap((l) => [0, 1].map((row) => Math.max(...l.subarray(row * 10, row * 10 + 10)) - l[row * 10 + 3]!)).sort((x, y) => x - y);
    const delta = gaps[8]!;
    const bad = join(tmp, 'cnn-perturbed.onnx');
    perturbed('cnn-static', (m) => m.graph.nodes.find((n) => n.opType === 'Gemm')!.inputs[2]!, (w) => void (w[3] = w[3]! + delta), bad);
    const cand = await createSession(bad);
    const candLogits = await runAll(cand, imgFeeds, 'logits');
    await cand.release();
    const want = expectedStats(
      refLogits.map((x, i) => [x, candLogits[i]!]),
      10,
    );
    expect(want.top1).toBeGreaterThan(0);
    expect(want.top1).toBeLessThan(1);
    const r = await verifyModels(cnn, bad, { inputs: imgPath, tolerance: { top1: 1 } });
    expect(r.lm).toBeUndefined();
    expect([r.runs, r.samples]).toEqual([8, 16]);
    expect(r.outputs[0]!.top1).toBe(want.top1);
    expect(r.overall.top1).toBe(want.top1);
    expect(r.outputs[0]!.relErr).toBeCloseTo(want.relErr, 10);
    expect(r.ok).toBe(false);
    expect(r.failures).toEqual([`top-1 agreement ${want.top1.toFixed(4)} < 1`]);
    // The unchanged model: every row agrees.
    const copy = join(tmp, 'cnn-copy.onnx');
    copyFileSync(cnn, copy);
    const same = await verifyModels(cnn, copy, { inputs: imgPath });
    expect(same.ok).toBe(true);
    expect(same.outputs[0]!.top1).toBe(1);
  });

  it("an encoder's hidden states (bert-static last_hidden_state) get no top-1 and no LM figures", async () => {
    const bert = join(ZOO, 'bert-static', 'model.onnx');
    const copy = join(tmp, 'bert-copy.onnx');
    copyFileSync(bert, copy);
    const logs: string[] = [];
    const r = await verifyModels(bert, copy, { log: (m) => logs.push(m) });
    expect(r.ok).toBe(true);
    expect(r.outputs.map((o) => [o.name, o.shape])).toEqual([['last_hidden_state', [2, 16, 64]]]);
    expect(r.outputs[0]!.top1).toBeUndefined();
    expect(r.overall.top1).toBeUndefined();
    expect(r.overall.relErr).toBe(0);
    expect(r.lm).toBeUndefined();
    // Generated inputs, said so in the log: 2 samples (the default) of the fixed [2, 16].
    expect([r.runs, r.samples]).toEqual([2, 4]);
    expect(logs.some((l) => l.includes('generated from the declared shapes'))).toBe(true);
  });

  describe('CLI', () => {
    it('exit 0 for the copy, 1 for the changed weight, 0 again with a bound it meets', () => {
      const ok = cli('verify', llama, llamaCopy, '--inputs', idsPath, '--continuation', '2', '--json');
      expect(ok.stderr).toBe('');
      expect(ok.status).toBe(0);
      const report = JSON.parse(ok.stdout);
      expect(report.ok).toBe(true);
      expect(report.overall.relErr).toBe(0);
      const bad = cli('verify', llama, llamaBad, '--inputs', idsPath, '--continuation', '0');
      expect(bad.status).toBe(1);
      expect(bad.stdout).toMatch(/FAILED: relative error \S+ > 1\.000e-4/);
      expect(bad.stdout).toContain('logits float32[2,16,256]');
      const loose = cli('verify', llama, llamaBad, '--inputs', idsPath, '--continuation', '0', '--tolerance', 'rel=10,cos=0.5', '--json');
      expect(loose.status).toBe(0);
      expect(JSON.parse(loose.stdout).tolerance).toEqual({ relErr: 10, cosine: 0.5 });
    });

    it('--ep cuda: runs on the CUDA provider where it is installed, else exit 2 saying how to install it', () => {
      const provider = join('node_modules', 'onnxruntime-node', 'bin', 'napi-v6', `${process.platform}`, `${process.arch}`, 'libonnxruntime_providers_cuda.so');
      const r = cli('verify', llama, llamaCopy, '--ep', 'cuda');
      if (existsSync(provider)) {
        console.log(`--ep cuda: ${provider} is installed, so the run must succeed`);
        expect(r.status).toBe(0);
      } else {
        expect(r.status).toBe(2);
        expect(r.stderr).toContain('could not start its CUDA execution provider');
        expect(r.stderr).toContain('bench/gpu/README.md');
      }
      const bad = cli('verify', llama, llamaCopy, '--ep', 'tpu');
      expect(bad.status).toBe(2);
    });

    it('exit 2 naming the file or the flag: missing candidate, bad --tolerance, data of the wrong type', () => {
      const missing = join(tmp, 'nope.onnx');
      const m = cli('verify', llama, missing);
      expect(m.status).toBe(2);
      expect(m.stderr).toContain(missing);
      expect(m.stderr).toMatch(/^peftc: error: .*nope\.onnx/m);
      const missingRef = cli('verify', missing, llama);
      expect(missingRef.status).toBe(2);
      expect(missingRef.stderr).toContain(missing);
      const t = cli('verify', llama, llamaCopy, '--tolerance', 'rel=abc');
      expect(t.status).toBe(2);
      expect(t.stderr).toContain("--tolerance: 'rel=abc' needs a finite number");
      const k = cli('verify', llama, llamaCopy, '--tolerance', 'foo=1');
      expect(k.status).toBe(2);
      expect(k.stderr).toContain("'foo=1' is not one of");
      const floats = join(tmp, 'float-ids.npy');
      writeNpy(floats, { descr: '<f4', dims: [2, 16], data: new Float32Array(32) });
      const d = cli('verify', llama, llamaCopy, '--inputs', floats);
      expect(d.status).toBe(2);
      expect(d.stderr).toContain(floats);
      expect(d.stderr).toContain("input 'input_ids' takes int64");
    });

    it('compile --verify: exit 0 within the default tolerance of the quantization mode, 1 over a given bound', () => {
      const out = join(tmp, 'cnn-compiled.onnx');
      const r = cli('compile', join(ZOO, 'cnn-bn', 'model.onnx'), '-o', out, '--verify', '--json');
      expect(r.status).toBe(0);
      const report = JSON.parse(r.stdout);
      expect(report.verify.ok).toBe(true);
      expect(report.verify.tolerance).toEqual({ relErr: 1e-4 });
      expect(report.verify.overall.relErr).toBeLessThan(1e-4);
      expect(report.verify.outputs[0].top1).toBe(1);
      // int4: the default bound of --quant int4 holds; a bound of 1e-6 relative error does not.
      const q = join(tmp, 'llama-int4.onnx');
      const int4 = cli('compile', llama, '-o', q, '--quant', 'int4', '--verify', '--json');
      expect(int4.status).toBe(0);
      const qr = JSON.parse(int4.stdout);
      expect(qr.verify.tolerance).toEqual({ relErr: 0.25, cosine: 0.97 });
      expect(qr.verify.overall.relErr).toBeGreaterThan(1e-4);
      const strict = cli('compile', llama, '-o', q, '--quant', 'int4', '--verify', '--tolerance', 'rel=1e-6', '--json');
      expect(strict.status).toBe(1);
      expect(JSON.parse(strict.stdout).verify.failures[0]).toMatch(/^relative error \S+ > 1\.000e-6$/);
    });
  });
});

describe('verify: models/lm (a 3.5M byte-level Llama)', () => {
  const model = join(LM, 'model.onnx');
  const manifest = JSON.parse(readFileSync(join(LM, 'manifest.json'), 'utf8')) as { perplexity: Record<string, number>; eval: { windows: number; seq: number } };
  const evalPath = join(tmp, 'eval-128x256.npy');

  beforeAll(() => {
    expect(manifest.eval).toMatchObject({ windows: 128, seq: 256 });
    const bytes = readFileSync(join(LM, 'eval.bin')).subarray(0, 128 * 256);
    expect(bytes.length).toBe(32768);
    writeNpy(evalPath, { descr: '<i8', dims: [128, 256], data: BigInt64Array.from(bytes, (b) => BigInt(b)) });
  });

  it("the float model against itself: perplexity over eval.bin equals Python's onnxruntime figure; continuations identical", async () => {
    const r = await verifyModels(model, model, { inputs: evalPath, continuationTokens: 8 });
    expect(r.ok).toBe(true);
    expect([r.runs, r.samples]).toEqual([16, 128]);
    const want = manifest.perplexity['fp32 (onnxruntime)']!;
    expect(want).toBeGreaterThan(2);
    expect(want).toBeLessThan(2.3);
    const lm = r.lm!;
    expect(lm.tokens).toBe(128 * 255);
    expect(Math.abs(lm.referencePerplexity / want - 1)).toBeLessThan(1e-6);
    expect(lm.perplexity).toBe(lm.referencePerplexity);
    expect(lm.perplexityRatio).toBe(1);
    // Continuations of the first run's 8 windows.
    expect(lm.continuations).toEqual({ rows: 8, tokens: 8, agreement: 1, prefix: 1, rougeL: 1, bleu: 1 });
  });

  it("onnxruntime's own int4 quantization (ort-int4-b32-asym.onnx): both perplexities equal the manifest's", async () => {
    const r = await verifyModels(model, join(LM, 'ort-int4-b32-asym.onnx'), { inputs: evalPath, continuationTokens: 0, tolerance: defaultTolerance('int4') });
    const fp = manifest.perplexity['fp32 (onnxruntime)']!;
    const q = manifest.perplexity['ort-int4-b32-asym.onnx']!;
    expect(Math.abs(r.lm!.referencePerplexity / fp - 1)).toBeLessThan(1e-6);
    expect(Math.abs(r.lm!.perplexity / q - 1)).toBeLessThan(1e-6);
    expect(Math.abs(r.lm!.perplexityRatio / (q / fp) - 1)).toBeLessThan(1e-6);
    expect(r.ok).toBe(true);
    expect(r.overall.relErr).toBeGreaterThan(1e-3);
    expect(r.overall.top1).toBeLessThan(1);
  });

  it('peftc int4: perplexity within a few percent; continuation figures equal those of continuations decoded here; a tight bound fails', async () => {
    const out = join(tmp, 'lm-int4.onnx');
    compileModel(model, { target: 'cpu', quant: 'int4', output: out });
    const windows = join(LM, 'eval-windows-4x256.npy');
    const tokens = 8;
    const r = await verifyModels(model, out, { inputs: windows, continuationTokens: tokens, tolerance: defaultTolerance('int4') });
    expect(r.ok).toBe(true);
    expect(r.failures).toEqual([]);
    expect([r.runs, r.samples]).toEqual([1, 4]);
    const lm = r.lm!;
    expect(lm.tokens).toBe(4 * 255);
    expect(lm.perplexityRatio).toBeGreaterThan(1 - 1e-2);
    expect(lm.perplexityRatio).toBeLessThan(1.05);
    expect(lm.perplexityRatio).toBeCloseTo(lm.perplexity / lm.referencePerplexity, 14);
    expect(r.overall.relErr).toBeGreaterThan(0);
    expect(r.overall.relErr).toBeLessThan(0.25);
    expect(r.overall.top1).toBeGreaterThan(0.8);

    // Greedy continuations decoded here: the window slides by one token per step.
    const data = readFileSync(windows);
    const headerLen = new DataView(data.buffer, data.byteOffset).getUint16(8, true);
    expect(new TextDecoder().decode(data.subarray(10, 10 + headerLen))).toContain("'shape': (4, 256)");
    const ids = new BigInt64Array(data.buffer.slice(data.byteOffset + 10 + headerLen, data.byteOffset + 10 + headerLen + 4 * 256 * 8));
    const decode = async (path: string) => {
      const s = await createSession(path);
      const win = ids.slice();
      const seqs: number[][] = [[], [], [], []];
      for (let step = 0; step < tokens; step++) {
        const logits = (await s.run({ input_ids: Tensor.fromTypedArray('input_ids', DataType.INT64, [4, 256], win) }, ['logits']))['logits']!.toTypedArray<Float32Array>();
        for (let row = 0; row < 4; row++) {
          const last = logits.subarray((row * 256 + 255) * 256, (row * 256 + 256) * 256);
          const next = last.indexOf(Math.max(...last));
          seqs[row]!.push(next);
          for (let t = 0; t < 255; t++) win[row * 256 + t] = win[row * 256 + t + 1]!;
          win[row * 256 + 255] = BigInt(next);
        }
      }
      await s.release();
      return seqs;
    };
    const a = await decode(model);
    const b = await decode(out);
    let same = 0;
    let prefix = 0;
    for (let row = 0; row < 4; row++) {
      for (let t = 0; t < tokens; t++) if (a[row]![t] === b[row]![t]) same++;
      const p = a[row]!.findIndex((x, t) => x !== b[row]![t]);
      prefix += (p < 0 ? tokens : p) / tokens;
    }
    const c = lm.continuations!;
    expect(c.rows).toBe(4);
    expect(c.tokens).toBe(tokens);
    expect(c.agreement).toBeCloseTo(same / (4 * tokens), 14);
    expect(c.prefix).toBeCloseTo(prefix / 4, 14);
    expect(c.rougeL).toBeCloseTo(a.reduce((s, x, i) => s + rougeL(b[i]!, x), 0) / 4, 14);
    expect(c.bleu).toBeCloseTo(corpusBleu(b, a), 14);
    expect(c.agreement).toBeGreaterThan(0.25); // agreement < 1 is allowed; far less would be a broken model

    const tight = await verifyModels(model, out, { inputs: windows, continuationTokens: 0, tolerance: { relErr: 1e-6 } });
    expect(tight.ok).toBe(false);
    expect(tight.failures.some((f) => f.startsWith('relative error'))).toBe(true);
    expect(tight.lm!.perplexityRatio).toBe(lm.perplexityRatio);
  });
});

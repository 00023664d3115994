/**
 * --target tfjs (issue 14): every model with a golden record (the zoo, models/lm, the PEFT
 * fixtures merged with their adapters) compiles to a TF.js graph model that tfjs-converter loads
 * from files and runs on tfjs-core's CPU backend, and its outputs match onnxruntime-node's outputs
 * of the reference model (the original; PEFT's own merged export for adapters) within 1e-4
 * relative with --quant none, and within the stated fidelity for TF.js's weight forms (fp16,
 * uint16, uint8). Also: the 4 MiB shards and determinism, and the refusal that names the nodes
 * the table cannot lower.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ModelBuilder } from '../models/builder.js';
import { compileModel, type CompileOptions } from '../src/compile.js';
import { PeftcError } from '../src/errors.js';
import { DataType } from '../src/ir/dtype.js';
import type { Tensor } from '../src/ir/tensor.js';
import { saveModel } from '../src/onnx/io.js';
import { runModel } from '../src/runtime/ort.js';
import { ErrorAccumulator, PerplexityAccumulator } from '../src/verify/metrics.js';
import type { TfjsModelJson, TfjsWriteResult } from '../targets/tfjs/artifact.js';
import { compareWithOnnxruntime, renderLatency } from '../targets/tfjs/bench.js';
import { openTfjsArtifact } from '../targets/tfjs/runner.js';
import { verifyModels } from '../src/verify/verify.js';
import { SHARD_BYTES, type TfjsWeightQuant } from '../targets/tfjs/weights.js';
import { compileTfjs, goldenCases, type GoldenCase } from './tfjs-helpers.js';

const work = mkdtempSync(join(tmpdir(), 'peftc-tfjs-target-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** models/lm runs on one 128-token window (TF.js's CPU backend takes ~20 s for the recorded 4 x 256). */
const CASES = goldenCases({ rows: 1, cols: 128 });
const references = new Map<string, Promise<Record<string, Tensor>>>();
const referenceOf = (c: GoldenCase) => references.get(c.name) ?? references.set(c.name, runModel(c.reference, c.inputs)).get(c.name)!;

/** Bounds per weight form: relative L2 error of every output, cosine, and for causal LMs the perplexity ratio. */
const BOUNDS: Record<TfjsWeightQuant, { relErr: number; cosine: number; perplexityRatio: number }> = {
  none: { relErr: 1e-4, cosine: 0.99999, perplexityRatio: 1.0001 },
  fp16: { relErr: 5e-3, cosine: 0.9999, perplexityRatio: 1.002 },
  uint16: { relErr: 2e-3, cosine: 0.99999, perplexityRatio: 1.001 },
  // One scale per tensor (TF.js's only affine form): coarse on transformer weights.
  uint8: { relErr: 0.15, cosine: 0.99, perplexityRatio: 1.05 },
};

const table: string[] = [];
afterAll(() => {
  if (table.length) console.log(`tfjs fidelity against onnxruntime (reference model outputs):\n${table.join('\n')}`);
});

function perplexity(logits: Tensor, ids: Tensor): number {
  const [rows, seq] = ids.dims as [number, number];
  const acc = new PerplexityAccumulator();
  acc.add(logits.toTypedArray() as Float32Array, Array.from(ids.toTypedArray() as BigInt64Array, Number), rows, seq);
  return acc.perplexity();
}

describe('tfjs: the zoo, models/lm and the PEFT fixtures on tfjs-converter (CPU backend)', () => {
  expect(CASES.length).toBeGreaterThanOrEqual(17);
  for (const quant of ['none', 'fp16', 'uint16', 'uint8'] as const) {
    it(`--quant ${quant}: every model compiles, loads and matches onnxruntime within the bounds`, async () => {
      const bound = BOUNDS[quant];
      const failures: string[] = [];
      for (const c of CASES) {
        const out = join(work, `${c.name}-${quant}`);
        const r = compileTfjs(c, quant, out);
        const written = r.written as TfjsWriteResult;
        expect(r.legality?.fallbacks ?? [], c.name).toEqual([]);
        const want = await referenceOf(c);
        const runner = await openTfjsArtifact(r.output);
        let got: Record<string, Tensor>;
        try {
          got = await runner.run(c.inputs);
        } finally {
          await runner.release();
        }
        const all = new ErrorAccumulator(true);
        for (const [k, ref] of Object.entries(want)) {
          const acc = new ErrorAccumulator(true);
          acc.add(ref, got[k]!);
          all.merge(acc);
        }
        const s = all.stats();
        let ppl = '';
        let ratio = 1;
        if (c.causalLm) {
          const ids = c.inputs.input_ids!;
          const p0 = perplexity(want.logits!, ids);
          const p1 = perplexity(got.logits!, ids);
          ratio = p1 / p0;
          ppl = `  ppl ${p1.toFixed(4)} / ${p0.toFixed(4)}`;
        }
        const w = written.info.weights;
        table.push(
          `  ${quant.padEnd(6)} ${c.name.padEnd(26)} rel ${s.relErr.toExponential(2)}  cos ${s.cosine.toFixed(6)}  top-1 ${((s.top1 ?? 1) * 100).toFixed(1)}%${ppl}  weights ${(w.bytes / 1024).toFixed(0)} KiB (${((w.bytes / w.unquantizedBytes) * 100).toFixed(0)}%)`,
        );
        if (!(s.relErr <= bound.relErr && s.cosine >= bound.cosine && ratio <= bound.perplexityRatio && s.nonFinite === 0)) {
          failures.push(`${c.name}: rel ${s.relErr}, cos ${s.cosine}, ppl ratio ${ratio}, non-finite ${s.nonFinite}`);
        }
        if (quant !== 'none') expect(w.quantizedTensors, `${c.name}: quantized tensors`).toBeGreaterThan(0);
      }
      expect(failures, `--quant ${quant} outside relErr <= ${bound.relErr}, cosine >= ${bound.cosine}, perplexity ratio <= ${bound.perplexityRatio}`).toEqual([]);
    });
  }
});

describe('tfjs artifact: model.json, 4 MiB shards, determinism', () => {
  it('models/lm: graph-model JSON with a signature keyed by the ONNX names, shards of exactly 4 MiB but the last, the same bytes on a second compile', () => {
    const lm = CASES.find((c) => c.name === 'lm')!;
    const a = join(work, 'lm-shards-a');
    const b = join(work, 'lm-shards-b');
    compileTfjs(lm, 'none', a);
    compileTfjs(lm, 'none', b);
    const json = JSON.parse(readFileSync(join(a, 'model.json'), 'utf8')) as TfjsModelJson;
    expect(json.format).toBe('graph-model');
    expect(Object.keys(json.signature.inputs)).toEqual(['input_ids']);
    expect(json.signature.inputs.input_ids).toMatchObject({ dtype: 'DT_INT32', tensorShape: { dim: [{ size: '1' }, { size: '128' }] } });
    expect(Object.keys(json.signature.outputs)).toEqual(['logits']);
    const paths = json.weightsManifest.flatMap((g) => g.paths);
    expect(paths.length).toBeGreaterThan(1);
    paths.forEach((p, i) => {
      expect(p).toBe(`group1-shard${i + 1}of${paths.length}.bin`);
      const size = statSync(join(a, p)).size;
      if (i < paths.length - 1) expect(size).toBe(SHARD_BYTES);
      else expect(size).toBeLessThanOrEqual(SHARD_BYTES);
    });
    const total = paths.reduce((n, p) => n + statSync(join(a, p)).size, 0);
    const declared = json.weightsManifest.flatMap((g) => g.weights).reduce((n, w) => n + w.shape.reduce((x, d) => x * d, 1) * (w.dtype === 'bool' ? 1 : 4), 0);
    expect(total).toBe(declared);
    expect(readdirSync(a).sort()).toEqual(readdirSync(b).sort());
    for (const f of readdirSync(a)) expect(readFileSync(join(a, f)).equals(readFileSync(join(b, f))), f).toBe(true);
    // A second compile into the same folder with fewer shards leaves no stale shard behind.
    compileTfjs(lm, 'uint8', a);
    const again = JSON.parse(readFileSync(join(a, 'model.json'), 'utf8')) as TfjsModelJson;
    expect(readdirSync(a).filter((f) => f.endsWith('.bin')).sort()).toEqual([...again.weightsManifest[0]!.paths].sort());
  });

  it('quantized manifest entries are the forms TF.js decodes: float16 without parameters, uint8/uint16 with scale and min', () => {
    const lm = CASES.find((c) => c.name === 'lm')!;
    for (const quant of ['fp16', 'uint8', 'uint16'] as const) {
      const dir = join(work, `lm-manifest-${quant}`);
      compileTfjs(lm, quant, dir);
      const json = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8')) as TfjsModelJson;
      const weights = json.weightsManifest.flatMap((g) => g.weights);
      const quantized = weights.filter((w) => w.quantization);
      expect(quantized.length).toBeGreaterThan(0);
      for (const w of quantized) {
        expect(w.dtype).toBe('float32');
        expect(w.quantization!.dtype).toBe(quant === 'fp16' ? 'float16' : quant);
        if (quant === 'fp16') expect(w.quantization!.scale).toBeUndefined();
        else expect(Number.isFinite(w.quantization!.scale) && Number.isFinite(w.quantization!.min)).toBe(true);
      }
      // Small float tensors (norm weights) and every int32 tensor stay exact.
      expect(weights.filter((w) => !w.quantization).every((w) => w.dtype !== 'float32' || w.shape.reduce((a, d) => a * d, 1) < 1024)).toBe(true);
    }
  });
});

describe('tfjs legality: refusals name the nodes, nothing is written', () => {
  function planted(): string {
    const b = new ModelBuilder({ opset: 17, extraOpsets: { 'com.microsoft': 1 } });
    const x = b.input('x', DataType.FLOAT, [2, 8]);
    const w = b.initializer('w', DataType.FLOAT, [8, 8], new Float32Array(64).fill(0.1));
    const h = b.op('MatMul', [x, w], {}, { name: 'proj' });
    const e = b.op('Einsum', [h, h], { equation: 'ij,ij->ij' }, { name: 'planted_einsum' });
    const half = b.op('Cast', [h], { to: DataType.FLOAT16 }, { name: 'planted_cast16' });
    const back = b.op('Cast', [half], { to: DataType.FLOAT }, { name: 'back' });
    b.output(e);
    b.output(b.op('FastGelu', [back], {}, { name: 'planted_fastgelu', domain: 'com.microsoft' }));
    const path = join(work, 'planted.onnx');
    saveModel(b.build(), path, { durable: false });
    return path;
  }

  it('a planted Einsum, a com.microsoft op and a float16 cast are each named with the reason; the folder stays empty', () => {
    const src = planted();
    const out = join(work, 'planted-out');
    let error: unknown;
    try {
      compileModel(src, { target: 'tfjs' as unknown as CompileOptions['target'], quant: 'none', output: out, log: () => {} });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(PeftcError);
    const msg = (error as PeftcError).message;
    expect((error as PeftcError).exitCode).toBe(2);
    expect(msg).toContain('nothing written');
    expect(msg).toMatch(/planted_einsum \(Einsum\): no TF\.js lowering for Einsum/);
    expect(msg).toMatch(/planted_fastgelu \(com\.microsoft::FastGelu\): no TF\.js lowering for com\.microsoft::FastGelu/);
    expect(msg).toMatch(/planted_cast16 \(Cast\): .*float16/);
    expect(msg).not.toContain('proj');
    expect(!existsSync(out) || readdirSync(out).length === 0).toBe(true);
  });

  it('symbolic input dimensions are refused with the --shape that fixes them; with it the model compiles', () => {
    const src = join(CASES.find((c) => c.name === 'zoo-llama-dynamic')!.source);
    expect(() => compileModel(src, { target: 'tfjs' as unknown as CompileOptions['target'], quant: 'none', output: join(work, 'dyn'), log: () => {} })).toThrow(/\(graph input\) input_ids \(Placeholder\): dimensions \[batch, seq\] are not static: compile with --shape input_ids=1x128 \(or the sizes you serve\)/);
    const r = compileModel(src, { target: 'tfjs' as unknown as CompileOptions['target'], quant: 'none', output: join(work, 'dyn'), shapes: { input_ids: [1, 16] }, log: () => {} });
    expect(r.legality?.fallbacks).toEqual([]);
  });
});

describe('tfjs through verify (openArtifact)', () => {
  it('verifyModels runs the folder artifact on TF.js and passes it at the default bound', async () => {
    const c = CASES.find((x) => x.name === 'zoo-vit-static')!;
    const dir = join(work, 'vit-verify');
    compileTfjs(c, 'none', dir);
    const report = await verifyModels(c.source, dir, { target: 'tfjs' });
    expect(report.emulation).toMatch(/TF\.js .* cpu backend, tfjs-converter loadGraphModel/);
    expect(report.ok, JSON.stringify(report.failures)).toBe(true);
    expect(report.overall.relErr).toBeLessThan(1e-4);
  });
});

describe('tfjs timing beside onnxruntime (a report: nothing asserted about speed)', () => {
  it('the same feed through onnxruntime-node and the artifact on the CPU and WebAssembly backends', async () => {
    const lines: string[] = [];
    for (const name of ['zoo-cnn-static', 'zoo-llama-static']) {
      const c = CASES.find((x) => x.name === name)!;
      const dir = join(work, `${name}-bench`);
      compileTfjs(c, 'none', dir);
      const rows = await compareWithOnnxruntime(c.reference, dir, { runs: 10, warmup: 2 });
      expect(rows.map((r) => r.runtime)).toEqual(['onnxruntime-node (1 thread(s))', 'TF.js cpu backend', 'TF.js wasm backend']);
      for (const r of rows) expect(r.maxAbsDiff, `${name} ${r.runtime}`).toBeLessThan(1e-4);
      lines.push(`${name}:\n${renderLatency(rows)}`);
    }
    console.log(lines.join('\n'));
  });
});

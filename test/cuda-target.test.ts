/**
 * --target cuda (issue 11), as far as a machine without a GPU can check it: every zoo model,
 * models/lm and the PEFT fixtures compile for Q in none, fp16, bf16, int4, nf4; the legality
 * check finds CUDA kernels for every node of the transformers in fp16 and int4; float16 artifacts
 * computed in emulation hold the fidelity bounds (against onnxruntime's float32 outputs); ONNX's
 * own checker (Debian's python3-onnx) accepts the artifacts; a planted op with no CUDA kernel is
 * named and refused under --strict; a planted float16 overflow is kept in float32 with --calib.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ModelBuilder } from '../models/builder.js';
import { compileModelAsync, type QuantMode } from '../src/compile.js';
import { DataType } from '../src/ir/dtype.js';
import { saveModel } from '../src/onnx/io.js';
import { encodeNpy } from '../src/runtime/npy.js';
import { Tensor } from '../src/ir/tensor.js';
import { verifyModels } from '../src/verify/verify.js';

const ROOT = resolve(import.meta.dirname, '..');
const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js');
const work = mkdtempSync(join(tmpdir(), 'peftc-cuda-test-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const ZOO = readdirSync(join(ROOT, 'models', 'zoo')).filter((d) => existsSync(join(ROOT, 'models', 'zoo', d, 'model.onnx')));
const QUANTS: QuantMode[] = ['none', 'fp16', 'bf16', 'int4', 'nf4'];
const quiet = () => {};

/** Debian's python3 with the onnx package (python3-onnx), which .ci/run installs. */
function onnxPython(): string {
  for (const p of [process.env.PEFTC_PYTHON, '/usr/bin/python3', 'python3']) {
    if (p && spawnSync(p, ['-c', 'import onnx'], { encoding: 'utf8' }).status === 0) return p;
  }
  throw new Error('no python3 with the onnx package: install Debian\'s python3-onnx (apt-get install -y python3-onnx); .ci/run does');
}

describe('cuda: every zoo model and models/lm, every quant mode', () => {
  const artifacts: string[] = [];
  it('compiles, with 0 CPU fallbacks for the transformers in fp16 and int4, and onnx\'s checker accepts the artifacts', async () => {
    const models = [...ZOO.map((d) => join(ROOT, 'models', 'zoo', d, 'model.onnx')), join(ROOT, 'models', 'lm', 'model.onnx')];
    const fallbacks: string[] = [];
    for (const m of models) {
      for (const q of QUANTS) {
        const out = join(work, `${m.split('/').at(-2)}-${q}.onnx`);
        const r = await compileModelAsync(m, { target: 'cuda', quant: q, output: out, log: quiet });
        expect(r.legality, `${m} ${q}`).toBeDefined();
        if (q === 'fp16' || q === 'int4') for (const f of r.legality!.fallbacks) fallbacks.push(`${m} ${q}: ${f.node} ${f.op}: ${f.reason}`);
        if (q !== 'none' && q !== 'bf16') expect(r.written.modelBytes + r.written.externalBytes, `${m} ${q} is smaller than float32`).toBeLessThan(r.before.initializerBytes + 4096);
        artifacts.push(out);
      }
    }
    expect(fallbacks).toEqual([]);
    const py = onnxPython();
    // onnx 1.12 checks IR <= 8 and opsets <= 17; newer artifacts (the dynamo export: IR 10, opset 18) are listed, not checked.
    const script = [
      'import onnx, onnx.helper, sys',
      'from onnx import defs',
      'bad, skipped = [], []',
      'for p in sys.argv[1:]:',
      '    m = onnx.load(p)',
      '    opset = max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))',
      '    if m.ir_version > onnx.IR_VERSION or opset > defs.onnx_opset_version():',
      '        skipped.append(p)',
      '        continue',
      // onnxruntime registers SimplifiedLayerNormalization in the default domain (its own
      // extension, which ORT's transformer optimizer emits too); ONNX's checker does not know it,
      // so those nodes are checked as a custom-domain op and everything else as usual.
      '    if any(n.op_type == "SimplifiedLayerNormalization" and n.domain in ("", "ai.onnx") for n in m.graph.node):',
      '        for n in m.graph.node:',
      '            if n.op_type == "SimplifiedLayerNormalization" and n.domain in ("", "ai.onnx"):',
      '                n.domain = "ort.default.ext"',
      '        m.opset_import.append(onnx.helper.make_opsetid("ort.default.ext", 1))',
      '    try:',
      '        onnx.checker.check_model(m, full_check=True)',
      '    except Exception as e:',
      '        bad.append("BAD " + p + ": " + str(e).splitlines()[0])',
      'print("\\n".join(bad + ["SKIP " + p for p in skipped]))',
    ].join('\n');
    const check = spawnSync(py, ['-c', script, ...artifacts], { encoding: 'utf8' });
    expect(check.status, check.stderr).toBe(0);
    const lines = check.stdout.trim().split('\n').filter(Boolean);
    expect(lines.filter((l) => l.startsWith('BAD')), 'onnx.checker.check_model(full_check=True)').toEqual([]);
    const skipped = lines.filter((l) => l.startsWith('SKIP'));
    if (skipped.length) console.warn(`onnx 1.12's checker cannot check ${skipped.length} artifact(s) (IR > 8 or opset > 17):\n${skipped.join('\n')}`);
    expect(skipped.every((l) => l.includes('llama-dynamo'))).toBe(true);
    expect(artifacts.length - skipped.length).toBeGreaterThanOrEqual(50);
  });

  it('fidelity (float16 emulated): models/lm perplexity within 0.5% of fp32, zoo cosine >= 0.999; int4 on cuda no worse than cpu int4 + 0.5%', async () => {
    const windows = join(ROOT, 'models', 'lm', 'eval-windows-4x256.npy');
    const lm = join(ROOT, 'models', 'lm', 'model.onnx');
    const fp16 = await verifyModels(lm, join(work, 'lm-fp16.onnx'), { inputs: windows, target: 'cuda', continuationTokens: 0 });
    expect(fp16.emulation).toMatch(/emulated/);
    expect(Math.abs(fp16.lm!.perplexityRatio - 1)).toBeLessThan(0.005);
    const cpuInt4 = join(work, 'lm-cpu-int4.onnx');
    await compileModelAsync(lm, { target: 'cpu', quant: 'int4', output: cpuInt4, log: quiet });
    const a = await verifyModels(lm, cpuInt4, { inputs: windows, continuationTokens: 0 });
    const b = await verifyModels(lm, join(work, 'lm-int4.onnx'), { inputs: windows, target: 'cuda', continuationTokens: 0 });
    expect(b.lm!.perplexity).toBeLessThanOrEqual(a.lm!.perplexity * 1.005);
    for (const d of ZOO) {
      const r = await verifyModels(join(ROOT, 'models', 'zoo', d, 'model.onnx'), join(work, `${d}-fp16.onnx`), { target: 'cuda', continuationTokens: 0 });
      expect(r.overall.cosine, d).toBeGreaterThanOrEqual(0.999);
    }
  });
});

describe('cuda legality and overflow', () => {
  function planted(): string {
    const b = new ModelBuilder();
    const x = b.input('x', DataType.FLOAT, [2, 4]);
    const w = b.initializer('w', DataType.FLOAT, [4, 4], Float32Array.from({ length: 16 }, (_, i) => (i % 5) / 10));
    const h = b.op('MatMul', [x, w], {}, { name: 'proj' });
    const s = b.op('Tanh', [h], {}, { name: 'squash' });
    b.output(b.op('Asin', [s], {}, { name: 'planted_asin' }));
    const path = join(work, 'planted.onnx');
    saveModel(b.build(), path, { durable: false });
    return path;
  }

  it('an op with no CUDA kernel is reported by name with the copies it costs, and refused under --strict (exit 2, nothing written)', async () => {
    const model = planted();
    const r = await compileModelAsync(model, { target: 'cuda', quant: 'fp16', output: join(work, 'planted-fp16.onnx'), log: quiet });
    expect(r.legality!.fallbacks.map((f) => f.node)).toEqual(['planted_asin']);
    expect(r.legality!.fallbacks[0]!.reason).toContain('no CUDAExecutionProvider kernel for Asin');
    expect(r.legality!.copies).toBeGreaterThanOrEqual(1);
    // No low-precision kernel either: kept float32, and said why.
    expect(r.precision!.keptNodes.find((k) => k.node === 'planted_asin')?.reason).toContain('no float16 kernel');
    const out = join(work, 'strict.onnx');
    const cli = spawnSync(process.execPath, [CLI, 'compile', model, '--target', 'cuda', '--quant', 'fp16', '--strict', '-o', out], { encoding: 'utf8' });
    expect(cli.status).toBe(2);
    expect(cli.stderr).toContain('planted_asin (Asin)');
    expect(cli.stderr).toContain('nothing written');
    expect(existsSync(out)).toBe(false);
    const loose = spawnSync(process.execPath, [CLI, 'compile', model, '--target', 'cuda', '--quant', 'fp16', '-o', out], { encoding: 'utf8' });
    expect(loose.status, loose.stderr).toBe(0);
    expect(loose.stderr).toMatch(/1 node\(s\) have no onnxruntime's CUDA execution provider kernel/);
  });

  it('--quant fp16 with --calib keeps an activation that overflows float16 in float32, and says so', async () => {
    const b = new ModelBuilder();
    const x = b.input('x', DataType.FLOAT, [1, 4]);
    const w = b.initializer('w', DataType.FLOAT, [4, 4], Float32Array.from({ length: 16 }, (_, i) => (i % 3) * 3000));
    const big = b.op('MatMul', [x, w], {}, { name: 'big_matmul' });
    const down = b.initializer('down', DataType.FLOAT, [], Float32Array.from([1e-5]));
    const y = b.op('Mul', [big, down], {}, { name: 'rescale' });
    b.output(b.op('Tanh', [y], {}, { name: 'out' }));
    const model = join(work, 'overflow.onnx');
    saveModel(b.build(), model, { durable: false });
    const calib = join(work, 'overflow-calib.npy');
    writeFileSync(calib, encodeNpy(Tensor.fromTypedArray('x', DataType.FLOAT, [3, 1, 4], Float32Array.from({ length: 12 }, (_, i) => 20 + i))));
    const logs: string[] = [];
    // Without fusion: FusedMatMul would fold the rescale into the MatMul (alpha), and no stored
    // value would overflow; this test is about the precision pass.
    const r = await compileModelAsync(model, { target: 'cuda', quant: 'fp16', output: join(work, 'overflow-fp16.onnx'), calib, fuse: [], log: (m) => logs.push(m) });
    expect(r.overflow!.values.map((v) => v.name)).toEqual([r.overflow!.values[0]!.name]);
    expect(r.overflow!.values[0]!.maxAbs).toBeGreaterThan(65504);
    const kept = r.precision!.keptNodes.map((k) => k.node).sort();
    expect(kept).toEqual(['big_matmul', 'rescale']);
    expect(logs.some((l) => /overflow float16 .* stay float32/.test(l))).toBe(true);
    // And the artifact computes finite, right outputs in emulation.
    const v = await verifyModels(model, join(work, 'overflow-fp16.onnx'), { inputs: calib, target: 'cuda', tolerance: { relErr: 1e-2 } });
    expect(v.ok, v.failures.join('; ')).toBe(true);
  });
});

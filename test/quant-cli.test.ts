/**
 * `peftc compile --quant int4|int8-weight|nf4` end to end: the library call on the model zoo
 * (torch exports) run through onnxruntime against the exporter's own outputs, and the built CLI
 * (node dist/src/cli/main.js) for the flags and refusals. `npm test` builds dist/ before vitest.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { compileModel } from '../src/compile.js';
import { loadModel } from '../src/onnx/io.js';
import { DataType } from '../src/ir/dtype.js';
import { runModel } from '../src/runtime/ort.js';
import { readDataSet } from '../src/runtime/testdata.js';
import type { LayerQuantReport } from '../passes/weight-quant.js';
import { writeFileSync } from 'node:fs';
import { writeNpy, writeNpz, type NpyArray } from './helpers-npy.js';

const ROOT = resolve(import.meta.dirname, '..');
const ZOO = join(ROOT, 'models', 'zoo');
const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js');
const tmp = mkdtempSync(join(tmpdir(), 'peftc-quant-cli-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Relative RMS difference of onnxruntime's output on the compiled model vs the exporter's expected output. */
async function outputError(modelPath: string, zooName: string): Promise<number> {
  const model = loadModel(modelPath);
  const { inputs, outputs } = readDataSet(join(ZOO, zooName, 'test_data_set_0'), model);
  const got = await runModel(modelPath, inputs);
  let num = 0;
  let den = 0;
  for (const [name, want] of Object.entries(outputs)) {
    const g = got[name]!.toTypedArray<Float32Array>();
    const w = want.toTypedArray<Float32Array>();
    for (let i = 0; i < w.length; i++) {
      num += (g[i]! - w[i]!) ** 2;
      den += w[i]! ** 2;
    }
  }
  return Math.sqrt(num / den);
}

describe('compile --quant (library)', () => {
  for (const zoo of ['llama-static', 'gpt2-static', 'bert-static']) {
    it(`${zoo}: every 2-D MatMul/Gemm weight quantized; int4 MSE output closer than RTN; int8 closer still`, async () => {
      const errors: Record<string, number> = {};
      const layers: Record<string, LayerQuantReport[]> = {};
      for (const [label, quant, method] of [
        ['int4-rtn', 'int4', 'rtn'],
        ['int4-mse', 'int4', 'mse'],
        ['int8-mse', 'int8-weight', 'mse'],
        ['nf4-mse', 'nf4', 'mse'],
      ] as const) {
        const out = join(tmp, `${zoo}-${label}.onnx`);
        const r = compileModel(join(ZOO, zoo, 'model.onnx'), { target: 'cpu', quant, output: out, check: true, weightQuant: { method } });
        expect(r.quantization!.length).toBeGreaterThan(0);
        layers[label] = r.quantization!;
        const m = loadModel(out);
        // No float MatMul/Gemm weight is left: every MatMul/Gemm reads a computed B.
        for (const n of m.graph.nodes) {
          if (n.opType === 'MatMul' || n.opType === 'Gemm') {
            const w = n.inputs[1]!;
            expect(!w.initializer || w.initializer.dims.length !== 2, `${zoo} ${label}: ${n.name} still reads ${w.name}`).toBe(true);
          }
        }
        errors[label] = await outputError(out, zoo);
      }
      const rms = (ls: LayerQuantReport[]) => Math.sqrt(ls.reduce((s, l) => s + l.rmse ** 2 * l.rows * l.cols, 0) / ls.reduce((s, l) => s + l.rows * l.cols, 0));
      console.log(
        `${zoo}: output relative error ${Object.entries(errors).map(([k, v]) => `${k} ${v.toExponential(2)}`).join(', ')}; weight rmse ${Object.entries(layers).map(([k, v]) => `${k} ${rms(v).toExponential(3)}`).join(', ')}`,
      );
      expect(rms(layers['int4-mse']!)).toBeLessThan(rms(layers['int4-rtn']!));
      expect(errors['int4-mse']!).toBeLessThan(errors['int4-rtn']!);
      expect(errors['int8-mse']!).toBeLessThan(errors['int4-mse']! / 4);
      expect(errors['int4-mse']!).toBeLessThan(0.2);
    });
  }
});

describe('peftc compile --quant (CLI)', () => {
  const peftc = (...args: string[]) => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: npm run build (npm test does it before vitest)`);
    const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 120_000 });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  const model = join(ZOO, 'llama-static', 'model.onnx');

  it('writes a quantized model and the per-layer report; --exclude keeps layers in float', () => {
    const out = join(tmp, 'cli-int4.onnx');
    const report = join(tmp, 'cli-int4.json');
    const r = peftc('compile', model, '--quant', 'int4', '--quant-method', 'rtn', '--block-size', '16', '--symmetric', '--exclude', 'lm_head', '-o', out, '--report', report);
    expect(r.stderr).toMatch(/weight-quant/);
    expect(r.status, r.stderr).toBe(0);
    const json = JSON.parse(readFileSync(report, 'utf8'));
    const layers = json.quantization as LayerQuantReport[];
    expect(layers.length).toBeGreaterThan(0);
    expect(layers.every((l) => l.blockSize === 16 && l.form === 'MatMulNBits' && !l.weight.includes('lm_head'))).toBe(true);
    const wq = json.passes.find((p: { pass: string }) => p.pass === 'weight-quant');
    expect(wq.details.excluded).toBeGreaterThan(0);
    const m = loadModel(out);
    const fused = m.graph.nodes.filter((n) => n.opType === 'MatMulNBits');
    expect(fused.length).toBe(layers.length);
    // Symmetric: no zero-point inputs.
    expect(fused.every((n) => n.inputs.length === 3)).toBe(true);
  });

  it('--quant-embeddings, --scale-dtype, --accuracy-level reach the emitted model, which onnxruntime runs', async () => {
    const cases: Array<[string[], (m: ReturnType<typeof loadModel>) => void]> = [
      [['--quant-embeddings'], (m) => expect(m.graph.nodes.filter((n) => n.opType === 'GatherBlockQuantized').length).toBe(1)],
      [['--accuracy-level', '4'], (m) => {
        const q = m.graph.nodes.filter((n) => n.opType === 'MatMulNBits');
        expect(q.length).toBeGreaterThan(0);
        expect(q.every((n) => { const a = n.attribute('accuracy_level'); return a?.type === 'int' && a.value === 4n; })).toBe(true);
      }],
      [['--quant-format', 'qdq', '--scale-dtype', 'float16'], (m) => {
        const dq = m.graph.nodes.filter((n) => n.opType === 'DequantizeLinear');
        expect(dq.length).toBeGreaterThan(0);
        expect(dq.every((n) => n.inputs[1]!.initializer?.dtype === DataType.FLOAT16)).toBe(true);
      }],
    ];
    for (const [args, check] of cases) {
      const out = join(tmp, `cli-opts-${args.join('_')}.onnx`);
      const r = peftc('compile', model, '--quant', 'int4', ...args, '-o', out);
      expect(r.status, `${args.join(' ')}: ${r.stderr}`).toBe(0);
      check(loadModel(out));
      expect(await outputError(out, 'llama-static'), args.join(' ')).toBeLessThan(0.2);
    }
  });

  it('--workers 0 and --workers 2 write the same bytes', () => {
    const outs = ['0', '2'].map((w) => {
      const out = join(tmp, `cli-workers-${w}.onnx`);
      const r = peftc('compile', model, '--quant', 'int4', '--workers', w, '-o', out);
      expect(r.status, r.stderr).toBe(0);
      return readFileSync(out);
    });
    expect(outs[0]!.equals(outs[1]!)).toBe(true);
  });

  it('refuses what it cannot do, exit code 2, nothing written', () => {
    const out = join(tmp, 'refused.onnx');
    const cases: Array<[string[], RegExp]> = [
      [['--quant', 'int4', '--quant-method', 'awq'], /--quant-method awq needs calibration data: give --calib DATA/],
      [['--quant', 'int4', '--quant-method', 'awq+gptq'], /--quant-method awq\+gptq needs calibration data/],
      [['--quant', 'int4', '--layerwise'], /--layerwise applies to weight-only quantization with calibration data/],
      [['--quant', 'none', '--hessian-memory', '64'], /--hessian-memory apply to weight-only quantization/],
      [['--quant', 'int4', '--quant-method', 'gptq'], /gptq needs calibration data: give --calib DATA/],
      [['--quant', 'int4', '--block-size', '48'], /block size 48/],
      [['--quant', 'int4', '--symmetric', '--asymmetric'], /contradict/],
      // qdq raises an older model to opset 21 by itself (test/opset-upgrade.test.ts); an explicit lower --opset is refused.
      [['--quant', 'int4', '--quant-format', 'qdq', '--opset', '19'], /opset 21.*opset 19/],
      [['--opset', '22'], /target opset 22 is not supported/],
      [['--quant', 'int4', '--workers', '-1'], /--workers takes a whole number/],
      [['--quant', 'int4', '--accuracy-level', '7'], /accuracy level 7/],
      [['--quant-embeddings'], /--quant-embeddings apply to weight-only quantization .* not --quant none/],
      [['--quant-method', 'rtn', '--symmetric'], /--quant-method, --symmetric apply to weight-only/],
      [['--quant', 'nf4', '--accuracy-level', '4'], /--accuracy-level is an attribute of MatMulNBits/],
      [['--quant', 'int4', '--scale-dtype', 'float16'], /scales need --quant-format qdq/],
      [['--quant', 'int4', '--workers', '1.5'], /--workers takes a whole number/],
    ];
    for (const [args, message] of cases) {
      const r = peftc('compile', model, ...args, '-o', out);
      expect(r.status, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(existsSync(out)).toBe(false);
    }
  });
});

describe('peftc compile --calib (CLI)', () => {
  const peftc = (...args: string[]) => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: npm run build (npm test does it before vitest)`);
    const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 300_000 });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  const zooIds = (zoo: string, name = 'input_ids'): BigInt64Array => {
    const m = loadModel(join(ZOO, zoo, 'model.onnx'));
    return readDataSet(join(ZOO, zoo, 'test_data_set_0'), m).inputs[name]!.toTypedArray<BigInt64Array>();
  };
  /** `copies` samples of a [2, 16] int64 array: the data set's own, then cyclic shifts of it. */
  const stack = (a: BigInt64Array, copies: number): NpyArray => {
    const out = new BigInt64Array(a.length * copies);
    for (let c = 0; c < copies; c++) for (let i = 0; i < a.length; i++) out[c * a.length + i] = a[(i + 5 * c) % a.length]!;
    return { descr: '<i8', dims: [copies, 2, 16], data: out };
  };

  it('llama: .npy input ids, gptq by default; output error per layer in the report; closer to the exporter than rtn', async () => {
    const model = join(ZOO, 'llama-static', 'model.onnx');
    const ids = join(tmp, 'llama-ids.npy');
    writeNpy(ids, { descr: '<i8', dims: [2, 16], data: zooIds('llama-static') });
    const errors: Record<string, number> = {};
    for (const method of ['gptq', 'rtn'] as const) {
      const out = join(tmp, `llama-calib-${method}.onnx`);
      const report = join(tmp, `llama-calib-${method}.json`);
      const args = method === 'gptq' ? [] : ['--quant-method', method];
      const r = peftc('compile', model, '--quant', 'int4', '--calib', ids, ...args, '-o', out, '--report', report);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr).toMatch(/calibration: 2 sample\(s\) in 1 run\(s\)/);
      expect(r.stderr).toMatch(/output error/);
      const json = JSON.parse(readFileSync(report, 'utf8'));
      expect(json.calibration).toMatchObject({ runs: 1, samples: 2 });
      const layers = json.quantization as LayerQuantReport[];
      expect(layers.length).toBeGreaterThan(0);
      expect(layers.every((l) => l.method === method && l.outputError! > 0 && l.outputError! < 1)).toBe(true);
      if (method === 'gptq') {
        const sum = (k: 'outputError' | 'nearestOutputError') => layers.reduce((a, l) => a + l[k]!, 0);
        expect(sum('outputError')).toBeLessThan(sum('nearestOutputError'));
      }
      errors[method] = await outputError(out, 'llama-static');
    }
    console.log(`llama-static int4 calibrated on its test inputs: output relative error gptq ${errors.gptq!.toExponential(3)}, rtn ${errors.rtn!.toExponential(3)}`);
    expect(errors.gptq!).toBeLessThan(errors.rtn!);
  });

  it('llama: awq and awq+gptq fold scales into the norms (or a Mul); layer by layer with --layerwise or over --hessian-memory; all closer to the exporter than rtn', async () => {
    const model = join(ZOO, 'llama-static', 'model.onnx');
    const ids = join(tmp, 'llama-ids-awq.npy');
    writeNpy(ids, { descr: '<i8', dims: [2, 16], data: zooIds('llama-static') });
    const run = (label: string, ...args: string[]) => {
      const out = join(tmp, `llama-${label}.onnx`);
      const r = peftc('compile', model, '--quant', 'int4', '--calib', ids, ...args, '-o', out, '--json');
      expect(r.status, r.stderr).toBe(0);
      return { out, json: JSON.parse(r.stdout), stderr: r.stderr };
    };
    const rtn = run('rtn', '--quant-method', 'rtn');
    const all = rtn.json.calibration.hessianBytes as number;
    expect(rtn.json.calibration).toMatchObject({ mode: 'all', peakHessianBytes: all });
    const errors: Record<string, number> = { rtn: await outputError(rtn.out, 'llama-static') };
    for (const [label, method, extra] of [
      ['awq', 'awq', []],
      ['awq+gptq', 'awq+gptq', []],
      // With embeddings: the Gather tables have no layer input and are quantized after the layers.
      ['gptq layerwise', 'gptq', ['--layerwise', '--quant-embeddings']],
      // Half of all the Hessians: each layer input's fits, so calibration goes layer by layer by itself.
      ['awq+gptq capped', 'awq+gptq', ['--hessian-memory', String(all / 2 / 2 ** 20)]],
    ] as const) {
      const r = run(label.replace(/[ +]/g, '-'), '--quant-method', method, ...extra);
      const embeddings = (extra as readonly string[]).includes('--quant-embeddings');
      const layers = (r.json.quantization as LayerQuantReport[]).filter((l) => !(embeddings && l.form.startsWith('GatherBlockQuantized')));
      if (embeddings) expect((r.json.quantization as LayerQuantReport[]).filter((l) => l.form.startsWith('GatherBlockQuantized')).map((l) => l.method)).toEqual(['mse']);
      expect(layers.length).toBe((rtn.json.quantization as LayerQuantReport[]).length);
      expect(layers.every((l) => l.method === (method === 'awq' ? 'mse' : 'gptq'))).toBe(true);
      if (method !== 'gptq') {
        expect(layers.every((l) => l.awq !== undefined && l.awq.alpha >= 0 && l.awq.alpha < 1)).toBe(true);
        expect(layers.some((l) => /LayerNormalization '.*' scale/.test(l.awq!.fold))).toBe(true);
      }
      const layerwise = extra.length > 0;
      expect(r.json.calibration.mode).toBe(layerwise ? 'layerwise' : 'all');
      if (layerwise) {
        expect(r.stderr).toMatch(extra[0] === '--layerwise' ? /layer by layer \(--layerwise\)/ : /layer by layer \(over the .* MiB of --hessian-memory\)/);
        expect(r.json.calibration.peakHessianBytes).toBeLessThanOrEqual(all / 2);
        expect(r.json.passes.some((p: { pass: string }) => p.pass === 'weight-quant (layer by layer)')).toBe(true);
      }
      errors[label] = await outputError(r.out, 'llama-static');
    }
    console.log(`llama-static int4 calibrated on its test inputs, output relative error: ${Object.entries(errors).map(([k, v]) => `${k} ${v.toExponential(3)}`).join(', ')}`);
    for (const [label, e] of Object.entries(errors)) if (label !== 'rtn') expect(e, label).toBeLessThan(errors.rtn!);
  });

  it('llama --target cuda (fp16 activations): awq and awq+gptq, whole and layer by layer, pass --verify; float16 ranges observed on the AWQ-scaled model', () => {
    const model = join(ZOO, 'llama-static', 'model.onnx');
    const ids = join(tmp, 'llama-ids-cuda.npy');
    writeNpy(ids, { descr: '<i8', dims: [2, 16], data: zooIds('llama-static') });
    for (const [method, extra] of [['awq', []], ['awq+gptq', ['--layerwise']]] as const) {
      const out = join(tmp, `llama-cuda-${method}.onnx`);
      const r = peftc('compile', model, '--target', 'cuda', '--quant', 'int4', '--quant-method', method, ...extra, '--calib', ids, '--verify', '--json', '-o', out);
      expect(r.status, r.stderr).toBe(0);
      const json = JSON.parse(r.stdout);
      expect(json.verify.ok).toBe(true);
      expect(json.overflow.source).toBe(ids);
      expect(json.calibration.mode).toBe(extra.length ? 'layerwise' : 'all');
      // Ranges observed after quantization: the pass lines come before the ranges line.
      expect(r.stderr.indexOf('ranges:')).toBeGreaterThan(r.stderr.lastIndexOf('weight-quant: awq'));
    }
  });

  it('bert: .npz keyed by input name, stacked samples', () => {
    const model = join(ZOO, 'bert-static', 'model.onnx');
    const data = join(tmp, 'bert.npz');
    writeNpz(data, { input_ids: stack(zooIds('bert-static'), 3), attention_mask: stack(zooIds('bert-static', 'attention_mask'), 3) });
    const out = join(tmp, 'bert-calib.onnx');
    const r = peftc('compile', model, '--quant', 'int8-weight', '--calib', data, '--json', '-o', out);
    expect(r.status, r.stderr).toBe(0);
    const json = JSON.parse(r.stdout);
    expect(json.calibration).toMatchObject({ runs: 3, samples: 6 });
    expect((json.quantization as LayerQuantReport[]).every((l) => l.method === 'gptq' && l.outputError !== undefined)).toBe(true);
  });

  it('refuses bad calibration data, exit code 2, nothing written', () => {
    const llama = join(ZOO, 'llama-static', 'model.onnx');
    const bert = join(ZOO, 'bert-static', 'model.onnx');
    const ids = zooIds('llama-static');
    const file = (name: string, write: (p: string) => void) => {
      const p = join(tmp, name);
      write(p);
      return p;
    };
    const bertNpy = file('bert-one.npy', (p) => writeNpy(p, { descr: '<i8', dims: [2, 16], data: ids }));
    const bertMissing = file('bert-missing.npz', (p) => writeNpz(p, { input_ids: { descr: '<i8', dims: [2, 16], data: ids } }));
    const extra = file('llama-extra.npz', (p) => writeNpz(p, { input_ids: { descr: '<i8', dims: [2, 16], data: ids }, labels: { descr: '<i8', dims: [2, 16], data: ids } }));
    const int32 = file('llama-int32.npy', (p) => writeNpy(p, { descr: '<i4', dims: [2, 16], data: Int32Array.from(ids, Number) }));
    const shape = file('llama-shape.npy', (p) => writeNpy(p, { descr: '<i8', dims: [4, 8], data: ids }));
    const garbage = file('garbage.npz', (p) => writeFileSync(p, 'not numpy data'));
    const good = file('llama-good.npy', (p) => writeNpy(p, { descr: '<i8', dims: [2, 16], data: ids }));
    const cases: Array<[string, string[], RegExp]> = [
      [bert, ['--quant', 'int4', '--calib', bertNpy], /bert-one\.npy: a \.npy file holds one array, but the model takes 2 inputs \('input_ids', 'attention_mask'\)/],
      [bert, ['--quant', 'int4', '--calib', bertMissing], /bert-missing\.npz: no array for model input\(s\) 'attention_mask'/],
      [llama, ['--quant', 'int4', '--calib', extra], /llama-extra\.npz: array\(s\) 'labels' match no model input/],
      [llama, ['--quant', 'int4', '--calib', int32], /llama-int32\.npy: array 'input_ids' is int32, but input 'input_ids' takes int64/],
      [llama, ['--quant', 'int4', '--calib', shape], /llama-shape\.npy: array 'input_ids' has shape \[4, 8\], but input 'input_ids' takes \[2, 16\]/],
      [llama, ['--quant', 'int4', '--calib', garbage], /garbage\.npz: neither a \.npy array nor a \.npz archive/],
      [llama, ['--quant', 'int4', '--calib', join(tmp, 'absent.npy')], /absent\.npy: cannot read/],
      [llama, ['--quant', 'none', '--calib', good], /--calib is used by weight-only quantization/],
      // A layer input's Hessian over --hessian-memory: refused from the plan, before any calibration run.
      [llama, ['--quant', 'int4', '--quant-method', 'awq+gptq', '--calib', good, '--hessian-memory', '0.01'], /needs 0\.\d MiB of Hessian \(\d+ x \d+ float64\), over the limit of 0\.0 MiB \(--hessian-memory\)/],
      [llama, ['--quant', 'int4', '--calib', good, '--hessian-memory', '-1'], /--hessian-memory takes a positive size in MiB/],
    ];
    const out = join(tmp, 'calib-refused.onnx');
    const report = join(tmp, 'calib-refused.json');
    for (const [model, args, message] of cases) {
      const r = peftc('compile', model, ...args, '-o', out, '--report', report);
      expect(r.status, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(existsSync(out)).toBe(false);
      expect(existsSync(report)).toBe(false);
    }
  });
});

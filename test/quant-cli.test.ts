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
import { runModel } from '../src/runtime/ort.js';
import { readDataSet } from '../src/runtime/testdata.js';
import type { LayerQuantReport } from '../passes/weight-quant.js';

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

  it('refuses what it cannot do, exit code 2, nothing written', () => {
    const out = join(tmp, 'refused.onnx');
    const cases: Array<[string[], RegExp]> = [
      [['--quant', 'int4', '--quant-method', 'awq'], /awq needs calibration data/],
      [['--quant', 'int4', '--quant-method', 'gptq'], /gptq needs calibration data/],
      [['--quant', 'int4', '--block-size', '48'], /block size 48/],
      [['--quant', 'int4', '--symmetric', '--asymmetric'], /contradict/],
      [['--quant', 'int4', '--quant-format', 'qdq'], /opset 21.*opset 17/],
    ];
    for (const [args, message] of cases) {
      const r = peftc('compile', model, ...args, '-o', out);
      expect(r.status, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(existsSync(out)).toBe(false);
    }
  });
});

import { mkdirSync, mkdtempSync, rmSync, truncateSync, writeFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PeftcError } from '../src/errors.js';
import { DataType, float16BitsToFloat32, float32ToFloat16Bits } from '../src/ir/dtype.js';
import { loadAdapter, matchPattern, parseLoraArg } from '../src/peft/adapter.js';
import { readSafetensors } from '../src/peft/safetensors.js';
import { ModelBuilder } from '../models/builder.js';
import { mergeAdapters, nodeModulePath } from '../passes/lora-adapter-merge.js';
import { runPipeline } from '../passes/pass.js';
import { randomFloats } from './arbitrary-graph.js';
import { f32, writeSafetensors } from './helpers-safetensors.js';
import { saveModel } from '../src/onnx/io.js';
import { compileModel } from '../src/compile.js';
import { tensorOverrides } from '../passes/tensor-override.js';

const dir = mkdtempSync(join(tmpdir(), 'peftc-adapter-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
function adapterDir(config: Record<string, unknown>, modules: Record<string, { a: Float32Array; b: Float32Array; r: number; inF: number; outF: number; m?: Float32Array }>): string {
  const d = join(dir, `a${n++}`);
  mkdirSync(d);
  writeFileSync(join(d, 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', bias: 'none', ...config }));
  const tensors: Record<string, { dtype: string; shape: number[]; data: Uint8Array }> = {};
  for (const [path, t] of Object.entries(modules)) {
    tensors[`base_model.model.${path}.lora_A.weight`] = { dtype: 'F32', shape: [t.r, t.inF], data: f32(t.a) };
    tensors[`base_model.model.${path}.lora_B.weight`] = { dtype: 'F32', shape: [t.outF, t.r], data: f32(t.b) };
    if (t.m) tensors[`base_model.model.${path}.lora_magnitude_vector`] = { dtype: 'F32', shape: [t.outF], data: f32(t.m) };
  }
  writeSafetensors(join(d, 'adapter_model.safetensors'), tensors);
  return d;
}

/** A model with the two weight spellings exporters use: a named torch parameter ([out, in]) and a MatMul under the module scope ([in, out]). */
function baseModel(inF: number, outF: number, dtype: DataType = DataType.FLOAT) {
  const b = new ModelBuilder();
  const x = b.input('x', DataType.FLOAT, [2, inF]);
  const w1 = randomFloats(outF * inF, 11);
  const w2 = randomFloats(inF * outF, 12);
  const as = (a: Float32Array) => (dtype === DataType.FLOAT16 ? Uint16Array.from(a, float32ToFloat16Bits) : a);
  const named = b.initializer('model.layers.0.q_proj.weight', dtype, [outF, inF], as(w1));
  const scoped = b.initializer('onnx::MatMul_7', dtype, [inF, outF], as(w2));
  const y1 = b.op('Gemm', [x, named], { transB: 1 }, { name: '/model/layers.0/q_proj/Gemm' });
  const y2 = b.op('MatMul', [x, scoped], {}, { name: '/model/layers.0/v_proj/MatMul' });
  b.output(y1);
  b.output(y2);
  return b.build();
}

function reference(w: Float32Array, layout: 'out_in' | 'in_out', inF: number, outF: number, terms: Array<{ a: Float32Array; b: Float32Array; r: number; f: number }>): Float64Array {
  const out = Float64Array.from(w);
  for (const { a, b, r, f } of terms) {
    for (let o = 0; o < outF; o++) {
      for (let i = 0; i < inF; i++) {
        let d = 0;
        for (let k = 0; k < r; k++) d += b[o * r + k]! * a[k * inF + i]!;
        out[layout === 'out_in' ? o * inF + i : i * outF + o]! += f * d;
      }
    }
  }
  return out;
}

describe('adapter folders', () => {
  const inF = 6;
  const outF = 4;
  const r = 2;
  const mod = (seed: number, m?: boolean) => ({ a: randomFloats(r * inF, seed), b: randomFloats(outF * r, seed + 1), r, inF, outF, m: m ? randomFloats(outF, seed + 2).map(Math.abs) : undefined });

  it('merges into a named parameter ([out, in]) and a scoped MatMul weight ([in, out]) with alpha/r', () => {
    const q = mod(1);
    const v = mod(5);
    const d = adapterDir({ r, lora_alpha: 8 }, { 'model.layers.0.q_proj': q, 'model.layers.0.v_proj': v });
    const m = baseModel(inF, outF);
    const w1 = Float32Array.from(m.graph.localValue('model.layers.0.q_proj.weight')!.initializer!.toTypedArray<Float32Array>());
    const w2 = Float32Array.from(m.graph.localValue('onnx::MatMul_7')!.initializer!.toTypedArray<Float32Array>());
    const [rep] = runPipeline(m, [mergeAdapters([loadAdapter(d)])], { check: true });
    expect(rep!.details).toMatchObject({ merged: 2 });
    const e1 = reference(w1, 'out_in', inF, outF, [{ ...q, f: 4 }]);
    const e2 = reference(w2, 'in_out', inF, outF, [{ ...v, f: 4 }]);
    const g1 = m.graph.localValue('model.layers.0.q_proj.weight')!.initializer!.toTypedArray<Float32Array>();
    const g2 = m.graph.localValue('onnx::MatMul_7')!.initializer!.toTypedArray<Float32Array>();
    e1.forEach((x, i) => expect(g1[i]).toBeCloseTo(x, 5));
    e2.forEach((x, i) => expect(g2[i]).toBeCloseTo(x, 5));
  });

  it('weights several adapters, honours rslora and alpha_pattern', () => {
    const a1 = mod(1);
    const a2 = mod(9);
    const d1 = adapterDir({ r, lora_alpha: 4, use_rslora: true }, { 'model.layers.0.q_proj': a1 });
    const d2 = adapterDir({ r, lora_alpha: 4, alpha_pattern: { q_proj: 2 } }, { 'model.layers.0.q_proj': a2 });
    const m = baseModel(inF, outF);
    const w = Float32Array.from(m.graph.localValue('model.layers.0.q_proj.weight')!.initializer!.toTypedArray<Float32Array>());
    runPipeline(m, [mergeAdapters([loadAdapter(d1, 0.7), loadAdapter(d2, 0.3)])], { check: true });
    const e = reference(w, 'out_in', inF, outF, [{ ...a1, f: 0.7 * (4 / Math.sqrt(2)) }, { ...a2, f: 0.3 * (2 / 2) }]);
    const g = m.graph.localValue('model.layers.0.q_proj.weight')!.initializer!.toTypedArray<Float32Array>();
    e.forEach((x, i) => expect(g[i]).toBeCloseTo(x, 5));
  });

  it('DoRA: rows of W + sBA rescaled to the magnitude vector', () => {
    const q = mod(3, true);
    const d = adapterDir({ r, lora_alpha: 2, use_dora: true }, { 'model.layers.0.q_proj': q });
    const m = baseModel(inF, outF);
    const w = Float32Array.from(m.graph.localValue('model.layers.0.q_proj.weight')!.initializer!.toTypedArray<Float32Array>());
    runPipeline(m, [mergeAdapters([loadAdapter(d)])], { check: true });
    const e = reference(w, 'out_in', inF, outF, [{ ...q, f: 1 }]);
    for (let o = 0; o < outF; o++) {
      const norm = Math.hypot(...e.subarray(o * inF, (o + 1) * inF));
      for (let i = 0; i < inF; i++) e[o * inF + i] = (e[o * inF + i]! * q.m![o]!) / norm;
    }
    const g = m.graph.localValue('model.layers.0.q_proj.weight')!.initializer!.toTypedArray<Float32Array>();
    e.forEach((x, i) => expect(g[i]).toBeCloseTo(x, 5));
  });

  it('fp16 weights are merged in fp32 and rounded back to fp16', () => {
    const q = mod(1);
    const d = adapterDir({ r, lora_alpha: 2 }, { 'model.layers.0.q_proj': q });
    const m = baseModel(inF, outF, DataType.FLOAT16);
    const w = Float32Array.from(m.graph.localValue('model.layers.0.q_proj.weight')!.initializer!.toTypedArray<Uint16Array>(), float16BitsToFloat32);
    runPipeline(m, [mergeAdapters([loadAdapter(d)])], { check: true });
    const t = m.graph.localValue('model.layers.0.q_proj.weight')!.initializer!;
    expect(t.dtype).toBe(DataType.FLOAT16);
    const e = reference(w, 'out_in', inF, outF, [{ ...q, f: 1 }]);
    const g = t.toTypedArray<Uint16Array>();
    e.forEach((x, i) => expect(g[i]).toBe(float32ToFloat16Bits(Math.fround(x))));
  });

  it('names unmatched modules with the nearest candidates, and refuses shape mismatches', () => {
    const d = adapterDir({ r, lora_alpha: 2 }, { 'model.layers.0.k_proj': mod(1) });
    const m = baseModel(inF, outF);
    expect(() => runPipeline(m, [mergeAdapters([loadAdapter(d)])])).toThrowError(/model\.layers\.0\.k_proj: nothing in the graph; nearest: model\.layers\.0\.(q|v)_proj/);
    const wrong = adapterDir({ r, lora_alpha: 2 }, { 'model.layers.0.q_proj': { ...mod(1), inF: 3, a: randomFloats(r * 3, 1) } });
    expect(() => runPipeline(baseModel(inF, outF), [mergeAdapters([loadAdapter(wrong)])])).toThrowError(/needs a \[out, in\] weight of \[4, 3\]/);
  });

  it('refuses other adapter types, bias training and files that lie', () => {
    const ia3 = adapterDir({ peft_type: 'IA3', r, lora_alpha: 2 }, { 'model.layers.0.q_proj': mod(1) });
    expect(() => loadAdapter(ia3)).toThrowError(/adapter type IA3 is not supported/);
    const bias = adapterDir({ r, lora_alpha: 2, bias: 'sometimes' }, { 'model.layers.0.q_proj': mod(1) });
    expect(() => loadAdapter(bias)).toThrowError(/bias='sometimes' is not one of PEFT's bias modes/);
    const d = adapterDir({ r, lora_alpha: 2 }, { 'model.layers.0.q_proj': mod(1) });
    const file = join(d, 'adapter_model.safetensors');
    truncateSync(file, statSync(file).size - 4);
    expect(() => loadAdapter(d)).toThrowError(PeftcError);
    expect(() => loadAdapter(d)).toThrowError(/truncated file or lying offsets/);
    const lying = join(dir, 'lying.safetensors');
    writeSafetensors(lying, { t: { dtype: 'F32', shape: [2], data: new Uint8Array(8) } }, (h) => {
      (h.t as { shape: number[] }).shape = [3];
    });
    expect(() => readSafetensors(lying)).toThrowError(/spans 8 bytes, F32\[3\] needs 12/);
    const hugeHeader = join(dir, 'huge.safetensors');
    const buf = Buffer.alloc(16);
    buf.writeBigUInt64LE(2n ** 60n);
    writeFileSync(hugeHeader, buf);
    expect(() => readSafetensors(hugeHeader)).toThrowError(/header length .* exceeds the file/);
  });

  it('parses --lora DIR[:WEIGHT], module scopes and PEFT patterns', () => {
    expect(parseLoraArg('a/b:0.7')).toEqual({ dir: 'a/b', weight: 0.7 });
    expect(parseLoraArg('adapters/x')).toEqual({ dir: 'adapters/x', weight: 1 });
    const b = new ModelBuilder();
    const x = b.input('x', DataType.FLOAT, [1]);
    const ts = b.graph.addNode('Relu', [x], ['y1'], { name: '/model/layers.10/self_attn/q_proj/MatMul' });
    const dyn = b.graph.addNode('Relu', [x], ['y2'], { name: 'node_linear_3' });
    dyn.metadataProps = [['pkg.torch.onnx.name_scopes', "['', 'model', 'model.model.layers.0.mlp.up_proj', 'linear_3']"]];
    expect(nodeModulePath(ts)).toBe('model.layers.10.self_attn.q_proj');
    expect(nodeModulePath(dyn)).toBe('model.model.layers.0.mlp.up_proj');
    expect(matchPattern({ q_proj: 16 }, 'model.layers.0.self_attn.q_proj')).toBe(16);
    expect(matchPattern({ 'layers.0.self_attn.q_proj': 4 }, 'model.layers.0.self_attn.q_proj')).toBe(4);
    expect(matchPattern({ proj: 16 }, 'model.layers.0.self_attn.q_proj')).toBeUndefined();
  });
});

describe('adapters with trained biases and modules_to_save', () => {
  // PEFT saves a trained bias of a LoRA-wrapped layer under '<module>.base_layer.bias' (newer
  // PEFT) or '<module>.bias', and modules_to_save parameters as '<module>.modules_to_save.<name>.<param>'
  // stripped to '<module>.<param>'; merge_and_unload keeps them as trained.
  it('replace the named base tensors, as --override of the same tensors does, and nothing else', () => {
    const inF = 4;
    const outF = 3;
    const r = 2;
    const d = join(dir, 'bias-and-saved');
    mkdirSync(d);
    writeFileSync(join(d, 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', r, lora_alpha: 2, bias: 'lora_only', modules_to_save: ['head'] }));
    const a = randomFloats(r * inF, 31);
    const bm = randomFloats(outF * r, 32);
    const qBias = randomFloats(outF, 33);
    const headW = randomFloats(outF * outF, 34);
    writeSafetensors(join(d, 'adapter_model.safetensors'), {
      'base_model.model.model.layers.0.q_proj.lora_A.weight': { dtype: 'F32', shape: [r, inF], data: f32(a) },
      'base_model.model.model.layers.0.q_proj.lora_B.weight': { dtype: 'F32', shape: [outF, r], data: f32(bm) },
      'base_model.model.model.layers.0.q_proj.base_layer.bias': { dtype: 'F32', shape: [outF], data: f32(qBias) },
      'base_model.model.head.modules_to_save.default.weight': { dtype: 'F32', shape: [outF, outF], data: f32(headW) },
    });
    const adapter = loadAdapter(d);
    expect([...adapter.replaced.keys()].sort()).toEqual(['head.weight', 'model.layers.0.q_proj.bias']);
    const b = new ModelBuilder();
    const x = b.input('x', DataType.FLOAT, [2, inF]);
    const w = b.initializer('model.layers.0.q_proj.weight', DataType.FLOAT, [outF, inF], randomFloats(outF * inF, 41));
    const qb = b.initializer('model.layers.0.q_proj.bias', DataType.FLOAT, [outF], randomFloats(outF, 42));
    const hw = b.initializer('head.weight', DataType.FLOAT, [outF, outF], randomFloats(outF * outF, 43));
    const h = b.op('Gemm', [x, w, qb], { transB: 1 }, { name: '/model/layers.0/q_proj/Gemm' });
    b.output(b.op('Gemm', [h, hw], { transB: 1 }, { name: '/head/Gemm' }));
    const m = b.build();
    const pass = tensorOverrides([{ path: d, mode: 'replace', tensors: adapter.replaced }]);
    runPipeline(m, [pass, mergeAdapters([adapter])], { check: true });
    expect(pass.applied.map((x) => x.tensor).sort()).toEqual(['head.weight', 'model.layers.0.q_proj.bias']);
    expect([...m.graph.localValue('model.layers.0.q_proj.bias')!.initializer!.toTypedArray<Float32Array>()]).toEqual([...qBias]);
    expect([...m.graph.localValue('head.weight')!.initializer!.toTypedArray<Float32Array>()]).toEqual([...headW]);
  });

  it('an adapter that replaces tensors cannot be combined with another one', () => {
    const d = join(dir, 'bias-only');
    mkdirSync(d);
    writeFileSync(join(d, 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', r: 2, lora_alpha: 2, bias: 'all' }));
    writeSafetensors(join(d, 'adapter_model.safetensors'), { 'base_model.model.x.bias': { dtype: 'F32', shape: [1], data: f32(Float32Array.from([1])) } });
    const model = join(dir, 'combine.onnx');
    const b = new ModelBuilder();
    const x = b.input('x', DataType.FLOAT, [1]);
    b.output(b.op('Add', [x, b.initializer('x.bias', DataType.FLOAT, [1], Float32Array.from([0]))], {}, { name: '/x/Add' }));
    saveModel(b.build(), model, { durable: false });
    expect(() => compileModel(model, { target: 'cpu', quant: 'none', output: join(dir, 'combined.onnx'), lora: [{ dir: d, weight: 0.5 }, { dir: d, weight: 0.5 }] })).toThrowError(/cannot be combined with other adapters/);
    const r = compileModel(model, { target: 'cpu', quant: 'none', output: join(dir, 'combined.onnx'), lora: [{ dir: d, weight: 1 }] });
    expect(r.passes.find((p) => p.pass === 'tensor-override')!.details.overridden).toBe(1);
  });
});

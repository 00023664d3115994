/**
 * Shared by the tfjs target tests: the golden records' models and inputs, and compiling with
 * --target tfjs through compile's own pipeline (load -> --shape -> adapters -> cleanup -> target
 * passes -> legality -> write).
 */
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { compileModel, type CompileOptions, type CompileResult } from '../src/compile.js';
import { Tensor } from '../src/ir/tensor.js';
import { parseNpy } from '../src/runtime/npy.js';
import type { TfjsWeightQuant } from '../targets/tfjs/weights.js';

export const ROOT = resolve(import.meta.dirname, '..');

export interface GoldenCase {
  /** golden/<name> */
  name: string;
  /** The model compiled (base.onnx for PEFT fixtures). */
  source: string;
  /** The model whose onnxruntime outputs are the reference (the original, or PEFT's merged.onnx). */
  reference: string;
  lora: Array<{ dir: string; weight: number }>;
  /** The first recorded run's inputs. */
  inputs: Record<string, Tensor>;
  causalLm: boolean;
}

/** The first sample of a stored [runs, ...] array, optionally cut to `rows` x `cols` of its first two axes. */
function firstRun(t: Tensor, limit?: { rows: number; cols: number }): Tensor {
  const dims = t.dims.slice(1);
  const bytes = t.bytes();
  const run = bytes.subarray(0, bytes.byteLength / t.dims[0]!);
  if (!limit || dims.length !== 2) return Tensor.fromBytes(t.name, t.dtype, dims, run);
  const [rows, cols] = [Math.min(limit.rows, dims[0]!), Math.min(limit.cols, dims[1]!)];
  const size = run.byteLength / (dims[0]! * dims[1]!);
  const out = new Uint8Array(rows * cols * size);
  for (let r = 0; r < rows; r++) out.set(run.subarray(r * dims[1]! * size, (r * dims[1]! + cols) * size), r * cols * size);
  return Tensor.fromBytes(t.name, t.dtype, [rows, cols], out);
}

/**
 * Every golden record folder: zoo models, models/lm, PEFT fixtures (base + adapters as the cpu
 * record merges them). `lmWindow` cuts models/lm's token windows (its inputs are symbolic;
 * TF.js's CPU backend takes about 20 s for the recorded 4 x 256).
 */
export function goldenCases(lmWindow?: { rows: number; cols: number }): GoldenCase[] {
  const dir = join(ROOT, 'golden');
  return readdirSync(dir)
    .filter((d) => existsSync(join(dir, d, 'reference.json')))
    .sort()
    .map((name) => {
      const ref = JSON.parse(readFileSync(join(dir, name, 'reference.json'), 'utf8')) as { reference: string; task?: string; inputs: Record<string, string> };
      const causalLm = ref.task === 'causal-lm';
      const inputs: Record<string, Tensor> = {};
      for (const [k, p] of Object.entries(ref.inputs)) inputs[k] = firstRun(parseNpy(readFileSync(join(dir, name, p)), k, p), name === 'lm' ? lmWindow : undefined);
      // The source and adapters as the cpu-none records compile them.
      const record = readdirSync(join(dir, name)).find((f) => /^cpu-none(-lora)?\.json$/.test(f));
      const compile = record ? (JSON.parse(readFileSync(join(dir, name, record), 'utf8')) as { compile: { source: string; lora?: string[] } }).compile : { source: ref.reference };
      const lora = (compile.lora ?? []).map((s) => {
        const m = /^(.*?)(?::([0-9.]+))?$/.exec(s)!;
        return { dir: join(ROOT, m[1]!), weight: m[2] ? Number(m[2]) : 1 };
      });
      return { name, source: join(ROOT, compile.source), reference: join(ROOT, ref.reference), lora, inputs, causalLm };
    });
}

/**
 * `peftc compile --target tfjs --quant Q --shape ...` through compile's own pipeline. The casts go
 * once src/compile.ts lists 'tfjs' in TARGETS and uint8/uint16 in QUANT_MODES.
 */
export function compileTfjs(c: GoldenCase, quant: TfjsWeightQuant, output: string, log?: (m: string) => void): CompileResult {
  const shapes = Object.fromEntries(Object.entries(c.inputs).map(([k, t]) => [k, [...t.dims]]));
  const options: CompileOptions = {
    target: 'tfjs' as unknown as CompileOptions['target'],
    quant: quant as unknown as CompileOptions['quant'],
    output,
    shapes,
    ...(c.lora.length ? { lora: c.lora } : {}),
    log: log ?? (() => {}),
  };
  return compileModel(c.source, options);
}

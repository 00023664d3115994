/**
 * `peftc compile`: decode, run the pipeline for the target, write the model atomically.
 * Later stages (adapter merge, quantization, target lowering) plug in here.
 */
import { existsSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { PeftcError } from './errors.js';
import { summarizeModel, type ModelSummary } from './inspect.js';
import type { ExternalPolicy } from './onnx/encode.js';
import { loadModel, saveModel, type SaveResult } from './onnx/io.js';
import { runPipeline, type PassReport } from '../passes/pass.js';
import { cleanupPipeline } from '../passes/pipelines.js';
import { mergeAdapters } from '../passes/lora-adapter-merge.js';
import { loadAdapter, type Adapter } from './peft/adapter.js';
import { weightQuantization, type LayerQuantReport, type WeightQuantFormat } from '../passes/weight-quant.js';

export const TARGETS = ['cpu', 'cuda', 'xla'] as const;
export type Target = (typeof TARGETS)[number];
export const QUANT_MODES = ['none', 'fp16', 'int8', 'int8-weight', 'int4', 'nf4'] as const;
export type QuantMode = (typeof QUANT_MODES)[number];

/** What this build can do; the rest is refused up front with a clear message. */
const IMPLEMENTED_TARGETS: readonly Target[] = ['cpu'];
const IMPLEMENTED_QUANT: readonly QuantMode[] = ['none', 'int8-weight', 'int4', 'nf4'];
/** Weight-only modes (passes/weight-quant.ts) and the pass mode each maps to. */
const WEIGHT_QUANT_MODES: Partial<Record<QuantMode, 'int4' | 'int8' | 'nf4'>> = { int4: 'int4', 'int8-weight': 'int8', nf4: 'nf4' };
export const QUANT_METHODS = ['rtn', 'mse', 'awq', 'gptq'] as const;
export const QUANT_FORMATS = ['matmulnbits', 'qdq'] as const;

/** Weight-only quantization settings (--quant int4|int8-weight|nf4). */
export interface WeightQuantSettings {
  /** Default 'mse'; 'awq' and 'gptq' need calibration data and are refused for now. */
  method?: (typeof QUANT_METHODS)[number];
  blockSize?: number;
  symmetric?: boolean;
  /** Default by target: matmulnbits for cpu/cuda, qdq (standard ops) for xla. */
  format?: WeightQuantFormat;
  /** Node or weight names kept in full precision. */
  exclude?: string[];
}

export interface CompileOptions {
  target: Target;
  quant: QuantMode;
  /** Output file, or a folder (existing, or ending in '/') to write <input name> into. */
  output: string;
  /** Run the IR invariant checker after every pass. */
  check?: boolean;
  foldMaxBytes?: number;
  /** Leave unmerged LoRA branches in the graph (default: merge them). */
  keepLora?: boolean;
  /** PEFT adapter folders to merge, each with the weight of its delta. */
  lora?: Array<{ dir: string; weight: number }>;
  externalData?: ExternalPolicy;
  weightQuant?: WeightQuantSettings;
  log?: (message: string) => void;
  onReport?: (report: PassReport) => void;
}

export interface CompileResult {
  input: string;
  output: string;
  target: Target;
  quant: QuantMode;
  before: ModelSummary;
  after: ModelSummary;
  passes: PassReport[];
  /** Per-layer weight quantization error, when weights were quantized. */
  quantization?: LayerQuantReport[];
  written: SaveResult;
  ms: { load: number; passes: number; save: number; total: number };
}

export function resolveOutputPath(input: string, output: string): string {
  const isDir = output.endsWith('/') || (existsSync(output) && statSync(output).isDirectory());
  const path = isDir ? join(output, basename(input)) : output;
  if (!existsSync(dirname(resolve(path)))) throw new PeftcError(`${output}: the output folder ${dirname(resolve(path))} does not exist`);
  return path;
}

export function compileModel(input: string, options: CompileOptions): CompileResult {
  if (!IMPLEMENTED_TARGETS.includes(options.target)) {
    throw new PeftcError(`--target ${options.target} is not available in this build yet (available: ${IMPLEMENTED_TARGETS.join(', ')})`);
  }
  if (!IMPLEMENTED_QUANT.includes(options.quant)) {
    throw new PeftcError(`--quant ${options.quant} is not available in this build yet (available: ${IMPLEMENTED_QUANT.join(', ')})`);
  }
  const weightMode = WEIGHT_QUANT_MODES[options.quant];
  const wq = options.weightQuant ?? {};
  if (wq.method === 'awq' || wq.method === 'gptq') {
    throw new PeftcError(`--quant-method ${wq.method} needs calibration data and is not implemented yet; use --quant-method mse (the default, needs no data) or rtn`);
  }
  const output = resolveOutputPath(input, options.output);
  const t0 = performance.now();
  // Adapters are read (headers only) before the model, so a bad adapter fails fast.
  const adapters: Adapter[] = (options.lora ?? []).map(({ dir, weight }) => loadAdapter(dir, weight));
  const model = loadModel(input);
  const before = summarizeModel(model);
  const t1 = performance.now();
  const merge = adapters.length
    ? runPipeline(model, [mergeAdapters(adapters)], { check: options.check, log: options.log, onReport: options.onReport })
    : [];
  const cleanup = runPipeline(model, cleanupPipeline({ fold: { maxBytes: options.foldMaxBytes }, mergeLora: !options.keepLora }), {
    fixpoint: true,
    check: options.check,
    log: options.log,
    onReport: options.onReport,
  });
  const passes = [...merge, ...cleanup];
  let quantization: LayerQuantReport[] | undefined;
  if (weightMode) {
    const pass = weightQuantization({
      mode: weightMode,
      method: wq.method,
      blockSize: wq.blockSize,
      symmetric: wq.symmetric,
      format: wq.format ?? (options.target === 'xla' ? 'qdq' : 'matmulnbits'),
      exclude: wq.exclude,
    });
    passes.push(...runPipeline(model, [pass], { check: options.check, log: options.log, onReport: options.onReport }));
    quantization = pass.layers;
  }
  const after = summarizeModel(model);
  const t2 = performance.now();
  const written = saveModel(model, output, { externalData: options.externalData });
  const t3 = performance.now();
  return {
    input,
    output: written.path,
    target: options.target,
    quant: options.quant,
    before,
    after,
    passes,
    ...(quantization ? { quantization } : {}),
    written,
    ms: { load: t1 - t0, passes: t2 - t1, save: t3 - t2, total: t3 - t0 },
  };
}

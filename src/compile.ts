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
import { runPipeline, type Pass, type PassReport } from '../passes/pass.js';
import { cleanupPipeline } from '../passes/pipelines.js';
import { mergeAdapters } from '../passes/lora-adapter-merge.js';
import { loadAdapter, type Adapter } from './peft/adapter.js';
import { opsetUpgrade } from '../passes/opset-upgrade.js';
import { calibrationTargets, weightQuantization, type LayerQuantReport, type WeightQuantFormat, type WeightQuantOptions } from '../passes/weight-quant.js';
import { captureHessians, matchCalibrationData, readCalibrationArrays, type CalibrationArrays } from './quant/calibration.js';
import type { Model } from './ir/model.js';

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
  /** Default 'mse', or 'gptq' when calibration data is given; 'awq' is refused (not implemented). */
  method?: (typeof QUANT_METHODS)[number];
  blockSize?: number;
  symmetric?: boolean;
  /** Default by target: matmulnbits for cpu/cuda, qdq (standard ops) for xla. */
  format?: WeightQuantFormat;
  /** Node or weight names kept in full precision. */
  exclude?: string[];
  /** Type of stored scales: 'auto' (the weight's own; MatMulNBits needs that), or float32/float16 (qdq). */
  scaleDtype?: 'auto' | 'float32' | 'float16';
  /** Also quantize Gather tables (embeddings) along their last axis. */
  embeddings?: boolean;
  /** MatMulNBits accuracy_level 0..4 (0: attribute left out). */
  accuracyLevel?: number;
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
  /** Calibration data (.npy for a single-input model, .npz keyed by input name); needs compileModelAsync. */
  calib?: string;
  /** Raise the default-domain opset to this version (--opset); --quant-format qdq raises it to 21 by itself. */
  opset?: number;
  /**
   * Worker threads for weight quantization and for computing merged LoRA weights ahead of the
   * writer; 0 does all work in this thread. Default: one per core (for work large enough to pay).
   * Output bytes do not depend on it.
   */
  workers?: number;
  /**
   * Passes run after cleanup (and any opset upgrade), before quantization: for plug-ins and for
   * tests that plant a change (the golden gate must notice it).
   */
  extraPasses?: readonly Pass[];
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
  /** The calibration run, when --calib was given. */
  calibration?: { path: string; runs: number; samples: number; activations: number; hessianBytes: number; sessionRuns: number; ms: number };
  written: SaveResult;
  ms: { load: number; passes: number; save: number; total: number };
}

export function resolveOutputPath(input: string, output: string): string {
  const isDir = output.endsWith('/') || (existsSync(output) && statSync(output).isDirectory());
  const path = isDir ? join(output, basename(input)) : output;
  if (!existsSync(dirname(resolve(path)))) throw new PeftcError(`${output}: the output folder ${dirname(resolve(path))} does not exist`);
  return path;
}

/** Everything up to quantization: checked options, the loaded and cleaned-up model. */
interface Prepared {
  input: string;
  options: CompileOptions;
  output: string;
  weightMode: 'int4' | 'int8' | 'nf4' | undefined;
  method: (typeof QUANT_METHODS)[number];
  calib: CalibrationArrays | undefined;
  model: Model;
  before: ModelSummary;
  passes: PassReport[];
  t0: number;
  t1: number;
}

function prepare(input: string, options: CompileOptions): Prepared {
  if (!IMPLEMENTED_TARGETS.includes(options.target)) {
    throw new PeftcError(`--target ${options.target} is not available in this build yet (available: ${IMPLEMENTED_TARGETS.join(', ')})`);
  }
  if (!IMPLEMENTED_QUANT.includes(options.quant)) {
    throw new PeftcError(`--quant ${options.quant} is not available in this build yet (available: ${IMPLEMENTED_QUANT.join(', ')})`);
  }
  const weightMode = WEIGHT_QUANT_MODES[options.quant];
  const wq = options.weightQuant ?? {};
  const method = wq.method ?? (options.calib ? 'gptq' : 'mse');
  if (method === 'awq') {
    throw new PeftcError('--quant-method awq is not implemented; gptq is the data-aware method available (--quant-method gptq --calib DATA), or use mse (the default without data) or rtn');
  }
  if (options.calib && !weightMode) throw new PeftcError(`--calib is used by weight-only quantization (--quant int4, int8-weight or nf4); --quant ${options.quant} takes no calibration data`);
  if (method === 'gptq' && !options.calib) throw new PeftcError('--quant-method gptq needs calibration data: give --calib DATA (.npy for a single-input model, .npz keyed by input name)');
  const output = resolveOutputPath(input, options.output);
  if (options.opset !== undefined) opsetUpgrade(options.opset); // refuses an unsupported target before any work
  const t0 = performance.now();
  // Adapters and calibration data are read before the model, so a bad file fails fast.
  const adapters: Adapter[] = (options.lora ?? []).map(({ dir, weight }) => loadAdapter(dir, weight));
  const calib = options.calib ? readCalibrationArrays(options.calib) : undefined;
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
  // Blocked 4-bit DequantizeLinear (the qdq format) exists from opset 21 on: raise the opset rather than refuse,
  // after cleanup so shapes are known (GroupNormalization needs its channel count).
  const qdq = weightMode !== undefined && (wq.format ?? (options.target === 'xla' ? 'qdq' : 'matmulnbits')) === 'qdq';
  const opset = options.opset ?? (qdq && (model.opsetVersion('') ?? 0) < 21 ? 21 : undefined);
  const upgrade = opset === undefined ? [] : runPipeline(model, [opsetUpgrade(opset, options.opset === undefined ? { reason: 'for blocked DequantizeLinear' } : {})], {
    check: options.check,
    log: options.log,
    onReport: options.onReport,
  });
  const extra = options.extraPasses?.length ? runPipeline(model, options.extraPasses, { check: options.check, log: options.log, onReport: options.onReport }) : [];
  return { input, options, output, weightMode, method, calib, model, before, passes: [...merge, ...cleanup, ...upgrade, ...extra], t0, t1 };
}

function weightQuantOptions(p: Prepared): WeightQuantOptions {
  const wq = p.options.weightQuant ?? {};
  return {
    mode: p.weightMode!,
    method: p.method === 'awq' ? 'mse' : p.method,
    blockSize: wq.blockSize,
    symmetric: wq.symmetric,
    format: wq.format ?? (p.options.target === 'xla' ? 'qdq' : 'matmulnbits'),
    exclude: wq.exclude,
    ...(wq.scaleDtype !== undefined ? { scaleDtype: wq.scaleDtype } : {}),
    ...(wq.embeddings !== undefined ? { gather: wq.embeddings } : {}),
    ...(wq.accuracyLevel !== undefined ? { accuracyLevel: wq.accuracyLevel } : {}),
    ...(p.options.workers !== undefined ? { workers: p.options.workers } : {}),
  };
}

function finish(p: Prepared, hessians: Map<string, Float64Array> | undefined, calibration: CompileResult['calibration']): CompileResult {
  const { model, options, passes } = p;
  let quantization: LayerQuantReport[] | undefined;
  if (p.weightMode) {
    const pass = weightQuantization({ ...weightQuantOptions(p), ...(hessians ? { hessians } : {}) });
    passes.push(...runPipeline(model, [pass], { check: options.check, log: options.log, onReport: options.onReport }));
    quantization = pass.layers;
  }
  const after = summarizeModel(model);
  const t2 = performance.now();
  const written = saveModel(model, p.output, { externalData: options.externalData, ...(options.workers !== undefined ? { workers: options.workers } : {}) });
  const t3 = performance.now();
  return {
    input: p.input,
    output: written.path,
    target: options.target,
    quant: options.quant,
    before: p.before,
    after,
    passes,
    ...(quantization ? { quantization } : {}),
    ...(calibration ? { calibration } : {}),
    written,
    ms: { load: p.t1 - p.t0, passes: t2 - p.t1, save: t3 - t2, total: t3 - p.t0 },
  };
}

/** Compiles without calibration data (synchronous); `calib` needs compileModelAsync. */
export function compileModel(input: string, options: CompileOptions): CompileResult {
  if (options.calib) throw new PeftcError('calibration runs the model in onnxruntime, which is asynchronous: call compileModelAsync for --calib');
  return finish(prepare(input, options), undefined, undefined);
}

/** Compiles, running the calibration data through the cleaned-up model first when `calib` is given. */
export async function compileModelAsync(input: string, options: CompileOptions): Promise<CompileResult> {
  const p = prepare(input, options);
  if (!p.calib) return finish(p, undefined, undefined);
  const data = matchCalibrationData(p.calib, p.model);
  for (const note of data.notes) options.log?.(`calibration: ${note}`);
  const targets = calibrationTargets(p.model, weightQuantOptions(p));
  // Every Hessian stays in memory until the weights are quantized: say how much that is.
  const hessianBytes = targets.reduce((a, t) => a + t.k * t.k * 8, 0);
  options.log?.(
    `calibration: ${data.samples} sample(s) in ${data.runs} run(s) from ${data.path}; ${targets.length} layer input(s) to capture, ${(hessianBytes / 2 ** 20).toFixed(1)} MiB of Hessians`,
  );
  const captured = await captureHessians(p.model, targets, data, { log: options.log });
  return finish(p, captured.hessians, {
    path: data.path,
    runs: data.runs,
    samples: data.samples,
    activations: targets.length,
    hessianBytes,
    sessionRuns: captured.sessionRuns,
    ms: captured.ms,
  });
}

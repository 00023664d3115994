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
import { quantizeLayerwise } from './quant/layerwise.js';
import type { GptqOptions } from './quant/gptq.js';
import { totalmem } from 'node:os';
import type { Model } from './ir/model.js';
import { getTarget } from '../targets/index.js';
import { fixShapes } from '../passes/fix-shapes.js';
import { int8CalibrationData, quantizeInt8, type Int8Options, type Int8Report } from './quant/int8.js';
import { selectFusions, type FusionApplied, type FusionPass, type NearMiss } from '../passes/fusion.js';
import { tensorOverrides, type OverrideMode, type OverrideSource } from '../passes/tensor-override.js';
import { readSafetensors } from './peft/safetensors.js';
import type { LegalityReport, LoweringOptions } from '../targets/target.js';
import type { PrecisionReport } from '../passes/float16.js';
import { matchInputData, synthesizeInputs } from './runtime/input-data.js';
import { FLOAT16_MAX, observeRanges } from './runtime/ranges.js';

export const TARGETS = ['cpu', 'cuda', 'xla', 'tfjs'] as const;
export type Target = (typeof TARGETS)[number];
export const QUANT_MODES = ['none', 'fp16', 'bf16', 'int8', 'int8-weight', 'int4', 'nf4', 'uint8', 'uint16', 'int8-dynamic'] as const;
export type QuantMode = (typeof QUANT_MODES)[number];
/** Weight-only modes (passes/weight-quant.ts) and the pass mode each maps to. */
const WEIGHT_QUANT_MODES: Partial<Record<QuantMode, 'int4' | 'int8' | 'nf4'>> = { int4: 'int4', 'int8-weight': 'int8', nf4: 'nf4' };
/**
 * Weight-only methods: awq scales input channels by activation-aware factors searched on the
 * calibration data (src/quant/awq.ts), then quantizes with the mse scale search; awq+gptq quantizes
 * the scaled weights with GPTQ.
 */
export const QUANT_METHODS = ['rtn', 'mse', 'gptq', 'awq', 'awq+gptq'] as const;
export type QuantMethodName = (typeof QUANT_METHODS)[number];
/** Methods that need --calib. */
const DATA_METHODS: ReadonlySet<QuantMethodName> = new Set(['gptq', 'awq', 'awq+gptq']);
/**
 * Default memory for the calibration Hessians held at once (--hessian-memory): a quarter of the
 * machine's memory, leaving the rest to onnxruntime's activations, the model and the writer.
 */
export function defaultHessianMemory(): number {
  return Math.floor(totalmem() / 4);
}
export const QUANT_FORMATS = ['matmulnbits', 'qdq', 'qoperator'] as const;

/** Weight-only quantization settings (--quant int4|int8-weight|nf4). */
export interface WeightQuantSettings {
  /** Default 'mse', or 'gptq' when calibration data is given; gptq, awq and awq+gptq need it. */
  method?: QuantMethodName;
  /**
   * With calibration data: capture each layer input's Hessian and quantize the layers reading it
   * before capturing the next (src/quant/layerwise.ts), so the layers after see the quantized ones'
   * outputs and only one layer input's Hessian is held at once. Default: only when all the
   * Hessians together would exceed `hessianMemory`.
   */
  layerwise?: boolean;
  /**
   * Bytes the calibration Hessians may hold at once (--hessian-memory, in MiB on the command line).
   * Default: a quarter of the machine's memory. Over it, calibration goes layer by layer; a single
   * layer input's Hessian over it is refused.
   */
  hessianMemory?: number;
  /** GPTQ settings (act-order, dampening, lazy batch); library and benches only, no CLI flag. */
  gptq?: Partial<GptqOptions>;
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
  /** Weight-only modes on targets that choose (cuda): activations in fp16 (default there) or fp32. */
  activations?: 'fp16' | 'fp32';
  /** fp16/bf16 artifacts: graph inputs/outputs stay float32 (default) or take the low type. */
  ioTypes?: 'fp32' | 'fp16';
  /** safetensors files whose named tensors replace (or are added to) the model's (--override). */
  overrides?: Array<{ path: string; mode: OverrideMode }>;
  /** Static/dynamic int8 settings (--quant int8 | int8-dynamic; src/quant/int8.ts). */
  int8?: Omit<Int8Options, 'mode' | 'log'>;
  /** Fusions to run (--fuse a,b); [] runs none (--no-fuse); undefined: the target's default set. */
  fuse?: string[];
  /** Static shapes for graph inputs (--shape name=1x128), applied before cleanup. */
  shapes?: Record<string, number[]>;
  /** Refuse (exit 2, nothing written) when the target's legality check finds nodes it cannot run. */
  strict?: boolean;
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
  calibration?: {
    path: string;
    runs: number;
    samples: number;
    activations: number;
    /** All the layer inputs' Hessians together (what capturing all at once holds). */
    hessianBytes: number;
    /** 'all': every Hessian captured in one pass, then quantized; 'layerwise': one layer input at a time. */
    mode: 'all' | 'layerwise';
    /** The most Hessian bytes held at once. */
    peakHessianBytes: number;
    sessionRuns: number;
    ms: number;
  };
  /** fp16/bf16 conversion: what was lowered, kept (and why), Casts, clamped weights. */
  precision?: PrecisionReport;
  /** Activations whose observed range overflows float16, kept in float32. */
  overflow?: { source: string; values: Array<{ name: string; maxAbs: number }> };
  /** Static/dynamic int8: calibration, what was quantized, kernels onnxruntime formed, errors. */
  int8?: Int8Report;
  /** Fusions applied and near-misses left alone, with the reason (targets that fuse). */
  fusion?: { applied: FusionApplied[]; nearMisses: NearMiss[] };
  /** The target's legality check of the written graph (targets with a kernel table). */
  legality?: LegalityReport;
  written: SaveResult;
  ms: { load: number; passes: number; save: number; total: number };
}

/** A folder artifact's path: created if missing, its parent must exist. */
export function resolveOutputFolder(output: string): string {
  const parent = dirname(resolve(output));
  if (!existsSync(parent)) throw new PeftcError(`${output}: the folder ${parent} does not exist`);
  if (existsSync(output) && !statSync(output).isDirectory()) throw new PeftcError(`${output}: exists and is not a folder (this target writes a folder of files)`);
  return output;
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
  method: QuantMethodName;
  calib: CalibrationArrays | undefined;
  model: Model;
  before: ModelSummary;
  passes: PassReport[];
  fusion?: FusionPass;
  t0: number;
  t1: number;
}

function prepare(input: string, options: CompileOptions): Prepared {
  const target = getTarget(options.target);
  if (!target.quantModes.includes(options.quant)) {
    throw new PeftcError(`--quant ${options.quant} is not available for --target ${target.name} in this build (available: ${target.quantModes.join(', ')})`);
  }
  if (options.activations !== undefined && (target.name !== 'cuda' || !WEIGHT_QUANT_MODES[options.quant])) {
    throw new PeftcError('--activations applies to weight-only quantization on --target cuda (int4, nf4, int8-weight)');
  }
  if (options.ioTypes !== undefined && !lowPrecision(options)) throw new PeftcError('--io-types applies to float16/bfloat16 artifacts (--target cuda --quant fp16|bf16, or weight-only with fp16 activations)');
  const weightMode = WEIGHT_QUANT_MODES[options.quant];
  const wq = options.weightQuant ?? {};
  const method = wq.method ?? (options.calib ? 'gptq' : 'mse');
  if (!(QUANT_METHODS as readonly string[]).includes(method)) throw new PeftcError(`--quant-method ${method} is unknown (${QUANT_METHODS.join(', ')})`);
  const int8 = options.quant === 'int8' || options.quant === 'int8-dynamic';
  if (options.calib && !weightMode && !lowPrecision(options) && !int8) {
    throw new PeftcError(`--calib is used by weight-only quantization (--quant int4, int8-weight or nf4) and by float16 conversion (--target cuda --quant fp16); --quant ${options.quant} on ${options.target} takes no calibration data`);
  }
  if (DATA_METHODS.has(method) && !options.calib) throw new PeftcError(`--quant-method ${method} needs calibration data: give --calib DATA (.npy for a single-input model, .npz keyed by input name)`);
  if ((wq.layerwise || wq.hessianMemory !== undefined) && !(weightMode && options.calib)) {
    throw new PeftcError(`--${wq.layerwise ? 'layerwise' : 'hessian-memory'} applies to weight-only quantization with calibration data (--quant int4|int8-weight|nf4 --calib DATA)`);
  }
  if (wq.hessianMemory !== undefined && !(Number.isFinite(wq.hessianMemory) && wq.hessianMemory > 0)) throw new PeftcError(`--hessian-memory takes a positive size in MiB (got ${wq.hessianMemory / 2 ** 20})`);
  const output = target.writesFolder ? resolveOutputFolder(options.output) : resolveOutputPath(input, options.output);
  if (options.fuse?.length) {
    if (target.name !== 'cpu' && target.name !== 'cuda') throw new PeftcError(`--fuse: --target ${target.name} runs no onnxruntime fusions (its runtime fuses on its own)`);
    selectFusions({ target: target.name, only: options.fuse }); // unknown names refused before any work
  }
  if (options.opset !== undefined) opsetUpgrade(options.opset); // refuses an unsupported target before any work
  const t0 = performance.now();
  // Adapters and calibration data are read before the model, so a bad file fails fast.
  const adapters: Adapter[] = (options.lora ?? []).map(({ dir, weight }) => loadAdapter(dir, weight));
  const overrides: OverrideSource[] = (options.overrides ?? []).map(({ path, mode }) => ({ path, mode, tensors: readSafetensors(path).tensors }));
  // Tensors an adapter trained outright (biases, modules_to_save) replace the base model's, as
  // PEFT's merge_and_unload keeps them; with several weighted adapters that has no meaning.
  const trained = adapters.filter((a) => a.replaced.size);
  if (trained.length && adapters.length > 1) {
    throw new PeftcError(`${trained.map((a) => a.dir).join(', ')}: adapters with trained biases or modules_to_save replace tensors outright, which cannot be combined with other adapters; merge such an adapter alone`);
  }
  for (const a of trained) overrides.unshift({ path: `${a.dir} (bias=${a.config.bias}, modules_to_save=[${a.config.modulesToSave.join(', ')}])`, mode: 'replace', tensors: a.replaced });
  const calib = options.calib ? readCalibrationArrays(options.calib) : undefined;
  const model = loadModel(input);
  const before = summarizeModel(model);
  const t1 = performance.now();
  const shaped = options.shapes && Object.keys(options.shapes).length ? runPipeline(model, [fixShapes(options.shapes)], { check: options.check, log: options.log, onReport: options.onReport }) : [];
  // Overrides before anything else: cleanup may fold or share the very tensors they name.
  const overridden = overrides.length ? runPipeline(model, [tensorOverrides(overrides)], { check: options.check, log: options.log, onReport: options.onReport }) : [];
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
  const qdq = weightMode !== undefined && (wq.format ?? target.weightFormat) === 'qdq';
  const opset = options.opset ?? (qdq && (model.opsetVersion('') ?? 0) < 21 ? 21 : undefined);
  const upgrade = opset === undefined ? [] : runPipeline(model, [opsetUpgrade(opset, options.opset === undefined ? { reason: 'for blocked DequantizeLinear' } : {})], {
    check: options.check,
    log: options.log,
    onReport: options.onReport,
  });
  const loweringPasses = target.beforeQuant(loweringOptions(options));
  const lowering = runPipeline(model, loweringPasses, { check: options.check, log: options.log, onReport: options.onReport });
  const fusionReport = loweringPasses.find((x): x is FusionPass => 'nearMisses' in x);
  const extra = options.extraPasses?.length ? runPipeline(model, options.extraPasses, { check: options.check, log: options.log, onReport: options.onReport }) : [];
  return { input, options, output, weightMode, method, calib, model, before, passes: [...shaped, ...overridden, ...merge, ...cleanup, ...upgrade, ...lowering, ...extra], ...(fusionReport ? { fusion: fusionReport } : {}), t0, t1 };
}

function weightQuantOptions(p: Prepared): WeightQuantOptions {
  const wq = p.options.weightQuant ?? {};
  return {
    mode: p.weightMode!,
    // awq: the scaled weights get the mse scale search; awq+gptq: GPTQ.
    method: p.method === 'awq' ? 'mse' : p.method === 'awq+gptq' ? 'gptq' : p.method,
    ...(p.method === 'awq' || p.method === 'awq+gptq' ? { awq: true } : {}),
    blockSize: wq.blockSize,
    symmetric: wq.symmetric,
    format: wq.format ?? getTarget(p.options.target).weightFormat,
    exclude: wq.exclude,
    ...(wq.scaleDtype !== undefined ? { scaleDtype: wq.scaleDtype } : {}),
    ...(wq.embeddings !== undefined ? { gather: wq.embeddings } : {}),
    ...(wq.accuracyLevel !== undefined ? { accuracyLevel: wq.accuracyLevel } : {}),
    ...(wq.gptq !== undefined ? { gptq: wq.gptq } : {}),
    ...(p.options.workers !== undefined ? { workers: p.options.workers } : {}),
  };
}

/** Whether the compile lowers float32 to float16/bfloat16 (cuda fp16/bf16, or weight-only with fp16 activations). */
function lowPrecision(options: Pick<CompileOptions, 'target' | 'quant' | 'activations'>): boolean {
  if (options.target !== 'cuda') return false;
  return options.quant === 'fp16' || options.quant === 'bf16' || (WEIGHT_QUANT_MODES[options.quant] !== undefined && (options.activations ?? 'fp16') === 'fp16');
}

function loweringOptions(options: CompileOptions, overflowing?: ReadonlySet<string>): LoweringOptions {
  return {
    quant: options.quant,
    ...(options.activations ? { activations: options.activations } : {}),
    ...(options.ioTypes ? { ioTypes: options.ioTypes } : {}),
    ...(options.fuse ? { fuse: options.fuse } : {}),
    ...(overflowing ? { overflowing } : {}),
    ...(options.log ? { log: options.log } : {}),
  };
}

/** Weight quantization, then the target's passes after it; the precision pass's report if one ran. */
function quantizeAndLower(p: Prepared, hessians: Map<string, Float64Array> | undefined, overflowing: ReadonlySet<string> | undefined) {
  const { model, options, passes } = p;
  let quantization: LayerQuantReport[] | undefined;
  if (p.weightMode) {
    const pass = weightQuantization({ ...weightQuantOptions(p), ...(hessians ? { hessians } : {}) });
    passes.push(...runPipeline(model, [pass], { check: options.check, log: options.log, onReport: options.onReport }));
    quantization = pass.layers;
  }
  return { quantization, ...lowerAfterQuant(p, overflowing) };
}

/** The target's passes after weight quantization; the precision pass's report if one ran. */
function lowerAfterQuant(p: Prepared, overflowing: ReadonlySet<string> | undefined) {
  const { model, options, passes } = p;
  const after = getTarget(options.target).afterQuant(loweringOptions(options, overflowing));
  passes.push(...runPipeline(model, after, { check: options.check, log: options.log, onReport: options.onReport }));
  const precision = after.map((x) => (x as { report?: PrecisionReport }).report).find((r) => r !== undefined);
  return { precision };
}

function finish(
  p: Prepared,
  quantized: { quantization: LayerQuantReport[] | undefined; precision: PrecisionReport | undefined },
  calibration: CompileResult['calibration'],
  overflow: CompileResult['overflow'],
): CompileResult {
  const { model, options, passes } = p;
  const { quantization, precision } = quantized;
  const target = getTarget(options.target);
  const legality = target.legality?.(model);
  if (legality?.fallbacks.length) {
    const list = legality.fallbacks.slice(0, 20).map((f) => `  ${f.node || '(unnamed)'} (${f.domain ? `${f.domain}::` : ''}${f.op}): ${f.reason}`).join('\n');
    const more = legality.fallbacks.length > 20 ? `\n  ... and ${legality.fallbacks.length - 20} more` : '';
    // A target without a fallback runtime (tfjs, xla) cannot emit what it cannot lower.
    const fatal = target.fallsBack === false;
    const head = fatal
      ? `${legality.fallbacks.length} node(s) cannot be lowered for ${target.runtime}:`
      : `${legality.fallbacks.length} node(s) have no ${target.runtime} kernel and would run on the CPU (${legality.copies} device/host copies per run):`;
    if (options.strict || fatal) throw new PeftcError(`${p.input}: ${fatal ? `--target ${target.name}` : '--strict'}: ${head}\n${list}${more}\nnothing written`);
    options.log?.(`legality: ${head}\n${list}${more}`);
  } else if (legality) {
    options.log?.(`legality: all ${legality.nodes} nodes have ${target.runtime} kernels (${legality.table})`);
  }
  const after = summarizeModel(model);
  const t2 = performance.now();
  const written = target.write
    ? target.write(model, p.output, { source: p.input, options: { target: options.target, quant: options.quant, ...(options.shapes ? { shapes: options.shapes } : {}) }, ...(options.log ? { log: options.log } : {}) })
    : saveModel(model, p.output, { externalData: options.externalData, ...(options.workers !== undefined ? { workers: options.workers } : {}) });
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
    ...(p.fusion ? { fusion: { applied: [...p.fusion.applied], nearMisses: [...p.fusion.nearMisses] } } : {}),
    ...(precision ? { precision } : {}),
    ...(overflow ? { overflow } : {}),
    ...(legality ? { legality } : {}),
    written,
    ms: { load: p.t1 - p.t0, passes: t2 - p.t1, save: t3 - t2, total: t3 - p.t0 },
  };
}

/** Compiles without calibration data (synchronous); `calib` needs compileModelAsync. */
export function compileModel(input: string, options: CompileOptions): CompileResult {
  if (options.calib) throw new PeftcError('calibration runs the model in onnxruntime, which is asynchronous: call compileModelAsync for --calib');
  if (options.quant === 'fp16' && lowPrecision(options)) throw new PeftcError('float16 conversion observes activation ranges in onnxruntime, which is asynchronous: call compileModelAsync');
  if (options.quant === 'int8' || options.quant === 'int8-dynamic') throw new PeftcError('int8 quantization runs the model in onnxruntime (calibration, kernel counts), which is asynchronous: call compileModelAsync');
  const p = prepare(input, options);
  return finish(p, quantizeAndLower(p, undefined, undefined), undefined, undefined);
}

/**
 * For float16 artifacts: the activations whose range on the data (the calibration data, or one
 * generated sample) overflows float16, measured on the model as it stands before conversion.
 */
async function observeOverflow(p: Prepared): Promise<CompileResult['overflow']> {
  const data = p.calib ? matchCalibrationData(p.calib, p.model) : matchInputData(synthesizeInputs(p.model, { seed: 0, samples: 1 }), p.model);
  if (!p.calib) p.options.log?.('float16: no --calib data: activation ranges observed on one generated sample only (give --calib DATA for real ranges)');
  const ranges = await observeRanges(p.model, data, { log: p.options.log });
  const values = [...ranges].filter(([, max]) => max > FLOAT16_MAX).map(([name, maxAbs]) => ({ name, maxAbs }));
  if (values.length) p.options.log?.(`float16: ${values.length} activation(s) overflow float16 on ${data.path} and stay float32 with the nodes reading or writing them: ${values.slice(0, 10).map((v) => `'${v.name}' (max |x| ${v.maxAbs.toExponential(3)})`).join(', ')}${values.length > 10 ? ', ...' : ''}`);
  return { source: data.path, values };
}

/** Compiles, running the calibration data through the cleaned-up model first when `calib` is given. */
export async function compileModelAsync(input: string, options: CompileOptions): Promise<CompileResult> {
  const p = prepare(input, options);
  if (options.quant === 'int8' || options.quant === 'int8-dynamic') {
    // Static int8 calibrates on --calib data (generated inputs with a loud warning without it).
    const data = options.quant === 'int8' || p.calib ? int8CalibrationData(p.model, p.calib, { ...(options.log ? { log: options.log } : {}) }) : undefined;
    const int8 = await quantizeInt8(p.model, data, { mode: options.quant === 'int8' ? 'static' : 'dynamic', ...options.int8, ...(options.log ? { log: options.log } : {}) });
    p.passes.push(...int8.passes);
    return { ...finish(p, quantizeAndLower(p, undefined, undefined), undefined, undefined), int8 };
  }
  const float16 = lowPrecision(options) && (options.quant === 'fp16' || WEIGHT_QUANT_MODES[options.quant] !== undefined);
  if (!p.calib || !p.weightMode) {
    const overflow = float16 ? await observeOverflow(p) : undefined;
    const overflowing = overflow ? new Set(overflow.values.map((v) => v.name)) : undefined;
    return finish(p, quantizeAndLower(p, undefined, overflowing), undefined, overflow);
  }
  const data = matchCalibrationData(p.calib, p.model);
  for (const note of data.notes) options.log?.(`calibration: ${note}`);
  const wqOptions = weightQuantOptions(p);
  const targets = calibrationTargets(p.model, wqOptions);
  const hessianBytes = targets.reduce((a, t) => a + t.k * t.k * 8, 0);
  const wq = options.weightQuant ?? {};
  const limit = wq.hessianMemory ?? defaultHessianMemory();
  const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
  const layerwise = wq.layerwise === true || hessianBytes > limit;
  options.log?.(
    `calibration: ${data.samples} sample(s) in ${data.runs} run(s) from ${data.path}; ${targets.length} layer input(s) to capture, ${mib(hessianBytes)} of Hessians` +
      (layerwise ? `; layer by layer (${wq.layerwise ? '--layerwise' : `over the ${mib(limit)} of --hessian-memory`})` : ''),
  );
  const awq = wqOptions.awq === true;
  const calibrationReport = (sessionRuns: number, ms: number, mode: 'all' | 'layerwise', peakHessianBytes: number): CompileResult['calibration'] => ({
    path: data.path,
    runs: data.runs,
    samples: data.samples,
    activations: targets.length,
    hessianBytes,
    mode,
    peakHessianBytes,
    sessionRuns,
    ms,
  });
  if (!layerwise) {
    // Every Hessian stays in memory until the weights are quantized (they fit in the limit).
    const captured = await captureHessians(p.model, targets, data, { log: options.log });
    if (awq) {
      // AWQ divides activations by its scales (folded into their producers): float16 ranges are
      // observed on the model as quantized, which is the one converted.
      const pass = weightQuantization({ ...wqOptions, hessians: captured.hessians });
      p.passes.push(...runPipeline(p.model, [pass], { check: options.check, log: options.log, onReport: options.onReport }));
      const overflow = float16 ? await observeOverflow(p) : undefined;
      const overflowing = overflow ? new Set(overflow.values.map((v) => v.name)) : undefined;
      return finish(p, { quantization: pass.layers, ...lowerAfterQuant(p, overflowing) }, calibrationReport(captured.sessionRuns, captured.ms, 'all', hessianBytes), overflow);
    }
    const overflow = float16 ? await observeOverflow(p) : undefined;
    const overflowing = overflow ? new Set(overflow.values.map((v) => v.name)) : undefined;
    return finish(p, quantizeAndLower(p, captured.hessians, overflowing), calibrationReport(captured.sessionRuns, captured.ms, 'all', hessianBytes), overflow);
  }
  // Layer by layer: the model is quantized in place as it is calibrated (src/quant/layerwise.ts).
  // Activation ranges for float16 are observed before (as above), or after with AWQ (its folds
  // change activations).
  const before = float16 && !awq ? await observeOverflow(p) : undefined;
  const r = await quantizeLayerwise(p.model, data, {
    ...wqOptions,
    maxHessianBytes: limit,
    ...(options.log ? { log: options.log } : {}),
    ...(options.check ? { check: true } : {}),
  });
  p.passes.push(r.report);
  options.onReport?.(r.report);
  const overflow = float16 && awq ? await observeOverflow(p) : before;
  const overflowing = overflow ? new Set(overflow.values.map((v) => v.name)) : undefined;
  return finish(p, { quantization: r.layers, ...lowerAfterQuant(p, overflowing) }, calibrationReport(r.sessionRuns, r.calibrationMs, 'layerwise', r.peakHessianBytes), overflow);
}

/**
 * INT8 quantization, the library entry point behind `--quant int8` (static, calibrated) and
 * `--quant int8-dynamic`:
 *
 *   quantizeInt8(model, data, options) -> Int8Report      (the model is rewritten in place)
 *
 * Static, in order:
 *  1. QAT graphs: weight QuantizeLinear -> DequantizeLinear pairs with constant inputs are folded
 *     into int8 initializers (passes/qat-weights.ts), and nodes already reading DequantizeLinear
 *     outputs keep what training fixed: they are not re-planned or re-calibrated.
 *  2. SmoothQuant (optional, `smoothQuant`): per-channel activation maxima of every MatMul input
 *     with a constant weight are measured, and alpha (given, or searched on the calibration data)
 *     moves activation outliers into the weights (passes/smooth-quant.ts).
 *  3. The plan (src/quant/int8-plan.ts) names the nodes and activations to quantize; one
 *     streaming calibration pass (src/calibration/collect.ts) measures every activation any plan
 *     may quantize; each range comes from the chosen method (minmax, percentile, entropy, mse).
 *  4. Sensitivity (with `maxError` or `sensitivity`): a copy of the model carries, for every
 *     quantizable activation and weight, a fake-quantized alternative behind a switch, so one
 *     onnxruntime session measures any mix of quantized and float nodes
 *     (src/quant/int8-sensitivity.ts). Each node's error alone is measured; with `maxError`, the
 *     most sensitive nodes are kept float one by one until the end-to-end error fits.
 *  5. QDQ insertion (passes/qdq-insertion.ts).
 * Dynamic: passes/dynamic-quant.ts (no data needed; with data, the error is measured).
 */
import { PeftcError } from '../errors.js';
import type { Node } from '../ir/graph.js';
import type { Model } from '../ir/model.js';
import { Tensor } from '../ir/tensor.js';
import { runPipeline, type PassReport } from '../../passes/pass.js';
import { qdqInsertion, type QdqInsertionReport } from '../../passes/qdq-insertion.js';
import { dynamicQuantization, type DynamicQuantReport } from '../../passes/dynamic-quant.js';
import { opsetUpgrade } from '../../passes/opset-upgrade.js';
import { qatWeightFolding, type QatReport } from '../../passes/qat-weights.js';
import { matmulBiasToGemm } from '../../passes/int8-gemm-bias.js';
import { smoothQuant, type SmoothQuantReport } from '../../passes/smooth-quant.js';
import { collectStatistics, type CollectedStats } from '../calibration/collect.js';
import { CALIB_METHODS, rangeFromHistogram, type CalibMethod } from '../calibration/methods.js';
import { matchInputData, readInputArrays, synthesizeInputs, type InputArrays, type InputData } from '../runtime/input-data.js';
import { paramsForRange, type Int8Type, type QuantParams } from './int8-math.js';
import { calibrationValues, CHAIN_OPS, COMPUTE_OPS, planInt8, type Int8Plan, type PlanOptions } from './int8-plan.js';
import { smoothingTargets, searchSmoothQuant, type SmoothQuantSearch } from './int8-smooth.js';
import { greedyMaxError, measureSensitivity, SensitivityModel, type KeptFloat, type QdqSensitivity } from './int8-sensitivity.js';

export type Int8Mode = 'static' | 'dynamic';
export type Int8Format = 'qdq' | 'qoperator';

export interface Int8Options {
  mode: Int8Mode;
  /** Static: how activation ranges are chosen (default minmax). */
  calibMethod?: CalibMethod;
  /** percentile method: the percentile kept on each side (default 99.999). */
  percentile?: number;
  /** Per output channel weight scales (default true). */
  perChannel?: boolean;
  /** Activations: uint8 asymmetric (default) or int8 symmetric. */
  activationType?: Int8Type;
  /** Output form: qdq (default) or qoperator (QLinear* ops written out). */
  format?: Int8Format;
  /** Node names kept float: '*'/'?' globs match whole names, plain text a substring. */
  exclude?: readonly string[];
  /** SmoothQuant: alpha in [0, 1], or 'search' to pick it on the calibration data. */
  smoothQuant?: number | 'search';
  /** Keep the most sensitive nodes float until the relative output error on the calibration data is at most this. */
  maxError?: number;
  /** Measure each node's error alone even without maxError. */
  sensitivity?: boolean;
  /** Calibration runs used to measure errors (sensitivity, smoothing search, the final error); default 2. */
  errorRuns?: number;
  /** Rows (samples) of each of those runs, when the inputs' leading axis is a free batch axis; default 4. */
  errorRows?: number;
  /** Compute ops (default Conv, MatMul, Gemm) and chain ops (default CHAIN_OPS; [] for none). */
  computeOps?: readonly string[];
  chainOps?: readonly string[];
  /** 'available' (default) or 'all' (every chain/pass-through op, as onnxruntime's quantize_static defaults do). */
  chainMode?: 'available' | 'all';
  /** Histogram bins per activation (default 8192). */
  bins?: number;
  log?: (message: string) => void;
  /** Progress bars on a terminal (default true). */
  progress?: boolean;
}

export interface TensorRange {
  name: string;
  min: number;
  max: number;
  lo: number;
  hi: number;
  scale: number;
  zeroPoint: number;
}

export interface Int8Report {
  mode: Int8Mode;
  format: Int8Format;
  calibration?: {
    method: CalibMethod;
    source: string;
    runs: number;
    samples: number;
    activations: number;
    statBytes: number;
    peakActivationBytes: number;
    /** Activation bytes that streamed through the statistics (none kept). */
    bytesSeen: number;
    sessionRuns: number;
    ms: number;
  };
  /** Static: the nodes quantized (name, op), the activations with their ranges. */
  nodes: Array<{ name: string; op: string }>;
  tensors: TensorRange[];
  /** Candidate nodes left float and why (excluded, kept for the error budget, shapes). */
  float: Array<{ node: string; op: string; reason: string }>;
  insertion?: QdqInsertionReport;
  dynamic?: DynamicQuantReport;
  qat?: QatReport;
  smoothQuant?: SmoothQuantReport & { search?: SmoothQuantSearch };
  /** The error each QDQ pair introduces alone on the error runs (relative L2 over the float outputs), worst first. */
  sensitivity?: QdqSensitivity[];
  /** With maxError: the steps that kept nodes float, in order, each with the error before and after. */
  keptFloat?: KeptFloat[];
  /** Relative L2 output error of the quantized model (fake-quant simulation) on the error runs. */
  error?: { relative: number; runs: number; budget?: number; met?: boolean };
  passes: PassReport[];
  ms: number;
}

/** An --exclude pattern: '*'/'?' globs match whole names, plain text a substring (weight-only quantization's rule). */
function matchesPattern(name: string, pattern: string): boolean {
  if (!/[*?]/.test(pattern)) return name.includes(pattern);
  const re = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`);
  return re.test(name);
}

/** Whether --exclude keeps a node float: a pattern matches the node's name or its constant weight's name. */
export function excludedBy(patterns: readonly string[], n: Node): boolean {
  const weight = n.inputs[1]?.isConstant ? n.inputs[1].name : undefined;
  return patterns.some((p) => matchesPattern(n.name, p) || (weight !== undefined && matchesPattern(weight, p)));
}

function validate(o: Int8Options): void {
  if (o.mode !== 'static' && o.mode !== 'dynamic') throw new PeftcError(`int8: mode '${String(o.mode)}' is neither static nor dynamic`);
  if (o.calibMethod !== undefined && !CALIB_METHODS.includes(o.calibMethod)) throw new PeftcError(`--calib-method ${o.calibMethod}: use ${CALIB_METHODS.join(', ')}`);
  if (o.smoothQuant !== undefined && o.smoothQuant !== 'search' && !(o.smoothQuant >= 0 && o.smoothQuant <= 1)) throw new PeftcError(`--smoothquant ${o.smoothQuant}: alpha must be in [0, 1] (or 'search')`);
  if (o.maxError !== undefined && !(o.maxError > 0)) throw new PeftcError(`--max-error ${o.maxError}: give a positive relative error (e.g. 0.05)`);
  if (o.activationType !== undefined && o.activationType !== 'uint8' && o.activationType !== 'int8') throw new PeftcError(`--activation-type ${o.activationType}: use uint8 or int8`);
  if (o.format !== undefined && o.format !== 'qdq' && o.format !== 'qoperator') throw new PeftcError(`--quant-format ${o.format}: use qdq or qoperator for int8`);
  if (o.mode === 'dynamic') {
    if (o.smoothQuant !== undefined) throw new PeftcError('--smoothquant applies to static int8 (--quant int8): dynamic int8 quantizes activations per run, outliers included');
    if (o.format === 'qoperator') throw new PeftcError('--quant-format: dynamic int8 is written as MatMulInteger (onnxruntime fuses it); qoperator applies to static int8');
  }
  if (o.percentile !== undefined && !(o.percentile > 50 && o.percentile <= 100)) throw new PeftcError(`--percentile ${o.percentile}: must be in (50, 100]`);
}

/**
 * The data static INT8 calibrates on: `--calib DATA` read by the one input-data rule, or, without
 * it, generated inputs (`samples`, seed 0) with a loud warning: ranges from random inputs are not
 * the ranges real data takes, and every activation range (so every scale) comes from them.
 */
export function int8CalibrationData(model: Model, calib: string | InputArrays | undefined, options: { samples?: number; dims?: Record<string, number>; log?: (m: string) => void } = {}): InputData {
  if (calib) {
    const data = matchInputData(typeof calib === 'string' ? readInputArrays(calib) : calib, model);
    for (const note of data.notes) options.log?.(`calibration: ${note}`);
    return data;
  }
  const samples = options.samples ?? 32;
  options.log?.(
    `WARNING: int8: no --calib DATA: activation ranges are calibrated on ${samples} GENERATED input samples (seed 0), not on real data; scales fitted to random inputs can cost much more accuracy than real calibration data would. Give --calib DATA (.npy for a single-input model, .npz keyed by input name).`,
  );
  return matchInputData(synthesizeInputs(model, { samples, seed: 0, ...(options.dims ? { dims: options.dims } : {}) }), model);
}

/** Quantizes `model` in place. `data`: calibration data (static needs it; dynamic uses it only to measure the error). */
export async function quantizeInt8(model: Model, data: InputData | undefined, options: Int8Options): Promise<Int8Report> {
  validate(options);
  const t0 = performance.now();
  const log = options.log ?? (() => {});
  const passes: PassReport[] = [];
  const run = (p: Parameters<typeof runPipeline>[1]) => passes.push(...runPipeline(model, p, { log }));
  const userExcluded = (n: Node) => excludedBy(options.exclude ?? [], n);
  const format = options.format ?? 'qdq';

  if (options.mode === 'dynamic') {
    const pass = dynamicQuantization({ perChannel: options.perChannel ?? true, exclude: userExcluded });
    const errData = data ? leadingRows(model, data, options.errorRows ?? 4) : undefined;
    const reference = errData && (options.maxError !== undefined || options.sensitivity) ? await SensitivityModel.referenceOutputs(model, errData, options.errorRuns ?? 2) : undefined;
    run([pass]);
    const report: Int8Report = { mode: 'dynamic', format, nodes: pass.report.nodes.map((n) => ({ name: n.node, op: n.op })), tensors: [], float: pass.report.skipped, dynamic: pass.report, passes, ms: 0 };
    if (reference && errData) {
      const relative = await SensitivityModel.errorOf(model, errData, reference);
      report.error = { relative, runs: reference.runs, ...(options.maxError !== undefined ? { budget: options.maxError, met: relative <= options.maxError } : {}) };
      log(`int8-dynamic: relative output error ${relative.toExponential(3)} on ${reference.runs} calibration run(s)`);
    }
    report.ms = performance.now() - t0;
    return report;
  }

  if (!data) throw new PeftcError('static int8 needs calibration data (give --calib DATA, or generated inputs)');
  if ((model.opsetVersion('') ?? 0) < 13) run([opsetUpgrade(13, { reason: 'for per-channel QuantizeLinear/DequantizeLinear' })]);
  const activationType = options.activationType ?? 'uint8';
  const method = options.calibMethod ?? 'minmax';

  // 1. QAT: fold weight Q/DQ pairs; nodes reading DequantizeLinear outputs are already quantized.
  const qat = qatWeightFolding();
  run([qat]);
  // Conv + BatchNormalization -> Conv (passes/fuse/conv-bn.ts): a BatchNormalization between a
  // quantized Conv and its Relu would leave a float op between DequantizeLinear and QuantizeLinear.
  if (model.graph.nodes.some((n) => n.opType === 'BatchNormalization')) {
    const { fusionPass } = await import('../../passes/fusion.js');
    run([fusionPass({ target: 'cpu', only: ['conv-bn'] })]);
  }
  run([matmulBiasToGemm({ exclude: userExcluded })]);
  const qatNodes = new Set<Node>();
  for (const n of model.graph.nodes) if (n.inputs.some((v) => v?.producer?.opType === 'DequantizeLinear') || n.outputs.some((v) => v?.uses.some((u) => u.node.opType === 'QuantizeLinear'))) qatNodes.add(n);
  if (qatNodes.size) log(`int8: ${qatNodes.size} node(s) already read or write QuantizeLinear/DequantizeLinear (a QAT graph): their trained scales are kept, they are not re-calibrated`);

  const planOptions = (exclude: (n: Node) => boolean): PlanOptions => ({
    computeOps: options.computeOps ?? COMPUTE_OPS,
    chainOps: options.chainOps ?? CHAIN_OPS,
    perChannel: options.perChannel ?? true,
    ...(options.chainMode ? { chainMode: options.chainMode } : {}),
    absorbActivations: (options.activationType ?? 'uint8') === 'uint8',
    exclude: (n) => qatNodes.has(n) || userExcluded(n) || exclude(n),
  });
  const errorRuns = Math.min(data.runs, options.errorRuns ?? 2);
  const errorData = leadingRows(model, data, options.errorRows ?? 4);

  // 2. SmoothQuant.
  let smoothReport: Int8Report['smoothQuant'];
  if (options.smoothQuant !== undefined) {
    const targets = smoothingTargets(model.graph, planOptions(() => false));
    if (!targets.length) log('smoothquant: no MatMul with a constant weight reads a computed activation; nothing to smooth');
    else {
      const stats = await collectStatistics(model, data, targets.map((t) => ({ name: t.activation, histogram: false, channels: t.channels })), { log, progress: options.progress, label: 'smoothquant statistics' });
      const maxima = new Map([...stats.channels].map(([k, v]) => [k, v.max]));
      let alpha: number;
      let search: SmoothQuantSearch | undefined;
      if (options.smoothQuant === 'search') {
        search = await searchSmoothQuant(model, errorData, maxima, { method, activationType, errorRuns, planOptions: planOptions(() => false), log, progress: options.progress ?? true, bins: options.bins });
        alpha = search.best;
      } else alpha = options.smoothQuant;
      const sq = smoothQuant({ maxima, alpha, targets });
      run([sq]);
      smoothReport = { ...sq.report, ...(search ? { search } : {}) };
    }
  }

  // 3. Plan and calibrate every activation any plan may quantize.
  const full = planInt8(model.graph, planOptions(() => false));
  const values = calibrationValues(model.graph, planOptions(() => false));
  log(`int8: ${full.units.length} node(s) to quantize, ${values.length} activation(s) to calibrate with ${method} on ${data.samples} sample(s) in ${data.runs} run(s) from ${data.path}`);
  const stats = await collectStatistics(model, data, values.map((name) => ({ name })), { log, progress: options.progress, bins: options.bins, ...(values.length ? {} : { maxRuns: 0 }) });
  const params = parameters(stats, { method, percentile: options.percentile, activationType, bounded: boundedOutputs(model) });

  // 4. Sensitivity and the error budget.
  let excluded = new Set<string>();
  let sensitivity: QdqSensitivity[] | undefined;
  let keptFloat: Int8Report['keptFloat'];
  let error: Int8Report['error'];
  if (options.maxError !== undefined || options.sensitivity) {
    const sim = await SensitivityModel.create(model, errorData, params.params, planOptions, { runs: errorRuns, log, activationType });
    try {
      sensitivity = await measureSensitivity(sim, full, { log, progress: options.progress ?? true });
      if (options.maxError !== undefined) {
        const g = await greedyMaxError(sim, full, sensitivity, options.maxError, { log });
        keptFloat = g.kept;
        excluded = g.excluded;
        error = { relative: g.error, runs: errorRuns, budget: options.maxError, met: g.error <= options.maxError };
      } else {
        error = { relative: await sim.error(new Set()), runs: errorRuns };
      }
    } finally {
      await sim.release();
    }
  }

  // 5. Insert.
  const plan = planInt8(model.graph, planOptions((n) => excluded.has(n.name)));
  const insertion = qdqInsertion({ plan, params: params.params });
  run([insertion]);
  if (format === 'qoperator') {
    const { qoperatorLowering } = await import('../../passes/qoperator.js');
    run([qoperatorLowering()]);
  }
  const report: Int8Report = {
    mode: 'static',
    format,
    calibration: {
      method,
      source: data.path,
      runs: stats.runs,
      samples: stats.samples,
      activations: values.length,
      statBytes: stats.statBytes,
      peakActivationBytes: stats.peakActivationBytes,
      bytesSeen: stats.bytesSeen,
      sessionRuns: stats.sessionRuns,
      ms: stats.ms,
    },
    nodes: plan.units.map((u) => ({ name: u.node.name, op: u.node.opType })),
    tensors: [...new Set(plan.tensors.values())].map((name) => params.ranges.get(name)!).filter(Boolean),
    float: [...plan.skipped, ...[...qatNodes].map((n) => ({ node: n.name, op: n.opType, reason: 'QAT: already quantized' }))].filter((s, i, all) => all.findIndex((x) => x.node === s.node) === i).map((s) => (excluded.has(s.node) ? { ...s, reason: 'kept float for --max-error' } : s)),
    insertion: insertion.report,
    ...(qat.report.folded || qat.report.biases || qat.report.dequantizeNodes ? { qat: qat.report } : {}),
    ...(smoothReport ? { smoothQuant: smoothReport } : {}),
    ...(sensitivity ? { sensitivity } : {}),
    ...(keptFloat ? { keptFloat } : {}),
    ...(error ? { error } : {}),
    passes,
    ms: performance.now() - t0,
  };
  return report;
}

/**
 * Activations whose range the op fixes: Softmax and Sigmoid outputs lie in [0, 1] whatever the
 * data, and clipping them (as entropy calibration does to the heavy mass near 0 of attention
 * probabilities) saturates exactly the large probabilities that matter; they keep [0, 1].
 */
export function boundedOutputs(model: Model): Map<string, [number, number]> {
  const out = new Map<string, [number, number]>();
  for (const n of model.graph.nodes) {
    if ((n.domain === '' || n.domain === 'ai.onnx') && (n.opType === 'Softmax' || n.opType === 'Sigmoid') && n.outputs[0]) out.set(n.outputs[0].name, [0, 1]);
  }
  return out;
}

/**
 * The data with each run cut to its first `rows` samples, when every fed input's leading axis is
 * a free (batch) dimension; otherwise the data as it is. Error measurements (sensitivity, the
 * SmoothQuant search) run many times over the same runs, so they use fewer samples.
 */
export function leadingRows(model: Model, data: InputData, rows: number): InputData {
  const inputs = model.graph.inputs.filter((v) => !v.initializer);
  const free = inputs.every((v) => v.type?.kind === 'tensor' && v.type.shape !== undefined && v.type.shape.length > 0 && v.type.shape[0]!.value === undefined);
  if (!free || !(rows > 0)) return data;
  return {
    ...data,
    path: `${data.path} (first ${rows} row(s) of each run)`,
    feed(run: number) {
      const feed = data.feed(run);
      const out: Record<string, Tensor> = {};
      for (const [k, t] of Object.entries(feed)) {
        if (t.dims.length === 0 || t.dims[0]! <= rows) out[k] = t;
        else {
          const bytes = t.bytes();
          const per = bytes.byteLength / t.dims[0]!;
          out[k] = Tensor.fromBytes(t.name, t.dtype, [rows, ...t.dims.slice(1)], bytes.subarray(0, rows * per));
        }
      }
      return out;
    },
  };
}

/** Quantization parameters of every calibrated activation from its statistics. */
export function parameters(
  stats: CollectedStats,
  o: { method: CalibMethod; percentile?: number; activationType: Int8Type; bounded?: ReadonlyMap<string, [number, number]> },
): { params: Map<string, QuantParams>; ranges: Map<string, TensorRange> } {
  const params = new Map<string, QuantParams>();
  const ranges = new Map<string, TensorRange>();
  const symmetric = o.activationType === 'int8';
  for (const [name, h] of stats.histograms) {
    const fixed = o.method !== 'minmax' ? o.bounded?.get(name) : undefined;
    const [lo, hi] = fixed ?? rangeFromHistogram(h, { method: o.method, ...(o.percentile !== undefined ? { percentile: o.percentile } : {}), type: o.activationType, symmetric });
    const p = paramsForRange(lo, hi, o.activationType, symmetric);
    params.set(name, p);
    ranges.set(name, { name, min: h.min, max: h.max, lo, hi, scale: p.scale, zeroPoint: p.zeroPoint });
  }
  return { params, ranges };
}

export type { Int8Plan };

/** The report as printed lines (the CLI's compile output). */
export function renderInt8Report(r: Int8Report): string[] {
  const lines: string[] = [];
  const byOp = new Map<string, number>();
  for (const n of r.nodes) byOp.set(n.op, (byOp.get(n.op) ?? 0) + 1);
  const ops = [...byOp].map(([op, c]) => `${op} ${c}`).join(', ');
  if (r.mode === 'dynamic') {
    lines.push(`int8-dynamic: ${r.nodes.length} node(s) with int8 weights, activations quantized at run time (${ops || 'none'}); ${r.float.length} left float`);
  } else {
    const c = r.calibration!;
    lines.push(`int8: ${r.nodes.length} node(s) quantized (${ops || 'none'}), ${r.tensors.length} activation range(s), format ${r.format}`);
    lines.push(`  calibration: ${c.method} on ${c.samples} sample(s) in ${c.runs} run(s) from ${c.source}: ${(c.ms / 1000).toFixed(1)} s, statistics ${(c.statBytes / 1024).toFixed(0)} KiB for ${(c.bytesSeen / 2 ** 20).toFixed(0)} MiB of activations`);
    if (r.qat) lines.push(`  QAT: ${r.qat.folded} weight(s) folded, ${r.qat.biases} bias(es) made int32, trained scales kept (${r.qat.dequantizeNodes} DequantizeLinear)`);
    if (r.smoothQuant) lines.push(`  SmoothQuant alpha ${r.smoothQuant.alpha}: ${r.smoothQuant.groups.length} activation(s) smoothed`);
  }
  for (const k of r.keptFloat ?? []) lines.push(`  kept float for '${k.tensor}': ${k.nodes.map((n) => `${n.node} (${n.op})`).join(', ')}: error ${k.errorBefore.toExponential(3)} -> ${k.errorAfter.toExponential(3)}`);
  if (r.error) lines.push(`  relative output error ${r.error.relative.toExponential(3)} on ${r.error.runs} calibration run(s)${r.error.budget !== undefined ? ` (budget ${r.error.budget}: ${r.error.met ? 'met' : 'NOT met'})` : ''}`);
  const excluded = r.float.filter((f) => f.reason === 'excluded').map((f) => f.node);
  if (excluded.length) lines.push(`  excluded (--exclude): ${excluded.join(', ')}`);
  return lines;
}

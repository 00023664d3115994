/**
 * Weight-only quantization: replaces constant float weights of MatMul, Gemm and (optionally)
 * Gather with blocked 4- or 8-bit integer or NF4 codes, quantized along the reduction axis.
 *
 * Rewrites (W: a float32/float16 initializer, not an overridable graph input; K the reduction axis):
 *  - MatMul(A, W[K, N])                  -> com.microsoft MatMulNBits(A, B, scales[, zero_points])
 *  - Gemm(A, B, C; alpha, beta, transB)  -> MatMulNBits(A, ...) with alpha folded into the weights,
 *                                           then Add(beta*C); transA=1 is left alone
 *  - Gather(T[V, D], idx), with `gather`  -> com.microsoft GatherBlockQuantized (blocks along D)
 *  - nf4: MatMul/Gemm -> com.microsoft MatMulBnb4 (quant_type 1) when the weight is float32 and K
 *    is a multiple of the block size; otherwise (and with format `qdq`) standard ops:
 *    DequantizeLinear(uint4 codes) -> Cast -> Gather(code book) -> Reshape -> Mul(block scales)
 *    -> Reshape [-> Slice] feeding the original MatMul/Gemm.
 *  - format `qdq`: the weight input becomes DequantizeLinear-21(int4/uint4/int8/uint8 data,
 *    scales[, zero points]; axis, block_size) (+ Cast when the scale type differs from the
 *    weight's); the consuming MatMul/Gemm/Gather stays. Needs default-domain opset >= 21.
 * Weights are quantized once per layout, even when several nodes share them; a weight that other
 * nodes still read in full precision stays for them.
 * With calibration Hessians (H = X^T X of each MatMul/Gemm input A, see src/quant/calibration.ts),
 * method 'gptq' runs GPTQ (src/quant/gptq.ts) on every matrix weight, with `scaleSearch` (rtn or
 * mse) choosing block scales; Gather tables fall back to that search. Any method given Hessians
 * reports each layer's relative output error ||X W - X W_q||^2 / ||X W||^2 = tr(D^T H D) / tr(W^T H W);
 * a weight read by several inputs uses the sum of their Hessians, and is quantized in one piece. Nodes or weights matching `exclude` patterns
 * are left alone. Per-layer weight error (RMSE, relative RMSE, max abs error) goes to ctx.log and to
 * `layers`; tensors quantize on worker threads, a bounded number in flight.
 *
 * Precondition: constants are initializers (run the cleanup pipeline first). Weights inside
 * subgraphs (If/Loop bodies) are not touched.
 */
import { totalmem } from 'node:os';
import { PeftcError } from '../src/errors.js';
import { DataType, dtypeName } from '../src/ir/dtype.js';
import type { Graph, Node, Value } from '../src/ir/graph.js';
import type { Model } from '../src/ir/model.js';
import { Tensor } from '../src/ir/tensor.js';
import { tensorType } from '../src/ir/types.js';
import type { Attribute } from '../src/ir/attribute.js';
import {
  DEFAULT_MSE_GRID,
  DEFAULT_MSE_MIN_SHRINK,
  type QuantConfig,
  type QuantMethod,
  type ScaleDtype,
} from '../src/quant/blockwise.js';
import {
  toFloat16Bits,
  type GatherTensors,
  type LayoutKind,
  type MatMulNBitsTensors,
  type Nf4StandardTensors,
  type PackedLayouts,
  type QdqTensors,
} from '../src/quant/layouts.js';
import { NF4_CODE_BOOK } from '../src/quant/nf4.js';
import { mergeLayouts, mergeStats, planParts } from '../src/quant/parts.js';
import type { GptqOptions } from '../src/quant/gptq.js';
import {
  applyAwqScales,
  awqSearch,
  groupWeightRows,
  hessianMagnitude,
  scaleHessian,
  type AwqGroup,
  type AwqGroupReport,
  type AwqOptions,
} from '../src/quant/awq.js';
import { sharedFloat64 } from '../src/quant/hessian.js';
import { defaultWorkerCount, runQuantTasks } from '../src/quant/pool.js';
import { SpillFile } from '../src/quant/spill.js';
import type { QuantizedSummary, QuantTask, QuantTaskResult } from '../src/quant/task.js';
import type { Pass, PassContext, PassResult } from './pass.js';

export type WeightQuantMode = 'int4' | 'int8' | 'nf4';
export type WeightQuantFormat = 'matmulnbits' | 'qdq';
export const WEIGHT_QUANT_METHODS = ['rtn', 'mse', 'gptq'] as const;
export type WeightQuantMethod = (typeof WEIGHT_QUANT_METHODS)[number];

export interface WeightQuantOptions {
  mode: WeightQuantMode;
  /** Default 'mse' (the best method that needs no data); 'gptq' needs `hessians`. */
  method?: WeightQuantMethod;
  /**
   * AWQ first (needs `hessians`): each group of layers that read one input gets its input channels
   * scaled by the activation-aware factors searched on the Hessians (src/quant/awq.ts), 1/s folded
   * into the op before; then `method` quantizes the scaled weights (--quant-method awq: mse;
   * awq+gptq: gptq). `true` or the search settings (grid, rows scored per weight).
   */
  awq?: boolean | Partial<AwqOptions>;
  /** awq: mean |x| per channel of each activation (keyed as `hessians`); without it, sqrt(diag(H)). */
  activationMeans?: ReadonlyMap<string, Float64Array>;
  /**
   * awq: values (by name) a caller holds computed copies of (layer-by-layer calibration): a fold
   * of 1/s may change a layer group's own input, never these on the way to it.
   */
  awqFixed?: (name: string) => boolean;
  /** Quantize only these weights (initializer names); the others are left as they are. */
  only?: ReadonlySet<string>;
  /** gptq: how block scales are chosen from the updated weights; default 'mse'. */
  scaleSearch?: QuantMethod;
  /** gptq: dampening, act-order, lazy batch size. */
  gptq?: Partial<GptqOptions>;
  /**
   * Calibration: H = X^T X ([K, K], float64) of each MatMul/Gemm data input, keyed by that input's
   * value name (calibrationTargets lists them). Read, never modified.
   */
  hessians?: ReadonlyMap<string, Float64Array>;
  /** Values per block along the reduction axis: a power of two in [16, 256]; default 32. */
  blockSize?: number;
  /** Integer modes: no zero points. Default false (asymmetric). */
  symmetric?: boolean;
  /** Default 'matmulnbits' (onnxruntime contrib ops); 'qdq' for standard ONNX ops only. */
  format?: WeightQuantFormat;
  /** MatMulNBits accuracy_level (0..4); 0 (default) leaves the attribute out: A is used as is. */
  accuracyLevel?: number;
  /** Type of the stored scales; 'auto' (default) is the weight's own type. */
  scaleDtype?: 'auto' | ScaleDtype;
  /** Node or weight names to keep in full precision: '*'/'?' globs match whole names, plain text a substring. */
  exclude?: readonly string[];
  /** Also quantize Gather tables (embeddings) along their last axis. Default false. */
  gather?: boolean;
  /** nf4: double-quantize the block scales. Default true. */
  doubleQuant?: boolean;
  /** Worker threads; 0 runs in this thread; default: one per core (src/quant/pool.ts) for jobs over 1M weights. */
  workers?: number;
  /** Weights per quantization task at most (larger weights are cut into parts); default: by thread count and `maxInFlightBytes`, at most 16M. */
  maxPartWeights?: number;
  /**
   * Bytes the parts being quantized may hold at once, all threads together (default 160 MiB):
   * parts are cut smaller as threads are added, and threads are capped where even parts of 256K
   * weights would not fit, so peak memory does not grow with the core count.
   */
  maxInFlightBytes?: number;
  /**
   * Quantized weights bound for external data (weights that were external) are written to a
   * temporary file as they are made (src/quant/spill.ts; removed when the process exits) instead
   * of being held in memory until the model is written: `false` keeps them in memory, a string
   * names the folder for the file (default: the system's temporary folder).
   */
  spill?: boolean | string;
  mseGrid?: number;
  mseMinShrink?: number;
}

export interface LayerQuantReport {
  /** The weight initializer. */
  weight: string;
  /** Nodes that now read the quantized weight. */
  nodes: string[];
  /** What the weight became (MatMulNBits, MatMulBnb4, DequantizeLinear, GatherBlockQuantized, NF4 Gather). */
  form: string;
  /** Quantized view: rows (output features / table rows) x cols (the blocked axis). */
  rows: number;
  cols: number;
  blockSize: number;
  /** Root mean square of (w - dequantized w). */
  rmse: number;
  /** rmse / root mean square of w. */
  relativeRmse: number;
  maxAbsError: number;
  /** With method 'mse' on integer modes: the rmse round-to-nearest would have given. */
  rtnRmse?: number;
  /** The method applied: rtn, mse or gptq (a Gather table under gptq gets the scale search). */
  method: WeightQuantMethod;
  /** With awq: the group's alpha, where 1/s went, and the input the group shares (method: what quantized the scaled weights). */
  awq?: { alpha: number; fold: string; activation: string };
  /** With calibration data: ||X W - X W_q||_F^2 / ||X W||_F^2 over the calibration inputs X. */
  outputError?: number;
  /** gptq: the same figure for rounding to nearest with the same scale search. */
  nearestOutputError?: number;
  bytesBefore: number;
  bytesAfter: number;
  ms: number;
}

export interface WeightQuantPass extends Pass {
  /** Per-layer report of the last run. */
  readonly layers: LayerQuantReport[];
  /** awq: per group (layers sharing one input) of the last run. */
  readonly awqGroups: AwqGroupReport[];
}

const MS_DOMAIN = 'com.microsoft';
const AUTO_WORKERS_MIN_ELEMENTS = 1 << 20;
/** Weights per quantization task at most (a larger weight is quantized in parts) ... */
const MAX_PART_WEIGHTS = 1 << 24;
/** ... and at least, when cutting for balance across threads. */
const MIN_PART_WEIGHTS = 1 << 20;
/**
 * Memory of the parts in flight, all threads together, by default: each part's source bytes, the
 * quantizer's float32 copy (the SIMD kernels' memory, which keeps its largest size per thread),
 * codes, scales and packed layouts. Measured on the quant-speed bench's 0.95B model (fp32, block
 * 32): about 10 bytes per weight in flight.
 */
export const DEFAULT_IN_FLIGHT_BYTES = 160 << 20;
const IN_FLIGHT_BYTES_PER_WEIGHT = 10;
/** Quantized tensors bound for external data from this size on are spilled to a temporary file. */
const SPILL_MIN_BYTES = 1 << 16;
/**
 * ArrayBuffers the worker threads may leave for the collector, all threads together: each thread
 * collects after a task once it holds more than its share (at least 24 MiB; src/quant/worker.ts).
 */
const DEAD_BUFFER_BYTES = 256 << 20;
/** Parts are never cut below this to fit the budget; threads are dropped instead. */
const MIN_MEMORY_PART_WEIGHTS = 1 << 18;
/** A quantization worker thread's own memory (its V8 isolate, modules and kernels), measured: about 15 MiB. */
const WORKER_THREAD_BYTES = 16 << 20;
/** Threads' own memory at most, by default (16 threads): with the parts in flight, under 1 GiB whatever the core count. */
export const DEFAULT_THREAD_BYTES = 256 << 20;

type ConsumerKind = 'matmul' | 'gemm' | 'gather';

interface Consumer {
  node: Node;
  kind: ConsumerKind;
}

interface Job {
  key: string;
  weight: Value;
  tensor: Tensor;
  /** Quantized view of the weight. */
  rows: number;
  cols: number;
  transpose: boolean;
  multiplier: number;
  /** 'gather': blocks along the last axis of a table; otherwise a matrix weight W[K, N]. */
  consumers: Consumer[];
  /** Calibration Hessian of the matrix consumers' inputs (summed over distinct inputs). */
  hessian?: Float64Array;
  /** The packed layouts the emitted forms read (decided before quantizing). */
  layouts: LayoutKind[];
}

function isDefaultDomain(n: Node): boolean {
  return n.domain === '' || n.domain === 'ai.onnx';
}

/** A glob ('*', '?') matches the whole name; plain text matches a substring. */
export function matchesPattern(name: string, pattern: string): boolean {
  if (!/[*?]/.test(pattern)) return name.includes(pattern);
  const re = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`);
  return re.test(name);
}

export function weightQuantization(options: WeightQuantOptions): WeightQuantPass {
  const layers: LayerQuantReport[] = [];
  const awqGroups: AwqGroupReport[] = [];
  return {
    name: 'weight-quant',
    description: `blocked ${options.mode} weight quantization of MatMul/Gemm${options.gather ? '/Gather' : ''} weights`,
    layers,
    awqGroups,
    run(model: Model, ctx: PassContext): PassResult {
      layers.length = 0;
      awqGroups.length = 0;
      return quantizeWeights(model, options, ctx, layers, awqGroups);
    },
  };
}

function validateOptions(o: WeightQuantOptions): void {
  if (!['int4', 'int8', 'nf4'].includes(o.mode)) throw new PeftcError(`weight quantization mode '${o.mode}' is unknown (int4, int8, nf4)`);
  const method = o.method ?? 'mse';
  if (!(WEIGHT_QUANT_METHODS as readonly string[]).includes(method)) {
    throw new PeftcError(
      `quantization method '${method}' is unknown: rtn and mse need no data, gptq needs calibration Hessians; AWQ is the 'awq' option, applied before any of them`,
    );
  }
  if (method === 'gptq' && !o.hessians) throw new PeftcError('quantization method gptq needs calibration data (--calib DATA)');
  if (o.awq && !o.hessians) throw new PeftcError('awq needs calibration data (--calib DATA)');
  const search = o.scaleSearch ?? 'mse';
  if (search !== 'rtn' && search !== 'mse') throw new PeftcError(`scale search '${search}' is unknown (rtn, mse)`);
  const bs = o.blockSize ?? 32;
  if (!(Number.isInteger(bs) && bs >= 16 && bs <= 256 && (bs & (bs - 1)) === 0)) {
    throw new PeftcError(`block size ${bs} is not supported: use a power of two from 16 to 256`);
  }
  const format = o.format ?? 'matmulnbits';
  if (format !== 'matmulnbits' && format !== 'qdq') throw new PeftcError(`quantization format '${format}' is unknown (matmulnbits, qdq)`);
  const acc = o.accuracyLevel ?? 0;
  if (!(Number.isInteger(acc) && acc >= 0 && acc <= 4)) throw new PeftcError(`accuracy level ${acc} is not one of 0..4`);
}

interface JobPlan {
  jobs: Map<string, Job>;
  excludedCount: number;
  skipped: number;
}

/**
 * The weights the pass will quantize (with their emitted forms decided), without quantizing
 * anything; refusals of the options happen here.
 */
function planJobs(model: Model, options: WeightQuantOptions, log: (m: string) => void): JobPlan {
  validateOptions(options);
  const graph = model.graph;
  const format = options.format ?? 'matmulnbits';
  const mode = options.mode;
  const blockSize = options.blockSize ?? 32;
  const opset = model.opsetVersion('') ?? 0;
  if (format === 'qdq' && opset < 21) {
    throw new PeftcError(
      `--quant-format qdq needs blocked DequantizeLinear with 4-bit types (default-domain opset 21); this model imports opset ${opset}. Use --quant-format matmulnbits, or raise the model to opset 21 first (passes/opset-upgrade.ts; peftc compile does so unless --opset asks for less)`,
    );
  }
  const exclude = options.exclude ?? [];
  const excluded = (node: Node, weight: Value) => exclude.some((p) => matchesPattern(node.name, p) || matchesPattern(weight.name, p));

  // 1. Find the weights and who reads them.
  const jobs = new Map<string, Job>();
  let excludedCount = 0;
  let skipped = 0;
  const skip = (why: string) => {
    skipped++;
    log(`weight-quant: ${why}`);
  };
  for (const node of graph.nodes) {
    if (!isDefaultDomain(node)) continue;
    let kind: ConsumerKind;
    let weight: Value | null | undefined;
    if (node.opType === 'MatMul') {
      kind = 'matmul';
      weight = node.inputs[1];
    } else if (node.opType === 'Gemm') {
      kind = 'gemm';
      weight = node.inputs[1];
    } else if (node.opType === 'Gather' && options.gather) {
      kind = 'gather';
      weight = node.inputs[0];
    } else continue;
    const tensor = weight?.initializer;
    if (!weight || !tensor || weight.isGraphInput) continue;
    if (options.only && !options.only.has(weight.name)) continue;
    if (tensor.dtype !== DataType.FLOAT && tensor.dtype !== DataType.FLOAT16) continue;
    if (tensor.dims.length !== 2 || tensor.dims[0] === 0 || tensor.dims[1] === 0) continue;
    if (excluded(node, weight)) {
      excludedCount++;
      log(`weight-quant: keeping '${weight.name}' in full precision for node '${node.name}' (--exclude)`);
      continue;
    }
    const [d0, d1] = tensor.dims as [number, number];
    let rows: number;
    let cols: number;
    let transpose: boolean;
    let multiplier = 1;
    if (kind === 'matmul') {
      [rows, cols, transpose] = [d1, d0, true];
    } else if (kind === 'gemm') {
      if (node.attrInt('transA', 0) !== 0) {
        skip(`Gemm '${node.name}' has transA=1; left in full precision`);
        continue;
      }
      const transB = node.attrInt('transB', 0) !== 0;
      [rows, cols, transpose] = transB ? [d0, d1, false] : [d1, d0, true];
      if (format === 'matmulnbits') multiplier = node.attrFloat('alpha', 1);
    } else {
      if (mode === 'nf4') {
        skip(`nf4 leaves Gather table '${weight.name}' alone (use int4 or int8 for embeddings)`);
        continue;
      }
      const axis = node.attrInt('axis', 0);
      if (axis !== 0 && axis !== -2) {
        skip(`Gather '${node.name}' gathers along axis ${axis}; only axis 0 tables are quantized`);
        continue;
      }
      [rows, cols, transpose] = [d0, d1, false];
    }
    const key = `${weight.name}\u0000${rows}x${cols}:${transpose}:${multiplier}`;
    let job = jobs.get(key);
    if (!job) {
      job = { key, weight, tensor, rows, cols, transpose, multiplier, consumers: [], layouts: [] };
      jobs.set(key, job);
    }
    job.consumers.push({ node, kind });
  }

  // 2. Decide each job's emitted form (and so the layouts to pack) and the scale types, so a
  //    refusal happens before any work.
  for (const [key, job] of jobs) {
    const matrix = job.consumers.some((c) => c.kind !== 'gather');
    const gather = job.consumers.some((c) => c.kind === 'gather');
    if (mode === 'nf4') {
      if (format === 'matmulnbits' && job.tensor.dtype === DataType.FLOAT && job.cols % blockSize === 0) job.layouts = ['bnb4'];
      else if (opset >= 21) job.layouts = ['nf4'];
      else {
        skip(
          `kept '${job.weight.name}' in full precision: NF4 with standard ops needs opset 21 (uint4), the model has ${opset}${format === 'matmulnbits' ? ' (MatMulBnb4 needs a float32 weight with K a multiple of the block size)' : ''}`,
        );
        jobs.delete(key);
      }
    } else if (format === 'matmulnbits') {
      job.layouts = [...(matrix ? (['matmulnbits'] as const) : []), ...(gather ? (['gather'] as const) : [])];
    } else {
      job.layouts = [job.transpose ? 'qdq0' : 'qdq1'];
    }
  }
  const scaleDtypeOf = (t: Tensor): ScaleDtype => {
    const want = options.scaleDtype ?? 'auto';
    return want === 'auto' ? (t.dtype === DataType.FLOAT16 ? 'float16' : 'float32') : want;
  };
  for (const job of jobs.values()) {
    const weightScale: ScaleDtype = job.tensor.dtype === DataType.FLOAT16 ? 'float16' : 'float32';
    if (format === 'matmulnbits' && scaleDtypeOf(job.tensor) !== weightScale) {
      throw new PeftcError(
        `--quant-format matmulnbits keeps scales in the weight's type (${dtypeName(job.tensor.dtype)}); ${scaleDtypeOf(job.tensor)} scales need --quant-format qdq`,
      );
    }
  }
  return { jobs, excludedCount, skipped };
}

/** A MatMul/Gemm data input whose calibration Hessian the pass can use. */
export interface CalibrationTarget {
  /** The value name (key of WeightQuantOptions.hessians). */
  activation: string;
  /** Its last axis: the reduction axis K of the weights it meets. */
  k: number;
  /** Element type of the weights it meets (the activation's type). */
  dtype: DataType;
  /** The weights it feeds. */
  weights: string[];
}

/** The inputs A of every MatMul/Gemm whose weight the pass would quantize with these options. */
export function calibrationTargets(model: Model, options: WeightQuantOptions): CalibrationTarget[] {
  const { jobs } = planJobs(model, { ...options, method: 'rtn', awq: false }, () => {});
  const out = new Map<string, CalibrationTarget>();
  for (const job of jobs.values()) {
    for (const c of job.consumers) {
      const a = c.kind === 'gather' ? null : c.node.inputs[0];
      if (!a) continue;
      let t = out.get(a.name);
      if (!t) out.set(a.name, (t = { activation: a.name, k: job.cols, dtype: job.tensor.dtype, weights: [] }));
      if (!t.weights.includes(job.weight.name)) t.weights.push(job.weight.name);
    }
  }
  return [...out.values()];
}

/** The quantizer's settings for a weight tensor (block scales chosen by `search`). */
function quantConfigFor(options: WeightQuantOptions, t: Tensor, search: QuantMethod): QuantConfig {
  const want = options.scaleDtype ?? 'auto';
  return {
    format: options.mode === 'nf4' ? 'nf4' : 'int',
    bits: options.mode === 'int8' ? 8 : 4,
    blockSize: options.blockSize ?? 32,
    symmetric: options.mode === 'nf4' ? true : (options.symmetric ?? false),
    method: search,
    scaleDtype: want === 'auto' ? (t.dtype === DataType.FLOAT16 ? 'float16' : 'float32') : want,
    mseGrid: options.mseGrid ?? DEFAULT_MSE_GRID,
    mseMinShrink: options.mseMinShrink ?? DEFAULT_MSE_MIN_SHRINK,
    doubleQuant: options.doubleQuant ?? true,
  };
}

/**
 * AWQ before quantization (src/quant/awq.ts): for every group of weights that read one input with
 * a calibration Hessian, searches the per-channel scales, scales the weights and folds 1/s into
 * the op before (or inserts a Mul). Groups go from the last input to the first, so a fold into an
 * earlier layer's weights (down_proj's scales into up_proj) lands before that layer's own search
 * reads them. Returns the Hessians as the scaled layers now see their inputs.
 */
function runAwq(model: Model, options: WeightQuantOptions, ctx: PassContext, reports: AwqGroupReport[], byWeight: Map<string, AwqGroupReport>): Map<string, Float64Array> {
  const hessians = new Map(options.hessians!);
  // The search scores the quantizer the weights will get: rtn or the mse search (GPTQ: its block scale search).
  const search: QuantMethod = options.method === 'rtn' ? 'rtn' : options.method === 'gptq' ? (options.scaleSearch ?? 'mse') : 'mse';
  const awqOptions: Partial<AwqOptions> = typeof options.awq === 'object' ? options.awq : {};
  const done = new Set<Value>();
  const graph = model.graph;
  for (;;) {
    // Re-planned after every group: a fold may have given a weight a new value.
    const { jobs } = planJobs(model, { ...options, method: 'rtn' }, () => {});
    const position = new Map(graph.nodes.map((n, i) => [n, i]));
    const groups = new Map<Value, AwqGroup>();
    for (const job of jobs.values()) {
      const matrix = job.consumers.filter((c) => c.kind !== 'gather');
      const inputs = new Set(matrix.map((c) => c.node.inputs[0]!));
      // A weight read by a Gather too, or by layers with different inputs, cannot be scaled for one input.
      if (!matrix.length || matrix.length !== job.consumers.length || inputs.size !== 1) continue;
      const x = [...inputs][0]!;
      if (done.has(x) || !hessians.has(x.name)) continue;
      let g = groups.get(x);
      if (!g) groups.set(x, (g = { activation: x, k: job.cols, weights: [] }));
      g.weights.push({ weight: job.weight, rows: job.rows, cols: job.cols, transpose: job.transpose, multiplier: job.multiplier, consumers: matrix.map((c) => c.node) });
    }
    if (!groups.size) break;
    const pos = (v: Value) => (v.producer ? position.get(v.producer)! : -1);
    const group = [...groups.values()].reduce((a, b) => (pos(b.activation) > pos(a.activation) ? b : a));
    done.add(group.activation);
    const k = group.k;
    const h = hessians.get(group.activation.name)!;
    if (h.length !== k * k) throw new PeftcError(`calibration Hessian of '${group.activation.name}' is ${h.length} values, expected ${k} x ${k}`);
    const means = options.activationMeans?.get(group.activation.name);
    const magnitude = means ?? hessianMagnitude(h, k);
    const t0 = performance.now();
    const weights = group.weights.map((w) => ({ values: groupWeightRows(w), rows: w.rows }));
    const result = awqSearch(weights, k, h, magnitude, quantConfigFor(options, group.weights[0]!.weight.initializer!, search), awqOptions);
    const applied = applyAwqScales(graph, group, result.scales, options.awqFixed ? (v) => options.awqFixed!(v.name) : undefined);
    const scaled = scaleHessian(h, k, applied.inverse);
    hessians.set(group.activation.name, scaled);
    if (applied.input !== group.activation) {
      hessians.set(applied.input.name, scaled);
      done.add(applied.input);
    }
    const report: AwqGroupReport = {
      activation: group.activation.name,
      input: applied.input.name,
      weights: group.weights.map((w) => w.weight.name),
      alpha: result.alpha,
      loss: result.loss,
      plainLoss: result.plainLoss,
      fold: applied.fold,
      inverse: applied.inverse,
      activationChanged: applied.activationChanged,
    };
    reports.push(report);
    for (const w of report.weights) byWeight.set(w, report);
    ctx.log(
      `weight-quant: awq ${report.weights.join(', ')} (input '${report.activation}', ${means ? 'mean |x|' : 'rms'}): alpha ${result.alpha.toFixed(2)}, output error ${result.loss.toExponential(3)} vs ${result.plainLoss.toExponential(3)} unscaled; 1/s into ${applied.fold} (${(performance.now() - t0).toFixed(0)} ms)`,
    );
  }
  return hessians;
}

function quantizeWeights(model: Model, options: WeightQuantOptions, ctx: PassContext, layers: LayerQuantReport[], awqGroups: AwqGroupReport[]): PassResult {
  const awqByWeight = new Map<string, AwqGroupReport>();
  if (options.awq) {
    validateOptions(options);
    options = { ...options, hessians: runAwq(model, options, ctx, awqGroups, awqByWeight) };
  }
  const { jobs, excludedCount, skipped: planSkipped } = planJobs(model, options, (m) => ctx.log(m));
  let skipped = planSkipped;
  const skip = (why: string) => {
    skipped++;
    ctx.log(`weight-quant: ${why}`);
  };
  const graph = model.graph;
  const blockSize = options.blockSize ?? 32;
  const method = options.method ?? 'mse';
  // Calibration Hessians per weight: the sum over the distinct inputs of its matrix consumers.
  // Tasks get them in shared memory (several weights may read one; none is copied per task).
  const sharedCopies = new Map<Float64Array, Float64Array>();
  const shared = (h: Float64Array): Float64Array => {
    if (h.buffer instanceof SharedArrayBuffer) return h;
    let c = sharedCopies.get(h);
    if (!c) sharedCopies.set(h, (c = sharedFloat64(h.length))), c.set(h);
    return c;
  };
  if (options.hessians) {
    for (const job of jobs.values()) {
      const inputs = [...new Set(job.consumers.filter((c) => c.kind !== 'gather').map((c) => c.node.inputs[0]?.name ?? ''))];
      const hs = inputs.map((name) => options.hessians!.get(name));
      if (!hs.length || hs.some((h) => !h)) {
        if (hs.length) ctx.log(`weight-quant: no calibration data reached '${job.weight.name}' (input ${inputs.find((_, i) => !hs[i])}); ${method === 'gptq' ? 'rounding it without GPTQ' : 'no output error for it'}`);
        continue;
      }
      for (const [i, h] of hs.entries()) {
        if (h!.length !== job.cols * job.cols) throw new PeftcError(`calibration Hessian of '${inputs[i]}' is ${h!.length} values, expected ${job.cols} x ${job.cols} (the weight '${job.weight.name}')`);
      }
      if (hs.length === 1) job.hessian = shared(hs[0]!);
      else {
        const sum = sharedFloat64(job.cols * job.cols);
        for (const h of hs) for (let i = 0; i < sum.length; i++) sum[i]! += h![i]!;
        job.hessian = sum;
      }
      // Input channels the calibration data never activates have H[j][j] = 0. GPTQ (as the paper's
      // reference code does) sets their weights to 0: right for the data given, wrong for inputs
      // that do use them. Say so, with how many, so thin calibration data shows.
      const k = job.cols;
      let dead = 0;
      for (let j = 0; j < k; j++) if (job.hessian[j * k + j] === 0) dead++;
      if (dead === k) {
        throw new PeftcError(`calibration data: every input of '${job.weight.name}' is zero on all of it; calibrate with representative inputs`);
      }
      if (dead > 0 && method === 'gptq') {
        ctx.log(`weight-quant: warning: ${dead} of ${k} input channels of '${job.weight.name}' are zero on all calibration data; GPTQ sets their weights to 0 (calibrate with more representative data, or --quant-method mse)`);
      }
    }
  }

  const config = (t: Tensor): QuantConfig => quantConfigFor(options, t, method === 'gptq' ? (options.scaleSearch ?? 'mse') : method);

  // A table that a Gather also reads (a tied embedding with --quant-embeddings) is one set of
  // codes for both uses; GPTQ would fit it to the matrix use's inputs, which the Gather never sees,
  // so such a weight takes the data-free search instead (logged).
  const gptqJob = (job: Job) => method === 'gptq' && job.hessian !== undefined && job.consumers.every((c) => c.kind !== 'gather');
  if (method === 'gptq') {
    for (const job of jobs.values()) {
      if (job.hessian !== undefined && job.consumers.some((c) => c.kind === 'gather') && job.consumers.some((c) => c.kind !== 'gather')) {
        ctx.log(`weight-quant: ${job.tensor.name} is also a Gather table: quantized with ${options.scaleSearch ?? 'mse'} scales, not GPTQ`);
      }
    }
  }

  // 3. Quantize (worker threads, large weights in parts) and rewrite as weights complete.
  const jobList = [...jobs.values()];
  const totalElements = jobList.reduce((s, j) => s + j.rows * j.cols, 0);
  const autoWorkers = totalElements >= AUTO_WORKERS_MIN_ELEMENTS && (jobList.length > 1 || totalElements > MAX_PART_WEIGHTS) ? defaultWorkerCount() : 0;
  let workers = options.workers ?? autoWorkers;
  // A GPTQ task holds its weight whole along K with about three K x K float64 matrices (the
  // Hessian's working copies and its inverse factor): bound the threads so that all of them
  // together stay within a quarter of the machine's memory.
  const gptqBytes = Math.max(0, ...jobList.filter(gptqJob).map((j) => 3 * j.cols * j.cols * 8 + j.rows * j.cols * 12));
  if (workers > 1 && gptqBytes > 0) {
    const cap = Math.max(1, Math.floor(totalmem() / 4 / gptqBytes));
    if (cap < workers) {
      ctx.log(`weight-quant: GPTQ tasks take up to ${(gptqBytes / 2 ** 20).toFixed(0)} MiB each: ${cap} worker thread(s) instead of ${workers}`);
      workers = cap;
    }
  }
  // Memory: the parts in flight (one per thread) share a budget, so memory does not grow with the
  // thread count; where even small parts would not fit, fewer threads.
  const inFlight = options.maxInFlightBytes ?? DEFAULT_IN_FLIGHT_BYTES;
  if (workers > 1 && options.workers === undefined) {
    const cap = Math.max(1, Math.floor(DEFAULT_THREAD_BYTES / WORKER_THREAD_BYTES));
    if (cap < workers) {
      ctx.log(`weight-quant: ${workers} cores; ${cap} worker threads (each thread takes about ${WORKER_THREAD_BYTES >> 20} MiB of its own)`);
      workers = cap;
    }
  }
  if (workers > 1 && options.maxPartWeights === undefined) {
    const cap = Math.max(1, Math.floor(inFlight / (MIN_MEMORY_PART_WEIGHTS * IN_FLIGHT_BYTES_PER_WEIGHT)));
    if (cap < workers) {
      ctx.log(`weight-quant: ${workers} threads would hold more than ${(inFlight / 2 ** 20).toFixed(0)} MiB of weights in flight: ${cap} worker thread(s)`);
      workers = cap;
    }
  }
  const memoryPart = Math.max(MIN_MEMORY_PART_WEIGHTS, Math.floor(inFlight / (Math.max(1, workers) * IN_FLIGHT_BYTES_PER_WEIGHT)));
  // Parts small enough to spread the work over the threads (a few per thread) and to fit the
  // memory budget, never over 16M weights.
  const maxPart =
    options.maxPartWeights ??
    (workers > 0 ? Math.min(MAX_PART_WEIGHTS, memoryPart, Math.max(MIN_PART_WEIGHTS, Math.ceil(totalElements / (workers * 3)))) : Math.min(MAX_PART_WEIGHTS, memoryPart));
  const plans = jobList.map((job) => {
    const nf4RowsCut = job.layouts.includes('nf4') && !job.transpose;
    // With a Hessian the reduction axis stays whole (GPTQ and the output error couple all of K);
    // rows are independent, so row cuts stay.
    const parts = job.transpose && job.hessian
      ? [{ start: 0, end: job.cols }]
      : job.transpose
      ? planParts(job.cols, 2 * blockSize, job.rows, maxPart)
      : nf4RowsCut
        ? [{ start: 0, end: job.rows }]
        : planParts(job.rows, 256, job.cols, maxPart);
    return { job, parts, cut: (job.transpose ? 'cols' : 'rows') as 'cols' | 'rows' };
  });
  const taskOwner: Array<{ job: number; part: number }> = [];
  plans.forEach((p, j) => p.parts.forEach((_, i) => taskOwner.push({ job: j, part: i })));
  const emitter = new Emitter(model, graph, options, ctx);
  const tasks = function* (): Generator<QuantTask> {
    let id = 0;
    for (const { job, parts } of plans) {
      const slicer = sourceSlicer(job.tensor, workers > 0);
      // Bytes per unit of the cut: a row of W[K, N] for K cuts, a row of the weight otherwise.
      const unitBytes = (job.transpose ? job.rows : job.cols) * (job.tensor.dtype === DataType.FLOAT ? 4 : 2);
      for (const part of parts) {
        const len = part.end - part.start;
        yield {
          id: id++,
          name: job.weight.name,
          dtype: job.tensor.dtype as typeof DataType.FLOAT | typeof DataType.FLOAT16,
          rows: job.transpose ? job.rows : len,
          cols: job.transpose ? len : job.cols,
          transpose: job.transpose,
          multiplier: job.multiplier,
          source: slicer(part.start * unitBytes, part.end * unitBytes),
          config: config(job.tensor),
          layouts: job.layouts,
          ...(job.hessian ? { hessian: job.hessian } : {}),
          ...(gptqJob(job) ? { gptq: options.gptq ?? {} } : {}),
          ...(workers > 0 ? { collectAboveBytes: Math.max(24 << 20, Math.floor(DEAD_BUFFER_BYTES / workers)) } : {}),
        };
      }
    }
  };
  let quantized = 0;
  const t0 = performance.now();
  const emit = (j: number, results: QuantTaskResult[]) => {
    const { job, cut } = plans[j]!;
    const failed = results.find((r) => !r.result || !r.layouts);
    if (failed) {
      skip(`kept '${job.weight.name}' in full precision: ${failed.error}`);
      return;
    }
    const summaries = results.map((r) => r.result!);
    const first = summaries[0]!;
    const q: QuantizedSummary = {
      ...first,
      rows: job.rows,
      cols: job.cols,
      blocks: Math.ceil(job.cols / first.blockSize),
      stats: mergeStats(summaries.map((s) => s.stats)),
    };
    const layouts = mergeLayouts(
      results.map((r) => r.layouts!),
      summaries.map((s) => ({ rows: s.rows, cols: s.cols, blocks: s.blocks })),
      cut,
      first.bits,
    );
    const group = awqByWeight.get(job.weight.name);
    const applied: WeightQuantMethod = method === 'gptq' && !gptqJob(job) ? (options.scaleSearch ?? 'mse') : method;
    const report = emitter.emit(job, q, layouts, results.reduce((a, r) => a + r.ms, 0), applied);
    if (group) report.awq = { alpha: group.alpha, fold: group.fold, activation: group.activation };
    quantized++;
    layers.push(report);
    const rtn = report.rtnRmse !== undefined ? ` (rtn rmse ${report.rtnRmse.toExponential(3)})` : '';
    const out =
      report.outputError !== undefined
        ? `; output error ${report.outputError.toExponential(3)}${report.nearestOutputError !== undefined ? ` (without gptq ${report.nearestOutputError.toExponential(3)})` : ''}`
        : '';
    ctx.log(
      `weight-quant: ${report.weight} (${report.nodes.join(', ')}) [${report.rows}x${report.cols}] -> ${report.form} ${applied}: rmse ${report.rmse.toExponential(3)}, relative ${report.relativeRmse.toExponential(3)}, max abs ${report.maxAbsError.toExponential(3)}${rtn}${out}`,
    );
  };
  // Results arrive in completion order; weights are rewritten in job order, so the model written is
  // the same whatever the thread count (parts that come early wait, packed, in `done`).
  const done: Array<QuantTaskResult[] | undefined> = plans.map(() => undefined);
  let next = 0;
  const run = runQuantTasks(tasks(), { workers: Math.min(workers, taskOwner.length) }, (r: QuantTaskResult) => {
    const { job, part } = taskOwner[r.id]!;
    (done[job] ??= [])[part] = r;
    while (next < plans.length && done[next]?.filter(Boolean).length === plans[next]!.parts.length) {
      emit(next, done[next]!);
      done[next++] = undefined;
    }
  });
  const ms = performance.now() - t0;

  // 4. Weights nothing reads any more go.
  for (const job of jobList) {
    const w = job.weight;
    if (w.uses.length === 0 && !w.isGraphOutput && graph.localValue(w.name) === w) graph.deleteValue(w);
  }
  emitter.finish();

  const bytesBefore = layers.reduce((s, l) => s + l.bytesBefore, 0);
  const bytesAfter = layers.reduce((s, l) => s + l.bytesAfter, 0);
  const rel = layers.map((l) => l.relativeRmse);
  const worst = layers.reduce<LayerQuantReport | undefined>((w, l) => (!w || l.relativeRmse > w.relativeRmse ? l : w), undefined);
  const details: Record<string, number | string> = {
    quantized,
    excluded: excludedCount,
    skipped,
    workers: run.workers,
    bytesBefore,
    bytesAfter,
    quantizeMs: Math.round(ms),
  };
  const outErr = layers.filter((l) => l.outputError !== undefined).map((l) => l.outputError!);
  if (outErr.length) details.meanOutputError = Number((outErr.reduce((a, b) => a + b, 0) / outErr.length).toPrecision(4));
  if (rel.length) {
    details.meanRelativeRmse = Number((rel.reduce((a, b) => a + b, 0) / rel.length).toPrecision(4));
    details.worstLayer = `${worst!.weight} (${worst!.relativeRmse.toPrecision(4)})`;
  }
  return { changed: quantized > 0, details };
}

/**
 * A function giving a task's source for a byte range of the tensor: a file range a worker reads
 * itself (external data without a checksum), or bytes the task owns (a private copy when a worker
 * will take them; the tensor's bytes are read once per weight).
 */
function sourceSlicer(t: Tensor, forWorker: boolean): (begin: number, end: number) => QuantTask['source'] {
  if (t.source.kind === 'external' && forWorker && t.source.ref.checksum === undefined) {
    const ref = t.source.ref;
    return (begin, end) => ({ kind: 'file', path: ref.path, offset: ref.offset + begin, length: end - begin });
  }
  let bytes: Uint8Array | undefined;
  return (begin, end) => {
    bytes ??= t.bytes();
    const slice = bytes.subarray(begin, end);
    return { kind: 'bytes', bytes: forWorker ? new Uint8Array(slice) : slice };
  };
}

/** Builds the quantized forms in the graph. */
class Emitter {
  private usesMsDomain = false;
  private usesInt4 = false;

  constructor(
    private readonly model: Model,
    private readonly graph: Graph,
    private readonly options: WeightQuantOptions,
    private readonly ctx: PassContext,
  ) {}

  finish(): void {
    this.spill?.close();
    if (this.usesMsDomain && this.model.opsetVersion(MS_DOMAIN) === undefined) this.model.opsetImports.push({ domain: MS_DOMAIN, version: 1 });
    // int4/uint4 tensors exist from IR version 10 on; later IR versions read earlier models as is.
    if (this.usesInt4 && this.model.irVersion < 10) {
      this.ctx.log(`weight-quant: IR version ${this.model.irVersion} -> 10 (int4/uint4 initializers)`);
      this.model.irVersion = 10;
    }
  }

  /** Rewrites the job's consumers with the packed layouts; returns the layer report. */
  emit(job: Job, q: QuantizedSummary, l: PackedLayouts, ms: number, method: WeightQuantMethod): LayerQuantReport {
    this.newBytes = 0;
    const nodes: string[] = [];
    const external = job.tensor.prefersExternal;
    const matrixConsumers = job.consumers.filter((c) => c.kind !== 'gather');
    const gatherConsumers = job.consumers.filter((c) => c.kind === 'gather');
    const forms = new Set<string>();

    if (l.bnb4) {
      const B = this.initializer(`${job.weight.name}_NF4`, DataType.UINT8, [l.bnb4.B.length], l.bnb4.B, external);
      const absmax = this.floatInitializer(`${job.weight.name}_absmax`, 'float32', [l.bnb4.absmax.length], l.bnb4.absmax, external);
      for (const c of matrixConsumers) this.replaceWithFused(job, c, 'MatMulBnb4', [B, absmax], { K: q.cols, N: q.rows, block_size: q.blockSize, quant_type: 1 }, nodes);
      forms.add('MatMulBnb4');
    }
    if (l.nf4) {
      const w = this.nf4Standard(job, q, l.nf4, external, matrixConsumers[0]!.node);
      for (const c of matrixConsumers) this.useDequantized(job, c, w, nodes);
      forms.add('NF4 Gather+Mul');
    }
    if (l.matmulnbits) {
      const init = this.matMulNBitsInitializers(job, q, l.matmulnbits, external);
      const attrs: Record<string, number> = { K: q.cols, N: q.rows, bits: q.bits, block_size: q.blockSize };
      if ((this.options.accuracyLevel ?? 0) > 0) attrs.accuracy_level = this.options.accuracyLevel!;
      for (const c of matrixConsumers) this.replaceWithFused(job, c, 'MatMulNBits', [init.B, init.scales, init.zeroPoints], attrs, nodes);
      forms.add('MatMulNBits');
    }
    if (l.gather) {
      const init = this.gatherInitializers(job, q, l.gather, external);
      for (const c of gatherConsumers) {
        const n = c.node;
        const attrs: Record<string, number> = { gather_axis: 0, quantize_axis: 1, block_size: q.blockSize };
        if (q.bits === 8) attrs.bits = 8;
        const fused = this.insertNode('GatherBlockQuantized', [init.data, n.inputs[1]!, init.scales, init.zeroPoints], attrs, n, MS_DOMAIN, n.name);
        this.moveOutput(n, fused);
        nodes.push(fused.name);
      }
      forms.add('GatherBlockQuantized');
    }
    const qdq = l.qdq0 ?? l.qdq1;
    if (qdq) {
      // The weight keeps its own layout: [K, N] blocked along axis 0, or [N, K] / [V, D] along axis 1.
      const w = this.dequantizeLinear(job, q, qdq, l.qdq0 ? 0 : 1, external, job.consumers[0]!.node);
      for (const c of job.consumers) this.useDequantized(job, c, w, nodes, false);
      forms.add('DequantizeLinear');
    }
    const form = [...forms].join('+');
    const bytesAfter = this.newBytes;
    const s = q.stats;
    const rms = Math.sqrt(s.sumSquares / s.count);
    const rmse = Math.sqrt(s.sse / s.count);
    return {
      weight: job.weight.name,
      nodes,
      form,
      rows: q.rows,
      cols: q.cols,
      blockSize: q.blockSize,
      rmse,
      relativeRmse: rms > 0 ? rmse / rms : 0,
      maxAbsError: s.maxAbs,
      ...(s.rtnSse !== undefined ? { rtnRmse: Math.sqrt(s.rtnSse / s.count) } : {}),
      method,
      ...(s.outputSse !== undefined && s.outputNorm !== undefined ? { outputError: s.outputNorm > 0 ? s.outputSse / s.outputNorm : 0 } : {}),
      ...(s.nearestOutputSse !== undefined && s.outputNorm !== undefined ? { nearestOutputError: s.outputNorm > 0 ? s.nearestOutputSse / s.outputNorm : 0 } : {}),
      bytesBefore: job.tensor.byteLength,
      bytesAfter,
      ms,
    };
  }

  private newBytes = 0;

  private spill: SpillFile | undefined;

  private initializer(base: string, dtype: DataType, dims: number[], bytes: Uint8Array, external: boolean): Value {
    const name = this.graph.uniqueName(base);
    if (dtype === DataType.INT4 || dtype === DataType.UINT4) this.usesInt4 = true;
    // Weights bound for external data (a large model) go to a temporary file as they are made, so
    // the quantized model does not accumulate in memory before it is written.
    const spill = external && this.options.spill !== false && bytes.byteLength >= SPILL_MIN_BYTES;
    const t = spill
      ? (this.spill ??= new SpillFile(typeof this.options.spill === 'string' ? this.options.spill : undefined)).tensor(name, dtype, dims, bytes)
      : external
        ? Tensor.deferred(name, dtype, dims, () => bytes, true)
        : Tensor.fromBytes(name, dtype, dims, bytes);
    this.newBytes += t.byteLength;
    return this.graph.addInitializer(t);
  }

  private floatInitializer(base: string, dtype: ScaleDtype, dims: number[], values: Float32Array, external: boolean): Value {
    const arr = dtype === 'float16' ? toFloat16Bits(values) : values;
    return this.initializer(base, dtype === 'float16' ? DataType.FLOAT16 : DataType.FLOAT, dims, new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength), external);
  }

  private matMulNBitsInitializers(job: Job, q: QuantizedSummary, l: MatMulNBitsTensors, external: boolean): { B: Value; scales: Value; zeroPoints: Value | null } {
    const base = job.weight.name;
    return {
      B: this.initializer(`${base}_Q${q.bits}`, DataType.UINT8, [q.rows, q.blocks, l.blobSize], l.B, external),
      scales: this.floatInitializer(`${base}_scales`, q.scaleDtype, [q.rows, q.blocks], l.scales, external),
      zeroPoints: l.zeroPoints ? this.initializer(`${base}_zero_points`, DataType.UINT8, [q.rows, l.zpBytesPerRow], l.zeroPoints, external) : null,
    };
  }

  private gatherInitializers(job: Job, q: QuantizedSummary, l: GatherTensors, external: boolean): { data: Value; scales: Value; zeroPoints: Value | null } {
    const base = job.weight.name;
    // 8-bit: uint8 codes (zero point 128 when absent); 4-bit: int4 (zero point 0 when absent) or uint4.
    const dtype = q.bits === 8 ? DataType.UINT8 : l.signed ? DataType.INT4 : DataType.UINT4;
    return {
      data: this.initializer(`${base}_Q${q.bits}`, dtype, [q.rows, q.cols], l.data, external),
      scales: this.floatInitializer(`${base}_scales`, q.scaleDtype, [q.rows, q.blocks], l.scales, external),
      zeroPoints: l.zeroPoints ? this.initializer(`${base}_zero_points`, dtype, [q.rows, q.blocks], l.zeroPoints, external) : null,
    };
  }

  /** DequantizeLinear-21 of the weight in its own layout; returns the float weight value (Cast when needed). */
  private dequantizeLinear(job: Job, q: QuantizedSummary, l: QdqTensors, axis: 0 | 1, external: boolean, before: Node): Value {
    const base = job.weight.name;
    const dataType = q.bits === 4 ? (l.signed ? DataType.INT4 : DataType.UINT4) : l.signed ? DataType.INT8 : DataType.UINT8;
    const data = this.initializer(`${base}_Q${q.bits}`, dataType, l.dims, l.data, external);
    const scales = this.floatInitializer(`${base}_scales`, q.scaleDtype, l.scaleDims, l.scales, external);
    const zp = l.zeroPoints ? this.initializer(`${base}_zero_points`, dataType, l.scaleDims, l.zeroPoints, external) : null;
    const scaleType = q.scaleDtype === 'float16' ? DataType.FLOAT16 : DataType.FLOAT;
    const dq = this.insertNode('DequantizeLinear', [data, scales, zp], { axis, block_size: q.blockSize }, before, '', this.graph.uniqueName(`${base}_DequantizeLinear`));
    const out = this.newOutput(dq, `${base}_dequantized`, scaleType, l.dims);
    return this.castTo(out, job.tensor.dtype, l.dims, before);
  }

  /** NF4 with standard ops: returns the float weight W[K, N] (K unpadded). */
  private nf4Standard(job: Job, q: QuantizedSummary, l: Nf4StandardTensors, external: boolean, before: Node): Value {
    const base = job.weight.name;
    const N = q.rows;
    const K = q.cols;
    const nb = q.blocks;
    const bs = q.blockSize;
    const wType = job.tensor.dtype;
    const sType: ScaleDtype = q.scaleDtype;
    const i64 = (name: string, vals: number[]) => this.initializer(name, DataType.INT64, [vals.length], new Uint8Array(BigInt64Array.from(vals, BigInt).buffer), false);
    const codes = this.initializer(`${base}_NF4`, DataType.UINT4, [l.paddedK, N], l.codes, external);
    const one = this.floatInitializer(`${base}_NF4_unit`, 'float32', [], Float32Array.of(1), false);
    const book = this.floatInitializer(`${base}_NF4_code_book`, wType === DataType.FLOAT16 ? 'float16' : 'float32', [16], NF4_CODE_BOOK, false);
    const name = (s: string) => this.graph.uniqueName(`${base}_${s}`);
    // Codes as numbers (DequantizeLinear with scale 1), then as indices.
    const idxF = this.newOutput(this.insertNode('DequantizeLinear', [codes, one], {}, before, '', name('NF4_codes')), `${base}_NF4_codes_f`, DataType.FLOAT, [l.paddedK, N]);
    const idx = this.newOutput(this.insertNode('Cast', [idxF], { to: DataType.INT32 }, before, '', name('NF4_index')), `${base}_NF4_index`, DataType.INT32, [l.paddedK, N]);
    const values = this.newOutput(this.insertNode('Gather', [book, idx], { axis: 0 }, before, '', name('NF4_lookup')), `${base}_NF4_values`, wType, [l.paddedK, N]);
    const blocked = this.newOutput(this.insertNode('Reshape', [values, i64(`${base}_NF4_blocked_shape`, [nb, bs, N])], {}, before, '', name('NF4_blocks')), `${base}_NF4_blocked`, wType, [nb, bs, N]);
    let scales: Value;
    if (l.scaleCodes && l.scaleGroupScales) {
      const sq = this.initializer(`${base}_absmax_Q8`, DataType.UINT8, [nb, 1, N], l.scaleCodes, external);
      const s2 = this.floatInitializer(`${base}_absmax_scales`, sType, [nb, 1, Math.ceil(N / 256)], l.scaleGroupScales, external);
      const dq = this.insertNode('DequantizeLinear', [sq, s2], { axis: 2, block_size: 256 }, before, '', name('absmax_DequantizeLinear'));
      scales = this.newOutput(dq, `${base}_absmax`, sType === 'float16' ? DataType.FLOAT16 : DataType.FLOAT, [nb, 1, N]);
    } else {
      scales = this.floatInitializer(`${base}_absmax`, sType, [nb, 1, N], l.scales, external);
    }
    scales = this.castTo(scales, wType, [nb, 1, N], before);
    const scaled = this.newOutput(this.insertNode('Mul', [blocked, scales], {}, before, '', name('NF4_scale')), `${base}_NF4_scaled`, wType, [nb, bs, N]);
    let w = this.newOutput(
      this.insertNode('Reshape', [scaled, i64(`${base}_NF4_padded_shape`, [l.paddedK, N])], {}, before, '', name('NF4_matrix')),
      `${base}_NF4_padded`,
      wType,
      [l.paddedK, N],
    );
    if (l.paddedK !== K) {
      const slice = this.insertNode('Slice', [w, i64(`${base}_NF4_starts`, [0]), i64(`${base}_NF4_ends`, [K]), i64(`${base}_NF4_axes`, [0])], {}, before, '', name('NF4_unpad'));
      w = this.newOutput(slice, `${base}_NF4_dequantized`, wType, [K, N]);
    }
    return w;
  }

  private castTo(v: Value, to: DataType, dims: number[], before: Node): Value {
    const from = v.type?.kind === 'tensor' ? v.type.elemType : undefined;
    if (from === to) return v;
    const cast = this.insertNode('Cast', [v], { to }, before, '', this.graph.uniqueName(`${v.name}_Cast`));
    return this.newOutput(cast, `${v.name}_cast`, to, dims);
  }

  /** Points a consumer at a dequantized float weight (for Gemm: W[K, N] when `kn`, else B's own layout). */
  private useDequantized(job: Job, c: Consumer, w: Value, nodes: string[], kn = true): void {
    const n = c.node;
    if (c.kind === 'gather') n.setInput(0, w);
    else {
      n.setInput(1, w);
      if (c.kind === 'gemm') {
        if (kn && n.attrInt('transB', 0) !== 0) n.setAttribute('transB', { type: 'int', value: 0n });
        if (job.multiplier !== 1) n.setAttribute('alpha', { type: 'float', value: 1 });
      }
    }
    nodes.push(n.name);
  }

  /** Replaces a MatMul/Gemm by a fused quantized matmul (plus the Gemm's C term). */
  private replaceWithFused(job: Job, c: Consumer, op: string, weights: Array<Value | null>, attrs: Record<string, number>, nodes: string[]): void {
    const n = c.node;
    const fused = this.insertNode(op, [n.inputs[0]!, ...trimNulls(weights)], attrs, n, MS_DOMAIN, n.name);
    nodes.push(fused.name);
    const cInput = c.kind === 'gemm' ? n.inputs[2] : null;
    if (!cInput) {
      this.moveOutput(n, fused);
      return;
    }
    // Gemm: Y = alpha*A*B (alpha is in the weights) + beta*C.
    const beta = n.attrFloat('beta', 1);
    const outType = n.outputs[0]!.type;
    const partial = this.graph.createValue(this.graph.uniqueName(`${n.name || job.weight.name}_matmul`), outType ? { ...outType } : undefined);
    fused.setOutput(0, partial);
    let term = cInput;
    if (beta !== 1) {
      const elem = job.tensor.dtype; // Gemm's C has the type of A and B
      const b = this.floatInitializer(`${n.name || job.weight.name}_beta`, elem === DataType.FLOAT16 ? 'float16' : 'float32', [], Float32Array.of(beta), false);
      const mul = this.insertNode('Mul', [cInput, b], {}, n, '', this.graph.uniqueName(`${n.name}_beta_mul`));
      term = this.newOutput(mul, `${n.name || job.weight.name}_beta_c`, elem, undefined);
    }
    const add = this.insertNode('Add', [partial, term], {}, n, '', this.graph.uniqueName(`${n.name}_bias_add`));
    this.moveOutput(n, add);
  }

  private insertNode(op: string, inputs: Array<Value | null>, attrs: Record<string, number>, before: Node, domain: string, name: string): Node {
    if (domain === MS_DOMAIN) this.usesMsDomain = true;
    const attributes: Attribute[] = Object.entries(attrs).map(([k, v]) => ({ name: k, type: 'int', value: BigInt(v) }));
    return this.graph.addNode(op, inputs, [''], { domain, name, attributes, before });
  }

  private newOutput(node: Node, base: string, dtype: DataType, dims: number[] | undefined): Value {
    const v = this.graph.createValue(this.graph.uniqueName(base), tensorType(dtype, dims));
    node.setOutput(0, v);
    return v;
  }

  /** The old node's output becomes the new node's; the old node goes. */
  private moveOutput(old: Node, replacement: Node): void {
    const y = old.outputs[0]!;
    old.setOutput(0, null);
    replacement.setOutput(0, y);
    this.graph.removeNode(old, true);
  }
}

/** Optional trailing inputs may be left out; inner ones stay as empty (null) inputs. */
function trimNulls(vals: Array<Value | null>): Array<Value | null> {
  const out = [...vals];
  while (out.length && out[out.length - 1] === null) out.pop();
  return out;
}

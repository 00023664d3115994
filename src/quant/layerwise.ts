/**
 * Layer-by-layer calibration and quantization: peak memory is one layer input's Hessian (and the
 * weights that read it), whatever the model's depth, instead of every layer's Hessian at once.
 *
 * The layer inputs (the activations A of the quantized MatMul/Gemm nodes, from
 * calibrationTargets) are taken in the order of their first reader in the graph. For each one:
 *  1. the nodes before its first reader that have not run yet (a segment) are cut out as a model of
 *     their own and run on onnxruntime over every calibration run, fed by the graph inputs and by
 *     the values earlier segments left for later nodes (kept per run; a value goes once nothing
 *     left to run reads it);
 *  2. H = X^T X of the activation (and its mean |x| per channel, for AWQ) is accumulated from what
 *     the segments left;
 *  3. the weights that read it are quantized by the weight-quant pass restricted to them (`only`),
 *     with AWQ first when asked; a fold of 1/s into a producer that already ran is applied to the
 *     activation's kept values too, so what follows sees the model as it now is;
 *  4. its Hessian is dropped.
 * So the activations of layer i + 1 come from the model with layers <= i already quantized (as in
 * GPTQ's reference code, which quantizes a block, then runs it to make the next block's inputs).
 *
 * A weight read by several inputs (tied layers) is quantized after the last of them, with the sum
 * of their Hessians (the earlier ones are kept until then). Graphs with control flow (If/Loop/Scan
 * bodies) are not cut: use captureHessians and the weight-quant pass instead.
 */
import { availableParallelism } from 'node:os';
import { PeftcError } from '../errors.js';
import { DataType, dtypeName, float16BitsToFloat32, float32ToFloat16Bits } from '../ir/dtype.js';
import { Graph, type Node, type Value } from '../ir/graph.js';
import { Model } from '../ir/model.js';
import { Tensor } from '../ir/tensor.js';
import { tensorType } from '../ir/types.js';
import { OrtSession } from '../runtime/ort.js';
import { runPipeline, type PassReport } from '../../passes/pass.js';
import { calibrationTargets, weightQuantization, type LayerQuantReport, type WeightQuantOptions } from '../../passes/weight-quant.js';
import type { AwqGroupReport } from './awq.js';
import type { CalibrationData } from './calibration.js';
import { accumulateAbs, accumulateHessian, mirrorUpper, sharedFloat64 } from './hessian.js';

export interface LayerwiseOptions extends Omit<WeightQuantOptions, 'hessians' | 'activationMeans' | 'only'> {
  /**
   * Hessian bytes alive at once at most (one layer input's K x K float64, plus the inputs of a
   * tied weight waiting for its last input); a step that needs more is refused before any of it is
   * gathered. Default: no limit.
   */
  maxHessianBytes?: number;
  /** AWQ's activation magnitude: sqrt(diag(H)), the root mean square per channel ('rms', default), or mean |x| ('mean-abs', the paper's). */
  awqMagnitude?: 'mean-abs' | 'rms';
  /** onnxruntime intra-op threads for the segments (default: one per core). */
  intraOpThreads?: number;
  log?: (message: string) => void;
  /** Run the IR invariant checker after each quantization step. */
  check?: boolean;
  /** Sees each layer input's Hessian as gathered (before any AWQ scaling of that input), for tests and reports. */
  onHessian?: (activation: string, h: Float64Array, rows: number) => void;
}

export interface LayerwiseResult {
  layers: LayerQuantReport[];
  awqGroups: AwqGroupReport[];
  /** Layer inputs captured (one step each). */
  activations: number;
  /** Segments cut out and run, and onnxruntime runs made (segments x calibration runs). */
  segments: number;
  sessionRuns: number;
  /** Largest Hessian bytes alive at once, and what capturing all at once would have held. */
  peakHessianBytes: number;
  allHessianBytes: number;
  /** Largest bytes of activations kept between segments (all calibration runs together). */
  peakCacheBytes: number;
  calibrationMs: number;
  quantizeMs: number;
  /** The weight-quant pass runs of every step summed into one report (pass 'weight-quant (layer by layer)'). */
  report: PassReport;
}

const CONTROL_FLOW = new Set(['If', 'Loop', 'Scan']);

let half: Float32Array | undefined;
const halfToFloat = (h: number) => (half ??= Float32Array.from({ length: 65536 }, (_, i) => float16BitsToFloat32(i)))[h]!;

const tensorBytes = (t: Tensor) => t.byteLength;

/**
 * Runs a model piecewise: `advanceTo(name)` runs every node that has not run yet and comes before
 * the first reader of `name`, and returns that value for every calibration run.
 */
export class SegmentRunner {
  private readonly executed = new Set<Node>();
  /** Values computed so far that nodes not yet run still read: one tensor per calibration run. */
  readonly cache = new Map<string, Tensor[]>();
  segments = 0;
  sessionRuns = 0;
  peakCacheBytes = 0;

  constructor(
    private readonly model: Model,
    private readonly data: CalibrationData,
    private readonly threads: number,
  ) {}

  private get graph(): Graph {
    return this.model.graph;
  }

  /** The value's tensors per run: graph inputs from the data, computed values from the segments. */
  async advanceTo(name: string): Promise<Tensor[]> {
    const g = this.graph;
    const v = g.localValue(name);
    if (!v) throw new PeftcError(`internal: layerwise: no value '${name}' in the main graph`);
    if (v.isGraphInput || (!v.producer && v.initializer)) {
      return Array.from({ length: this.data.runs }, (_, r) => this.data.feed(r)[name] ?? v.initializer!);
    }
    const firstReader = Math.min(...v.uses.filter((u) => u.node.graph === g).map((u) => g.nodes.indexOf(u.node)));
    const segment = g.nodes.slice(0, firstReader).filter((n) => !this.executed.has(n));
    if (segment.length) await this.run(segment);
    const got = this.cache.get(name);
    if (!got) throw new PeftcError(`internal: layerwise: '${name}' was not computed by the nodes before its first reader`);
    return got;
  }

  /** Multiplies the kept values of `name` by `factor` along the last axis (a fold changed the value in the graph). */
  scaleCached(name: string, factor: Float32Array): void {
    const ts = this.cache.get(name);
    if (!ts) throw new PeftcError(`internal: layerwise: '${name}' is not kept`);
    const k = factor.length;
    this.cache.set(
      name,
      ts.map((t) => {
        if (t.dtype === DataType.FLOAT) {
          const x = Float32Array.from(t.toTypedArray<Float32Array>());
          for (let i = 0; i < x.length; i++) x[i] = x[i]! * factor[i % k]!;
          return Tensor.fromTypedArray(t.name, t.dtype, t.dims, x);
        }
        if (t.dtype === DataType.FLOAT16) {
          const x = t.toTypedArray<Uint16Array>();
          const y = Uint16Array.from(x, (b, i) => float32ToFloat16Bits(halfToFloat(b) * factor[i % k]!));
          return Tensor.fromTypedArray(t.name, t.dtype, t.dims, y);
        }
        throw new PeftcError(`layerwise: cannot rescale kept ${dtypeName(t.dtype)} activation '${name}'`);
      }),
    );
  }

  private async run(segment: Node[]): Promise<void> {
    const g = this.graph;
    const inSegment = new Set(segment);
    for (const n of segment) {
      if (CONTROL_FLOW.has(n.opType) || n.subgraphs().length) {
        throw new PeftcError(`layerwise calibration: node '${n.name}' (${n.opType}) holds a subgraph; graphs with control flow are calibrated whole (capture all Hessians, then quantize)`);
      }
    }
    // The segment's inputs: what its nodes read that they do not compute and that is not a constant.
    const inputs: Value[] = [];
    const constants: Value[] = [];
    const seen = new Set<Value>();
    const produced = new Set<Value>();
    for (const n of segment) {
      for (const v of n.inputs) {
        if (!v || seen.has(v) || produced.has(v)) continue;
        seen.add(v);
        if (v.initializer && !v.isGraphInput) constants.push(v);
        else if (v.isGraphInput && v.initializer && !(v.name in this.data.feed(0))) constants.push(v);
        else inputs.push(v);
      }
      for (const o of n.outputs) if (o) produced.add(o);
    }
    for (const v of inputs) {
      if (!v.isGraphInput && !this.cache.has(v.name)) throw new PeftcError(`internal: layerwise: segment input '${v.name}' was not kept`);
    }
    // Its outputs: what it computes that nodes not yet run read.
    const later = (n: Node) => !inSegment.has(n) && !this.executed.has(n);
    const outputs = [...produced].filter((v) => v.uses.some((u) => later(u.node)));
    if (!outputs.length) {
      for (const n of segment) this.executed.add(n);
      return;
    }
    // Types of the inputs from the values fed: a dimension is fixed where every run agrees.
    const first = this.data.feed(0);
    const typeOf = (v: Value) => {
      const kept = this.cache.get(v.name);
      const t = kept?.[0] ?? first[v.name];
      if (!t) return v.type;
      const dims: Array<number | null> = [...t.dims];
      for (const o of kept ?? []) o.dims.forEach((d, i) => dims[i] !== d && (dims[i] = null));
      if (!kept && this.data.runs > 1) dims.forEach((_, i) => (dims[i] = v.type?.kind === 'tensor' && v.type.shape?.[i]?.value !== undefined ? dims[i]! : null));
      return tensorType(t.dtype, dims);
    };
    const sub = new Model();
    sub.irVersion = this.model.irVersion;
    sub.opsetImports = this.model.opsetImports.map((o) => ({ ...o }));
    sub.functions = this.model.functions;
    sub.producerName = 'peftc-layerwise';
    const sg = sub.graph;
    sg.name = `segment_${this.segments}`;
    const map = new Map<Value, Value>();
    for (const v of inputs) {
      const nv = sg.createValue(v.name, typeOf(v));
      sg.inputs.push(nv);
      map.set(v, nv);
    }
    for (const v of constants) {
      const nv = sg.addInitializer(v.initializer!);
      nv.type = v.type;
      map.set(v, nv);
    }
    for (const n of segment) {
      const node = sg.addNode(
        n.opType,
        n.inputs.map((v) => (v ? map.get(v)! : null)),
        n.outputs.map((o) => o?.name ?? ''),
        { domain: n.domain, name: n.name, attributes: n.attributes },
      );
      n.outputs.forEach((o, i) => {
        if (!o) return;
        const nv = node.outputs[i]!;
        nv.type = o.type;
        map.set(o, nv);
      });
    }
    sg.outputs = outputs.map((v) => map.get(v)!);
    const session = await OrtSession.create(sub, { label: `layerwise calibration segment ${this.segments} (nodes '${segment[0]!.name}' .. '${segment.at(-1)!.name}')`, intraOpThreads: this.threads });
    this.segments++;
    const results = outputs.map(() => [] as Tensor[]);
    try {
      for (let r = 0; r < this.data.runs; r++) {
        const feed = this.data.feed(r);
        const feeds: Record<string, Tensor> = {};
        for (const v of inputs) feeds[v.name] = this.cache.get(v.name)?.[r] ?? feed[v.name]!;
        const out = await session.run(feeds, outputs.map((v) => v.name));
        this.sessionRuns++;
        outputs.forEach((v, i) => results[i]!.push(out[v.name]!));
      }
    } finally {
      await session.release();
    }
    for (const n of segment) this.executed.add(n);
    outputs.forEach((v, i) => this.cache.set(v.name, results[i]!));
    this.forgetUnread();
    let bytes = 0;
    for (const ts of this.cache.values()) for (const t of ts) bytes += tensorBytes(t);
    this.peakCacheBytes = Math.max(this.peakCacheBytes, bytes);
  }

  /** Drops kept values that no node left to run reads. */
  forgetUnread(): void {
    const g = this.graph;
    for (const name of [...this.cache.keys()]) {
      const v = g.localValue(name);
      if (!v || !v.uses.some((u) => !this.executed.has(u.node))) this.cache.delete(name);
    }
  }
}

/** Accumulates H = X^T X (and sum |x| when `sums`) over the per-run tensors of one activation; returns the row count. */
function accumulate(h: Float64Array, sums: Float64Array | undefined, k: number, tensors: readonly Tensor[], name: string): number {
  let rows = 0;
  for (const t of tensors) {
    if (t.dims[t.dims.length - 1] !== k) throw new PeftcError(`layerwise calibration: activation '${name}' has shape [${t.dims.join(', ')}]; its last axis should be ${k}`);
    const r = t.elementCount / k;
    if (t.dtype === DataType.FLOAT) {
      const x = t.toTypedArray<Float32Array>();
      accumulateHessian(h, k, x, r);
      if (sums) accumulateAbs(sums, k, x);
    } else if (t.dtype === DataType.FLOAT16) {
      const x = t.toTypedArray<Uint16Array>();
      accumulateHessian(h, k, x, r, halfToFloat);
      if (sums) accumulateAbs(sums, k, x, halfToFloat);
    } else throw new PeftcError(`activation '${name}' is ${dtypeName(t.dtype)}; calibration reads float32/float16 activations`);
    rows += r;
  }
  mirrorUpper(h, k);
  for (let i = 0; i < k; i++) if (!Number.isFinite(h[i * k + i]!)) throw new PeftcError(`activation '${name}' holds non-finite values on the calibration data`);
  return rows;
}

/**
 * Calibrates and quantizes `model` in place, one layer input at a time (see the file comment).
 * `options` are the weight-quant pass's (method gptq, awq, ...), without Hessians: those are
 * gathered here.
 */
export async function quantizeLayerwise(model: Model, data: CalibrationData, options: LayerwiseOptions): Promise<LayerwiseResult> {
  const log = options.log ?? (() => {});
  const { maxHessianBytes, awqMagnitude, intraOpThreads, log: _log, check, onHessian, ...passOptions } = options;
  const graph = model.graph;
  const targets = calibrationTargets(model, passOptions);
  for (const t of targets) {
    if (t.dtype !== DataType.FLOAT && t.dtype !== DataType.FLOAT16) throw new PeftcError(`activation '${t.activation}' is ${dtypeName(t.dtype)}; calibration reads float32/float16 activations`);
  }
  // Order: by the first reader of each activation.
  const position = new Map(graph.nodes.map((n, i) => [n, i]));
  const firstReader = (name: string) => Math.min(...graph.localValue(name)!.uses.map((u) => position.get(u.node) ?? Infinity));
  const order = [...targets].sort((a, b) => firstReader(a.activation) - firstReader(b.activation));
  // A weight is quantized at the step of the last input that reads it.
  const lastStep = new Map<string, number>();
  order.forEach((t, i) => t.weights.forEach((w) => lastStep.set(w, i)));
  const keepUntil = order.map((t) => Math.max(...t.weights.map((w) => lastStep.get(w)!)));
  const allHessianBytes = order.reduce((a, t) => a + t.k * t.k * 8, 0);

  // The Hessian bytes alive at each step are known from the plan: refuse before any work.
  if (maxHessianBytes !== undefined) {
    for (let step = 0; step < order.length; step++) {
      const t = order[step]!;
      const bytes = t.k * t.k * 8;
      let live = bytes;
      for (let j = 0; j < step; j++) if (keepUntil[j]! >= step) live += order[j]!.k * order[j]!.k * 8;
      if (live > maxHessianBytes) {
        throw new PeftcError(
          `layerwise calibration: '${t.activation}' needs ${(bytes / 2 ** 20).toFixed(1)} MiB of Hessian (${t.k} x ${t.k} float64)${live > bytes ? ` besides ${((live - bytes) / 2 ** 20).toFixed(1)} MiB kept for tied weights` : ''}, over the limit of ${(maxHessianBytes / 2 ** 20).toFixed(1)} MiB (--hessian-memory); raise the limit or --exclude the layers that read it`,
        );
      }
    }
  }
  const runner = new SegmentRunner(model, data, intraOpThreads ?? availableParallelism());
  const kept = new Map<string, { h: Float64Array; means?: Float64Array; until: number }>();
  const layers: LayerQuantReport[] = [];
  const awqGroups: AwqGroupReport[] = [];
  let peakHessianBytes = 0;
  let calibrationMs = 0;
  let quantizeMs = 0;
  const nodesBefore = graph.nodes.length;
  let passMs = 0;
  let changed = false;
  const wantMeans = !!passOptions.awq && (awqMagnitude ?? 'rms') === 'mean-abs';
  log(
    `layerwise: ${order.length} layer input(s), ${(allHessianBytes / 2 ** 20).toFixed(1)} MiB of Hessians in all, at most ${(Math.max(0, ...order.map((t) => t.k * t.k * 8)) / 2 ** 20).toFixed(1)} MiB of them at once`,
  );
  for (let step = 0; step < order.length; step++) {
    const t = order[step]!;
    const bytes = t.k * t.k * 8;
    const live = [...kept.values()].reduce((a, e) => a + e.h.byteLength, 0) + bytes;
    if (maxHessianBytes !== undefined && live > maxHessianBytes) {
      throw new PeftcError(
        `layerwise calibration: '${t.activation}' needs ${(bytes / 2 ** 20).toFixed(1)} MiB of Hessian (${t.k} x ${t.k} float64)${live > bytes ? ` besides ${((live - bytes) / 2 ** 20).toFixed(1)} MiB kept for tied weights` : ''}, over the limit of ${(maxHessianBytes / 2 ** 20).toFixed(1)} MiB`,
      );
    }
    const t0 = performance.now();
    const xs = await runner.advanceTo(t.activation);
    const h = sharedFloat64(t.k * t.k);
    const sums = wantMeans ? new Float64Array(t.k) : undefined;
    const rows = accumulate(h, sums, t.k, xs, t.activation);
    onHessian?.(t.activation, h, rows);
    peakHessianBytes = Math.max(peakHessianBytes, live);
    kept.set(t.activation, { h, ...(sums ? { means: sums.map((s) => (rows > 0 ? s / rows : 0)) } : {}), until: keepUntil[step]! });
    const now = t.weights.filter((w) => lastStep.get(w) === step);
    const t1 = performance.now();
    calibrationMs += t1 - t0;

    if (now.length) {
      const hessians = new Map([...kept].map(([name, e]) => [name, e.h]));
      const means = new Map([...kept].filter(([, e]) => e.means).map(([name, e]) => [name, e.means!]));
      const pass = weightQuantization({
        ...passOptions,
        hessians,
        ...(means.size ? { activationMeans: means } : {}),
        only: new Set(now),
        awqFixed: (name) => runner.cache.has(name),
      });
      for (const rep of runPipeline(model, [pass], { log, check })) {
        passMs += rep.ms;
        changed ||= rep.changed;
      }
      layers.push(...pass.layers);
      for (const g of pass.awqGroups) {
        awqGroups.push(g);
        // The activation itself changed (1/s went into a producer that already ran): so do its kept values.
        if (g.activationChanged && runner.cache.has(g.activation)) runner.scaleCached(g.activation, g.inverse);
      }
    }
    for (const [name, e] of kept) if (e.until <= step) kept.delete(name);
    runner.forgetUnread();
    quantizeMs += performance.now() - t1;
    log(`layerwise: ${step + 1}/${order.length} '${t.activation}' (${rows} rows, K ${t.k}): ${now.length} weight(s) quantized`);
  }
  // Tables read only by Gather (--quant-embeddings) have no layer input to calibrate on: they are
  // quantized at the end, without a Hessian (the pass gives them the scale search).
  if (passOptions.gather) {
    const pass = weightQuantization({ ...passOptions, awq: false, hessians: new Map() });
    for (const rep of runPipeline(model, [pass], { log, check })) {
      passMs += rep.ms;
      changed ||= rep.changed;
    }
    layers.push(...pass.layers);
  }
  return {
    layers,
    awqGroups,
    activations: order.length,
    segments: runner.segments,
    sessionRuns: runner.sessionRuns,
    peakHessianBytes,
    allHessianBytes,
    peakCacheBytes: runner.peakCacheBytes,
    calibrationMs,
    quantizeMs,
    report: {
      pass: 'weight-quant (layer by layer)',
      iteration: 0,
      changed,
      nodesBefore,
      nodesAfter: graph.nodes.length,
      ms: calibrationMs + quantizeMs,
      details: {
        layerInputs: order.length,
        weights: layers.length,
        awqGroups: awqGroups.length,
        segments: runner.segments,
        sessionRuns: runner.sessionRuns,
        peakHessianMiB: Number((peakHessianBytes / 2 ** 20).toFixed(1)),
        allHessianMiB: Number((allHessianBytes / 2 ** 20).toFixed(1)),
        calibrationMs: Math.round(calibrationMs),
        quantizeMs: Math.round(passMs),
      },
    },
  };
}

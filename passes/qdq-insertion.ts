/**
 * QDQ insertion: writes a static INT8 plan (src/quant/int8-plan.ts) into the graph in the QDQ form
 * onnxruntime's CPU provider fuses into integer kernels (QLinearConv, QLinearMatMul,
 * MatMulIntegerToFloat, QGemm, QLinearAdd/Mul/Concat/..., int8 Reshape/Transpose/MaxPool...).
 *
 * Rewrites, in words:
 *  1. A quantized activation T becomes T -> QuantizeLinear(scale, zero point) -> DequantizeLinear,
 *     and every reader of T (quantized or not) reads the DequantizeLinear's output, so T's
 *     producer has the QuantizeLinear as its only reader (what onnxruntime's fusion requires). A
 *     graph output stays the float T. One scale/zero-point pair per parameter source: a
 *     pass-through op's output shares its input's pair, so onnxruntime drops the pair around it.
 *  2. A unit's constant weight W becomes int8 data (symmetric, zero point 0, per channel where the
 *     plan says) -> DequantizeLinear(axis) -> the node; a weight read by several units is stored
 *     once per axis.
 *  3. A Conv/Gemm bias becomes int32 data with scale = input scale x weight scale (per channel),
 *     zero point 0 -> DequantizeLinear -> the node; Gemm's beta is folded into it (beta = 1 after).
 *  4. A chain op's constant input (e.g. Add's bias) becomes activation-type data with its own
 *     per-tensor range -> DequantizeLinear.
 * QuantizeLinear/DequantizeLinear with an axis need default-domain opset >= 13 (checked).
 *
 * Precondition: the plan was made on this graph; `params` holds the parameters of every source
 * value of plan.tensors.
 */
import { freshNodeName } from '../src/quant/int8-plan.js';
import { PeftcError } from '../src/errors.js';
import { DataType } from '../src/ir/dtype.js';
import type { Graph, Node, Value } from '../src/ir/graph.js';
import type { Model } from '../src/ir/model.js';
import { Tensor } from '../src/ir/tensor.js';
import { shapeOf, tensorType } from '../src/ir/types.js';
import { paramsForRange, quantizeBias, quantizeValue, quantizeWeightSymmetric, qRange, type QuantParams } from '../src/quant/int8-math.js';
import type { Int8Plan, Int8Unit } from '../src/quant/int8-plan.js';
import type { Pass, PassContext, PassResult } from './pass.js';

export interface QdqInsertionOptions {
  plan: Int8Plan;
  /** Parameters of every parameter source in plan.tensors. */
  params: ReadonlyMap<string, QuantParams>;
}

export interface WeightReport {
  weight: string;
  nodes: string[];
  shape: number[];
  axis: number | undefined;
  /** RMS of w - dequantized w, relative to the RMS of w. */
  relativeRmse: number;
  bytesBefore: number;
  bytesAfter: number;
}

export interface QdqInsertionReport {
  quantizeNodes: number;
  dequantizeNodes: number;
  units: number;
  weights: WeightReport[];
  biases: number;
}

export interface QdqInsertionPass extends Pass {
  readonly report: QdqInsertionReport;
}

const typeOf = (t: QuantParams['type']) => (t === 'uint8' ? DataType.UINT8 : DataType.INT8);

function intTensor(name: string, type: QuantParams['type'], dims: number[], values: ArrayLike<number>): Tensor {
  return type === 'uint8' ? Tensor.fromTypedArray(name, DataType.UINT8, dims, Uint8Array.from(values)) : Tensor.fromTypedArray(name, DataType.INT8, dims, Int8Array.from(values));
}

export function qdqInsertion(options: QdqInsertionOptions): QdqInsertionPass {
  const report: QdqInsertionReport = { quantizeNodes: 0, dequantizeNodes: 0, units: 0, weights: [], biases: 0 };
  return {
    name: 'qdq-insertion',
    description: 'static INT8: QuantizeLinear/DequantizeLinear around the planned nodes, int8 weights, int32 biases',
    report,
    run(model: Model, ctx: PassContext): PassResult {
      const opset = model.opsetVersion('') ?? 0;
      if (opset < 13) throw new PeftcError(`QDQ insertion needs default-domain opset >= 13 (per-channel DequantizeLinear); the model imports ${opset}: raise it first (passes/opset-upgrade.ts)`);
      const w = new Writer(model.graph, options, report);
      w.write();
      ctx.log(`qdq-insertion: ${report.units} node(s) quantized, ${report.quantizeNodes} QuantizeLinear, ${report.dequantizeNodes} DequantizeLinear, ${report.weights.length} int8 weight(s), ${report.biases} int32 bias(es)`);
      return { changed: report.units > 0 || report.quantizeNodes > 0, details: { units: report.units, quantize: report.quantizeNodes, dequantize: report.dequantizeNodes, weights: report.weights.length, biases: report.biases } };
    },
  };
}

class Writer {
  private readonly g: Graph;
  private readonly paramValues = new Map<string, { scale: Value; zeroPoint: Value }>();
  private readonly weights = new Map<string, { out: Value; scales: Float32Array; report: WeightReport }>();

  constructor(
    graph: Graph,
    private readonly options: QdqInsertionOptions,
    private readonly report: QdqInsertionReport,
  ) {
    this.g = graph;
  }

  write(): void {
    const { plan } = this.options;
    // Weights, biases and constants first (they reference the units' nodes as they are).
    for (const u of plan.units) this.unitConstants(u);
    for (const [name, source] of plan.tensors) this.activation(name, source);
    this.report.units = plan.units.length;
    // Float weights, biases and constants nothing reads any more.
    for (const u of plan.units) {
      for (const name of [u.weight?.value, u.bias?.value, ...u.constants.map((c) => c.value)]) {
        const v = name === undefined ? undefined : this.g.localValue(name);
        if (v && v.uses.length === 0 && !v.isGraphInput && !v.isGraphOutput) this.g.deleteValue(v);
      }
    }
  }

  private params(source: string): QuantParams {
    const p = this.options.params.get(source);
    if (!p) throw new PeftcError(`internal: no quantization parameters for '${source}'`);
    return p;
  }

  /** The shared scale / zero-point initializers of a parameter source. */
  private paramInitializers(source: string): { scale: Value; zeroPoint: Value } {
    let v = this.paramValues.get(source);
    if (!v) {
      const p = this.params(source);
      const scale = this.g.addInitializer(Tensor.fromTypedArray(this.g.uniqueName(`${source}_scale`), DataType.FLOAT, [], Float32Array.of(p.scale)));
      const zeroPoint = this.g.addInitializer(intTensor(this.g.uniqueName(`${source}_zero_point`), p.type, [], [p.zeroPoint]));
      v = { scale, zeroPoint };
      this.paramValues.set(source, v);
    }
    return v;
  }

  /** Inserts Q -> DQ for an activation and points its readers at the DQ output. */
  private activation(name: string, source: string): void {
    const g = this.g;
    const t = g.localValue(name);
    if (!t) throw new PeftcError(`internal: planned activation '${name}' is not in the graph`);
    const readers = t.uses.map((u) => u.node);
    if (!readers.length) return;
    const p = this.params(source);
    const { scale, zeroPoint } = this.paramInitializers(source);
    const first = earliest(g, readers);
    const q = g.addNode('QuantizeLinear', [t, scale, zeroPoint], [g.uniqueName(`${name}_quantized`)], { name: freshNodeName(g, `${name}_QuantizeLinear`), before: first });
    const shape = shapeOf(t.type);
    q.outputs[0]!.type = tensorType(typeOf(p.type), shape);
    const dq = g.addNode('DequantizeLinear', [q.outputs[0]!, scale, zeroPoint], [g.uniqueName(`${name}_dequantized`)], { name: freshNodeName(g, `${name}_DequantizeLinear`), before: first });
    dq.outputs[0]!.type = t.type ? { ...t.type } : tensorType(DataType.FLOAT, shape);
    for (const use of [...t.uses]) if (use.node !== q) use.node.setInput(use.index, dq.outputs[0]!);
    this.report.quantizeNodes++;
    this.report.dequantizeNodes++;
  }

  private unitConstants(u: Int8Unit): void {
    const n = u.node;
    let weightScales: Float32Array | undefined;
    if (u.weight) {
      const w = this.weight(u.weight.value, u.weight.axis, n);
      n.setInput(u.weight.index, w.out);
      w.report.nodes.push(n.name);
      weightScales = w.scales;
    }
    if (u.bias && weightScales) {
      const x = u.inputs.find((i) => i.index === 0)!;
      const src = this.options.plan.tensors.get(x.value);
      if (!src) throw new PeftcError(`internal: the input of '${n.name}' is not quantized, its bias cannot be`);
      const sx = this.params(src).scale;
      const b = n.inputs[u.bias.index]!.initializer!;
      let values = b.toTypedArray<Float32Array>();
      if (n.opType === 'Gemm') {
        const beta = n.attrFloat('beta', 1);
        if (beta !== 1) values = values.map((v) => Math.fround(v * beta));
        n.setAttribute('beta', { type: 'float', value: 1 });
      }
      const q = quantizeBias(values, sx, weightScales);
      const base = n.inputs[u.bias.index]!.name;
      const data = this.g.addInitializer(Tensor.fromTypedArray(this.g.uniqueName(`${base}_quantized`), DataType.INT32, [values.length], q.data));
      const scale = this.g.addInitializer(Tensor.fromTypedArray(this.g.uniqueName(`${base}_scale`), DataType.FLOAT, q.scales.length > 1 ? [q.scales.length] : [], q.scales));
      const zp = this.g.addInitializer(Tensor.fromTypedArray(this.g.uniqueName(`${base}_zero_point`), DataType.INT32, q.scales.length > 1 ? [q.scales.length] : [], new Int32Array(q.scales.length)));
      const dq = this.g.addNode('DequantizeLinear', [data, scale, zp], [this.g.uniqueName(`${base}_dequantized`)], {
        name: freshNodeName(this.g, `${base}_DequantizeLinear`),
        before: n,
        ...(q.scales.length > 1 ? { attributes: [{ name: 'axis', type: 'int', value: 0n }] } : {}),
      });
      dq.outputs[0]!.type = tensorType(DataType.FLOAT, [values.length]);
      n.setInput(u.bias.index, dq.outputs[0]!);
      this.report.dequantizeNodes++;
      this.report.biases++;
    }
    for (const c of u.constants) {
      const v = n.inputs[c.index]!;
      const t = v.initializer!;
      const values = t.toTypedArray<Float32Array>();
      let lo = Infinity;
      let hi = -Infinity;
      for (const x of values) {
        lo = Math.min(lo, x);
        hi = Math.max(hi, x);
      }
      const type = this.activationType();
      const p = paramsForRange(lo, hi, type, false);
      const [qmin, qmax] = qRange(type, false);
      const data = this.g.addInitializer(intTensor(this.g.uniqueName(`${v.name}_quantized`), type, [...t.dims], Array.from(values, (x) => quantizeValue(x, p.scale, p.zeroPoint, qmin, qmax))));
      const scale = this.g.addInitializer(Tensor.fromTypedArray(this.g.uniqueName(`${v.name}_scale`), DataType.FLOAT, [], Float32Array.of(p.scale)));
      const zp = this.g.addInitializer(intTensor(this.g.uniqueName(`${v.name}_zero_point`), type, [], [p.zeroPoint]));
      const dq = this.g.addNode('DequantizeLinear', [data, scale, zp], [this.g.uniqueName(`${v.name}_dequantized`)], { name: freshNodeName(this.g, `${v.name}_DequantizeLinear`), before: n });
      dq.outputs[0]!.type = tensorType(DataType.FLOAT, [...t.dims]);
      n.setInput(c.index, dq.outputs[0]!);
      this.report.dequantizeNodes++;
    }
  }

  private activationType(): QuantParams['type'] {
    for (const p of this.options.params.values()) return p.type;
    return 'uint8';
  }

  private weight(name: string, axis: number | undefined, reader: Node): { out: Value; scales: Float32Array; report: WeightReport } {
    const key = `${name}\u0000${axis ?? 'tensor'}`;
    let w = this.weights.get(key);
    if (w) return w;
    const g = this.g;
    const t = g.localValue(name)!.initializer!;
    const q = quantizeWeightSymmetric(t.toTypedArray<Float32Array>(), t.dims, axis);
    const dims = [...t.dims];
    const data = g.addInitializer(Tensor.fromTypedArray(g.uniqueName(`${name}_quantized`), DataType.INT8, dims, q.data));
    const perAxis = axis !== undefined;
    const scale = g.addInitializer(Tensor.fromTypedArray(g.uniqueName(`${name}_scale`), DataType.FLOAT, perAxis ? [q.scales.length] : [], q.scales));
    const zp = g.addInitializer(Tensor.fromTypedArray(g.uniqueName(`${name}_zero_point`), DataType.INT8, perAxis ? [q.scales.length] : [], new Int8Array(q.scales.length)));
    const dq = g.addNode('DequantizeLinear', [data, scale, zp], [g.uniqueName(`${name}_dequantized`)], {
      name: freshNodeName(g, `${name}_DequantizeLinear`),
      before: earliest(g, g.localValue(name)!.uses.map((u) => u.node).concat(reader)),
      ...(perAxis ? { attributes: [{ name: 'axis', type: 'int', value: BigInt(axis) }] } : {}),
    });
    dq.outputs[0]!.type = tensorType(DataType.FLOAT, dims);
    this.report.dequantizeNodes++;
    const report: WeightReport = {
      weight: name,
      nodes: [],
      shape: dims,
      axis,
      relativeRmse: q.rms > 0 ? q.rmse / q.rms : 0,
      bytesBefore: t.byteLength,
      bytesAfter: q.data.byteLength + q.scales.byteLength * 2,
    };
    this.report.weights.push(report);
    w = { out: dq.outputs[0]!, scales: q.scales, report };
    this.weights.set(key, w);
    return w;
  }
}

/** The first of `nodes` in the graph's node order. */
function earliest(g: Graph, nodes: Node[]): Node {
  const set = new Set(nodes);
  const first = g.nodes.find((n) => set.has(n));
  if (!first) throw new PeftcError('internal: no reader of a quantized value is in the graph');
  return first;
}

/**
 * QAT weights: a graph exported from quantization-aware training carries its weights as float
 * constants behind QuantizeLinear -> DequantizeLinear with the scales training learnt. This pass
 * folds each such QuantizeLinear into its integer result, so the weight is stored as int8/uint8
 * data read by the (kept) DequantizeLinear with the very same scale and zero point:
 *
 *   QuantizeLinear(W float const, s, z) -> DequantizeLinear(., s, z)
 *     =>  DequantizeLinear(W_q const, s, z),   W_q = saturate(round_half_even(W / s) + z)
 *
 * (per tensor, or per axis with the node's `axis`; the division in float32, as onnxruntime does).
 * A float bias of a Conv/Gemm whose input and weight both come out of DequantizeLinear with
 * constant scales becomes int32 with scale = input scale x weight scale (the scale QLinearConv and
 * QGemm imply; onnxruntime fuses a Conv/Gemm only when every input is dequantized), computed from
 * the trained scales, nothing calibrated.
 * Nothing else changes: activation QuantizeLinear/DequantizeLinear pairs keep their scales, and
 * static INT8 quantization leaves nodes that already read DequantizeLinear outputs alone.
 * Blocked (block_size) and non-8-bit forms are left as they are.
 */
import { DataType } from '../src/ir/dtype.js';
import type { Model } from '../src/ir/model.js';
import { Tensor } from '../src/ir/tensor.js';
import type { Graph, Node, Value } from '../src/ir/graph.js';
import { tensorType } from '../src/ir/types.js';
import { quantizeBias as quantizeBiasValues, quantizeValue } from '../src/quant/int8-math.js';
import { freshNodeName } from '../src/quant/int8-plan.js';
import type { Pass, PassContext, PassResult } from './pass.js';

export interface QatReport {
  /** Weight QuantizeLinear nodes folded into int8/uint8 initializers. */
  folded: number;
  weights: Array<{ weight: string; dtype: 'int8' | 'uint8'; axis: number | undefined }>;
  /** Float biases turned int32 from the trained input and weight scales. */
  biases: number;
  /** QuantizeLinear/DequantizeLinear nodes in the graph (after folding). */
  quantizeNodes: number;
  dequantizeNodes: number;
}

export interface QatPass extends Pass {
  readonly report: QatReport;
}

export function qatWeightFolding(): QatPass {
  const report: QatReport = { folded: 0, weights: [], biases: 0, quantizeNodes: 0, dequantizeNodes: 0 };
  return {
    name: 'qat-weights',
    description: 'folds constant weights behind QuantizeLinear into int8 initializers, keeping their scales',
    report,
    run(model: Model, ctx: PassContext): PassResult {
      const g = model.graph;
      const doomed = [];
      for (const q of g.nodes) {
        if (q.opType !== 'QuantizeLinear' || (q.domain !== '' && q.domain !== 'ai.onnx')) continue;
        const [x, scale, zp] = q.inputs;
        if (!x?.isConstant || !scale?.isConstant || (zp && !zp.isConstant)) continue;
        if (x.initializer!.dtype !== DataType.FLOAT || scale.initializer!.dtype !== DataType.FLOAT) continue;
        if (q.attrInt('block_size', 0) !== 0) continue;
        const out = q.outputs[0];
        if (!out || out.isGraphOutput || !out.uses.every((u) => u.node.opType === 'DequantizeLinear' && u.index === 0)) continue;
        const zpType = zp ? zp.initializer!.dtype : DataType.UINT8;
        if (zpType !== DataType.INT8 && zpType !== DataType.UINT8) continue;
        const w = x.initializer!;
        const s = scale.initializer!.toTypedArray<Float32Array>();
        const z = zp ? Array.from(zp.initializer!.toTypedArray<Int8Array | Uint8Array>()) : [0];
        const rank = w.dims.length;
        let axis: number | undefined;
        if (s.length > 1) {
          const a = q.attrInt('axis', 1);
          axis = a < 0 ? a + rank : a;
          if (axis < 0 || axis >= rank || w.dims[axis] !== s.length) continue;
        }
        const inner = axis === undefined ? 1 : w.dims.slice(axis + 1).reduce((p, d) => p * d, 1);
        const [qmin, qmax] = zpType === DataType.INT8 ? [-128, 127] : [0, 255];
        const values = w.toTypedArray<Float32Array>();
        const data = zpType === DataType.INT8 ? new Int8Array(values.length) : new Uint8Array(values.length);
        for (let i = 0; i < values.length; i++) {
          const c = axis === undefined ? 0 : Math.floor(i / inner) % s.length;
          data[i] = quantizeValue(values[i]!, s[c]!, z[z.length > 1 ? c : 0]!, qmin, qmax);
        }
        const folded = g.addInitializer(Tensor.fromTypedArray(g.uniqueName(`${x.name}_quantized`), zpType, [...w.dims], data));
        for (const u of [...out.uses]) u.node.setInput(u.index, folded);
        doomed.push(q);
        report.folded++;
        report.weights.push({ weight: x.name, dtype: zpType === DataType.INT8 ? 'int8' : 'uint8', axis });
      }
      for (const q of doomed) {
        const x = q.inputs[0]!;
        g.removeNode(q);
        if (x.uses.length === 0 && !x.isGraphInput && !x.isGraphOutput) g.deleteValue(x);
      }
      for (const n of [...g.nodes]) if (quantizeBias(g, n)) report.biases++;
      report.quantizeNodes = g.nodes.filter((n) => n.opType === 'QuantizeLinear').length;
      report.dequantizeNodes = g.nodes.filter((n) => n.opType === 'DequantizeLinear').length;
      if (report.folded || report.biases || report.quantizeNodes || report.dequantizeNodes) {
        ctx.log(`qat-weights: ${report.folded} weight QuantizeLinear folded into integer initializers, ${report.biases} float bias(es) made int32 from the trained scales; ${report.quantizeNodes} QuantizeLinear / ${report.dequantizeNodes} DequantizeLinear in the graph`);
      }
      return { changed: report.folded + report.biases > 0, details: { folded: report.folded, biases: report.biases } };
    },
  };
}

/** The constant scale of a DequantizeLinear's output (scalar or per axis), if `v` is one. */
function dequantizedScale(v: Value | null | undefined): { scales: Float32Array; axis: number | undefined } | undefined {
  const dq = v?.producer;
  if (!dq || dq.opType !== 'DequantizeLinear' || (dq.domain !== '' && dq.domain !== 'ai.onnx')) return undefined;
  const s = dq.inputs[1];
  if (!s?.isConstant || s.initializer!.dtype !== DataType.FLOAT) return undefined;
  const scales = s.initializer!.toTypedArray<Float32Array>();
  return { scales, axis: scales.length > 1 ? dq.attrInt('axis', 1) : undefined };
}

/** Conv/Gemm with dequantized input and weight and a float constant bias: the bias becomes int32. */
function quantizeBias(g: Graph, n: Node): boolean {
  if ((n.domain !== '' && n.domain !== 'ai.onnx') || (n.opType !== 'Conv' && n.opType !== 'Gemm')) return false;
  const [x, w, b] = n.inputs;
  const sx = dequantizedScale(x);
  const sw = dequantizedScale(w);
  if (!sx || !sw || !b?.isConstant || b.initializer!.dtype !== DataType.FLOAT || sx.scales.length !== 1) return false;
  const bias = b.initializer!.toTypedArray<Float32Array>();
  const channels = bias.length;
  if (sw.scales.length !== 1 && sw.scales.length !== channels) return false;
  if (n.opType === 'Gemm') {
    if (n.attrInt('transA', 0) !== 0 || b.initializer!.dims.some((d, i, all) => i < all.length - 1 && d !== 1)) return false;
    if (sw.scales.length > 1 && sw.axis !== (n.attrInt('transB', 0) ? 0 : 1)) return false;
  } else if (sw.scales.length > 1 && sw.axis !== 0) return false;
  const beta = n.opType === 'Gemm' ? n.attrFloat('beta', 1) : 1;
  const values = beta === 1 ? bias : bias.map((v) => Math.fround(v * beta));
  const q = quantizeBiasValues(values, sx.scales[0]!, sw.scales);
  const per = q.scales.length > 1;
  const data = g.addInitializer(Tensor.fromTypedArray(g.uniqueName(`${b.name}_quantized`), DataType.INT32, [channels], q.data));
  const scale = g.addInitializer(Tensor.fromTypedArray(g.uniqueName(`${b.name}_scale`), DataType.FLOAT, per ? [channels] : [], q.scales));
  const zp = g.addInitializer(Tensor.fromTypedArray(g.uniqueName(`${b.name}_zero_point`), DataType.INT32, per ? [channels] : [], new Int32Array(q.scales.length)));
  const dq = g.addNode('DequantizeLinear', [data, scale, zp], [g.uniqueName(`${b.name}_dequantized`)], {
    name: freshNodeName(g, `${b.name}_DequantizeLinear`),
    before: n,
    ...(per ? { attributes: [{ name: 'axis', type: 'int', value: 0n }] } : {}),
  });
  dq.outputs[0]!.type = tensorType(DataType.FLOAT, [channels]);
  n.setInput(2, dq.outputs[0]!);
  if (n.opType === 'Gemm') n.setAttribute('beta', { type: 'float', value: 1 });
  if (b.uses.length === 0 && !b.isGraphInput && !b.isGraphOutput) g.deleteValue(b);
  return true;
}

/**
 * QOperator form (`--quant-format qoperator`): the QDQ node units of a static INT8 graph written
 * out as the integer operators onnxruntime's CPU provider would fuse them into, for users and
 * runtimes that want the QLinear form in the file itself.
 *
 * A node unit is an op whose float data inputs all come out of DequantizeLinear (constant scale and
 * zero point) and, where the op needs one, whose only reader is a QuantizeLinear (constant scalar
 * parameters). Rewrites, in words:
 *  - Conv (+ a Relu/Clip the output's range makes redundant) -> QLinearConv (int32 bias kept);
 *  - MatMul -> QLinearMatMul with an output Q, com.microsoft MatMulIntegerToFloat without one;
 *  - Gemm (transA = 0, int32 bias or none) -> com.microsoft QGemm (uint8/int8 output with a Q,
 *    float without);
 *  - Add, Mul -> com.microsoft QLinearAdd / QLinearMul; Concat -> QLinearConcat;
 *    GlobalAveragePool, AveragePool, Sigmoid, LeakyRelu, Softmax -> their com.microsoft QLinear ops;
 *  - pass-through ops (Reshape, Transpose, Squeeze, Unsqueeze, Flatten, MaxPool, Gather, Slice,
 *    Expand, Tile, Resize) between a DequantizeLinear and a QuantizeLinear with the same
 *    parameters run on the integer data directly.
 * The unit's DequantizeLinear/QuantizeLinear nodes go when nothing else reads them; a
 * DequantizeLinear feeding a float op stays. Values keep their names where the graph's interface
 * needs them (graph outputs stay float).
 */
import { DataType } from '../src/ir/dtype.js';
import type { Graph, Node, Value } from '../src/ir/graph.js';
import type { Model } from '../src/ir/model.js';
import type { Attribute } from '../src/ir/attribute.js';
import { Tensor } from '../src/ir/tensor.js';
import { shapeOf, tensorType } from '../src/ir/types.js';
import { freshNodeName } from '../src/quant/int8-plan.js';
import type { Pass, PassContext, PassResult } from './pass.js';

const MS = 'com.microsoft';
const PASS_THROUGH = new Set(['Reshape', 'Transpose', 'Squeeze', 'Unsqueeze', 'Flatten', 'MaxPool', 'Gather', 'Slice', 'Expand', 'Tile', 'Resize']);
const UNARY: Record<string, string> = { GlobalAveragePool: 'QLinearGlobalAveragePool', AveragePool: 'QLinearAveragePool', Sigmoid: 'QLinearSigmoid', LeakyRelu: 'QLinearLeakyRelu', Softmax: 'QLinearSoftmax' };

const isDefault = (n: Node) => n.domain === '' || n.domain === 'ai.onnx';

interface Deq {
  node: Node;
  q: Value;
  scale: Value;
  zeroPoint: Value | null;
}

interface Req {
  node: Node;
  scale: Value;
  zeroPoint: Value;
  out: Value;
  /** A Relu/Clip between the op and its QuantizeLinear that the Q's range makes redundant. */
  clip?: Node;
}

function dequantized(v: Value | null | undefined): Deq | undefined {
  const p = v?.producer;
  if (!p || p.opType !== 'DequantizeLinear' || !isDefault(p)) return undefined;
  const [q, scale, zeroPoint] = p.inputs;
  if (!q || !scale?.isConstant || (zeroPoint && !zeroPoint.isConstant)) return undefined;
  return { node: p, q, scale, zeroPoint: zeroPoint ?? null };
}

function scalar(v: Value | null): boolean {
  return !v || v.initializer!.elementCount === 1;
}

function requantized(n: Node): Req | undefined {
  let y = n.outputs[0];
  let clip: Node | undefined;
  if (!y || y.isGraphOutput || y.uses.length !== 1) return undefined;
  const next = y.uses[0]!.node;
  if (isDefault(next) && (next.opType === 'Relu' || next.opType === 'Clip') && next.outputs[0] && !next.outputs[0].isGraphOutput && next.outputs[0].uses.length === 1) {
    clip = next;
    y = next.outputs[0];
  }
  const q = y!.uses[0]?.node;
  if (!q || q.opType !== 'QuantizeLinear' || !isDefault(q) || y!.uses[0]!.index !== 0) return undefined;
  const [, scale, zeroPoint] = q.inputs;
  if (!scale?.isConstant || !zeroPoint?.isConstant || !scalar(scale) || !scalar(zeroPoint) || q.attrInt('axis', 1) !== 1 && !scalar(scale)) return undefined;
  if (clip && !clipRedundant(clip, scale, zeroPoint)) return undefined;
  return { node: q, scale, zeroPoint, out: q.outputs[0]!, ...(clip ? { clip } : {}) };
}

/** Whether the Q's representable range lies inside the Relu/Clip's range (so the clip does nothing). */
function clipRedundant(clip: Node, scale: Value, zeroPoint: Value): boolean {
  const s = scale.initializer!.toTypedArray<Float32Array>()[0]!;
  const zt = zeroPoint.initializer!;
  const z = Number(zt.toTypedArray()[0]!);
  const [qmin, qmax] = zt.dtype === DataType.UINT8 ? [0, 255] : [-128, 127];
  const lo = (qmin - z) * s;
  const hi = (qmax - z) * s;
  if (clip.opType === 'Relu') return z === qmin;
  const minV = clip.inputs[1]?.initializer ? clip.inputs[1].initializer.toTypedArray<Float32Array>()[0]! : -Infinity;
  const maxV = clip.inputs[2]?.initializer ? clip.inputs[2].initializer.toTypedArray<Float32Array>()[0]! : Infinity;
  return lo >= minV && hi <= maxV;
}

export interface QOperatorReport {
  /** Op written out -> count. */
  ops: Record<string, number>;
  passThrough: number;
}

export interface QOperatorPass extends Pass {
  readonly report: QOperatorReport;
}

export function qoperatorLowering(): QOperatorPass {
  const report: QOperatorReport = { ops: {}, passThrough: 0 };
  return {
    name: 'qoperator',
    description: 'QDQ node units -> QLinearConv, QLinearMatMul, QGemm, QLinearAdd... (the QOperator form)',
    report,
    run(model: Model, ctx: PassContext): PassResult {
      const g = model.graph;
      const doomed = new Set<Node>();
      const orphans: Value[] = [];
      const add = (op: string) => (report.ops[op] = (report.ops[op] ?? 0) + 1);
      for (const n of [...g.nodes]) {
        if (!isDefault(n) || doomed.has(n)) continue;
        const made = rewrite(g, n, doomed);
        if (made) add(made);
        else if (PASS_THROUGH.has(n.opType) && passThrough(g, n, doomed, orphans)) report.passThrough++;
      }
      // Quantize/Dequantize nodes nothing reads any more.
      g.removeNodes([...doomed], true);
      for (const v of orphans) if (!v.producer && v.uses.length === 0 && g.localValue(v.name) === v) g.deleteValue(v);
      let swept = true;
      while (swept) {
        swept = false;
        for (const n of [...g.nodes]) {
          if ((n.opType === 'DequantizeLinear' || n.opType === 'QuantizeLinear') && n.outputs.every((o) => !o || (o.uses.length === 0 && !o.isGraphOutput))) {
            g.removeNode(n);
            swept = true;
          }
        }
      }
      for (const v of [...g.initializers]) if (v.uses.length === 0 && !v.isGraphInput && !v.isGraphOutput) g.deleteValue(v);
      if (Object.keys(report.ops).some((k) => k.startsWith(MS)) && model.opsetVersion(MS) === undefined) model.opsetImports.push({ domain: MS, version: 1 });
      const total = Object.values(report.ops).reduce((a, b) => a + b, 0);
      ctx.log(`qoperator: ${total} node unit(s) written as integer ops (${Object.entries(report.ops).map(([k, c]) => `${k} ${c}`).join(', ')}), ${report.passThrough} pass-through op(s) on integer data`);
      return { changed: total + report.passThrough > 0, details: { ...report.ops, passThrough: report.passThrough } };
    },
  };
}

/** Replaces node unit `n` by its integer op; returns the op written, or undefined when `n` is no unit. */
function rewrite(g: Graph, n: Node, doomed: Set<Node>): string | undefined {
  const op = n.opType;
  const data = op === 'Concat' ? n.inputs.map((_, i) => i) : op === 'Add' || op === 'Mul' || op === 'MatMul' ? [0, 1] : op === 'Conv' || op === 'Gemm' ? [0, 1] : op in UNARY ? [0] : [];
  if (!data.length) return undefined;
  const deqs = data.map((i) => dequantized(n.inputs[i]));
  if (deqs.some((d) => !d)) return undefined;
  const d = deqs as Deq[];
  // Activations: scalar parameters.
  const activationInputs = op === 'Conv' || op === 'Gemm' || op === 'MatMul' ? [0] : data.map((_, k) => k);
  if (activationInputs.some((k) => !scalar(d[k]!.scale) || !scalar(d[k]!.zeroPoint))) return undefined;
  const r = requantized(n);
  const zp = (x: Deq) => x.zeroPoint ?? zeroOf(g, x.q);
  let bias: Deq | undefined;
  if ((op === 'Conv' || op === 'Gemm') && n.inputs[2]) {
    bias = dequantized(n.inputs[2]);
    if (!bias || bias.q.initializer?.dtype !== DataType.INT32) return undefined;
  }
  let inputs: Array<Value | null>;
  let type: string;
  let domain = MS;
  let attrs: Attribute[] = [];
  switch (op) {
    case 'Conv':
      if (!r) return undefined;
      type = 'QLinearConv';
      domain = '';
      inputs = [d[0]!.q, d[0]!.scale, zp(d[0]!), d[1]!.q, d[1]!.scale, zp(d[1]!), r.scale, r.zeroPoint, ...(bias ? [bias.q] : [])];
      attrs = n.attributes;
      break;
    case 'MatMul':
      if (r) {
        type = 'QLinearMatMul';
        domain = '';
        inputs = [d[0]!.q, d[0]!.scale, zp(d[0]!), d[1]!.q, d[1]!.scale, zp(d[1]!), r.scale, r.zeroPoint];
      } else {
        type = 'MatMulIntegerToFloat';
        inputs = [d[0]!.q, d[1]!.q, d[0]!.scale, d[1]!.scale, zp(d[0]!), zp(d[1]!)];
      }
      break;
    case 'Gemm':
      if (n.attrInt('transA', 0) !== 0 || (bias && n.attrFloat('beta', 1) !== 1)) return undefined;
      type = 'QGemm';
      inputs = [d[0]!.q, d[0]!.scale, zp(d[0]!), d[1]!.q, d[1]!.scale, zp(d[1]!), bias ? bias.q : null, ...(r ? [r.scale, r.zeroPoint] : [])];
      attrs = n.attributes.filter((a) => a.name === 'alpha' || a.name === 'transA' || a.name === 'transB');
      break;
    case 'Add':
    case 'Mul':
      if (!r) return undefined;
      type = op === 'Add' ? 'QLinearAdd' : 'QLinearMul';
      inputs = [d[0]!.q, d[0]!.scale, zp(d[0]!), d[1]!.q, d[1]!.scale, zp(d[1]!), r.scale, r.zeroPoint];
      break;
    case 'Concat':
      if (!r) return undefined;
      type = 'QLinearConcat';
      inputs = [r.scale, r.zeroPoint, ...d.flatMap((x) => [x.q, x.scale, zp(x)])];
      attrs = n.attributes;
      break;
    default:
      if (!r) return undefined;
      type = UNARY[op]!;
      inputs = [d[0]!.q, d[0]!.scale, zp(d[0]!), r.scale, r.zeroPoint];
      attrs = n.attributes.filter((a) => a.name !== 'count_include_pad' || op === 'AveragePool');
      if (op === 'Softmax') attrs = [...attrs.filter((a) => a.name === 'axis'), { name: 'opset', type: 'int', value: 13n }];
      if (op === 'GlobalAveragePool') attrs = [{ name: 'channels_last', type: 'int', value: 0n }];
  }
  // Types must match across the unit (onnxruntime's kernels take one integer type per activation).
  const activationTypes = new Set(activationInputs.map((k) => d[k]!.q.type?.kind === 'tensor' ? d[k]!.q.type.elemType : d[k]!.q.initializer?.dtype));
  if (r) activationTypes.add(r.zeroPoint.initializer!.dtype);
  if (activationTypes.size !== 1) return undefined;
  const out = r ? r.out : n.outputs[0]!;
  const node = g.addNode(type, inputs, [], { name: freshNodeName(g, `${n.name || op}_${type}`), domain, attributes: attrs.map((a) => ({ ...a })), before: n });
  // The new node produces the unit's last value (the Q's integer output, or the float result).
  const producer = out.producer!;
  producer.setOutput(producer.outputs.indexOf(out), null);
  node.setOutput(0, out);
  if (!out.type) out.type = tensorType(r ? r.zeroPoint.initializer!.dtype : DataType.FLOAT, shapeOf(n.outputs[0]!.type));
  doomed.add(n);
  if (r) {
    doomed.add(r.node);
    if (r.clip) doomed.add(r.clip);
  }
  return domain === MS ? `${MS}::${type}` : type;
}

/** DQ -> op -> Q with the same parameters: the op reads the integer data and writes the Q's output. */
function passThrough(g: Graph, n: Node, doomed: Set<Node>, orphans: Value[]): boolean {
  const x = dequantized(n.inputs[0]);
  const y = n.outputs[0];
  if (!x || !y || n.outputs.filter(Boolean).length !== 1 || y.isGraphOutput || y.uses.length !== 1) return false;
  const q = y.uses[0]!.node;
  if (q.opType !== 'QuantizeLinear' || !isDefault(q) || y.uses[0]!.index !== 0) return false;
  if (q.inputs[1] !== x.scale || q.inputs[2] !== x.zeroPoint) return false;
  n.setInput(0, x.q);
  const out = q.outputs[0]!;
  q.setOutput(0, null);
  n.setOutput(0, out);
  doomed.add(q);
  orphans.push(y);
  void g;
  return true;
}

/** A zero point of the integer value's type (for DequantizeLinear nodes that leave it out). */
function zeroOf(g: Graph, q: Value): Value {
  const type = (q.type?.kind === 'tensor' ? q.type.elemType : q.initializer?.dtype) ?? DataType.UINT8;
  const name = g.uniqueName(`${q.name}_zero_point`);
  return g.addInitializer(type === DataType.INT8 ? Tensor.fromTypedArray(name, DataType.INT8, [], new Int8Array(1)) : type === DataType.INT32 ? Tensor.fromTypedArray(name, DataType.INT32, [], new Int32Array(1)) : Tensor.fromTypedArray(name, DataType.UINT8, [], new Uint8Array(1)));
}

/**
 * Dynamic INT8 quantization (`--quant int8-dynamic`): int8 weights, activations quantized at run
 * time, in the form onnxruntime's quantize_dynamic emits and its CPU provider fuses
 * (MatMulIntegerToFloatFusion, then DynamicQuantizeMatMulFusion):
 *
 *   MatMul(A, W[K, N])  ->  DynamicQuantizeLinear(A) -> (A_q uint8, a_scale, a_zero_point)
 *                           MatMulInteger(A_q, W_q int8, a_zero_point) -> int32
 *                           Cast(float) ; Mul(a_scale, w_scale) ; Mul(cast, scale) -> the output
 *   Gemm(A, B, C; alpha, beta, transB), transA = 0: the same with W = alpha * (transB ? B^T : B),
 *                           then Add(beta * C) (which the fusion takes in as its bias)
 *
 * W_q is symmetric int8 (zero point 0, so MatMulInteger's b_zero_point is left out), one scale per
 * output column (per-channel) or one for the matrix; DynamicQuantizeLinear computes uint8
 * asymmetric parameters per tensor per run. One DynamicQuantizeLinear per activation, however many
 * MatMuls read it. Conv stays float (onnxruntime's ConvInteger takes uint8 weights only).
 * Nodes matched by `exclude` stay float. Needs default-domain opset >= 11.
 */
import { freshNodeName } from '../src/quant/int8-plan.js';
import { PeftcError } from '../src/errors.js';
import { DataType } from '../src/ir/dtype.js';
import type { Graph, Node, Value } from '../src/ir/graph.js';
import type { Model } from '../src/ir/model.js';
import { Tensor } from '../src/ir/tensor.js';
import { shapeOf, tensorType } from '../src/ir/types.js';
import { quantizeWeightSymmetric } from '../src/quant/int8-math.js';
import type { Pass, PassContext, PassResult } from './pass.js';

export interface DynamicQuantOptions {
  /** Per output column weight scales (default true). */
  perChannel?: boolean;
  exclude?: (node: Node) => boolean;
}

export interface DynamicQuantReport {
  nodes: Array<{ node: string; op: string; weight: string; relativeRmse: number }>;
  skipped: Array<{ node: string; op: string; reason: string }>;
  bytesBefore: number;
  bytesAfter: number;
}

export interface DynamicQuantPass extends Pass {
  readonly report: DynamicQuantReport;
}

const isFloat = (v: Value | null | undefined) => v?.type?.kind === 'tensor' && v.type.elemType === DataType.FLOAT;

export function dynamicQuantization(options: DynamicQuantOptions = {}): DynamicQuantPass {
  const report: DynamicQuantReport = { nodes: [], skipped: [], bytesBefore: 0, bytesAfter: 0 };
  return {
    name: 'dynamic-quant',
    description: 'dynamic INT8: MatMul/Gemm with int8 weights, activations quantized at run time (DynamicQuantizeLinear + MatMulInteger)',
    report,
    run(model: Model, ctx: PassContext): PassResult {
      if ((model.opsetVersion('') ?? 0) < 11) throw new PeftcError(`dynamic INT8 needs default-domain opset >= 11 (DynamicQuantizeLinear); the model imports ${model.opsetVersion('')}`);
      const g = model.graph;
      const perChannel = options.perChannel ?? true;
      const dql = new Map<Value, Value[]>();
      for (const n of [...g.nodes]) {
        if (n.domain !== '' && n.domain !== 'ai.onnx') continue;
        if (n.opType !== 'MatMul' && n.opType !== 'Gemm') continue;
        const why = reason(n);
        if (why) {
          report.skipped.push({ node: n.name, op: n.opType, reason: why });
          continue;
        }
        if (options.exclude?.(n)) {
          report.skipped.push({ node: n.name, op: n.opType, reason: 'excluded' });
          continue;
        }
        rewrite(g, n, perChannel, dql, report);
      }
      ctx.log(`dynamic-quant: ${report.nodes.length} MatMul/Gemm node(s) with int8 weights (${(report.bytesBefore / 1024).toFixed(0)} KiB -> ${(report.bytesAfter / 1024).toFixed(0)} KiB), ${dql.size} DynamicQuantizeLinear; ${report.skipped.length} left float`);
      return { changed: report.nodes.length > 0, details: { quantized: report.nodes.length, skipped: report.skipped.length } };
    },
  };
}

function reason(n: Node): string | undefined {
  const [a, b, c] = n.inputs;
  if (!a || a.isConstant || !isFloat(a)) return 'its first input is not a computed float32 tensor';
  if (!b || !b.isConstant || b.initializer!.dtype !== DataType.FLOAT || b.initializer!.dims.length !== 2) return 'its weight is not a constant float32 matrix';
  if (!isFloat(n.outputs[0])) return 'its output is not float32';
  if (n.opType === 'Gemm') {
    if (n.attrInt('transA', 0) !== 0) return 'transA = 1';
    const nOut = b.initializer!.dims[n.attrInt('transB', 0) ? 0 : 1]!;
    if (c && (!c.isConstant || c.initializer!.dtype !== DataType.FLOAT || c.initializer!.elementCount !== nOut)) return 'its C input is not a constant [N] bias';
  }
  return undefined;
}

function rewrite(g: Graph, n: Node, perChannel: boolean, dql: Map<Value, Value[]>, report: DynamicQuantReport): void {
  const a = n.inputs[0]!;
  const bInit = n.inputs[1]!.initializer!;
  let w = bInit.toTypedArray<Float32Array>();
  let [k, cols] = bInit.dims as [number, number];
  let bias: Float32Array | undefined;
  if (n.opType === 'Gemm') {
    const alpha = n.attrFloat('alpha', 1);
    const beta = n.attrFloat('beta', 1);
    if (n.attrInt('transB', 0)) {
      const t = new Float32Array(w.length);
      for (let i = 0; i < k; i++) for (let j = 0; j < cols; j++) t[j * k + i] = w[i * cols + j]!;
      w = t;
      [k, cols] = [cols, k];
    }
    if (alpha !== 1) w = w.map((x) => Math.fround(x * alpha));
    const c = n.inputs[2];
    if (c) bias = c.initializer!.toTypedArray<Float32Array>().map((x) => Math.fround(x * beta));
  }
  const q = quantizeWeightSymmetric(w, [k, cols], perChannel ? 1 : undefined);
  const base = n.inputs[1]!.name;
  const wq = g.addInitializer(Tensor.fromTypedArray(g.uniqueName(`${base}_quantized`), DataType.INT8, [k, cols], q.data));
  const ws = g.addInitializer(Tensor.fromTypedArray(g.uniqueName(`${base}_scale`), DataType.FLOAT, perChannel ? [cols] : [], q.scales));
  report.bytesBefore += bInit.byteLength;
  report.bytesAfter += q.data.byteLength + q.scales.byteLength;

  let quantized = dql.get(a);
  if (!quantized) {
    const first = a.uses.map((u) => u.node).reduce((best, x) => (g.nodes.indexOf(x) < g.nodes.indexOf(best) ? x : best));
    const d = g.addNode('DynamicQuantizeLinear', [a], [g.uniqueName(`${a.name}_quantized`), g.uniqueName(`${a.name}_scale`), g.uniqueName(`${a.name}_zero_point`)], {
      name: freshNodeName(g, `${a.name}_DynamicQuantizeLinear`),
      before: first,
    });
    d.outputs[0]!.type = tensorType(DataType.UINT8, shapeOf(a.type));
    d.outputs[1]!.type = tensorType(DataType.FLOAT, []);
    d.outputs[2]!.type = tensorType(DataType.UINT8, []);
    quantized = d.outputs as Value[];
    dql.set(a, quantized);
  }
  const [aq, as, azp] = quantized as [Value, Value, Value];
  const out = n.outputs[0]!;
  const outShape = shapeOf(out.type);
  const name = n.name || out.name;
  const mm = g.addNode('MatMulInteger', [aq, wq, azp], [g.uniqueName(`${name}_int32`)], { name: freshNodeName(g, `${name}_MatMulInteger`), before: n });
  mm.outputs[0]!.type = tensorType(DataType.INT32, outShape);
  const scale = g.addNode('Mul', [as, ws], [g.uniqueName(`${name}_scale`)], { name: freshNodeName(g, `${name}_scale_Mul`), before: n });
  scale.outputs[0]!.type = tensorType(DataType.FLOAT, perChannel ? [cols] : []);
  const cast = g.addNode('Cast', [mm.outputs[0]!], [g.uniqueName(`${name}_float`)], { name: freshNodeName(g, `${name}_Cast`), before: n, attributes: [{ name: 'to', type: 'int', value: BigInt(DataType.FLOAT) }] });
  cast.outputs[0]!.type = tensorType(DataType.FLOAT, outShape);
  const mul = g.addNode('Mul', [cast.outputs[0]!, scale.outputs[0]!], [], { name: freshNodeName(g, `${name}_Mul`), before: n });
  let last = mul;
  if (bias) {
    mul.setOutput(0, g.createValue(g.uniqueName(`${name}_unbiased`), tensorType(DataType.FLOAT, outShape)));
    const b = g.addInitializer(Tensor.fromTypedArray(g.uniqueName(`${n.inputs[2]!.name}_bias`), DataType.FLOAT, [cols], bias));
    last = g.addNode('Add', [mul.outputs[0]!, b], [], { name: freshNodeName(g, `${name}_bias_Add`), before: n });
  }
  const oldInputs = n.inputs.filter((v): v is Value => v !== null);
  n.setOutput(0, null);
  g.removeNode(n, true);
  last.setOutput(0, out);
  for (const v of oldInputs) if (v.uses.length === 0 && v.initializer && !v.isGraphInput && !v.isGraphOutput && v !== a) g.deleteValue(v);
  report.nodes.push({ node: n.name, op: n.opType, weight: base, relativeRmse: q.rms > 0 ? q.rmse / q.rms : 0 });
}

/**
 * MatMul + bias -> Gemm, before static INT8 (the form onnxruntime's QGemm fusion takes).
 *
 * onnxruntime itself rewrites MatMul(A, W[K, N]) + Add(b[N]) into a Gemm (with Reshapes around it
 * when A has more than two axes and a fully known shape: MatMulAddFusion) before its QDQ fusions
 * run. In a QDQ graph that rewrite leaves Gemm(DQ(A), DQ(W), b) with a float bias, which no
 * integer kernel takes: the node runs in float on dequantized values. Making the Gemm here, before
 * the QDQ pairs are placed, lets the bias become int32 (scale = input scale x weight scale) and
 * onnxruntime form QGemm:
 *
 *   Add(MatMul(A, W), b)  ->  Gemm(A, W, b)                                   (A 2-D)
 *                         ->  Reshape(Gemm(Reshape(A, [M, K]), W, b), [..., N]) (A static, rank > 2)
 *
 * Only where onnxruntime would make the Gemm too: W a constant float32 [K, N], b a constant of N
 * values along the last axis, the MatMul's output read by the Add alone and not a graph output, A
 * 2-D or of fully known shape. The Gemm takes the MatMul's name (so --exclude and reports keep
 * naming it). Nodes matched by `exclude` are left alone.
 */
import { DataType } from '../src/ir/dtype.js';
import type { Node, Value } from '../src/ir/graph.js';
import type { Model } from '../src/ir/model.js';
import { Tensor } from '../src/ir/tensor.js';
import { shapeOf, tensorType } from '../src/ir/types.js';
import { freshNodeName } from '../src/quant/int8-plan.js';
import type { Pass, PassContext, PassResult } from './pass.js';

const isDefault = (n: Node) => n.domain === '' || n.domain === 'ai.onnx';

export function matmulBiasToGemm(options: { exclude?: (n: Node) => boolean } = {}): Pass {
  return {
    name: 'int8-gemm-bias',
    description: 'MatMul + constant bias Add -> Gemm (with Reshapes for static N-D inputs), so the bias quantizes to int32 and onnxruntime forms QGemm',
    run(model: Model, ctx: PassContext): PassResult {
      const g = model.graph;
      let rewritten = 0;
      for (const mm of [...g.nodes]) {
        if (!isDefault(mm) || mm.opType !== 'MatMul' || options.exclude?.(mm)) continue;
        const [a, w] = mm.inputs;
        const y = mm.outputs[0];
        const wt = w?.initializer;
        if (!a || !y || !w?.isConstant || !wt || wt.dtype !== DataType.FLOAT || wt.dims.length !== 2) continue;
        if (a.type?.kind !== 'tensor' || a.type.elemType !== DataType.FLOAT || a.isConstant) continue;
        if (y.isGraphOutput || y.uses.length !== 1) continue;
        const add = y.uses[0]!.node;
        if (!isDefault(add) || add.opType !== 'Add') continue;
        const b = add.inputs[1 - y.uses[0]!.index];
        const bt = b?.initializer;
        const [k, n] = wt.dims as [number, number];
        if (!b?.isConstant || !bt || bt.dtype !== DataType.FLOAT || bt.elementCount !== n || bt.dims.some((d, i) => i < bt.dims.length - 1 && d !== 1)) continue;
        const shape = shapeOf(a.type);
        if (!shape || shape.length < 2 || shape[shape.length - 1] !== k) continue;
        if (shape.length > 2 && !shape.every((d) => typeof d === 'number' && d > 0)) continue;
        const out = add.outputs[0];
        if (!out) continue;
        const name = mm.name;
        const bias = bt.dims.length === 1 ? b : g.addInitializer(Tensor.fromTypedArray(g.uniqueName(`${b.name}_vector`), DataType.FLOAT, [n], bt.toTypedArray<Float32Array>()));
        let input: Value = a;
        const dims = shape as number[];
        const m = shape.length > 2 ? dims.slice(0, -1).reduce((p, d) => p * d, 1) : undefined;
        if (m !== undefined) {
          const to2d = g.addInitializer(Tensor.fromTypedArray(g.uniqueName(`${name}_gemm_input_shape`), DataType.INT64, [2], BigInt64Array.of(BigInt(m), BigInt(k))));
          const r = g.addNode('Reshape', [a, to2d], [g.uniqueName(`${a.name}_2d`)], { name: freshNodeName(g, `${name}_gemm_input_Reshape`), before: mm });
          r.outputs[0]!.type = tensorType(DataType.FLOAT, [m, k]);
          input = r.outputs[0]!;
        }
        // The MatMul and the Add go; the Gemm (and the Reshape back) take the Add's place and
        // produce its output value.
        const anchor = g.nodes[g.nodes.indexOf(add) + 1];
        mm.setOutput(0, null);
        add.setOutput(0, null);
        g.removeNodes([mm, add], true);
        g.deleteValue(y);
        if (b !== bias && b.uses.length === 0 && !b.isGraphInput && !b.isGraphOutput) g.deleteValue(b);
        const gemm = g.addNode('Gemm', [input, w, bias], [], { name, ...(anchor ? { before: anchor } : {}) });
        if (m === undefined) gemm.setOutput(0, out);
        else {
          gemm.setOutput(0, g.createValue(g.uniqueName(`${out.name}_2d`), tensorType(DataType.FLOAT, [m, n])));
          const back = g.addInitializer(Tensor.fromTypedArray(g.uniqueName(`${name}_gemm_output_shape`), DataType.INT64, [dims.length], BigInt64Array.from([...dims.slice(0, -1), n], (d) => BigInt(d))));
          const r = g.addNode('Reshape', [gemm.outputs[0]!, back], [], { name: freshNodeName(g, `${name}_gemm_output_Reshape`), ...(anchor ? { before: anchor } : {}) });
          r.setOutput(0, out);
        }
        rewritten++;
      }
      if (rewritten) ctx.log(`int8-gemm-bias: ${rewritten} MatMul + bias pair(s) -> Gemm`);
      return { changed: rewritten > 0, details: { rewritten } };
    },
  };
}

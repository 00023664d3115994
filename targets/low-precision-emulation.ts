/**
 * How this machine checks a float16/bfloat16 artifact without a GPU: the same graph computed in
 * float32 on onnxruntime's CPU provider, with every low-precision value rounded to its type after
 * the op that produces it (Cast to float16/bfloat16 and back). Low-precision initializers are
 * widened exactly. What this models: the rounding of every stored activation and weight, the way a
 * GPU kernel stores its fp16 output after computing (and accumulating) in float32. What it does not
 * model: kernels that keep intermediates in fp16 inside one op. Run the result with graph
 * optimizations disabled, so onnxruntime does not remove the rounding Cast pairs.
 */
import { DataType } from '../src/ir/dtype.js';
import type { Value } from '../src/ir/graph.js';
import type { Model } from '../src/ir/model.js';
import type { TypeInfo } from '../src/ir/types.js';
import { elemTypeOf, widenTensor } from '../passes/float16.js';
import { runPipeline } from '../passes/pass.js';
import { shapeInference } from '../passes/shape-inference.js';

const LOW = new Set<number>([DataType.FLOAT16, DataType.BFLOAT16]);
const isLow = (v: Value | null | undefined): v is Value => !!v && LOW.has(elemTypeOf(v) ?? 0);
const asType = (t: TypeInfo | undefined, elemType: number): TypeInfo => (t?.kind === 'tensor' ? { ...t, elemType } : { kind: 'tensor', elemType });

/** Rewrites `model` in place (give it a fresh copy) into its float32 emulation; returns the count of rounded values. */
export function emulateLowPrecision(model: Model): number {
  const g = model.graph;
  // Element types of every value (a decoded artifact carries value_info for some values only).
  runPipeline(model, [shapeInference]);
  let rounded = 0;
  for (const v of g.initializers) {
    if (isLow(v) && v.initializer) {
      v.initializer = widenTensor(v.initializer);
      v.type = asType(v.type, DataType.FLOAT);
    }
  }
  for (const n of [...g.nodes]) {
    const value = n.attribute('value');
    if (value?.type === 'tensor' && LOW.has(value.value.dtype)) n.setAttribute('value', { type: 'tensor', value: widenTensor(value.value) });
    const castTo = n.opType === 'Cast' && n.domain === '' ? n.attrInt('to', 0) : undefined;
    n.outputs.forEach((o, i) => {
      if (!o || !(isLow(o) || LOW.has(castTo ?? 0))) return;
      const low = castTo !== undefined && LOW.has(castTo) ? castTo : elemTypeOf(o)!;
      const isCastToLow = castTo === low;
      if (!isCastToLow) {
        // The op computes in float32; its result is rounded into `o` by a Cast.
        const raw = g.createValue(g.uniqueName(`${o.name}_f32`), asType(o.type, DataType.FLOAT));
        n.setOutput(i, raw);
        const c = g.addNode('Cast', [raw], [''], { name: g.uniqueName(`${o.name}_round`), attributes: [{ name: 'to', type: 'int', value: BigInt(low) }] });
        c.setOutput(0, o);
        placeAfter(g, c, n);
      }
      // Readers get `o` widened back to float32.
      const readers = o.uses.filter((u) => !(u.node.opType === 'Cast' && u.node.name.startsWith(`${o.name}_round`)) && u.node !== o.producer);
      if (readers.length) {
        const wide = g.createValue(g.uniqueName(`${o.name}_wide`), asType(o.type, DataType.FLOAT));
        const w = g.addNode('Cast', [o], [''], { name: g.uniqueName(`${o.name}_widen`), attributes: [{ name: 'to', type: 'int', value: BigInt(DataType.FLOAT) }] });
        w.setOutput(0, wide);
        placeAfter(g, w, o.producer!);
        for (const u of readers) u.node.setInput(u.index, wide);
      }
      rounded++;
    });
  }
  // Graph inputs given in low precision: widened once for every reader.
  for (const v of g.inputs) {
    if (!isLow(v) || v.initializer) continue;
    const readers = [...v.uses];
    const wide = g.createValue(g.uniqueName(`${v.name}_wide`), asType(v.type, DataType.FLOAT));
    const w = g.addNode('Cast', [v], [''], { name: g.uniqueName(`${v.name}_widen`), attributes: [{ name: 'to', type: 'int', value: BigInt(DataType.FLOAT) }], before: g.nodes[0] });
    w.setOutput(0, wide);
    for (const u of readers) u.node.setInput(u.index, wide);
  }
  return rounded;
}

function placeAfter(g: Model['graph'], node: Model['graph']['nodes'][number], after: Model['graph']['nodes'][number]): void {
  const i = g.nodes.indexOf(node);
  g.nodes.splice(i, 1);
  g.nodes.splice(g.nodes.indexOf(after) + 1, 0, node);
}

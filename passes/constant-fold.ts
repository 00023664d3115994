/**
 * Constant folding.
 *
 * A node is folded when every input it has is constant (an initializer that is not a graph
 * input, or a Constant node's value) and a reference kernel exists for its op at the model's
 * opset: the kernel computes the outputs, which become initializers bound to the same values, and
 * the node goes. Shape and Size also fold when their input's shape is fully static (from shape
 * inference), which is what turns the shape arithmetic of torch exports into constants.
 *
 * Size cap: folding must not bloat the model (an Expand of a scalar into a 100 MB tensor stays a
 * node). A node folds only when its outputs total at most `maxBytes` (default 1 MiB), or no more
 * than the constant inputs that only this node uses (which disappear with it), e.g. a Transpose
 * of a weight.
 *
 * Not folded: nodes with subgraphs, nondeterministic ops, nodes whose outputs are graph outputs
 * (the interface stays computed), nodes whose kernel declines (KernelUnsupported), and
 * DequantizeLinear: a quantized constant stays quantized (a QAT graph's int8 weights with the
 * scales training fixed; folding would re-inflate them to float and lose those scales).
 */
import { PeftcError } from '../src/errors.js';
import { DataType, dtypeName } from '../src/ir/dtype.js';
import type { Graph, Node, Value } from '../src/ir/graph.js';
import type { Model } from '../src/ir/model.js';
import { Tensor } from '../src/ir/tensor.js';
import { shapeOf } from '../src/ir/types.js';
import { findKernel, KernelUnsupported } from '../kernels/index.js';
import { constantTensor } from './constants.js';
import type { Pass, PassContext, PassResult } from './pass.js';

export interface ConstantFoldOptions {
  /** Largest total output size (bytes) a fold may create beyond what it frees. Default 1 MiB. */
  maxBytes?: number;
}

const NONDETERMINISTIC = new Set(['RandomNormal', 'RandomUniform', 'RandomNormalLike', 'RandomUniformLike', 'Multinomial', 'Bernoulli']);

interface Stats {
  folded: number;
  shapeFolds: number;
  skippedTooLarge: number;
  unsupported: number;
  failed: number;
}

function staticShape(v: Value): number[] | undefined {
  const s = shapeOf(v.type);
  return s && s.every((d) => typeof d === 'number' && d >= 0) ? (s as number[]) : undefined;
}

/** Shape/Size from static type info (the input itself need not be constant). */
function foldFromShape(node: Node, opset: number): Tensor | undefined {
  const x = node.inputs[0];
  if (!x || (node.domain !== '' && node.domain !== 'ai.onnx')) return undefined;
  const shape = staticShape(x);
  if (!shape) return undefined;
  if (node.opType === 'Size') {
    return Tensor.fromTypedArray('', DataType.INT64, [], BigInt64Array.of(BigInt(shape.reduce((a, b) => a * b, 1))));
  }
  if (node.opType !== 'Shape') return undefined;
  let start = 0;
  let end = shape.length;
  if (opset >= 15) {
    const r = shape.length;
    const clamp = (i: number) => Math.min(Math.max(i < 0 ? i + r : i, 0), r);
    start = clamp(node.attrInt('start', 0));
    const e = node.attribute('end');
    end = e ? clamp(node.attrInt('end', r)) : r;
  }
  const dims = shape.slice(start, Math.max(start, end));
  return Tensor.fromTypedArray('', DataType.INT64, [dims.length], BigInt64Array.from(dims, BigInt));
}

function foldGraph(g: Graph, model: Model, opts: Required<ConstantFoldOptions>, stats: Stats, ctx: PassContext): void {
  const doomed: Node[] = [];
  for (const node of g.nodes) {
    if (node.subgraphs().length) {
      for (const sub of node.subgraphs()) foldGraph(sub, model, opts, stats, ctx);
      continue;
    }
    if (NONDETERMINISTIC.has(node.opType)) continue;
    if (node.opType === 'DequantizeLinear' && (node.domain === '' || node.domain === 'ai.onnx')) continue;
    if (node.outputs.some((v) => v?.isGraphOutput)) continue;
    if (node.outputs.every((v) => !v || v.uses.length === 0)) continue; // dead: leave it to DCE
    const opset = model.opsetVersion(node.domain) ?? 0;

    let outputs: Array<Tensor | null> | undefined;
    const shapeFold = node.opType === 'Shape' || node.opType === 'Size' ? foldFromShape(node, opset) : undefined;
    if (shapeFold) {
      outputs = [shapeFold];
      stats.shapeFolds++;
    } else {
      const inputs = node.inputs.map((v) => (v ? constantTensor(v) : null));
      if (node.inputs.some((v, i) => v !== null && inputs[i] === undefined)) continue;
      const constValue = node.opType === 'Constant' && (node.domain === '' || node.domain === 'ai.onnx') ? node.attribute('value') : undefined;
      if (constValue?.type === 'tensor') {
        // Already a constant; turning it into an initializer is what makes it foldable downstream.
        outputs = [constValue.value];
      } else {
        const entry = findKernel(node.domain, node.opType, opset);
        if (!entry) continue;
        const freed = node.inputs.reduce((sum, v, i) => (v && v.uses.every((u) => u.node === node) && !v.isGraphOutput ? sum + (inputs[i]?.byteLength ?? 0) : sum), 0);
        try {
          outputs = entry.kernel(inputs as Array<Tensor | null>, node, { opsetVersion: opset });
        } catch (err) {
          if (err instanceof KernelUnsupported) stats.unsupported++;
          else {
            stats.failed++;
            ctx.log(`constant-fold: node '${node.name || node.opType}' not folded: ${(err as Error).message}`);
          }
          continue;
        }
        const produced = outputs.reduce((sum, t) => sum + (t?.byteLength ?? 0), 0);
        if (produced > Math.max(opts.maxBytes, freed)) {
          stats.skippedTooLarge++;
          continue;
        }
      }
    }
    bindOutputs(g, node, outputs);
    doomed.push(node);
    stats.folded++;
  }
  g.removeNodes(doomed, true);
}

/** Turns each output value into an initializer holding the computed tensor. */
function bindOutputs(g: Graph, node: Node, outputs: Array<Tensor | null>): void {
  node.outputs.forEach((v, i) => {
    if (!v) return;
    const t = outputs[i];
    if (!t) throw new PeftcError(`constant-fold: kernel for ${node.opType} returned no tensor for output ${i} ('${v.name}')`);
    const declared = v.type?.kind === 'tensor' ? v.type.elemType : undefined;
    if (declared !== undefined && declared !== 0 && declared !== t.dtype) {
      throw new PeftcError(`constant-fold: node '${node.name}' output '${v.name}' is declared ${dtypeName(declared)} but the kernel made ${dtypeName(t.dtype)}`);
    }
    v.initializer = t.renamed(v.name);
    if (!v.type) v.type = { kind: 'tensor', elemType: t.dtype, shape: t.dims.map((d) => ({ value: d })) };
    g.initializers.push(v);
  });
  // The values are now constants, not node outputs: detach them before the node is removed.
  node.outputs.forEach((v, i) => {
    if (v) {
      node.setOutput(i, null);
    }
  });
}

export function constantFolding(options: ConstantFoldOptions = {}): Pass {
  const opts: Required<ConstantFoldOptions> = { maxBytes: options.maxBytes ?? 1 << 20 };
  return {
    name: 'constant-fold',
    description: 'evaluate nodes whose inputs are all constant (and Shape/Size of static shapes) into initializers',
    run(model: Model, ctx: PassContext): PassResult {
      const stats: Stats = { folded: 0, shapeFolds: 0, skippedTooLarge: 0, unsupported: 0, failed: 0 };
      // Local function bodies are left alone: their constants may depend on attributes bound at each call.
      foldGraph(model.graph, model, opts, stats, ctx);
      return { changed: stats.folded > 0, details: { ...stats } };
    },
  };
}

/**
 * SmoothQuant (Xiao et al. 2023): moves activation outliers into the weights before static INT8,
 * exactly in float (the model computes the same function):
 *
 *   X W = (X diag(1/s)) (diag(s) W),   s_j = max|X_j|^alpha / max|W_j,:|^(1 - alpha)
 *
 * for every group of MatMul/Gemm nodes with constant weights reading the same activation X
 * (max|W_j,:| taken over all of the group's weights; channels where either maximum is 0 keep
 * s_j = 1; s is clamped to [1e-5, 1e5]). The weights' rows j are multiplied by s_j (a weight
 * shared with nodes outside the group is copied first); 1/s is folded into X's producer when
 * X is read by the group only and the producer allows it:
 *  - Mul(a, c) with c a constant of K values along the last axis (RMSNorm / LayerNorm weights
 *    exported as a Mul): c / s;
 *  - LayerNormalization(x, scale, bias): scale / s and bias / s (RMSNormalization, and
 *    onnxruntime's fused [Skip]SimplifiedLayerNormalization / SkipLayerNormalization likewise);
 *  - Mul(a, b) where b is a MatMul with a constant weight read only by this Mul (a gated MLP's
 *    up projection): that weight's columns / s;
 * otherwise a Mul(X, 1/s) node is inserted before the group.
 *
 * Precondition: `maxima` holds max |X_j| over calibration data for every target's activation
 * (src/calibration/collect.ts, channel statistics).
 */
import { freshNodeName } from '../src/quant/int8-plan.js';
import { PeftcError } from '../src/errors.js';
import { DataType } from '../src/ir/dtype.js';
import type { Graph, Node, Value } from '../src/ir/graph.js';
import type { Model } from '../src/ir/model.js';
import { Tensor } from '../src/ir/tensor.js';
import type { Pass, PassContext, PassResult } from './pass.js';

export interface SmoothTarget {
  /** The activation the group reads. */
  activation: string;
  /** Its channel count K (rows of every weight). */
  channels: number;
  /** The MatMul/Gemm nodes (by name) and their weights (by value name). */
  nodes: string[];
}

export interface SmoothQuantOptions {
  maxima: ReadonlyMap<string, Float32Array>;
  alpha: number;
  targets: readonly SmoothTarget[];
}

export interface SmoothQuantReport {
  alpha: number;
  groups: Array<{ activation: string; nodes: string[]; foldedInto: string; maxScale: number; minScale: number; activationMaxBefore: number; activationMaxAfter: number }>;
}

export interface SmoothQuantPass extends Pass {
  readonly report: SmoothQuantReport;
}

const isDefault = (n: Node) => n.domain === '' || n.domain === 'ai.onnx';

/** A weight as [K rows, N columns] view: how to read and write its row j (the reduction axis). */
function weightRows(n: Node): { value: Value; k: number; cols: number; rowMajor: boolean } | undefined {
  const b = n.inputs[1];
  const t = b?.initializer;
  if (!b?.isConstant || !t || t.dtype !== DataType.FLOAT || t.dims.length !== 2) return undefined;
  if (n.opType === 'MatMul') return { value: b, k: t.dims[0]!, cols: t.dims[1]!, rowMajor: true };
  if (n.opType === 'Gemm' && n.attrInt('transA', 0) === 0) {
    const transB = n.attrInt('transB', 0) !== 0;
    return { value: b, k: t.dims[transB ? 1 : 0]!, cols: t.dims[transB ? 0 : 1]!, rowMajor: !transB };
  }
  return undefined;
}

/** Replaces a constant's data (copying the value first when nodes other than `owners` read it). */
function rewriteConstant(g: Graph, v: Value, owners: readonly Node[], data: Float32Array): Value {
  const t = v.initializer!;
  const foreign = v.uses.some((u) => !owners.includes(u.node)) || v.isGraphOutput || v.isGraphInput;
  if (!foreign) {
    v.initializer = Tensor.fromTypedArray(v.name, DataType.FLOAT, [...t.dims], data);
    return v;
  }
  const copy = g.addInitializer(Tensor.fromTypedArray(g.uniqueName(`${v.name}_smoothed`), DataType.FLOAT, [...t.dims], data));
  for (const u of [...v.uses]) if (owners.includes(u.node)) u.node.setInput(u.index, copy);
  return copy;
}

export function smoothQuant(options: SmoothQuantOptions): SmoothQuantPass {
  const report: SmoothQuantReport = { alpha: options.alpha, groups: [] };
  return {
    name: 'smooth-quant',
    description: 'SmoothQuant: per-channel scales move activation outliers into the MatMul weights (exact in float)',
    report,
    run(model: Model, ctx: PassContext): PassResult {
      const g = model.graph;
      const alpha = options.alpha;
      for (const target of options.targets) {
        const x = g.localValue(target.activation);
        const xmax = options.maxima.get(target.activation);
        if (!x || !xmax) throw new PeftcError(`smooth-quant: no channel statistics for '${target.activation}'`);
        const nodes = target.nodes.map((name) => g.nodes.find((n) => n.name === name)).filter((n): n is Node => !!n && n.inputs[0] === x);
        const views = nodes.map((n) => ({ n, w: weightRows(n) })).filter((e) => e.w && e.w.k === target.channels);
        if (!views.length) continue;
        const k = target.channels;
        const wmax = new Float64Array(k);
        for (const { w } of views) {
          const d = w!.value.initializer!.toTypedArray<Float32Array>();
          for (let j = 0; j < k; j++) {
            for (let c = 0; c < w!.cols; c++) {
              const a = Math.abs(d[w!.rowMajor ? j * w!.cols + c : c * k + j]!);
              if (a > wmax[j]!) wmax[j] = a;
            }
          }
        }
        const s = new Float32Array(k);
        for (let j = 0; j < k; j++) {
          const xm = xmax[j]!;
          const wm = wmax[j]!;
          s[j] = xm > 0 && wm > 0 ? Math.min(1e5, Math.max(1e-5, xm ** alpha / wm ** (1 - alpha))) : 1;
        }
        // Weights: row j times s_j.
        const owners = views.map((v) => v.n);
        for (const { n, w } of views) {
          const d = w!.value.initializer!.toTypedArray<Float32Array>();
          const out = new Float32Array(d.length);
          for (let j = 0; j < k; j++) {
            for (let c = 0; c < w!.cols; c++) {
              const i = w!.rowMajor ? j * w!.cols + c : c * k + j;
              out[i] = Math.fround(d[i]! * s[j]!);
            }
          }
          rewriteConstant(g, n.inputs[1]!, [n], out);
        }
        const foldedInto = foldInverse(g, x, owners, s);
        let mx = 0;
        let mxAfter = 0;
        for (let j = 0; j < k; j++) {
          mx = Math.max(mx, xmax[j]!);
          mxAfter = Math.max(mxAfter, xmax[j]! / s[j]!);
        }
        report.groups.push({ activation: target.activation, nodes: owners.map((n) => n.name), foldedInto, maxScale: Math.max(...s), minScale: Math.min(...s), activationMaxBefore: mx, activationMaxAfter: mxAfter });
      }
      const folded = report.groups.filter((r) => r.foldedInto !== 'Mul inserted').length;
      ctx.log(`smooth-quant: alpha ${alpha}: ${report.groups.length} activation(s) smoothed (${folded} folded into their producer, ${report.groups.length - folded} through an inserted Mul)`);
      return { changed: report.groups.length > 0, details: { groups: report.groups.length, folded, alpha } };
    },
  };
}

/** Applies X / s: folded into X's producer when that is exact and local, else an inserted Mul. */
function foldInverse(g: Graph, x: Value, owners: readonly Node[], s: Float32Array): string {
  const k = s.length;
  const onlyOwners = !x.isGraphOutput && x.uses.every((u) => owners.includes(u.node) || u.node.opType === 'Shape' || u.node.opType === 'Size');
  const p = x.producer;
  const lastAxisVector = (v: Value | null | undefined) => {
    const t = v?.initializer;
    return !!t && v!.isConstant && t.dtype === DataType.FLOAT && t.elementCount === k && t.dims[t.dims.length - 1] === k;
  };
  const divide = (v: Value, node: Node) => {
    const d = v.initializer!.toTypedArray<Float32Array>();
    rewriteConstant(g, v, [node], d.map((e, j) => Math.fround(e / s[j]!)));
  };
  if (onlyOwners && p && isDefault(p)) {
    if (p.opType === 'Mul') {
      const ci = lastAxisVector(p.inputs[1]) ? 1 : lastAxisVector(p.inputs[0]) ? 0 : -1;
      if (ci >= 0) {
        divide(p.inputs[ci]!, p);
        return `${p.name} (Mul by a constant)`;
      }
      for (const i of [0, 1]) {
        const b = p.inputs[i];
        const mm = b?.producer;
        if (!b || !mm || !isDefault(mm) || mm.opType !== 'MatMul' || b.uses.length !== 1 || b.isGraphOutput) continue;
        const w = mm.inputs[1];
        const t = w?.initializer;
        if (!w?.isConstant || !t || t.dtype !== DataType.FLOAT || t.dims.length !== 2 || t.dims[1] !== k) continue;
        const d = t.toTypedArray<Float32Array>();
        const out = new Float32Array(d.length);
        for (let r = 0; r < t.dims[0]!; r++) for (let j = 0; j < k; j++) out[r * k + j] = Math.fround(d[r * k + j]! / s[j]!);
        rewriteConstant(g, w, [mm], out);
        return `${mm.name} (columns of the other factor's weight)`;
      }
    }
    if (p.opType === 'LayerNormalization' && lastAxisVector(p.inputs[1]) && (!p.inputs[2] || lastAxisVector(p.inputs[2]))) {
      divide(p.inputs[1]!, p);
      if (p.inputs[2]) divide(p.inputs[2], p);
      return `${p.name} (LayerNormalization scale and bias)`;
    }
    if (p.opType === 'RMSNormalization' && lastAxisVector(p.inputs[1])) {
      divide(p.inputs[1]!, p);
      return `${p.name} (RMSNormalization scale)`;
    }
  }
  // onnxruntime's fused norms (what passes/fusion.ts makes, in the default or com.microsoft
  // domain, both of which onnxruntime registers): the normalized output is output 0.
  if (onlyOwners && p && (p.domain === 'com.microsoft' || isDefault(p)) && x.producerIndex === 0) {
    const at = p.opType === 'SimplifiedLayerNormalization' ? [1] : p.opType === 'SkipSimplifiedLayerNormalization' ? [2] : p.opType === 'SkipLayerNormalization' ? [2, 3] : [];
    if (at.length && at.every((i) => !p.inputs[i] || lastAxisVector(p.inputs[i])) && lastAxisVector(p.inputs[at[0]!])) {
      for (const i of at) if (p.inputs[i]) divide(p.inputs[i]!, p);
      return `${p.name} (${p.opType} scale)`;
    }
  }
  const inv = g.addInitializer(Tensor.fromTypedArray(g.uniqueName(`${x.name}_smooth_inverse`), DataType.FLOAT, [k], s.map((e) => Math.fround(1 / e))));
  const first = g.nodes.find((n) => owners.includes(n))!;
  const mul = g.addNode('Mul', [x, inv], [g.uniqueName(`${x.name}_smoothed`)], { name: freshNodeName(g, `${x.name}_SmoothQuant`), before: first });
  mul.outputs[0]!.type = x.type;
  for (const n of owners) n.inputs.forEach((v, i) => v === x && n.setInput(i, mul.outputs[0]!));
  return 'Mul inserted';
}

/**
 * The op table: for each ONNX op (default domain) the TensorFlow ops it lowers to, the conditions
 * under which it cannot be lowered (checked by the legality check before anything is written),
 * and the lowering itself. Only ops tfjs-converter 4.22 executes are emitted, with the attributes
 * its op mapper reads (data_format, explicit_paddings, keep_dims, num_split...).
 *
 * Conventions: every value has a static shape (the legality check demands it) so Reshape, Slice
 * and friends lower to constants; int64 is int32; NHWC is the layout of Conv/pooling/BatchNorm
 * outputs and is kept through elementwise ops, Concat, Pad and keepdims reductions (lower.ts).
 */
import { bytesText } from '../../src/ir/attribute.js';
import { dtypeName, elementCount } from '../../src/ir/dtype.js';
import type { Node, Value } from '../../src/ir/graph.js';
import type { Model } from '../../src/ir/model.js';
import { attr, type TfAttr, type TfDtype } from './graphdef.js';
import { staticShape, tfDtypeOf, TO_NCHW, TO_NHWC, transposeArray, type Lowering, type OpRule } from './lower.js';

// ---- small helpers ------------------------------------------------------------------------------

const T = (d: TfDtype): Record<string, TfAttr> => ({ T: attr.dtype(d) });
const out0 = (n: Node): Value => n.outputs[0]!;
const present = (v: Value | null | undefined): v is Value => !!v && v.name !== '';
const normAxis = (a: number, rank: number) => (a < 0 ? a + rank : a);
/** Plain (NCHW) axis -> its position in NHWC. */
const NHWC_POS = [0, 3, 1, 2] as const;

function strAttr(n: Node, name: string, fallback: string): string {
  const a = n.attribute(name);
  return a && a.type === 'string' ? bytesText(a.value) : fallback;
}

/** Ints from a constant input (newer opsets) or an attribute (older), undefined when neither is there. */
function intsFrom(n: Node, ctx: Lowering, inputIndex: number, attrName: string): number[] | undefined {
  const v = n.inputs[inputIndex];
  if (present(v)) return ctx.constValues(v);
  return n.attrInts(attrName);
}

const isConstInput = (v: Value | null | undefined) => !present(v) || v.isConstant;
const usedOutputs = (n: Node, from: number) => n.outputs.slice(from).filter((v) => v && (v.uses.length || v.isGraphOutput));

/** `check` helper: the named inputs must be constants. */
function needConst(n: Node, indices: number[], what: string): string | undefined {
  for (const i of indices) if (!isConstInput(n.inputs[i])) return `${what} (input ${i}, '${n.inputs[i]!.name}') must be a constant for the TF.js lowering`;
  return undefined;
}

// ---- elementwise (with NHWC propagation) ---------------------------------------------------------

/**
 * Elementwise op over `inputs`: computed in NHWC when the output is 4-D, an input exists only in
 * NHWC, and every other input can follow (4-D, constant, or a single element); otherwise plain.
 */
function elementwise(n: Node, ctx: Lowering, op: string, attrs: Record<string, TfAttr>, inputs: Value[] = n.inputs.filter(present)): void {
  const out = out0(n);
  const outShape = ctx.shape(out);
  const nhwc =
    outShape.length === 4 &&
    inputs.some((v) => ctx.onlyNhwc(v)) &&
    inputs.every((v) => ctx.hasNhwc(v) || v.isConstant || ctx.rank(v) === 4 || elementCount(ctx.shape(v)) === 1);
  const refs = inputs.map((v) => (nhwc && (v.isConstant || ctx.rank(v) === 4) ? ctx.inputNhwc(v) : ctx.input(v)));
  ctx.define(out, ctx.emit(op, refs, attrs), nhwc ? 'nhwc' : 'plain');
}

function unary(op: string, extra: (n: Node) => Record<string, TfAttr> = () => ({})): OpRule {
  return { tf: op, lower: (n, ctx) => elementwise(n, ctx, op, { ...T(ctx.dtype(n.inputs[0]!)), ...extra(n) }, [n.inputs[0]!]) };
}

function binary(op: string): OpRule {
  return { tf: op, lower: (n, ctx) => elementwise(n, ctx, op, T(ctx.dtype(n.inputs[0]!))) };
}

/** Variadic Max/Min/Sum/Mean as a chain of binary ops (broadcasting as ONNX does). */
function variadic(op: string, mean = false): OpRule {
  return {
    tf: mean ? `${op} chain, Mul` : `${op} chain`,
    lower(n, ctx) {
      const ins = n.inputs.filter(present);
      const out = out0(n);
      const dtype = ctx.dtype(out);
      if (ins.length === 1 && !mean) {
        ctx.alias(out, ins[0]!);
        return;
      }
      let acc = ctx.input(ins[0]!);
      for (let i = 1; i < ins.length; i++) acc = ctx.emit(op, [acc, ctx.input(ins[i]!)], T(dtype), i === ins.length - 1 && !mean ? undefined : `${op}_${i}`);
      if (mean) acc = ctx.emit('Mul', [acc, ctx.floatConst([1 / ins.length], [], 'inv_n')], T(dtype));
      ctx.define(out, acc);
    },
  };
}

// ---- convolution and pooling ----------------------------------------------------------------------

interface Window {
  kernel: [number, number];
  strides: [number, number];
  dilations: [number, number];
  /** [top, left, bottom, right] */
  pads: [number, number, number, number];
}

/** Kernel, strides, dilations and the pads ONNX applies (auto_pad resolved), for a 2-D window op. */
function windowOf(n: Node, inShape: readonly number[], kernel: readonly number[]): Window {
  const strides = (n.attrInts('strides') ?? [1, 1]) as [number, number];
  const dilations = (n.attrInts('dilations') ?? [1, 1]) as [number, number];
  const autoPad = strAttr(n, 'auto_pad', 'NOTSET');
  let pads = (n.attrInts('pads') ?? [0, 0, 0, 0]) as number[];
  if (autoPad === 'VALID') pads = [0, 0, 0, 0];
  else if (autoPad === 'SAME_UPPER' || autoPad === 'SAME_LOWER') pads = samePads(inShape, kernel, strides, dilations, autoPad === 'SAME_LOWER');
  return { kernel: [kernel[0]!, kernel[1]!], strides, dilations, pads: [pads[0]!, pads[1]!, pads[2]!, pads[3]!] };
}

/** The pads of TF's SAME (ONNX SAME_UPPER: the odd one at the end), or SAME_LOWER's. */
function samePads(inShape: readonly number[], kernel: readonly number[], strides: readonly number[], dilations: readonly number[], lower = false): number[] {
  const begin: number[] = [];
  const end: number[] = [];
  for (let i = 0; i < 2; i++) {
    const size = inShape[2 + i]!;
    const eff = (kernel[i]! - 1) * dilations[i]! + 1;
    const total = Math.max(0, (Math.ceil(size / strides[i]!) - 1) * strides[i]! + eff - size);
    const b = lower ? Math.ceil(total / 2) : Math.floor(total / 2);
    begin.push(b);
    end.push(total - b);
  }
  return [begin[0]!, begin[1]!, end[0]!, end[1]!];
}

function tfPadding(w: Window, inShape: readonly number[]): 'VALID' | 'SAME' | 'EXPLICIT' {
  if (w.pads.every((p) => p === 0)) return 'VALID';
  const same = samePads(inShape, w.kernel, w.strides, w.dilations);
  return same.every((p, i) => p === w.pads[i]) ? 'SAME' : 'EXPLICIT';
}

const nhwcInts = (hw: readonly number[]) => [1, hw[0]!, hw[1]!, 1];
/** TF explicit_paddings / Pad paddings for an NHWC tensor from ONNX [t, l, b, r]. */
const nhwcPads = (p: readonly number[]) => [0, 0, p[0]!, p[2]!, p[1]!, p[3]!, 0, 0];

const conv: OpRule = {
  tf: 'Conv2D / DepthwiseConv2dNative (NHWC, HWIO filter) + BiasAdd',
  check(n) {
    const x = n.inputs[0]!;
    const w = n.inputs[1]!;
    const xs = staticShape(x);
    const ws = staticShape(w);
    if (!xs || xs.length !== 4) return `only 2-D convolutions lower (input '${x.name}' has rank ${xs?.length ?? '?'}); TF.js graph models here take NCHW 4-D inputs`;
    if (!w.isConstant || !ws) return `the filter '${w.name}' must be a constant (it is permuted to TF's HWIO layout at compile time)`;
    const group = n.attrInt('group', 1);
    const c = xs[1]!;
    const m = ws[0]!;
    if (group !== 1 && !(group === c && m % c === 0 && ws[1] === 1)) return `group ${group} (of ${c} channels) is neither 1 nor depthwise; TF.js has no grouped convolution`;
    const strides = n.attrInts('strides') ?? [1, 1];
    const dilations = n.attrInts('dilations') ?? [1, 1];
    if (strides.some((s) => s > 1) && dilations.some((d) => d > 1)) return `strides ${strides} with dilations ${dilations}: TF.js convolutions take strides or dilations above 1, not both`;
    if (present(n.inputs[2]) && !n.inputs[2].isConstant) return `the bias '${n.inputs[2].name}' must be a constant`;
    return undefined;
  },
  lower(n, ctx) {
    const [X, W, B] = [n.inputs[0]!, n.inputs[1]!, n.inputs[2]];
    const xs = ctx.shape(X);
    const ws = ctx.shape(W);
    const w = windowOf(n, xs, ws.slice(2));
    const group = n.attrInt('group', 1);
    const x = ctx.inputNhwc(X);
    const padding = tfPadding(w, xs);
    const common: Record<string, TfAttr> = {
      ...T('float32'),
      strides: attr.ints(nhwcInts(w.strides)),
      dilations: attr.ints(nhwcInts(w.dilations)),
      padding: attr.str(padding),
      data_format: attr.str('NHWC'),
      ...(padding === 'EXPLICIT' ? { explicit_paddings: attr.ints(nhwcPads(w.pads)) } : {}),
    };
    const read = () => W.initializer!.toTypedArray() as Float32Array;
    let y: string;
    if (group === 1) {
      // [M, C, kh, kw] -> HWIO [kh, kw, C, M]
      const filter = ctx.derivedConst(W, 'hwio', 'float32', [ws[2]!, ws[3]!, ws[1]!, ws[0]!], () => transposeArray(read(), ws, [2, 3, 1, 0]));
      y = ctx.emit('Conv2D', [x, filter], { ...common, use_cudnn_on_gpu: attr.bool(true) }, present(B) ? 'Conv2D' : undefined);
    } else {
      // depthwise: [C*mult, 1, kh, kw] viewed as [C, mult, kh, kw] -> [kh, kw, C, mult]
      const c = xs[1]!;
      const mult = ws[0]! / c;
      const filter = ctx.derivedConst(W, 'hwcm', 'float32', [ws[2]!, ws[3]!, c, mult], () => transposeArray(read(), [c, mult, ws[2]!, ws[3]!], [2, 3, 0, 1]));
      y = ctx.emit('DepthwiseConv2dNative', [x, filter], common, present(B) ? 'DepthwiseConv2dNative' : undefined);
    }
    if (present(B)) y = ctx.emit('BiasAdd', [y, ctx.input(B)], { ...T('float32'), data_format: attr.str('NHWC') });
    ctx.define(out0(n), y, 'nhwc');
  },
};

/** Output size of a pooling window along one axis (ONNX: floor, or ceil with ceil_mode). */
const pooledSize = (size: number, k: number, s: number, padBegin: number, padEnd: number, ceil: boolean) => (ceil ? Math.ceil : Math.floor)((size + padBegin + padEnd - k) / s) + 1;

function pool(kind: 'max' | 'avg'): OpRule {
  const op = kind === 'max' ? 'MaxPool' : 'AvgPool';
  return {
    tf: `${op} (NHWC)${kind === 'max' ? ', PadV2 with -inf for pads TF cannot express' : ', PadV2 with 0 when pads count'}`,
    check(n) {
      const xs = staticShape(n.inputs[0]!);
      if (!xs || xs.length !== 4) return `only 2-D pooling lowers (input rank ${xs?.length ?? '?'})`;
      if ((n.attrInts('dilations') ?? [1, 1]).some((d) => d !== 1)) return 'dilated pooling has no TF.js kernel';
      if (n.attrInt('storage_order', 0) !== 0) return 'storage_order 1 is not supported';
      if (usedOutputs(n, 1).length) return 'the Indices output of MaxPool has no TF.js equivalent here';
      const kernel = n.attrInts('kernel_shape')!;
      const w = windowOf(n, xs, kernel);
      const ceil = n.attrInt('ceil_mode', 0) === 1;
      const padding = tfPadding(w, xs);
      if (kind === 'avg') {
        const countPad = n.attrInt('count_include_pad', 0) === 1;
        if (!countPad && padding === 'EXPLICIT') return `pads ${w.pads} that are neither zero nor TF's SAME pads, with count_include_pad 0: TF.js average pooling cannot exclude them`;
        const grows = [0, 1].some((i) => pooledSize(xs[2 + i]!, w.kernel[i]!, w.strides[i]!, w.pads[i]!, w.pads[i + 2]!, true) !== pooledSize(xs[2 + i]!, w.kernel[i]!, w.strides[i]!, w.pads[i]!, w.pads[i + 2]!, false));
        if (ceil && grows) return 'ceil_mode 1 adds a partial window that TF.js average pooling cannot count the ONNX way';
      }
      return undefined;
    },
    lower(n, ctx) {
      const X = n.inputs[0]!;
      const xs = ctx.shape(X);
      const w = windowOf(n, xs, n.attrInts('kernel_shape')!);
      const ceil = n.attrInt('ceil_mode', 0) === 1;
      let x = ctx.inputNhwc(X);
      let padding: string = tfPadding(w, xs);
      // ceil_mode: the output size the graph says (ONNX's rule) is reached with extra pad at the
      // end (max pooling ignores -inf pads; average pooling was refused when this adds a window).
      const pads = [...w.pads];
      if (ceil) {
        const os = ctx.shape(out0(n));
        for (let i = 0; i < 2; i++) {
          const padded = xs[2 + i]! + w.pads[i]! + w.pads[i + 2]!;
          const needed = (os[2 + i]! - 1) * w.strides[i]! + w.kernel[i]!;
          if (needed > padded) pads[i + 2]! += needed - padded;
        }
        if (pads.some((p, i) => p !== w.pads[i])) padding = 'EXPLICIT';
      }
      const countPad = kind === 'avg' && n.attrInt('count_include_pad', 0) === 1;
      if (padding === 'EXPLICIT' || (countPad && padding === 'SAME')) {
        const fill = kind === 'max' ? -Infinity : 0;
        x = ctx.emit('PadV2', [x, ctx.int32Const(nhwcPads(pads), [4, 2]), ctx.floatConst([fill], [], kind === 'max' ? 'neg_inf' : 'zero')], { ...T('float32'), Tpaddings: attr.dtype('int32') }, 'pad');
        padding = 'VALID';
      }
      const y = ctx.emit(op, [x], { ...T('float32'), ksize: attr.ints(nhwcInts(w.kernel)), strides: attr.ints(nhwcInts(w.strides)), padding: attr.str(padding), data_format: attr.str('NHWC') });
      ctx.define(out0(n), y, 'nhwc');
    },
  };
}

function globalPool(op: 'Mean' | 'Max'): OpRule {
  return {
    tf: `${op} over H, W (NHWC, keep_dims)`,
    lower(n, ctx) {
      const X = n.inputs[0]!;
      const rank = ctx.rank(X);
      const attrs = { ...T(ctx.dtype(X)), Tidx: attr.dtype('int32'), keep_dims: attr.bool(true) };
      if (rank === 4) ctx.define(out0(n), ctx.emit(op, [ctx.inputNhwc(X), ctx.int32Const([1, 2])], attrs), 'nhwc');
      else ctx.define(out0(n), ctx.emit(op, [ctx.input(X), ctx.int32Const(Array.from({ length: rank - 2 }, (_, i) => i + 2))], attrs));
    },
  };
}

const batchNorm: OpRule = {
  tf: 'FusedBatchNormV3 (NHWC); Mul + AddV2 with folded constants for other ranks',
  check(n) {
    if (n.attrInt('training_mode', 0) !== 0) return 'training_mode 1 (batch statistics) is not an inference graph';
    if (usedOutputs(n, 1).length) return 'the running mean/var outputs are used';
    const r = staticShape(n.inputs[0]!)?.length ?? 0;
    if (r !== 4) return needConst(n, [1, 2, 3, 4], 'scale, bias, mean and var');
    return undefined;
  },
  lower(n, ctx) {
    const [X, scale, bias, mean, variance] = n.inputs as Value[];
    const eps = n.attrFloat('epsilon', 1e-5);
    const xs = ctx.shape(X!);
    if (xs.length === 4) {
      const y = ctx.emit('FusedBatchNormV3', [ctx.inputNhwc(X!), ctx.input(scale!), ctx.input(bias!), ctx.input(mean!), ctx.input(variance!)], {
        ...T('float32'),
        U: attr.dtype('float32'),
        epsilon: attr.float(eps),
        data_format: attr.str('NHWC'),
        is_training: attr.bool(false),
      });
      ctx.define(out0(n), y, 'nhwc');
      return;
    }
    const c = xs[1] ?? 1;
    const at = (v: Value) => v.initializer!.toTypedArray() as Float32Array;
    const a = new Float32Array(c);
    const b = new Float32Array(c);
    const [s, o, m, v] = [at(scale!), at(bias!), at(mean!), at(variance!)];
    for (let i = 0; i < c; i++) {
      a[i] = s[i]! / Math.sqrt(v[i]! + eps);
      b[i] = o[i]! - m[i]! * a[i]!;
    }
    const shape = [c, ...new Array<number>(Math.max(0, xs.length - 2)).fill(1)];
    const y = ctx.emit('Mul', [ctx.input(X!), ctx.floatConst(a, shape, `${n.name}/scale`, false)], T('float32'), 'scale');
    ctx.define(out0(n), ctx.emit('AddV2', [y, ctx.floatConst(b, shape, `${n.name}/shift`, false)], T('float32')));
  },
};

// ---- normalization, softmax, reductions ------------------------------------------------------------

const layerNorm: OpRule = {
  tf: 'Mean, Sub, Square, Mean, AddV2, Rsqrt, Mul, Mul, AddV2',
  check(n) {
    if (usedOutputs(n, 1).length) return 'the Mean / InvStdDev outputs are used';
    return undefined;
  },
  lower(n, ctx) {
    const [X, scale, bias] = n.inputs;
    const rank = ctx.rank(X!);
    const axis = normAxis(n.attrInt('axis', -1), rank);
    const axes = ctx.int32Const(Array.from({ length: rank - axis }, (_, i) => axis + i));
    const red = { ...T('float32'), Tidx: attr.dtype('int32'), keep_dims: attr.bool(true) };
    const x = ctx.input(X!);
    const mean = ctx.emit('Mean', [x, axes], red, 'mean');
    const d = ctx.emit('Sub', [x, mean], T('float32'), 'centered');
    const variance = ctx.emit('Mean', [ctx.emit('Square', [d], T('float32'), 'square'), axes], red, 'variance');
    const inv = ctx.emit('Rsqrt', [ctx.emit('AddV2', [variance, ctx.floatConst([n.attrFloat('epsilon', 1e-5)], [], 'eps')], T('float32'), 'add_eps')], T('float32'), 'rsqrt');
    let y = ctx.emit('Mul', [d, inv], T('float32'), present(scale) || present(bias) ? 'normalized' : undefined);
    if (present(scale)) y = ctx.emit('Mul', [y, ctx.input(scale)], T('float32'), present(bias) ? 'scaled' : undefined);
    if (present(bias)) y = ctx.emit('AddV2', [y, ctx.input(bias)], T('float32'));
    ctx.define(out0(n), y);
  },
};

function softmax(op: 'Softmax' | 'LogSoftmax'): OpRule {
  return {
    tf: `${op} (last axis; Transpose or Reshape around it for another axis)`,
    lower(n, ctx) {
      const X = n.inputs[0]!;
      const shape = ctx.shape(X);
      const rank = shape.length;
      const axis = normAxis(n.attrInt('axis', ctx.opset >= 13 ? -1 : 1), rank);
      const x = ctx.input(X);
      if (axis === rank - 1) {
        ctx.define(out0(n), ctx.emit(op, [x], T('float32')));
      } else if (ctx.opset < 13) {
        // Before opset 13 the input is coerced to 2-D at `axis`.
        const rows = elementCount(shape.slice(0, axis));
        const flat = ctx.reshape(x, 'float32', [rows, elementCount(shape) / rows], 'as_2d');
        ctx.define(out0(n), ctx.reshape(ctx.emit(op, [flat], T('float32'), op), 'float32', shape));
      } else {
        const perm = Array.from({ length: rank }, (_, i) => i);
        perm[axis] = rank - 1;
        perm[rank - 1] = axis;
        const moved = ctx.transpose(x, 'float32', shape, perm, 'axis_last');
        const s = ctx.emit(op, [moved], T('float32'), op);
        ctx.define(out0(n), ctx.transpose(s, 'float32', perm.map((p) => shape[p]!), perm, 'axis_back'));
      }
    },
  };
}

/** Reduction axes from the attribute or (newer opsets) the second input; undefined = all axes. */
function reduceAxes(n: Node, ctx: Lowering, axesInputSince: number): number[] | undefined {
  const fromInput = ctx.opset >= axesInputSince;
  const axes = fromInput ? (present(n.inputs[1]) ? ctx.constValues(n.inputs[1]) : undefined) : n.attrInts('axes');
  return axes && axes.length ? axes : undefined;
}

function reduce(op: string, axesInputSince: number, pre?: string, post?: string): OpRule {
  return {
    tf: [pre, op, post].filter(Boolean).join(', '),
    check: (n) => needConst(n, [1], 'axes'),
    lower(n, ctx) {
      const X = n.inputs[0]!;
      const rank = ctx.rank(X);
      const dtype = ctx.dtype(X);
      const keep = n.attrInt('keepdims', 1) === 1;
      let axes = reduceAxes(n, ctx, axesInputSince);
      if (!axes) {
        if (n.attrInt('noop_with_empty_axes', 0) === 1) {
          ctx.alias(out0(n), X);
          return;
        }
        axes = Array.from({ length: rank }, (_, i) => i);
      }
      axes = axes.map((a) => normAxis(a, rank));
      // keepdims reductions of an NHWC value stay NHWC (global pooling written as ReduceMean).
      const nhwc = keep && rank === 4 && ctx.onlyNhwc(X) && !pre;
      let x = nhwc ? ctx.inputNhwc(X) : ctx.input(X);
      if (pre) x = ctx.emit(pre, [x], T(dtype), pre);
      const tfAxes = nhwc ? axes.map((a) => NHWC_POS[a]!).sort((a, b) => a - b) : axes;
      let y = ctx.emit(op, [x, ctx.int32Const(tfAxes)], { ...T(dtype), Tidx: attr.dtype('int32'), keep_dims: attr.bool(keep) }, post ? op : undefined);
      if (post) y = ctx.emit(post, [y], T(dtype));
      ctx.define(out0(n), y, nhwc ? 'nhwc' : 'plain');
    },
  };
}

function argReduce(op: 'ArgMax' | 'ArgMin'): OpRule {
  return {
    tf: `${op} (+ Reshape for keepdims)`,
    check: (n) => (n.attrInt('select_last_index', 0) === 1 ? 'select_last_index 1 has no TF.js equivalent' : undefined),
    lower(n, ctx) {
      const X = n.inputs[0]!;
      const axis = normAxis(n.attrInt('axis', 0), ctx.rank(X));
      let y = ctx.emit(op, [ctx.input(X), ctx.int32Const([axis], [])], { ...T(ctx.dtype(X)), Tidx: attr.dtype('int32'), output_type: attr.dtype('int32') }, n.attrInt('keepdims', 1) ? op : undefined);
      if (n.attrInt('keepdims', 1)) y = ctx.reshape(y, 'int32', ctx.shape(out0(n)));
      ctx.define(out0(n), y);
    },
  };
}

// ---- matrix products ------------------------------------------------------------------------------

const matmul: OpRule = {
  tf: 'MatMul (2-D) / BatchMatMulV2 (broadcast batch); Reshape for 1-D operands',
  lower(n, ctx) {
    const [A, B] = [n.inputs[0]!, n.inputs[1]!];
    const [as, bs] = [ctx.shape(A), ctx.shape(B)];
    const out = out0(n);
    let a = ctx.input(A);
    let b = ctx.input(B);
    if (as.length > 2 && bs.length === 2) {
      // [..., M, K] x [K, N] as one 2-D product: TF.js's kernels are several times faster on it
      // than on a broadcast batch (wasm: ~5x on models/lm's projections).
      const rows = as.slice(0, -1).reduce((x, d) => x * d, 1);
      const y = ctx.emit('MatMul', [ctx.reshape(a, 'float32', [rows, as[as.length - 1]!], 'a_2d'), b], { ...T('float32'), transpose_a: attr.bool(false), transpose_b: attr.bool(false) }, 'MatMul');
      ctx.define(out, ctx.reshape(y, 'float32', ctx.shape(out)));
      return;
    }
    if (as.length === 1) a = ctx.reshape(a, 'float32', [1, as[0]!], 'a_2d');
    if (bs.length === 1) b = ctx.reshape(b, 'float32', [bs[0]!, 1], 'b_2d');
    const ra = Math.max(2, as.length);
    const rb = Math.max(2, bs.length);
    const op = ra === 2 && rb === 2 ? 'MatMul' : 'BatchMatMulV2';
    const flags: Record<string, TfAttr> = op === 'MatMul' ? { transpose_a: attr.bool(false), transpose_b: attr.bool(false) } : { adj_x: attr.bool(false), adj_y: attr.bool(false) };
    const reshaped = as.length === 1 || bs.length === 1;
    let y = ctx.emit(op, [a, b], { ...T('float32'), ...flags }, reshaped ? op : undefined);
    if (reshaped) y = ctx.reshape(y, 'float32', ctx.shape(out));
    ctx.define(out, y);
  },
};

const gemm: OpRule = {
  tf: 'MatMul (transpose_a/b) [+ Mul alpha] + BiasAdd / AddV2',
  lower(n, ctx) {
    const [A, B, C] = n.inputs;
    const alpha = n.attrFloat('alpha', 1);
    const beta = n.attrFloat('beta', 1);
    const out = out0(n);
    const ns = ctx.shape(out);
    const hasC = present(C) && beta !== 0;
    let y = ctx.emit('MatMul', [ctx.input(A!), ctx.input(B!)], { ...T('float32'), transpose_a: attr.bool(n.attrInt('transA', 0) === 1), transpose_b: attr.bool(n.attrInt('transB', 0) === 1) }, hasC || alpha !== 1 ? 'MatMul' : undefined);
    if (alpha !== 1) y = ctx.emit('Mul', [y, ctx.floatConst([alpha], [], 'alpha')], T('float32'), hasC ? 'alpha' : undefined);
    if (hasC) {
      const cs = ctx.shape(C);
      const asBias = C.isConstant && elementCount(cs) === ns[1] && (cs.length === 1 || (cs.length === 2 && cs[0] === 1));
      let c: string;
      if (C.isConstant && (beta !== 1 || asBias)) {
        const data = () => {
          const v = C.initializer!.toTypedArray() as Float32Array;
          return beta === 1 ? v : v.map((x) => x * beta);
        };
        c = beta === 1 && cs.length === 1 ? ctx.input(C) : ctx.derivedConst(C, beta === 1 ? 'bias' : 'beta_scaled', 'float32', asBias ? [ns[1]!] : cs, data);
      } else {
        c = ctx.input(C);
        if (beta !== 1) c = ctx.emit('Mul', [c, ctx.floatConst([beta], [], 'beta')], T('float32'), 'beta');
      }
      y = asBias ? ctx.emit('BiasAdd', [y, c], { ...T('float32'), data_format: attr.str('NHWC') }) : ctx.emit('AddV2', [y, c], T('float32'));
    }
    ctx.define(out, y);
  },
};

// ---- shape and data movement ------------------------------------------------------------------------

/** Reshape to the output's static shape (Reshape, Flatten, Squeeze, Unsqueeze all are this here). */
const toStaticShape = (tf = 'Reshape'): OpRule => ({
  tf,
  lower(n, ctx) {
    const X = n.inputs[0]!;
    const out = out0(n);
    const xs = ctx.shape(X);
    const os = ctx.shape(out);
    if (xs.length === os.length && xs.every((d, i) => d === os[i])) ctx.alias(out, X);
    else ctx.define(out, ctx.reshape(ctx.input(X), ctx.dtype(X), os, undefined));
  },
});

const transpose: OpRule = {
  tf: 'Transpose (composed with the layout permutation for NHWC inputs; Reshape when only size-1 axes move)',
  lower(n, ctx) {
    const X = n.inputs[0]!;
    const xs = ctx.shape(X);
    const perm = n.attrInts('perm') ?? xs.map((_, i) => xs.length - 1 - i);
    const dtype = ctx.dtype(X);
    if (ctx.onlyNhwc(X)) {
      // plain = nhwc.transpose(TO_NCHW): read the NHWC tensor directly with the composed permutation.
      const composed = perm.map((p) => TO_NCHW[p]!);
      const nhwcShape = TO_NHWC.map((p) => xs[p]!);
      ctx.define(out0(n), ctx.transpose(ctx.inputNhwc(X), dtype, nhwcShape, composed, undefined));
      return;
    }
    if (perm.every((p, i) => p === i)) {
      ctx.alias(out0(n), X);
      return;
    }
    ctx.define(out0(n), ctx.transpose(ctx.input(X), dtype, xs, perm, undefined));
  },
};

const expand: OpRule = {
  tf: 'BroadcastTo',
  lower(n, ctx) {
    const X = n.inputs[0]!;
    const out = out0(n);
    const xs = ctx.shape(X);
    const os = ctx.shape(out);
    if (xs.length === os.length && xs.every((d, i) => d === os[i])) {
      ctx.alias(out, X);
      return;
    }
    ctx.define(out, ctx.emit('BroadcastTo', [ctx.input(X), ctx.int32Const(os)], { ...T(ctx.dtype(X)), Tidx: attr.dtype('int32') }));
  },
};

const tile: OpRule = {
  tf: 'Tile',
  check: (n) => needConst(n, [1], 'repeats'),
  lower(n, ctx) {
    const X = n.inputs[0]!;
    ctx.define(out0(n), ctx.emit('Tile', [ctx.input(X), ctx.int32Const(ctx.constValues(n.inputs[1]!))], { ...T(ctx.dtype(X)), Tmultiples: attr.dtype('int32') }));
  },
};

const concat: OpRule = {
  tf: 'ConcatV2 (in NHWC when its image inputs are)',
  lower(n, ctx) {
    const ins = n.inputs.filter(present);
    const out = out0(n);
    const rank = ctx.rank(out);
    const axis = normAxis(n.attrInt('axis', 0), rank);
    const nonEmpty = ins.filter((v) => elementCount(ctx.shape(v)) > 0);
    if (nonEmpty.length === 1) {
      ctx.alias(out, nonEmpty[0]!);
      return;
    }
    const nhwc = rank === 4 && nonEmpty.some((v) => ctx.onlyNhwc(v));
    const refs = nonEmpty.map((v) => (nhwc ? ctx.inputNhwc(v) : ctx.input(v)));
    const tfAxis = nhwc ? NHWC_POS[axis]! : axis;
    ctx.define(out, ctx.emit('ConcatV2', [...refs, ctx.int32Const([tfAxis], [])], { ...T(ctx.dtype(out)), N: attr.int(refs.length), Tidx: attr.dtype('int32') }), nhwc ? 'nhwc' : 'plain');
  },
};

const split: OpRule = {
  tf: 'SplitV',
  check: (n) => needConst(n, [1], 'split'),
  lower(n, ctx) {
    const X = n.inputs[0]!;
    const xs = ctx.shape(X);
    const axis = normAxis(n.attrInt('axis', 0), xs.length);
    const k = n.outputs.length;
    let sizes = ctx.opset >= 13 ? (present(n.inputs[1]) ? ctx.constValues(n.inputs[1]) : undefined) : n.attrInts('split');
    if (!sizes || !sizes.length) {
      const chunk = Math.ceil(xs[axis]! / k);
      sizes = Array.from({ length: k }, (_, i) => (i < k - 1 ? chunk : xs[axis]! - chunk * (k - 1)));
    }
    const y = ctx.emit('SplitV', [ctx.input(X), ctx.int32Const(sizes), ctx.int32Const([axis], [])], { ...T(ctx.dtype(X)), Tlen: attr.dtype('int32'), num_split: attr.int(k) });
    n.outputs.forEach((o, i) => ctx.define(o, i === 0 ? y : `${y}:${i}`));
  },
};

/** ONNX Slice, clamped as ONNX says against the static shape, as a StridedSlice with explicit bounds. */
const slice: OpRule = {
  tf: 'StridedSlice',
  check: (n) => needConst(n, [1, 2, 3, 4], 'starts, ends, axes and steps'),
  lower(n, ctx) {
    const X = n.inputs[0]!;
    const xs = ctx.shape(X);
    const rank = xs.length;
    const starts = intsFrom(n, ctx, 1, 'starts')!;
    const ends = intsFrom(n, ctx, 2, 'ends')!;
    const axes = (ctx.opset >= 10 ? (present(n.inputs[3]) ? ctx.constValues(n.inputs[3]) : undefined) : n.attrInts('axes')) ?? starts.map((_, i) => i);
    const steps = ctx.opset >= 10 && present(n.inputs[4]) ? ctx.constValues(n.inputs[4]) : starts.map(() => 1);
    const begin = new Array<number>(rank).fill(0);
    const end = [...xs];
    const stride = new Array<number>(rank).fill(1);
    let endMask = 0;
    axes.forEach((a0, i) => {
      const a = normAxis(a0, rank);
      const dim = xs[a]!;
      const step = steps[i]!;
      let s = starts[i]!;
      let e = ends[i]!;
      if (s < 0) s += dim;
      if (e < 0) e += dim;
      if (step > 0) {
        s = Math.min(Math.max(s, 0), dim);
        e = Math.min(Math.max(e, 0), dim);
      } else {
        s = Math.min(Math.max(s, 0), dim - 1);
        e = Math.min(Math.max(e, -1), dim - 1);
      }
      begin[a] = s;
      stride[a] = step;
      // TF reads a negative end as counted from the back: "before index 0" needs the end mask.
      if (e === -1) {
        endMask |= 1 << a;
        end[a] = 0;
      } else end[a] = e;
    });
    const out = out0(n);
    if (endMask === 0 && begin.every((b) => b === 0) && stride.every((s) => s === 1) && end.every((e, i) => e === xs[i])) {
      ctx.alias(out, X);
      return;
    }
    const y = ctx.emit('StridedSlice', [ctx.input(X), ctx.int32Const(begin), ctx.int32Const(end), ctx.int32Const(stride)], {
      ...T(ctx.dtype(X)),
      Index: attr.dtype('int32'),
      begin_mask: attr.int(0),
      end_mask: attr.int(endMask),
      ellipsis_mask: attr.int(0),
      new_axis_mask: attr.int(0),
      shrink_axis_mask: attr.int(0),
    });
    ctx.define(out, y);
  },
};

const gather: OpRule = {
  tf: 'GatherV2 (+ FloorMod wrapping negative run-time indices)',
  lower(n, ctx) {
    const [X, I] = [n.inputs[0]!, n.inputs[1]!];
    const xs = ctx.shape(X);
    const axis = normAxis(n.attrInt('axis', 0), xs.length);
    const dim = xs[axis]!;
    let idx: string;
    if (I.isConstant) {
      const values = ctx.constValues(I).map((i) => (i < 0 ? i + dim : i));
      idx = ctx.int32Const(values, ctx.shape(I), 'indices');
    } else {
      idx = ctx.emit('FloorMod', [ctx.input(I), ctx.int32Const([dim], [])], T('int32'), 'wrap_indices');
    }
    ctx.define(out0(n), ctx.emit('GatherV2', [ctx.input(X), idx, ctx.int32Const([axis], [])], { Tparams: attr.dtype(ctx.dtype(X)), Tindices: attr.dtype('int32'), Taxis: attr.dtype('int32'), batch_dims: attr.int(0) }));
  },
};

const cast: OpRule = {
  tf: 'Cast (nothing when int64 -> int32 is the same TF.js type)',
  check(n) {
    const to = n.attrInt('to', 0);
    if (!tfDtypeOf(to)) return `a cast to ${dtypeName(to)}: TF.js computes in float32, int32 and bool only, so that rounding or wrapping would be lost`;
    return undefined;
  },
  lower(n, ctx) {
    const X = n.inputs[0]!;
    const from = ctx.dtype(X);
    const to = tfDtypeOf(n.attrInt('to', 0))!;
    if (from === to) {
      ctx.alias(out0(n), X);
      return;
    }
    elementwise(n, ctx, 'Cast', { SrcT: attr.dtype(from), DstT: attr.dtype(to), Truncate: attr.bool(false) }, [X]);
  },
};

const where: OpRule = {
  tf: 'SelectV2',
  lower: (n, ctx) => elementwise(n, ctx, 'SelectV2', T(ctx.dtype(n.inputs[1]!))),
};

const pow: OpRule = {
  tf: 'Pow (Square for a constant exponent 2)',
  lower(n, ctx) {
    const [X, Y] = [n.inputs[0]!, n.inputs[1]!];
    if (Y.isConstant && ctx.constValues(Y).every((e) => e === 2) && elementCount(ctx.shape(Y)) <= 1 && ctx.rank(Y) <= ctx.rank(X)) {
      elementwise(n, ctx, 'Square', T(ctx.dtype(X)), [X]);
      return;
    }
    elementwise(n, ctx, 'Pow', T(ctx.dtype(X)));
  },
};

const div: OpRule = {
  tf: 'RealDiv (integers: Cast to float32, RealDiv, Cast back: truncation, exact below 2^24)',
  lower(n, ctx) {
    const dtype = ctx.dtype(n.inputs[0]!);
    if (dtype === 'float32') {
      elementwise(n, ctx, 'RealDiv', T('float32'));
      return;
    }
    const f = (v: Value, s: string) => ctx.emit('Cast', [ctx.input(v)], { SrcT: attr.dtype(dtype), DstT: attr.dtype('float32'), Truncate: attr.bool(false) }, s);
    const q = ctx.emit('RealDiv', [f(n.inputs[0]!, 'a_float'), f(n.inputs[1]!, 'b_float')], T('float32'), 'quotient');
    ctx.define(out0(n), ctx.emit('Cast', [q], { SrcT: attr.dtype('float32'), DstT: attr.dtype(dtype), Truncate: attr.bool(false) }));
  },
};

const mod: OpRule = {
  tf: 'FloorMod',
  check: (n) => (n.attrInt('fmod', 0) === 1 ? 'fmod 1 (C fmod, the sign of the dividend) has no TF.js op' : undefined),
  lower: (n, ctx) => elementwise(n, ctx, 'FloorMod', T(ctx.dtype(n.inputs[0]!))),
};

/** Clip: ClipByValue when both bounds are constants (in NHWC when x is), else Maximum / Minimum. */
const clip: OpRule = {
  tf: 'ClipByValue (Maximum / Minimum when a bound is missing or not constant)',
  lower(n, ctx) {
    const X = n.inputs[0]!;
    const dtype = ctx.dtype(X);
    /** A bound: a constant (infinite when absent) or a run-time tensor. */
    const bound = (i: number, name: 'min' | 'max'): number | Value => {
      const none = name === 'min' ? -Infinity : Infinity;
      if (ctx.opset < 11) {
        const a = n.attribute(name);
        return a && a.type === 'float' ? a.value : none;
      }
      const v = n.inputs[i];
      if (!present(v)) return none;
      return v.isConstant ? ctx.constValues(v)[0]! : v;
    };
    const lo = bound(1, 'min');
    const hi = bound(2, 'max');
    const scalar = (x: number, h: string) => (dtype === 'float32' ? ctx.floatConst([x], [], h) : ctx.int32Const([x], [], h));
    if (typeof lo === 'number' && typeof hi === 'number' && Number.isFinite(lo) && Number.isFinite(hi)) {
      const nhwc = ctx.onlyNhwc(X);
      ctx.define(out0(n), ctx.emit('ClipByValue', [nhwc ? ctx.inputNhwc(X) : ctx.input(X), scalar(lo, 'clip_min'), scalar(hi, 'clip_max')], T(dtype)), nhwc ? 'nhwc' : 'plain');
      return;
    }
    const ref = (b: number | Value, h: string) => (typeof b === 'number' ? scalar(b, h) : ctx.input(b));
    const hasLo = typeof lo !== 'number' || Number.isFinite(lo);
    const hasHi = typeof hi !== 'number' || Number.isFinite(hi);
    if (!hasLo && !hasHi) {
      ctx.alias(out0(n), X);
      return;
    }
    let y = ctx.input(X);
    if (hasLo) y = ctx.emit('Maximum', [y, ref(lo, 'min')], T(dtype), hasHi ? 'lower_bound' : undefined);
    if (hasHi) y = ctx.emit('Minimum', [y, ref(hi, 'max')], T(dtype));
    ctx.define(out0(n), y);
  },
};

const pad: OpRule = {
  tf: 'PadV2 (constant) / MirrorPad (reflect)',
  check(n) {
    const mode = strAttr(n, 'mode', 'constant');
    if (mode !== 'constant' && mode !== 'reflect') return `mode '${mode}' has no TF.js op`;
    return needConst(n, [1, 2, 3], 'pads, constant_value and axes');
  },
  lower(n, ctx) {
    const X = n.inputs[0]!;
    const rank = ctx.rank(X);
    const dtype = ctx.dtype(X);
    const raw = intsFrom(n, ctx, 1, 'pads') ?? new Array<number>(rank * 2).fill(0);
    const axes = ctx.opset >= 18 && present(n.inputs[3]) ? ctx.constValues(n.inputs[3]).map((a) => normAxis(a, rank)) : Array.from({ length: rank }, (_, i) => i);
    const begin = new Array<number>(rank).fill(0);
    const end = new Array<number>(rank).fill(0);
    axes.forEach((a, i) => {
      begin[a] = raw[i]!;
      end[a] = raw[i + axes.length]!;
    });
    if ([...begin, ...end].some((p) => p < 0)) ctx.fail('negative pads (cropping) are not lowered');
    const mode = strAttr(n, 'mode', 'constant');
    const nhwc = rank === 4 && ctx.onlyNhwc(X);
    const order = nhwc ? TO_NHWC : Array.from({ length: rank }, (_, i) => i);
    const paddings = ctx.int32Const(order.flatMap((a) => [begin[a]!, end[a]!]), [rank, 2]);
    const x = nhwc ? ctx.inputNhwc(X) : ctx.input(X);
    let y: string;
    if (mode === 'reflect') y = ctx.emit('MirrorPad', [x, paddings], { ...T(dtype), Tpaddings: attr.dtype('int32'), mode: attr.str('REFLECT') });
    else {
      const cv = ctx.opset >= 11 ? (present(n.inputs[2]) ? ctx.constValues(n.inputs[2])[0]! : 0) : n.attrFloat('value', 0);
      y = ctx.emit('PadV2', [x, paddings, dtype === 'float32' ? ctx.floatConst([cv], [], 'pad_value') : ctx.int32Const([cv], [], 'pad_value')], { ...T(dtype), Tpaddings: attr.dtype('int32') });
    }
    ctx.define(out0(n), y, nhwc ? 'nhwc' : 'plain');
  },
};

const shapeOp: OpRule = {
  tf: 'Const (static shape)',
  lower(n, ctx) {
    const xs = ctx.shape(n.inputs[0]!);
    const r = xs.length;
    let s = n.attrInt('start', 0);
    let e = n.attribute('end') ? n.attrInt('end', r) : r;
    if (s < 0) s += r;
    if (e < 0) e += r;
    const dims = xs.slice(Math.max(0, s), Math.min(r, e));
    ctx.define(out0(n), ctx.int32Const(dims, [dims.length], 'shape'));
  },
};

const sizeOp: OpRule = {
  tf: 'Const (static size)',
  lower: (n, ctx) => ctx.define(out0(n), ctx.int32Const([elementCount(ctx.shape(n.inputs[0]!))], [], 'size')),
};

const constantOfShape: OpRule = {
  tf: 'Fill',
  lower(n, ctx) {
    const out = out0(n);
    const dtype = ctx.dtype(out);
    const a = n.attribute('value');
    const value = a && a.type === 'tensor' ? Number(a.value.toTypedArray()[0]) : 0;
    const v = dtype === 'float32' ? ctx.floatConst([value], [], 'fill') : dtype === 'int32' ? ctx.int32Const([value], [], 'fill') : ctx.boolConst([value !== 0], []);
    ctx.define(out, ctx.emit('Fill', [ctx.int32Const(ctx.shape(out)), v], { ...T(dtype), index_type: attr.dtype('int32') }));
  },
};

const range: OpRule = {
  tf: 'Range',
  lower(n, ctx) {
    const dtype = ctx.dtype(out0(n));
    ctx.define(out0(n), ctx.emit('Range', n.inputs.slice(0, 3).map((v) => ctx.input(v!)), { Tidx: attr.dtype(dtype) }));
  },
};

const cumsum: OpRule = {
  tf: 'Cumsum',
  check: (n) => needConst(n, [1], 'axis'),
  lower(n, ctx) {
    const X = n.inputs[0]!;
    const axis = normAxis(ctx.constValues(n.inputs[1]!)[0]!, ctx.rank(X));
    ctx.define(out0(n), ctx.emit('Cumsum', [ctx.input(X), ctx.int32Const([axis], [])], { ...T(ctx.dtype(X)), Tidx: attr.dtype('int32'), exclusive: attr.bool(n.attrInt('exclusive', 0) === 1), reverse: attr.bool(n.attrInt('reverse', 0) === 1) }));
  },
};

const topk: OpRule = {
  tf: 'TopKV2 (last axis, largest, sorted)',
  check(n) {
    const r = staticShape(n.inputs[0]!)?.length ?? 0;
    if (normAxis(n.attrInt('axis', -1), r) !== r - 1) return 'TopK over an axis other than the last';
    if (n.attrInt('largest', 1) !== 1) return 'largest 0 (smallest k) has no TF.js op';
    return needConst(n, [1], 'K');
  },
  lower(n, ctx) {
    const X = n.inputs[0]!;
    const k = ctx.constValues(n.inputs[1]!)[0]!;
    const y = ctx.emit('TopKV2', [ctx.input(X), ctx.int32Const([k], [])], { ...T(ctx.dtype(X)), sorted: attr.bool(true) });
    ctx.define(n.outputs[0], y);
    ctx.define(n.outputs[1], `${y}:1`);
  },
};

const identity: OpRule = { tf: '(nothing: the output is the input)', lower: (n, ctx) => ctx.alias(out0(n), n.inputs[0]!) };

const dropout: OpRule = {
  tf: '(nothing: inference)',
  check(n) {
    if (usedOutputs(n, 1).length) return 'the mask output is used';
    const training = n.inputs[2];
    if (present(training) && (!training.isConstant || Number(training.initializer!.toTypedArray()[0]) !== 0)) return 'training_mode is not a constant false';
    return undefined;
  },
  lower: identity.lower,
};

// ---- activations written with several TF ops ------------------------------------------------------

/** Emits `build(x)` elementwise over one input, keeping NHWC when the input has it. */
function composite(tf: string, build: (ctx: Lowering, x: string, n: Node) => string): OpRule {
  return {
    tf,
    lower(n, ctx) {
      const X = n.inputs[0]!;
      const nhwc = ctx.onlyNhwc(X);
      ctx.define(out0(n), build(ctx, nhwc ? ctx.inputNhwc(X) : ctx.input(X), n), nhwc ? 'nhwc' : 'plain');
    },
  };
}

const f = T('float32');

const hardSigmoidOf = (ctx: Lowering, x: string, alpha: number, beta: number, last: boolean) => {
  const ax = ctx.emit('Mul', [x, ctx.floatConst([alpha], [], 'alpha')], f, 'alpha_x');
  const shifted = ctx.emit('AddV2', [ax, ctx.floatConst([beta], [], 'beta')], f, 'plus_beta');
  return ctx.emit('ClipByValue', [shifted, ctx.floatConst([0], [], 'zero'), ctx.floatConst([1], [], 'one')], f, last ? undefined : 'hard_sigmoid');
};

const SELU_ALPHA = 1.67326319217681884765625;
const SELU_GAMMA = 1.05070102214813232421875;

// ---- the table ------------------------------------------------------------------------------------

export const TFJS_OPS: Readonly<Record<string, OpRule>> = {
  // elementwise, one input
  Relu: unary('Relu'),
  Sigmoid: unary('Sigmoid'),
  Tanh: unary('Tanh'),
  Exp: unary('Exp'),
  Log: unary('Log'),
  Sqrt: unary('Sqrt'),
  Neg: unary('Neg'),
  Abs: unary('Abs'),
  Reciprocal: unary('Reciprocal'),
  Erf: unary('Erf'),
  Sin: unary('Sin'),
  Cos: unary('Cos'),
  Tan: unary('Tan'),
  Asin: unary('Asin'),
  Acos: unary('Acos'),
  Atan: unary('Atan'),
  Sinh: unary('Sinh'),
  Cosh: unary('Cosh'),
  Asinh: unary('Asinh'),
  Acosh: unary('Acosh'),
  Atanh: unary('Atanh'),
  Floor: unary('Floor'),
  Ceil: unary('Ceil'),
  Round: unary('Round'),
  Sign: unary('Sign'),
  Softplus: unary('Softplus'),
  Not: unary('LogicalNot'),
  IsNaN: unary('IsNan'),
  LeakyRelu: unary('LeakyRelu', (n) => ({ alpha: attr.float(n.attrFloat('alpha', 0.01)) })),
  Elu: composite('Elu (SelectV2 form for alpha != 1)', (ctx, x, n) => {
    const alpha = n.attrFloat('alpha', 1);
    if (alpha === 1) return ctx.emit('Elu', [x], f);
    const neg = ctx.emit('Mul', [ctx.emit('Elu', [x], f, 'elu'), ctx.floatConst([alpha], [], 'alpha')], f, 'scaled');
    return ctx.emit('SelectV2', [ctx.emit('Greater', [x, ctx.floatConst([0], [], 'zero')], f, 'positive'), x, neg], f);
  }),
  Selu: composite('Selu (Elu form for other constants)', (ctx, x, n) => {
    const alpha = n.attrFloat('alpha', SELU_ALPHA);
    const gamma = n.attrFloat('gamma', SELU_GAMMA);
    if (Math.fround(alpha) === Math.fround(SELU_ALPHA) && Math.fround(gamma) === Math.fround(SELU_GAMMA)) return ctx.emit('Selu', [x], f);
    const neg = ctx.emit('Mul', [ctx.emit('Elu', [x], f, 'elu'), ctx.floatConst([alpha], [], 'alpha')], f, 'alpha_elu');
    const y = ctx.emit('SelectV2', [ctx.emit('Greater', [x, ctx.floatConst([0], [], 'zero')], f, 'positive'), x, neg], f, 'select');
    return ctx.emit('Mul', [y, ctx.floatConst([gamma], [], 'gamma')], f);
  }),
  HardSigmoid: composite('Mul, AddV2, ClipByValue', (ctx, x, n) => hardSigmoidOf(ctx, x, n.attrFloat('alpha', 0.2), n.attrFloat('beta', 0.5), true)),
  HardSwish: composite('Mul, AddV2, ClipByValue, Mul', (ctx, x) => ctx.emit('Mul', [x, hardSigmoidOf(ctx, x, 1 / 6, 0.5, false)], f)),
  Softsign: composite('Abs, AddV2, RealDiv', (ctx, x) => ctx.emit('RealDiv', [x, ctx.emit('AddV2', [ctx.emit('Abs', [x], f, 'abs'), ctx.floatConst([1], [], 'one')], f, 'one_plus_abs')], f)),
  Gelu: composite('Gelu as Erf (or Tanh) arithmetic', (ctx, x, n) => {
    const half = ctx.emit('Mul', [x, ctx.floatConst([0.5], [], 'half')], f, 'half_x');
    let inner: string;
    if (strAttr(n, 'approximate', 'none') === 'tanh') {
      const cube = ctx.emit('Mul', [ctx.emit('Square', [x], f, 'square'), x], f, 'cube');
      const poly = ctx.emit('AddV2', [x, ctx.emit('Mul', [cube, ctx.floatConst([0.044715], [], 'c')], f, 'c_cube')], f, 'poly');
      inner = ctx.emit('Tanh', [ctx.emit('Mul', [poly, ctx.floatConst([Math.sqrt(2 / Math.PI)], [], 'sqrt_2_pi')], f, 'scaled')], f, 'tanh');
    } else {
      inner = ctx.emit('Erf', [ctx.emit('Mul', [x, ctx.floatConst([Math.SQRT1_2], [], 'rsqrt2')], f, 'scaled')], f, 'erf');
    }
    return ctx.emit('Mul', [half, ctx.emit('AddV2', [inner, ctx.floatConst([1], [], 'one')], f, 'one_plus')], f);
  }),
  // elementwise, several inputs
  Add: binary('AddV2'),
  Sub: binary('Sub'),
  Mul: binary('Mul'),
  Div: div,
  Pow: pow,
  Mod: mod,
  PRelu: binary('Prelu'),
  Equal: binary('Equal'),
  Greater: binary('Greater'),
  Less: binary('Less'),
  GreaterOrEqual: binary('GreaterEqual'),
  LessOrEqual: binary('LessEqual'),
  And: binary('LogicalAnd'),
  Or: binary('LogicalOr'),
  Xor: binary('NotEqual'),
  Where: where,
  Max: variadic('Maximum'),
  Min: variadic('Minimum'),
  Sum: variadic('AddV2'),
  Mean: variadic('AddV2', true),
  Clip: clip,
  Cast: cast,
  // matrix products
  MatMul: matmul,
  Gemm: gemm,
  // convolution, pooling, normalization
  Conv: conv,
  MaxPool: pool('max'),
  AveragePool: pool('avg'),
  GlobalAveragePool: globalPool('Mean'),
  GlobalMaxPool: globalPool('Max'),
  BatchNormalization: batchNorm,
  LayerNormalization: layerNorm,
  Softmax: softmax('Softmax'),
  LogSoftmax: softmax('LogSoftmax'),
  // reductions
  ReduceMean: reduce('Mean', 18),
  ReduceSum: reduce('Sum', 13),
  ReduceMax: reduce('Max', 18),
  ReduceMin: reduce('Min', 18),
  ReduceProd: reduce('Prod', 18),
  ReduceSumSquare: reduce('Sum', 18, 'Square'),
  ReduceL1: reduce('Sum', 18, 'Abs'),
  ReduceL2: reduce('Sum', 18, 'Square', 'Sqrt'),
  ReduceLogSum: reduce('Sum', 18, undefined, 'Log'),
  ArgMax: argReduce('ArgMax'),
  ArgMin: argReduce('ArgMin'),
  CumSum: cumsum,
  TopK: topk,
  // shape and data movement
  Reshape: toStaticShape(),
  Flatten: toStaticShape('Reshape (static shape)'),
  Squeeze: toStaticShape('Reshape (static shape)'),
  Unsqueeze: toStaticShape('Reshape (static shape)'),
  Transpose: transpose,
  Expand: expand,
  Tile: tile,
  Concat: concat,
  Split: split,
  Slice: slice,
  Gather: gather,
  Pad: pad,
  Shape: shapeOp,
  Size: sizeOp,
  ConstantOfShape: constantOfShape,
  Range: range,
  Identity: identity,
  Dropout: dropout,
};

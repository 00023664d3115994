/**
 * Rules for the compute-heavy ops: MatMul (numpy semantics) and its integer/quantized forms,
 * Gemm, Einsum, Conv/ConvTranspose and their quantized forms, pooling, reductions and ArgMax/Min,
 * Quantize/DequantizeLinear, recurrent layers, and a few ops with fixed output layouts (RoiAlign,
 * GridSample, NonMaxSuppression, losses, signal ops, random generators).
 */
import { DataType } from '../../src/ir/dtype.js';
import { broadcastShapes, isNum, mergeDim, normAxes, normAxis, type D, type Shape } from './dims.js';
import { attrIntOr, attrIntsOr, attrString, each, type Fact, type Rule, type RuleInput } from './rule.js';

/** numpy matmul: 1-D operands get a dim prepended/appended and removed again; batch dims broadcast. */
function matmulShape(a: Shape | undefined, b: Shape | undefined): Shape | undefined {
  if (!a || !b || a.length === 0 || b.length === 0) return undefined;
  const a2 = a.length === 1 ? [1, a[0]!] : a;
  const b2 = b.length === 1 ? [b[0]!, 1] : b;
  if (mergeDim(a2[a2.length - 1]!, b2[b2.length - 2]!) === undefined) return undefined;
  const batch = broadcastShapes([a2.slice(0, -2), b2.slice(0, -2)]);
  if (!batch) return undefined;
  return [...batch, ...(a.length === 1 ? [] : [a2[a2.length - 2]!]), ...(b.length === 1 ? [] : [b2[b2.length - 1]!])];
}

interface Window {
  kernel: number[];
  strides: number[];
  dilations: number[];
  pads: number[];
  autoPad: string;
}

function windowAttrs(r: RuleInput, kernel: number[]): Window | undefined {
  const n = kernel.length;
  const strides = attrIntsOr(r.node, 'strides') ?? new Array<number>(n).fill(1);
  const dilations = attrIntsOr(r.node, 'dilations') ?? new Array<number>(n).fill(1);
  const pads = attrIntsOr(r.node, 'pads') ?? new Array<number>(2 * n).fill(0);
  if (strides.length !== n || dilations.length !== n || pads.length !== 2 * n || strides.some((s) => s <= 0)) return undefined;
  return { kernel, strides, dilations, pads, autoPad: attrString(r.node, 'auto_pad', 'NOTSET') };
}

/** Spatial output dims of a convolution or pooling window over `spatial` input dims. */
function windowOutput(spatial: Shape, w: Window, ceilMode: boolean, pooling: boolean): Shape {
  return spatial.map((n, i) => {
    if (!isNum(n)) return null;
    const k = (w.kernel[i]! - 1) * w.dilations[i]! + 1;
    const s = w.strides[i]!;
    if (w.autoPad === 'SAME_UPPER' || w.autoPad === 'SAME_LOWER') {
      // onnxruntime pads dilated pooling windows as if undilated (an output can come out smaller
      // than ceil(n / s), even empty): unknown there.
      return pooling && w.dilations[i] !== 1 ? null : Math.ceil(n / s);
    }
    if (w.autoPad === 'VALID') {
      // onnxruntime applies ceil_mode to VALID pooling too; the spec's formula does not.
      if (n < k || (ceilMode && (n - k) % s !== 0)) return null;
      return Math.floor((n - k) / s) + 1;
    }
    if (w.autoPad !== 'NOTSET') return null;
    const span = n + w.pads[i]! + w.pads[i + spatial.length]! - k;
    if (span < 0) return null;
    if (!ceilMode) return Math.floor(span / s) + 1;
    const out = Math.ceil(span / s) + 1;
    // Runtimes differ on a last window that starts inside the end padding; leave that case unknown.
    return (out - 1) * s >= n + w.pads[i]! ? null : out;
  });
}

/** Conv-like: X [N, C, spatial...], W [M, C/group, kernel...] -> [N, M, out...]. */
function conv(xAt: number, wAt: number, elemType: (r: RuleInput) => number | undefined): Rule {
  return (r) => {
    const x = r.shape(xAt);
    const w = r.shape(wAt);
    const t = elemType(r);
    const rank = x?.length ?? w?.length;
    if (rank === undefined || rank < 3) return [{ elemType: t }];
    const kernel = attrIntsOr(r.node, 'kernel_shape') ?? (w && w.slice(2).every(isNum) ? (w.slice(2) as number[]) : undefined);
    const win = kernel && kernel.length === rank - 2 ? windowAttrs(r, kernel) : undefined;
    const spatial = x && win ? windowOutput(x.slice(2), win, false, false) : new Array<D>(rank - 2).fill(null);
    return [{ elemType: t, shape: [x?.[0] ?? null, w?.[0] ?? null, ...spatial] }];
  };
}

const convTranspose: Rule = (r) => {
  const x = r.shape(0);
  const w = r.shape(1);
  const elemType = r.elem(0);
  const rank = x?.length ?? w?.length;
  if (rank === undefined || rank < 3) return [{ elemType }];
  const n = rank - 2;
  const group = attrIntOr(r.node, 'group', 1);
  const wOut = w?.[1] ?? null;
  const channels = group === 1 ? wOut : isNum(wOut) ? wOut * group : null;
  const outputShape = attrIntsOr(r.node, 'output_shape');
  const kernel = attrIntsOr(r.node, 'kernel_shape') ?? (w && w.slice(2).every(isNum) ? (w.slice(2) as number[]) : undefined);
  let spatial: Shape = new Array<D>(n).fill(null);
  if (outputShape && outputShape.length >= n) spatial = outputShape.slice(-n);
  else if (x && kernel && kernel.length === n) {
    const win = windowAttrs(r, kernel);
    const outPad = attrIntsOr(r.node, 'output_padding') ?? new Array<number>(n).fill(0);
    if (win && outPad.length === n) {
      spatial = x.slice(2).map((d, i) => {
        if (!isNum(d)) return null;
        const s = win.strides[i]!;
        const span = outPad[i]! + (kernel[i]! - 1) * win.dilations[i]! + 1;
        // SAME pads up to d * stride; a window narrower than the stride would need negative padding,
        // which runtimes clamp differently: unknown then.
        if (win.autoPad === 'SAME_UPPER' || win.autoPad === 'SAME_LOWER') return span >= s ? d * s : null;
        const pads = win.autoPad === 'VALID' ? 0 : win.autoPad === 'NOTSET' ? win.pads[i]! + win.pads[i + n]! : NaN;
        return s * (d - 1) + span - pads;
      });
    }
  }
  return [{ elemType, shape: [x?.[0] ?? null, channels, ...spatial] }];
};

function pool(withIndices: boolean): Rule {
  return (r) => {
    const x = r.shape(0);
    const elemType = r.elem(0);
    const kernel = attrIntsOr(r.node, 'kernel_shape');
    let shape: Shape | undefined;
    if (x && x.length >= 3) {
      const win = kernel && kernel.length === x.length - 2 ? windowAttrs(r, kernel) : undefined;
      const ceil = attrIntOr(r.node, 'ceil_mode', 0) === 1;
      shape = [x[0]!, x[1]!, ...(win ? windowOutput(x.slice(2), win, ceil, true) : x.slice(2).map(() => null))];
    }
    return withIndices ? [{ elemType, shape }, { elemType: DataType.INT64, shape }] : [{ elemType, shape }];
  };
}

const globalPool: Rule = (r) => {
  const x = r.shape(0);
  return [{ elemType: r.elem(0), shape: x && x.length >= 2 ? x.map((d, i) => (i < 2 ? d : 1)) : undefined }];
};

const maxUnpool: Rule = (r) => {
  const x = r.shape(0);
  const elemType = r.elem(0);
  if (r.has(2)) {
    const out = r.values(2);
    return [{ elemType, shape: out ?? (x ? new Array<D>(x.length).fill(null) : undefined) }];
  }
  const kernel = attrIntsOr(r.node, 'kernel_shape');
  if (!x || x.length < 3 || !kernel || kernel.length !== x.length - 2) return [{ elemType }];
  const win = windowAttrs(r, kernel);
  const n = kernel.length;
  const spatial = x.slice(2).map((d, i) => (isNum(d) && win ? (d - 1) * win.strides[i]! + kernel[i]! - win.pads[i]! - win.pads[i + n]! : null));
  return [{ elemType, shape: [x[0]!, x[1]!, ...spatial] }];
};

/** Reductions: axes from an attribute (before `inputFrom`) or a constant input; keepdims. */
function reduce(inputFrom: number, outType?: number): Rule {
  return (r) => {
    const x = r.shape(0);
    const elemType = outType ?? r.elem(0);
    if (!x) return [{ elemType }];
    const keep = attrIntOr(r.node, 'keepdims', 1) === 1;
    const given = r.opset >= inputFrom ? r.has(1) : r.node.attribute('axes') !== undefined;
    let axes = r.opset >= inputFrom ? (r.has(1) ? r.ints(1) : undefined) : attrIntsOr(r.node, 'axes');
    if (given && !axes) {
      // Unknown axes: with keepdims the rank stays and each dim is itself or 1.
      return [{ elemType, shape: keep ? x.map((d) => (d === 1 ? 1 : null)) : undefined }];
    }
    if (!axes || axes.length === 0) {
      if (r.opset >= inputFrom && attrIntOr(r.node, 'noop_with_empty_axes', 0) === 1) return [{ elemType, shape: x }];
      axes = x.map((_, i) => i);
    }
    const set = normAxes(axes, x.length);
    if (!set) return [{ elemType }];
    return [{ elemType, shape: keep ? x.map((d, i) => (set.includes(i) ? 1 : d)) : x.filter((_, i) => !set.includes(i)) }];
  };
}

const argReduce: Rule = (r) => {
  const x = r.shape(0);
  if (!x) return [{ elemType: DataType.INT64 }];
  const axis = normAxis(attrIntOr(r.node, 'axis', 0), x.length);
  if (axis === undefined) return [{ elemType: DataType.INT64 }];
  const keep = attrIntOr(r.node, 'keepdims', 1) === 1;
  return [{ elemType: DataType.INT64, shape: keep ? x.map((d, i) => (i === axis ? 1 : d)) : x.filter((_, i) => i !== axis) }];
};

/** Einsum: letters bind dims, `...` broadcasts; implicit output is `...` then letters seen once, sorted. */
const einsum: Rule = (r) => {
  const elemType = r.elem(0);
  const eq = attrString(r.node, 'equation', '').replace(/\s/g, '');
  const [lhs, rhs] = eq.split('->') as [string, string | undefined];
  const terms = lhs.split(',');
  if (terms.length !== r.node.inputs.length) return [{ elemType }];
  const letters = new Map<string, D>();
  const counts = new Map<string, number>();
  const ellipses: Shape[] = [];
  for (let t = 0; t < terms.length; t++) {
    const s = r.shape(t);
    if (!s) return [{ elemType }];
    const term = terms[t]!;
    const dots = term.indexOf('...');
    const named = term.replace('...', '');
    if (!/^[a-zA-Z]*$/.test(named)) return [{ elemType }];
    const ellRank = s.length - named.length;
    if (ellRank < 0 || (dots < 0 && ellRank !== 0)) return [{ elemType }];
    const before = dots < 0 ? named.length : dots;
    ellipses.push(s.slice(before, before + ellRank));
    for (let i = 0; i < named.length; i++) {
      const c = named[i]!;
      const d = s[i < before ? i : i + ellRank]!;
      counts.set(c, (counts.get(c) ?? 0) + 1);
      const had = letters.get(c);
      // A letter's dims must agree (a 1 against a known dim would broadcast in some runtimes: unknown).
      const merged = had === undefined ? d : had === 1 || d === 1 ? (had === d ? 1 : null) : mergeDim(had, d);
      if (merged === undefined) return [{ elemType }];
      letters.set(c, merged);
    }
  }
  const ell = broadcastShapes(ellipses);
  if (!ell) return [{ elemType }];
  const out = rhs ?? `...${[...counts].filter(([, n]) => n === 1).map(([c]) => c).sort().join('')}`;
  const shape: Shape = [];
  for (let i = 0; i < out.length; i++) {
    if (out.startsWith('...', i)) {
      shape.push(...ell);
      i += 2;
      continue;
    }
    const d = letters.get(out[i]!);
    if (d === undefined) return [{ elemType }];
    shape.push(d);
  }
  return [{ elemType, shape }];
};

/** RNN/GRU/LSTM: Y [seq, dirs, batch, hidden] and Y_h/Y_c [dirs, batch, hidden] (batch first with layout=1). */
const recurrent: Rule = (r) => {
  const x = r.shape(0);
  const elemType = r.elem(0);
  const layout = attrIntOr(r.node, 'layout', 0);
  const dirs = attrString(r.node, 'direction', 'forward') === 'bidirectional' ? 2 : 1;
  const hidden: D = r.node.attribute('hidden_size') ? attrIntOr(r.node, 'hidden_size', 0) : (r.shape(2)?.[2] ?? null);
  if (!x || x.length !== 3) return r.node.outputs.map(() => ({ elemType }));
  const [seq, batch] = layout === 0 ? [x[0]!, x[1]!] : [x[1]!, x[0]!];
  const y: Shape = layout === 0 ? [seq, dirs, batch, hidden] : [batch, seq, dirs, hidden];
  const state: Shape = layout === 0 ? [dirs, batch, hidden] : [batch, dirs, hidden];
  return r.node.outputs.map((_, i) => ({ elemType, shape: i === 0 ? y : state }));
};

const quantizeLinear: Rule = (r) => {
  const zp = r.has(2) ? r.elem(2) : undefined;
  const declared = attrIntOr(r.node, 'output_dtype', 0);
  return [{ elemType: zp ?? (declared || DataType.UINT8), shape: r.shape(0) }];
};

const loss: Rule = (r) => {
  const reduction = attrString(r.node, 'reduction', 'mean');
  const out: Fact = { elemType: r.elem(0), shape: reduction === 'none' ? r.shape(1) : [] };
  return r.node.opType === 'SoftmaxCrossEntropyLoss' ? [out, { elemType: r.elem(0), shape: r.shape(0) }] : [out];
};

const window: Rule = (r) => {
  const size = r.values(0)?.[0];
  return [{ elemType: attrIntOr(r.node, 'output_datatype', DataType.FLOAT), shape: [isNum(size) || typeof size === 'string' ? size : null] }];
};

/** DFT (opset 17-19: axis attribute): the axis dim becomes dft_length (halved + 1 when onesided); last dim 2. */
const dft: Rule = (r) => {
  const x = r.shape(0);
  const elemType = r.elem(0);
  if (!x || r.opset >= 20 || x.length < 3) return [{ elemType }];
  const axis = normAxis(attrIntOr(r.node, 'axis', 1), x.length);
  if (axis === undefined || axis === 0 || axis === x.length - 1) return [{ elemType }];
  const length = r.has(1) ? (r.values(1)?.[0] ?? null) : x[axis]!;
  const onesided = attrIntOr(r.node, 'onesided', 0) === 1;
  const n = onesided ? (isNum(length) ? Math.floor(length / 2) + 1 : null) : length;
  return [{ elemType, shape: x.map((d, i) => (i === axis ? n : i === x.length - 1 ? 2 : d)) }];
};

/** STFT: [batch, frames, bins, 2]; frames = floor((signal - frame_length) / step) + 1. */
const stft: Rule = (r) => {
  const x = r.shape(0);
  const elemType = r.elem(0);
  if (!x || x.length !== 3) return [{ elemType }];
  const step = r.ints(1)?.[0];
  const frame = r.has(3) ? r.ints(3)?.[0] : r.has(2) ? r.shape(2)?.[0] : undefined;
  const signal = x[1]!;
  const frames = isNum(signal) && isNum(frame) && isNum(step) && step > 0 && signal >= frame ? Math.floor((signal - frame) / step) + 1 : null;
  const onesided = attrIntOr(r.node, 'onesided', 1) === 1;
  const bins = isNum(frame) ? (onesided ? Math.floor(frame / 2) + 1 : frame) : null;
  return [{ elemType, shape: [x[0]!, frames, bins, 2] }];
};

const melWeightMatrix: Rule = (r) => {
  const bins = r.ints(0)?.[0];
  const dftLength = r.ints(1)?.[0];
  return [{ elemType: attrIntOr(r.node, 'output_datatype', DataType.FLOAT), shape: [isNum(dftLength) ? Math.floor(dftLength / 2) + 1 : null, bins ?? null] }];
};

export const NN_RULES: Record<string, Rule> = {
  MatMul: (r) => [{ elemType: r.elem(0), shape: matmulShape(r.shape(0), r.shape(1)) }],
  MatMulInteger: (r) => [{ elemType: DataType.INT32, shape: matmulShape(r.shape(0), r.shape(1)) }],
  QLinearMatMul: (r) => [{ elemType: r.elem(7), shape: matmulShape(r.shape(0), r.shape(3)) }],
  Gemm: (r) => {
    const a = r.shape(0);
    const b = r.shape(1);
    const m = a?.length === 2 ? a[attrIntOr(r.node, 'transA', 0) ? 1 : 0]! : null;
    const n = b?.length === 2 ? b[attrIntOr(r.node, 'transB', 0) ? 0 : 1]! : null;
    return [{ elemType: r.elem(0), shape: [m, n] }];
  },
  Einsum: einsum,
  Conv: conv(0, 1, (r) => r.elem(0)),
  ConvInteger: conv(0, 1, () => DataType.INT32),
  QLinearConv: conv(0, 3, (r) => r.elem(7)),
  ConvTranspose: convTranspose,
  MaxPool: pool(true),
  ...each(['AveragePool', 'LpPool'], pool(false)),
  ...each(['GlobalAveragePool', 'GlobalMaxPool', 'GlobalLpPool'], globalPool),
  MaxUnpool: maxUnpool,
  ReduceSum: reduce(13),
  ...each(['ReduceMean', 'ReduceMax', 'ReduceMin', 'ReduceProd', 'ReduceL1', 'ReduceL2', 'ReduceLogSum', 'ReduceLogSumExp', 'ReduceSumSquare'], reduce(18)),
  ...each(['ArgMax', 'ArgMin'], argReduce),
  QuantizeLinear: quantizeLinear,
  // The output has the scale's type unless opset 23's output_dtype says otherwise.
  DequantizeLinear: (r) => [{ elemType: attrIntOr(r.node, 'output_dtype', 0) || (r.elem(1) ?? (r.opset < 19 ? DataType.FLOAT : undefined)), shape: r.shape(0) }],
  DynamicQuantizeLinear: (r) => [
    { elemType: DataType.UINT8, shape: r.shape(0) },
    { elemType: DataType.FLOAT, shape: [] },
    { elemType: DataType.UINT8, shape: [] },
  ],
  ...each(['RNN', 'GRU', 'LSTM'], recurrent),
  RoiAlign: (r) => {
    const x = r.shape(0);
    const rois = r.shape(1)?.[0] ?? r.shape(2)?.[0] ?? null;
    return [{ elemType: r.elem(0), shape: [rois, x?.[1] ?? null, attrIntOr(r.node, 'output_height', 1), attrIntOr(r.node, 'output_width', 1)] }];
  },
  GridSample: (r) => {
    const x = r.shape(0);
    const grid = r.shape(1);
    if (!x || !grid || grid.length !== x.length) return [{ elemType: r.elem(0) }];
    return [{ elemType: r.elem(0), shape: [mergeDim(x[0]!, grid[0]!) ?? null, x[1]!, ...grid.slice(1, -1)] }];
  },
  NonMaxSuppression: () => [{ elemType: DataType.INT64, shape: [null, 3] }],
  ...each(['NegativeLogLikelihoodLoss', 'SoftmaxCrossEntropyLoss'], loss),
  ...each(['HannWindow', 'HammingWindow', 'BlackmanWindow'], window),
  DFT: dft,
  STFT: stft,
  MelWeightMatrix: melWeightMatrix,
  RandomUniform: (r) => [{ elemType: attrIntOr(r.node, 'dtype', DataType.FLOAT), shape: attrIntsOr(r.node, 'shape') }],
  RandomNormal: (r) => [{ elemType: attrIntOr(r.node, 'dtype', DataType.FLOAT), shape: attrIntsOr(r.node, 'shape') }],
  Multinomial: (r) => [{ elemType: attrIntOr(r.node, 'dtype', DataType.INT32), shape: [r.shape(0)?.[0] ?? null, attrIntOr(r.node, 'sample_size', 1)] }],
  TfIdfVectorizer: (r) => {
    const x = r.shape(0);
    const idx = attrIntsOr(r.node, 'ngram_indexes');
    const width = idx && idx.length ? Math.max(...idx) + 1 : null;
    return [{ elemType: DataType.FLOAT, shape: x?.length === 1 ? [width] : x?.length === 2 ? [x[0]!, width] : undefined }];
  },
};

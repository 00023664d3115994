/**
 * Opset upgrade for the default ONNX domain ("" / "ai.onnx"): raises the model's import (and that
 * of every local function importing the domain) to a target version up to 21, rewriting the nodes
 * whose operator changed meaning or signature on the way, so forms that need a newer opset (e.g.
 * blocked 4-bit DequantizeLinear-21 for --quant-format qdq) can be used on models exported at 17.
 *
 * Why a table and not "bump the number": an operator version added in (from, to] may change what
 * a node computes or how it is written, and a node is only safe to carry over when every such
 * version is known to be either a type extension / new attribute whose default keeps the old
 * behaviour, or is rewritten here. Every version bump of every default-domain operator in opsets
 * 12..21 is classified below from ONNX's docs/Changelog.md; anything not classified, an operator
 * that did not exist at the source opset, or an unknown operator is refused by name. Nothing is
 * changed unless every node can be carried over (the plan is made first, then applied).
 *
 * Sources older than opset 11 are refused (opset 11 moved Pad/Clip attributes to inputs and
 * changed Resize, Slice... at 10/11; not rewritten here). From 11, the opset-13 changes are
 * rewritten: Softmax/LogSoftmax/Hardmax axis semantics, Split/Squeeze/Unsqueeze/ReduceSum
 * attributes to inputs. Other domains (com.microsoft, ai.onnx.ml...) are untouched.
 */
import { PeftcError } from '../src/errors.js';
import { bytesText, textBytes, type Attribute } from '../src/ir/attribute.js';
import { DataType, dtypeInfo } from '../src/ir/dtype.js';
import type { Graph, Node, Value } from '../src/ir/graph.js';
import type { IrFunction, Model } from '../src/ir/model.js';
import { Tensor } from '../src/ir/tensor.js';
import { shapeOf, tensorType } from '../src/ir/types.js';
import type { Pass, PassContext, PassResult } from './pass.js';

/** The oldest default-domain opset this pass upgrades from (see the header for why). */
export const MIN_SOURCE_OPSET = 11;
/** The newest opset it upgrades to: every version bump up to here is classified below. */
export const MAX_TARGET_OPSET = 21;

/** IR version each opset needs (ONNX's release table: 1.9 = opset 14 / IR 7 ... 1.16 = opset 21 / IR 10). */
const IR_FOR_OPSET: Record<number, number> = { 11: 6, 12: 7, 13: 7, 14: 7, 15: 8, 16: 8, 17: 8, 18: 8, 19: 9, 20: 9, 21: 10 };

/**
 * Since-versions of every default-domain operator, up to opset 21 (from ONNX's docs/Changelog.md).
 * An op absent here is not an ONNX operator at these opsets.
 */
const OP_VERSIONS: Record<string, readonly number[]> = {
  Abs: [1, 6, 13], Acos: [7], Acosh: [9], Add: [1, 6, 7, 13, 14], AffineGrid: [20], And: [1, 7], ArgMax: [1, 11, 12, 13],
  ArgMin: [1, 11, 12, 13], Asin: [7], Asinh: [9], Atan: [7], Atanh: [9], AveragePool: [1, 7, 10, 11, 19],
  BatchNormalization: [1, 6, 7, 9, 14, 15], Bernoulli: [15], BitShift: [11], BitwiseAnd: [18], BitwiseNot: [18],
  BitwiseOr: [18], BitwiseXor: [18], BlackmanWindow: [17], Cast: [1, 6, 9, 13, 19, 21], CastLike: [15, 19, 21],
  Ceil: [1, 6, 13], Celu: [12], CenterCropPad: [18], Clip: [1, 6, 11, 12, 13], Col2Im: [18], Compress: [9, 11],
  Concat: [1, 4, 11, 13], ConcatFromSequence: [11], Constant: [1, 9, 11, 12, 13, 19, 21], ConstantOfShape: [9, 20, 21],
  Conv: [1, 11], ConvInteger: [10], ConvTranspose: [1, 11], Cos: [7], Cosh: [9], CumSum: [11, 14], DFT: [17, 20],
  DeformConv: [19], DepthToSpace: [1, 11, 13], DequantizeLinear: [10, 13, 19, 21], Det: [11], Div: [1, 6, 7, 13, 14],
  Dropout: [1, 6, 7, 10, 12, 13], DynamicQuantizeLinear: [11], Einsum: [12], Elu: [1, 6], Equal: [1, 7, 11, 13, 19],
  Erf: [9, 13], Exp: [1, 6, 13], Expand: [8, 13], EyeLike: [9], Flatten: [1, 9, 11, 13, 21], Floor: [1, 6, 13],
  GRU: [1, 3, 7, 14], Gather: [1, 11, 13], GatherElements: [11, 13], GatherND: [11, 12, 13], Gelu: [20],
  Gemm: [1, 6, 7, 9, 11, 13], GlobalAveragePool: [1], GlobalLpPool: [1, 2], GlobalMaxPool: [1], Greater: [1, 7, 9, 13],
  GreaterOrEqual: [12, 16], GridSample: [16, 20], GroupNormalization: [18, 21], HammingWindow: [17], HannWindow: [17],
  HardSigmoid: [1, 6], HardSwish: [14], Hardmax: [1, 11, 13], Identity: [1, 13, 14, 16, 19, 21], If: [1, 11, 13, 16, 19, 21],
  ImageDecoder: [20], InstanceNormalization: [1, 6], IsInf: [10, 20], IsNaN: [9, 13, 20], LRN: [1, 13], LSTM: [1, 7, 14],
  LayerNormalization: [17], LeakyRelu: [1, 6, 16], Less: [1, 7, 9, 13], LessOrEqual: [12, 16], Log: [1, 6, 13],
  LogSoftmax: [1, 11, 13], Loop: [1, 11, 13, 16, 19, 21], LpNormalization: [1], LpPool: [1, 2, 11, 18], MatMul: [1, 9, 13],
  MatMulInteger: [10], Max: [1, 6, 8, 12, 13], MaxPool: [1, 8, 10, 11, 12], MaxRoiPool: [1], MaxUnpool: [9, 11],
  Mean: [1, 6, 8, 13], MeanVarianceNormalization: [9, 13], MelWeightMatrix: [17], Min: [1, 6, 8, 12, 13], Mish: [18],
  Mod: [10, 13], Mul: [1, 6, 7, 13, 14], Multinomial: [7], Neg: [1, 6, 13], NegativeLogLikelihoodLoss: [12, 13],
  NonMaxSuppression: [10, 11], NonZero: [9, 13], Not: [1], OneHot: [9, 11], Optional: [15], OptionalGetElement: [15, 18],
  OptionalHasElement: [15, 18], Or: [1, 7], PRelu: [1, 6, 7, 9, 16], Pad: [1, 2, 11, 13, 18, 19, 21], Pow: [1, 7, 12, 13, 15],
  QLinearConv: [10], QLinearMatMul: [10, 21], QuantizeLinear: [10, 13, 19, 21], RNN: [1, 7, 14], RandomNormal: [1],
  RandomNormalLike: [1], RandomUniform: [1], RandomUniformLike: [1], Range: [11], Reciprocal: [1, 6, 13],
  ReduceL1: [1, 11, 13, 18], ReduceL2: [1, 11, 13, 18], ReduceLogSum: [1, 11, 13, 18], ReduceLogSumExp: [1, 11, 13, 18],
  ReduceMax: [1, 11, 12, 13, 18, 20], ReduceMean: [1, 11, 13, 18], ReduceMin: [1, 11, 12, 13, 18, 20],
  ReduceProd: [1, 11, 13, 18], ReduceSum: [1, 11, 13], ReduceSumSquare: [1, 11, 13, 18], RegexFullMatch: [20],
  Relu: [1, 6, 13, 14], Reshape: [1, 5, 13, 14, 19, 21], Resize: [10, 11, 13, 18, 19], ReverseSequence: [10],
  RoiAlign: [10, 16], Round: [11], STFT: [17], Scan: [8, 9, 11, 16, 19, 21], Scatter: [9, 11],
  ScatterElements: [11, 13, 16, 18], ScatterND: [11, 13, 16, 18], Selu: [1, 6], SequenceAt: [11], SequenceConstruct: [11],
  SequenceEmpty: [11], SequenceErase: [11], SequenceInsert: [11], SequenceLength: [11], SequenceMap: [17],
  Shape: [1, 13, 15, 19, 21], Shrink: [9], Sigmoid: [1, 6, 13], Sign: [9, 13], Sin: [7], Sinh: [9], Size: [1, 13, 19, 21],
  Slice: [1, 10, 11, 13], Softmax: [1, 11, 13], SoftmaxCrossEntropyLoss: [12, 13], Softplus: [1], Softsign: [1],
  SpaceToDepth: [1, 13], Split: [1, 2, 11, 13, 18], SplitToSequence: [11], Sqrt: [1, 6, 13], Squeeze: [1, 11, 13, 21],
  StringConcat: [20], StringNormalizer: [10], StringSplit: [20], Sub: [1, 6, 7, 13, 14], Sum: [1, 6, 8, 13], Tan: [7],
  Tanh: [1, 6, 13], TfIdfVectorizer: [9], ThresholdedRelu: [10], Tile: [1, 6, 13], TopK: [1, 10, 11], Transpose: [1, 13, 21],
  Trilu: [14], Unique: [11], Unsqueeze: [1, 11, 13, 21], Upsample: [1, 7, 9, 10], Where: [9, 16], Xor: [1, 7],
};

/** Where a node lives: the graph (main, a subgraph, or a function body) and how to name it. */
interface Site {
  graph: Graph;
  /** The local function whose body (or a subgraph of it) holds the node, if any. */
  fn: IrFunction | undefined;
  /** The root graph of the scope: names made unique against it cover every nested graph. */
  root: Graph;
}

/** A rewrite decided in the planning phase; applying it cannot fail. */
type Apply = () => void;
/** Checks a node and returns its rewrite, null when it needs none, or a refusal reason (string). */
type Rewriter = (node: Node, site: Site) => Apply | null | string;

/**
 * How each version bump in 12..21 carries a node over:
 *  - 'compatible': only new types, or new attributes/optional inputs whose defaults give the old
 *    behaviour (the Changelog diff of the two versions says so);
 *  - a Rewriter: the node is rewritten to the new form (or refused when it cannot be);
 *  - bumps that introduce the op are implied by OP_VERSIONS (first entry) and refused: the node
 *    did not exist at the source opset.
 */
const RULES: Record<string, 'compatible' | Rewriter> = {
  // 12: select_last_index (default 0 = first index, as before).
  'ArgMax-12': 'compatible', 'ArgMin-12': 'compatible',
  // 12: types (Clip/Max/Min/MaxPool/ReduceMax/ReduceMin integers, Pow exponent types); Constant value_* attributes.
  'Clip-12': 'compatible', 'Max-12': 'compatible', 'Min-12': 'compatible', 'MaxPool-12': 'compatible', 'Pow-12': 'compatible',
  'ReduceMax-12': 'compatible', 'ReduceMin-12': 'compatible', 'Constant-12': 'compatible',
  // 12: batch_dims (default 0 = the old gather).
  'GatherND-12': 'compatible',
  // 12: ratio attribute -> optional input; training_mode input (default false = inference, as an
  // opset-10 graph runs).
  'Dropout-12': dropoutRatioToInput,
  // 13: bfloat16 and other types, differentiability notes and clarified wording only (the
  // Changelog diff of each pair shows no change of meaning).
  ...Object.fromEntries(
    ['Abs', 'Add', 'ArgMax', 'ArgMin', 'Cast', 'Ceil', 'Clip', 'Concat', 'Constant', 'DepthToSpace', 'Div', 'Dropout', 'Equal', 'Exp', 'Expand',
      'Flatten', 'Floor', 'Gather', 'GatherElements', 'GatherND', 'Gemm', 'Greater', 'Identity', 'If', 'IsNaN', 'LRN', 'Less', 'Log', 'Loop',
      'MatMul', 'Max', 'Mean', 'MeanVarianceNormalization', 'Min', 'Mod', 'Mul', 'Neg', 'NegativeLogLikelihoodLoss', 'NonZero', 'Pad', 'Pow',
      'Reciprocal', 'ReduceL1', 'ReduceL2', 'ReduceLogSum', 'ReduceLogSumExp', 'ReduceMax', 'ReduceMean', 'ReduceMin', 'ReduceProd',
      'ReduceSumSquare', 'Relu', 'Reshape', 'ScatterElements', 'ScatterND', 'Shape', 'Sigmoid', 'Sign', 'Size', 'Slice', 'SoftmaxCrossEntropyLoss',
      'SpaceToDepth', 'Sqrt', 'Sub', 'Sum', 'Tanh', 'Tile', 'Transpose'].map((op) => [`${op}-13`, 'compatible']),
  ),
  // 13: per-axis scales (a 1-D scale; opset 10 takes scalars only, for which axis is ignored).
  'QuantizeLinear-13': 'compatible', 'DequantizeLinear-13': 'compatible',
  // 13: Erf is restricted to float types.
  'Erf-13': erfFloatOnly,
  // 13: the input is no longer coerced to 2-D at `axis` (default 1); it works on one axis (default -1).
  'Softmax-13': softmaxSingleAxis, 'LogSoftmax-13': softmaxSingleAxis, 'Hardmax-13': softmaxSingleAxis,
  // 13: attributes -> inputs.
  'ReduceSum-13': reduceAxesToInput,
  'Split-13': splitSizesToInput,
  'Squeeze-13': axesToInput,
  'Unsqueeze-13': axesToInput,
  // 13: coordinate_transformation_mode 'tf_half_pixel_for_nn' removed.
  'Resize-13': resizeNoTfHalfPixelForNn,
  // 14: uint8/int8/int16 types.
  'Add-14': 'compatible', 'Sub-14': 'compatible', 'Mul-14': 'compatible', 'Div-14': 'compatible',
  // 14: BatchNormalization's optional outputs changed from (mean, var, saved_mean, saved_var) of
  // training to (running_mean, running_var) under a new training_mode attribute; inference (one
  // output) is unchanged.
  'BatchNormalization-14': batchNormInference,
  // 15: scale/B may have another type than X.
  'BatchNormalization-15': 'compatible',
  'CumSum-14': 'compatible', 'Relu-14': 'compatible', 'Identity-14': 'compatible',
  // 14: layout attribute, default 0 = the old layout.
  'GRU-14': 'compatible', 'LSTM-14': 'compatible', 'RNN-14': 'compatible',
  // 14: allowzero, default 0 = the old meaning of a 0 in the shape.
  'Reshape-14': 'compatible',
  'Pow-15': 'compatible',
  // 15: start/end attributes, defaults = whole shape.
  'Shape-15': 'compatible',
  'OptionalGetElement-18': 'compatible', 'OptionalHasElement-18': 'compatible',
  'GreaterOrEqual-16': 'compatible', 'LessOrEqual-16': 'compatible', 'LeakyRelu-16': 'compatible', 'PRelu-16': 'compatible',
  'Where-16': 'compatible', 'Identity-16': 'compatible', 'If-16': 'compatible', 'Loop-16': 'compatible', 'Scan-16': 'compatible',
  // 16: reduction attribute, default 'none' = plain scatter.
  'ScatterElements-16': 'compatible', 'ScatterND-16': 'compatible',
  // 16: coordinate_transformation_mode, whose default half_pixel shifts by -0.5; the old behaviour
  // is output_half_pixel.
  'RoiAlign-16': roiAlignMode,
  // 18: axes attribute -> optional second input; no axes still reduces over all axes
  // (noop_with_empty_axes defaults to 0).
  ...Object.fromEntries(
    ['ReduceL1', 'ReduceL2', 'ReduceLogSum', 'ReduceLogSumExp', 'ReduceMax', 'ReduceMean', 'ReduceMin', 'ReduceProd', 'ReduceSumSquare'].map(
      (op) => [`${op}-18`, reduceAxesToInput],
    ),
  ),
  // 18: Split wants either the split input or num_outputs; without split, the equal split into
  // as many parts as outputs is num_outputs = output count.
  'Split-18': splitNumOutputs,
  // 18: axes input (optional, default all axes); 19: wrap mode; 21: types.
  'Pad-18': 'compatible', 'Pad-19': 'compatible', 'Pad-21': 'compatible',
  // 18: antialias/axes/keep_aspect_ratio_policy with defaults = old behaviour; 19: a new
  // coordinate_transformation_mode value.
  'Resize-18': 'compatible', 'Resize-19': 'compatible',
  // 18: max/min reductions added.
  'ScatterElements-18': 'compatible', 'ScatterND-18': 'compatible',
  // 18: ceil_mode (default 0) and dilations (default 1).
  'LpPool-18': 'compatible',
  // 19: dilations (default 1).
  'AveragePool-19': 'compatible',
  // 19: saturate (default 1) applies only to float8 targets, which did not exist before 19; 21: int4 types.
  'Cast-19': 'compatible', 'CastLike-19': 'compatible', 'Cast-21': 'compatible', 'CastLike-21': 'compatible',
  'QuantizeLinear-19': 'compatible', 'DequantizeLinear-19': 'compatible',
  // 21: blocked quantization (block_size default 0 = per-tensor/per-axis as before), output_dtype
  // (default 0 = from the zero point), int4/int16 types.
  'QuantizeLinear-21': 'compatible', 'DequantizeLinear-21': 'compatible',
  'Constant-19': 'compatible', 'Constant-21': 'compatible', 'Equal-19': 'compatible',
  'Identity-19': 'compatible', 'Identity-21': 'compatible', 'If-19': 'compatible', 'If-21': 'compatible',
  'Loop-19': 'compatible', 'Loop-21': 'compatible', 'Scan-19': 'compatible', 'Scan-21': 'compatible',
  'Reshape-19': 'compatible', 'Reshape-21': 'compatible', 'Shape-19': 'compatible', 'Shape-21': 'compatible',
  'Size-19': 'compatible', 'Size-21': 'compatible',
  // 20: types (bfloat16, float8; 21: int4).
  'ConstantOfShape-20': 'compatible', 'ConstantOfShape-21': 'compatible', 'IsInf-20': 'compatible', 'IsNaN-20': 'compatible',
  // 20: bool inputs.
  'ReduceMax-20': 'compatible', 'ReduceMin-20': 'compatible',
  // 20: axis attribute (default 1) -> optional third input (default -2).
  'DFT-20': dftAxisToInput,
  // 20: modes renamed (bilinear -> linear, bicubic -> cubic; the default is the same interpolation).
  'GridSample-20': gridSampleModes,
  // 21: scale and bias per channel [C] instead of per group [G].
  'GroupNormalization-21': groupNormPerChannel,
  'Flatten-21': 'compatible', 'Squeeze-21': 'compatible', 'Unsqueeze-21': 'compatible', 'Transpose-21': 'compatible',
  'QLinearMatMul-21': 'compatible',
};

const label = (node: Node, site: Site): string =>
  `node '${node.name || '(unnamed)'}' (${node.opType}${site.fn ? ` in function '${site.fn.name}'` : site.graph.parent ? ` in subgraph '${site.graph.name}'` : ''})`;

/** A fresh int64 constant usable by `node`: an initializer in a graph, a Constant node in a function body. */
function int64Constant(site: Site, node: Node, base: string, values: readonly bigint[], dims: readonly number[]): Value {
  const name = site.root.uniqueName(base);
  const tensor = Tensor.fromTypedArray(name, DataType.INT64, dims, BigInt64Array.from(values));
  if (site.fn) {
    // FunctionProto has no initializers.
    const c = site.graph.addNode('Constant', [], [name], { name: site.root.uniqueName(`${base}_const`), attributes: [{ name: 'value', type: 'tensor', value: tensor }], before: node });
    c.outputs[0]!.type = tensorType(DataType.INT64, [...dims]);
    return c.outputs[0]!;
  }
  const v = site.graph.addInitializer(tensor);
  v.type = tensorType(DataType.INT64, [...dims]);
  return v;
}

function removeAttribute(node: Node, name: string): void {
  node.attributes = node.attributes.filter((a) => a.name !== name);
}

/** The attribute, refused when it is a reference to a function attribute (its value is unknown here). */
function literal(node: Node, site: Site, name: string): Attribute | string | undefined {
  const a = node.attribute(name);
  if (a?.type === 'ref') return `${label(node, site)}: attribute '${name}' refers to the function attribute '${a.refAttrName}', whose value is only known per call`;
  return a;
}

function reduceAxesToInput(node: Node, site: Site): Apply | null | string {
  const a = literal(node, site, 'axes');
  if (typeof a === 'string') return a;
  if (node.inputs.length > 1) return `${label(node, site)}: has ${node.inputs.length} inputs; before opset 18 it takes one`;
  if (node.attribute('noop_with_empty_axes') && node.opType !== 'ReduceSum') return `${label(node, site)}: carries noop_with_empty_axes, which its source opset does not define`;
  if (!a) return null; // reduce over all axes, in both forms
  if (a.type !== 'ints') return `${label(node, site)}: attribute 'axes' is ${a.type}, expected ints`;
  const axes = a.value;
  return () => {
    removeAttribute(node, 'axes');
    // An empty list reduced over all axes before 18; an empty (absent) input does too with noop_with_empty_axes = 0.
    if (axes.length) node.setInput(1, int64Constant(site, node, `${node.name || node.opType}_axes`, axes, [axes.length]));
  };
}

function splitSizesToInput(node: Node, site: Site): Apply | null | string {
  const a = literal(node, site, 'split');
  if (typeof a === 'string') return a;
  if (!a) return null; // equal parts, in both forms
  if (a.type !== 'ints') return `${label(node, site)}: attribute 'split' is ${a.type}, expected ints`;
  if (node.inputs.length > 1) return `${label(node, site)}: has both a split attribute and a second input`;
  const sizes = a.value;
  return () => {
    removeAttribute(node, 'split');
    node.setInput(1, int64Constant(site, node, `${node.name || node.opType}_split`, sizes, [sizes.length]));
  };
}

/** Squeeze/Unsqueeze-13: axes attribute -> second input (Squeeze without axes removes every 1, in both forms). */
function axesToInput(node: Node, site: Site): Apply | null | string {
  const a = literal(node, site, 'axes');
  if (typeof a === 'string') return a;
  if (node.inputs.length > 1) return `${label(node, site)}: has ${node.inputs.length} inputs; before opset 13 it takes one`;
  if (!a) return node.opType === 'Squeeze' ? null : `${label(node, site)}: Unsqueeze-11 needs an axes attribute`;
  if (a.type !== 'ints') return `${label(node, site)}: attribute 'axes' is ${a.type}, expected ints`;
  const axes = a.value;
  if (axes.length === 0 && node.opType === 'Unsqueeze') return `${label(node, site)}: Unsqueeze with empty axes`;
  return () => {
    removeAttribute(node, 'axes');
    if (axes.length) node.setInput(1, int64Constant(site, node, `${node.name || node.opType}_axes`, axes, [axes.length]));
  };
}

function dropoutRatioToInput(node: Node, site: Site): Apply | null | string {
  const a = literal(node, site, 'ratio');
  if (typeof a === 'string') return a;
  if (node.inputs.length > 1) return `${label(node, site)}: has ${node.inputs.length} inputs; before opset 12 it takes one`;
  if (!a) return null; // default 0.5 in both forms
  if (a.type !== 'float') return `${label(node, site)}: attribute 'ratio' is ${a.type}, expected float`;
  const ratio = a.value;
  return () => {
    removeAttribute(node, 'ratio');
    const name = site.root.uniqueName(`${node.name || node.opType}_ratio`);
    const t = Tensor.fromTypedArray(name, DataType.FLOAT, [], Float32Array.of(ratio));
    let v: Value;
    if (site.fn) {
      v = site.graph.addNode('Constant', [], [name], { name: site.root.uniqueName(`${name}_const`), attributes: [{ name: 'value', type: 'tensor', value: t }], before: node }).outputs[0]!;
    } else v = site.graph.addInitializer(t);
    v.type = tensorType(DataType.FLOAT, []);
    node.setInput(1, v);
  };
}

function erfFloatOnly(node: Node, site: Site): Apply | null | string {
  const t = node.inputs[0]?.type;
  if (t?.kind === 'tensor' && !dtypeInfo(t.elemType).isFloat) return `${label(node, site)}: Erf-13 takes float types only; its input is not float`;
  return null;
}

function resizeNoTfHalfPixelForNn(node: Node, site: Site): Apply | null | string {
  const a = literal(node, site, 'coordinate_transformation_mode');
  if (typeof a === 'string') return a;
  if (a?.type === 'string' && bytesText(a.value) === 'tf_half_pixel_for_nn') return `${label(node, site)}: coordinate_transformation_mode 'tf_half_pixel_for_nn' was removed at opset 13; not rewritten`;
  return null;
}

/**
 * Softmax/LogSoftmax/Hardmax before 13 flatten the input to 2-D at `axis` (default 1) and
 * normalize each row; from 13 they work along one axis (default -1). Where the input's rank is
 * known and the axis is the last one, the two agree and only the axis is written out; otherwise
 * the old form is spelled out: Flatten(x, axis) -> op(axis=1) -> Reshape to Shape(x).
 */
function softmaxSingleAxis(node: Node, site: Site): Apply | null | string {
  const a = literal(node, site, 'axis');
  if (typeof a === 'string') return a;
  if (a && a.type !== 'int') return `${label(node, site)}: attribute 'axis' is ${a.type}, expected int`;
  const axis = a ? Number(a.value) : 1;
  const x = node.inputs[0];
  const out = node.outputs[0];
  if (!x || !out) return `${label(node, site)}: has no input or output`;
  const rank = shapeOf(x.type)?.length;
  if (rank !== undefined && (axis < 0 ? axis + rank : axis) === rank - 1) {
    return () => node.setAttribute('axis', { type: 'int', value: BigInt(rank - 1) });
  }
  return () => {
    const g = site.graph;
    const base = node.name || node.opType;
    const flat = g.addNode('Flatten', [x], [site.root.uniqueName(`${base}_2d`)], {
      name: site.root.uniqueName(`${base}_flatten`),
      attributes: [{ name: 'axis', type: 'int', value: BigInt(axis) }],
      before: node,
    }).outputs[0]!;
    const shape = g.addNode('Shape', [x], [site.root.uniqueName(`${base}_shape`)], { name: site.root.uniqueName(`${base}_shape`), before: node }).outputs[0]!;
    node.setInput(0, flat);
    node.setAttribute('axis', { type: 'int', value: 1n });
    const y2d = g.createValue(site.root.uniqueName(`${base}_y2d`));
    node.setOutput(0, y2d);
    const next = g.nodes[g.nodes.indexOf(node) + 1];
    const reshape = g.addNode('Reshape', [y2d, shape], [], { name: site.root.uniqueName(`${base}_reshape`), ...(next ? { before: next } : {}) });
    reshape.setOutput(0, out);
  };
}

function splitNumOutputs(node: Node, site: Site): Apply | null | string {
  if (node.attribute('num_outputs')) return `${label(node, site)}: carries num_outputs, which its source opset does not define`;
  // Explicit sizes (an input, or from 11 a split attribute that the Split-13 step turns into one):
  // the same sizes input in both forms.
  if (node.inputs[1] || node.attribute('split')) return null;
  const n = node.outputs.length;
  return () => node.setAttribute('num_outputs', { type: 'int', value: BigInt(n) });
}

function dftAxisToInput(node: Node, site: Site): Apply | null | string {
  const a = literal(node, site, 'axis');
  if (typeof a === 'string') return a;
  if (a && a.type !== 'int') return `${label(node, site)}: attribute 'axis' is ${a.type}, expected int`;
  if (node.inputs.length > 2) return `${label(node, site)}: has ${node.inputs.length} inputs; before opset 20 it takes at most two`;
  // DFT-17's default axis is 1; DFT-20's is -2. Always write it out.
  const axis = a ? a.value : 1n;
  return () => {
    removeAttribute(node, 'axis');
    node.setInput(2, int64Constant(site, node, `${node.name || node.opType}_axis`, [axis], []));
  };
}

function gridSampleModes(node: Node, site: Site): Apply | null | string {
  const a = literal(node, site, 'mode');
  if (typeof a === 'string') return a;
  if (!a) return null; // default bilinear (16) = default linear (20)
  if (a.type !== 'string') return `${label(node, site)}: attribute 'mode' is ${a.type}, expected string`;
  const mode = bytesText(a.value);
  const renamed: Record<string, string> = { bilinear: 'linear', bicubic: 'cubic', nearest: 'nearest' };
  const to = renamed[mode];
  if (!to) return `${label(node, site)}: mode '${mode}' is not a GridSample-16 mode`;
  return () => node.setAttribute('mode', { type: 'string', value: textBytes(to) });
}

function roiAlignMode(node: Node, site: Site): Apply | null | string {
  if (node.attribute('coordinate_transformation_mode')) return `${label(node, site)}: carries coordinate_transformation_mode, which its source opset does not define`;
  return () => node.setAttribute('coordinate_transformation_mode', { type: 'string', value: textBytes('output_half_pixel') });
}

function batchNormInference(node: Node, site: Site): Apply | null | string {
  if (node.outputs.slice(1).some((o) => o)) {
    return `${label(node, site)}: uses the training outputs (mean, var, saved_mean, saved_var) of BatchNormalization-9, which opset 14 replaced with running_mean/running_var under training_mode; not rewritten`;
  }
  return null;
}

/** A constant initializer reachable from the node's graph (the value itself, when bound to data). */
function constantTensor(v: Value | null | undefined): Tensor | undefined {
  return v && v.isConstant ? v.initializer : undefined;
}

function groupNormPerChannel(node: Node, site: Site): Apply | null | string {
  const g = literal(node, site, 'num_groups');
  if (typeof g === 'string') return g;
  if (!g || g.type !== 'int') return `${label(node, site)}: needs an int num_groups attribute`;
  const groups = Number(g.value);
  const c = shapeOf(node.inputs[0]?.type)?.[1];
  if (typeof c !== 'number') return `${label(node, site)}: GroupNormalization-21 takes scale/bias per channel; the channel count of '${node.inputs[0]?.name}' is not known, so the per-group scale/bias cannot be expanded`;
  if (groups <= 0 || c % groups !== 0) return `${label(node, site)}: ${c} channels do not split into ${groups} groups`;
  const params: Array<{ index: number; value: Value; tensor: Tensor }> = [];
  for (const index of [1, 2]) {
    const value = node.inputs[index];
    const tensor = constantTensor(value);
    if (!value || !tensor) {
      return `${label(node, site)}: GroupNormalization-21 takes scale/bias per channel; input '${value?.name ?? ''}' is not an initializer, so its per-group values cannot be expanded here`;
    }
    if (tensor.dims.length !== 1 || tensor.dims[0] !== groups) return `${label(node, site)}: '${value.name}' has shape [${tensor.dims.join(', ')}], expected [${groups}]`;
    const bits = dtypeInfo(tensor.dtype).bits;
    if (bits % 8 !== 0 || bits === 0) return `${label(node, site)}: '${value.name}' has an element type GroupNormalization does not take`;
    params.push({ index, value, tensor });
  }
  return () => {
    const per = c / groups;
    for (const { index, value, tensor } of params) {
      const size = dtypeInfo(tensor.dtype).bits / 8;
      const src = tensor.bytes();
      const out = new Uint8Array(c * size);
      // Channel k belongs to group floor(k / (C/G)): each group's value is repeated C/G times.
      for (let k = 0; k < c; k++) out.set(src.subarray(Math.floor(k / per) * size, (Math.floor(k / per) + 1) * size), k * size);
      const name = site.root.uniqueName(`${value.name}_per_channel`);
      const nv = value.graph.addInitializer(Tensor.fromBytes(name, tensor.dtype, [c], out));
      nv.type = tensorType(tensor.dtype, [c]);
      node.setInput(index, nv);
      if (value.uses.length === 0 && !value.isGraphOutput && !value.isGraphInput) value.graph.deleteValue(value);
    }
  };
}

/** The version of `op` in force at `opset` (undefined when the op did not exist yet). */
function versionAt(versions: readonly number[], opset: number): number | undefined {
  let v: number | undefined;
  for (const x of versions) if (x <= opset) v = x;
  return v;
}

const isDefault = (domain: string) => domain === '' || domain === 'ai.onnx';

/** The graph and every graph nested in it, with the site of each. */
function* sites(graph: Graph, fn: IrFunction | undefined): Generator<Site> {
  yield { graph, fn, root: graph };
  for (const g of graph.subgraphs()) yield { graph: g, fn, root: graph };
}

export interface OpsetUpgradeOptions {
  /** Said after the versions in the log line, e.g. "for blocked DequantizeLinear". */
  reason?: string;
}

export function opsetUpgrade(target: number, options: OpsetUpgradeOptions = {}): Pass {
  if (!Number.isInteger(target) || target > MAX_TARGET_OPSET) {
    throw new PeftcError(`opset upgrade: target opset ${target} is not supported (default-domain targets up to ${MAX_TARGET_OPSET}: every operator change up to there is known to peftc)`);
  }
  if (target < MIN_SOURCE_OPSET) throw new PeftcError(`opset upgrade: target opset ${target} is below ${MIN_SOURCE_OPSET}, the oldest opset peftc upgrades from`);
  return {
    name: 'opset-upgrade',
    description: `raise the default-domain opset to ${target}, rewriting operators whose form changed`,
    run(model: Model, ctx: PassContext): PassResult {
      return upgrade(model, target, ctx, options);
    },
  };
}

function upgrade(model: Model, target: number, ctx: PassContext, options: OpsetUpgradeOptions): PassResult {
  // Every scope that imports the default domain below the target: the model, then each function.
  const scopes: Array<{ imports: Model['opsetImports']; fn: IrFunction | undefined; graph: Graph }> = [
    { imports: model.opsetImports, fn: undefined, graph: model.graph },
    ...model.functions.map((fn) => ({ imports: fn.opsetImports, fn, graph: fn.body })),
  ];
  const modelFrom = model.opsetVersion('');
  if (modelFrom !== undefined && modelFrom > target) {
    throw new PeftcError(`opset upgrade: the model imports default-domain opset ${modelFrom}, above the target ${target}; peftc does not lower opsets`);
  }
  const plan: Apply[] = [];
  const refusals: string[] = [];
  const rewritten = new Map<string, number>();
  const raised: Array<{ entry: { domain: string; version: number } | undefined; imports: Model['opsetImports'] }> = [];
  for (const scope of scopes) {
    const entry = scope.imports.find((o) => isDefault(o.domain));
    if (!entry) {
      // No default-domain import: no default-domain node is valid here. The model still gets
      // one (the target) so later passes may add standard ops; functions are left alone.
      if (!scope.fn) raised.push({ entry: undefined, imports: scope.imports });
      continue;
    }
    const from = entry.version;
    if (from >= target) continue;
    const where = scope.fn ? `function '${scope.fn.name}'` : 'the model';
    if (from < MIN_SOURCE_OPSET) {
      throw new PeftcError(
        `opset upgrade: ${where} imports default-domain opset ${from}; peftc upgrades from opset ${MIN_SOURCE_OPSET} or newer (opsets 10 and 11 moved Pad/Clip/Slice attributes to inputs and changed Resize, TopK, Upsample..., which are not rewritten)`,
      );
    }
    raised.push({ entry, imports: scope.imports });
    for (const site of sites(scope.graph, scope.fn)) {
      for (const node of site.graph.nodes) {
        if (!isDefault(node.domain)) continue;
        const versions = OP_VERSIONS[node.opType];
        if (!versions) {
          refusals.push(`${label(node, site)}: '${node.opType}' is not an ONNX operator of opsets 1..${MAX_TARGET_OPSET}, so whether it changed cannot be told`);
          continue;
        }
        if (versionAt(versions, from) === undefined) {
          refusals.push(`${label(node, site)}: ${node.opType} does not exist at opset ${from} (it was added at ${versions[0]})`);
          continue;
        }
        let nodeChanged = false;
        for (const v of versions) {
          if (v <= from || v > target) continue;
          const rule = RULES[`${node.opType}-${v}`];
          if (!rule) {
            refusals.push(`${label(node, site)}: ${node.opType}-${v} changed the operator and peftc does not rewrite it`);
            continue;
          }
          if (rule === 'compatible') continue;
          const r = rule(node, site);
          if (typeof r === 'string') refusals.push(r);
          else if (r) {
            plan.push(r);
            nodeChanged = true;
          }
        }
        if (nodeChanged) rewritten.set(node.opType, (rewritten.get(node.opType) ?? 0) + 1);
      }
    }
  }
  if (refusals.length) {
    const more = refusals.length > 8 ? `\n  ... and ${refusals.length - 8} more` : '';
    throw new PeftcError(`cannot raise the default-domain opset to ${target}:\n${refusals.slice(0, 8).map((r) => `  - ${r}`).join('\n')}${more}`);
  }
  if (raised.length === 0) return { changed: false, details: { from: modelFrom ?? 'none', to: target } };
  for (const apply of plan) apply();
  for (const { entry, imports } of raised) {
    if (entry) entry.version = target;
    else imports.push({ domain: '', version: target });
  }
  const ir = IR_FOR_OPSET[target]!;
  if (model.irVersion < ir) model.irVersion = ir;
  ctx.log(`raised default-domain opset ${modelFrom ?? 'none'} -> ${target}${options.reason ? ` ${options.reason}` : ''}`);
  return { changed: true, details: { from: modelFrom ?? 'none', to: target, ...Object.fromEntries(rewritten) } };
}

/**
 * Rules for elementwise ops: unary math and activations (shape and type of the input),
 * broadcasting binary and variadic ops, comparisons and logic (bool out), Where, Cast/CastLike,
 * and the ops whose output is shaped like their first input (Softmax, normalizations, Dropout).
 * Integer arithmetic on small tensors also carries values through (shape arithmetic).
 */
import { DataType } from '../../src/ir/dtype.js';
import { broadcastShapes, isNum, isStatic, mergeShapes, type D, type Shape } from './dims.js';
import { attrIntOr, each, type Fact, type Rule, type RuleInput } from './rule.js';

const INT_TYPES = new Set<number>([DataType.INT64, DataType.INT32]);

/** Output shaped and typed like input 0. */
export const sameAsInput: Rule = (r) => [{ elemType: r.elem(0), shape: r.shape(0) }];

const UNARY = [
  'Abs', 'Sqrt', 'Reciprocal', 'Exp', 'Log', 'Erf', 'Tanh', 'Sigmoid', 'Relu', 'LeakyRelu', 'Elu', 'Selu', 'Gelu',
  'HardSigmoid', 'HardSwish', 'Softplus', 'Softsign', 'Sin', 'Cos', 'Tan', 'Asin', 'Acos', 'Atan', 'Sinh', 'Cosh', 'Asinh',
  'Acosh', 'Atanh', 'Floor', 'Ceil', 'Round', 'Sign', 'BitwiseNot', 'Clip', 'Mish', 'Celu', 'ThresholdedRelu', 'Shrink',
  // Shaped like the input, though not elementwise:
  'Softmax', 'LogSoftmax', 'Hardmax', 'LpNormalization', 'MeanVarianceNormalization', 'LRN', 'CumSum', 'InstanceNormalization',
  'GroupNormalization', 'Trilu', 'ReverseSequence', 'Scatter', 'ScatterElements', 'ScatterND',
] as const;

/**
 * Known values of an elementwise op on small integer tensors (rank <= 1), with broadcasting of
 * single elements: `op` gets the i-th element of every input.
 */
function elementwiseValues(r: RuleInput, inputs: number[], outShape: Shape | undefined, op: (xs: D[]) => D): D[] | undefined {
  if (!isStatic(outShape) || outShape.length > 1) return undefined;
  const n = outShape.length ? outShape[0]! : 1;
  const vals = inputs.map((i) => r.values(i));
  if (vals.some((v) => !v || (v.length !== n && v.length !== 1))) return undefined;
  return Array.from({ length: n }, (_, k) => op(vals.map((v) => v![v!.length === 1 ? 0 : k]!)));
}

/** Integer arithmetic on known values; unknown where an operand or the result leaves the exact (safe) range. */
function arithmetic(r: RuleInput, outShape: Shape | undefined, op: (a: D, b: D) => D): D[] | undefined {
  if (!INT_TYPES.has(r.elem(0) ?? 0)) return undefined;
  const exact = (d: D) => !isNum(d) || Number.isSafeInteger(d);
  return elementwiseValues(r, [0, 1], outShape, ([a, b]) => {
    if (!exact(a!) || !exact(b!)) return null;
    const out = op(a!, b!);
    return exact(out) ? out : null;
  });
}

const ARITH: Record<string, (a: D, b: D) => D> = {
  Add: (a, b) => (isNum(a) && isNum(b) ? a + b : a === 0 ? b : b === 0 ? a : null),
  Sub: (a, b) => (isNum(a) && isNum(b) ? a - b : b === 0 ? a : null),
  Mul: (a, b) => (isNum(a) && isNum(b) ? a * b : a === 1 ? b : b === 1 ? a : null),
  // Integer Div truncates toward zero (as C does); division by zero has no defined result.
  Div: (a, b) => (isNum(a) && isNum(b) ? (b === 0 ? null : Math.trunc(a / b)) : b === 1 ? a : null),
  Max: (a, b) => (isNum(a) && isNum(b) ? Math.max(a, b) : null),
  Min: (a, b) => (isNum(a) && isNum(b) ? Math.min(a, b) : null),
};

/**
 * Broadcasting ops. Before opset 7 (8 for the variadic ones) there was no numpy broadcasting:
 * B was broadcast into A's shape (`broadcast` attribute) or shapes were equal, so the output is
 * shaped like input 0.
 */
function broadcasting(outType: 'input' | 'bool', legacyBefore: number): Rule {
  return (r) => {
    const n = r.node.inputs.length;
    const shapes = Array.from({ length: n }, (_, i) => (r.has(i) ? r.shape(i) : undefined)).filter((_, i) => r.has(i));
    let shape: Shape | undefined;
    if (r.opset < legacyBefore) {
      // PRelu's slope always broadcast into X (unidirectionally).
      const intoFirst = r.node.attribute('broadcast') !== undefined || r.node.opType === 'PRelu';
      shape = intoFirst ? r.shape(0) : shapes.reduce<Shape | undefined>((acc, s) => mergeShapes(acc, s), undefined);
    } else {
      shape = broadcastShapes(shapes);
    }
    let elemType = outType === 'bool' ? DataType.BOOL : r.elem(0);
    if (elemType === undefined && outType === 'input') for (let i = 1; i < n && elemType === undefined; i++) elemType = r.elem(i);
    const fact: Fact = { elemType, shape };
    const arith = ARITH[r.node.opType];
    if (arith && n === 2) fact.values = arithmetic(r, shape, arith);
    return [fact];
  };
}

export const ELEMENTWISE_RULES: Record<string, Rule> = {
  ...each(UNARY, sameAsInput),
  ...each(['Add', 'Sub', 'Mul', 'Div', 'Pow', 'PRelu'], broadcasting('input', 7)),
  ...each(['Mod', 'BitShift', 'BitwiseAnd', 'BitwiseOr', 'BitwiseXor'], broadcasting('input', 0)),
  ...each(['Max', 'Min', 'Sum', 'Mean'], broadcasting('input', 8)),
  ...each(['Less', 'Greater', 'And', 'Or', 'Xor'], broadcasting('bool', 7)),
  ...each(['LessOrEqual', 'GreaterOrEqual'], broadcasting('bool', 0)),
  Neg: (r) => {
    const shape = r.shape(0);
    return [{ elemType: r.elem(0), shape, values: INT_TYPES.has(r.elem(0) ?? 0) ? elementwiseValues(r, [0], shape, ([a]) => (isNum(a!) && Number.isSafeInteger(a) ? -a : null)) : undefined }];
  },
  Not: (r) => {
    const shape = r.shape(0);
    return [{ elemType: DataType.BOOL, shape, values: elementwiseValues(r, [0], shape, ([a]) => (isNum(a!) ? 1 - a : null)) }];
  },
  // Equal on shape values: equal numbers, or the same symbol, are equal; a symbol (a dim, never
  // negative) differs from a negative number; anything else is unknown.
  Equal: (r) => {
    const [fact] = broadcasting('bool', 7)(r)! as [Fact];
    if (INT_TYPES.has(r.elem(0) ?? 0)) {
      fact.values = elementwiseValues(r, [0, 1], fact.shape, ([a, b]) => {
        if (a === null || b === null) return null;
        if (a === b) return 1;
        if (isNum(a) && isNum(b)) return 0;
        return (isNum(a) && a < 0) || (isNum(b) && b < 0) ? 0 : null;
      });
    }
    return [fact];
  },
  IsNaN: (r) => [{ elemType: DataType.BOOL, shape: r.shape(0) }],
  IsInf: (r) => [{ elemType: DataType.BOOL, shape: r.shape(0) }],
  Identity: (r) => {
    const t = r.type(0);
    if (t && t.kind !== 'tensor') return [{ type: t }];
    return [{ elemType: r.elem(0), shape: r.shape(0), values: r.values(0) }];
  },
  Where: (r) => {
    const shape = broadcastShapes([r.shape(0), r.shape(1), r.shape(2)]);
    const elemType = r.elem(1) ?? r.elem(2);
    const values = INT_TYPES.has(elemType ?? 0) ? elementwiseValues(r, [0, 1, 2], shape, ([c, x, y]) => (c === null ? null : c ? x! : y!)) : undefined;
    return [{ elemType, shape, values }];
  },
  Cast: (r) => {
    const to = r.node.attrInt('to');
    const fact: Fact = { elemType: to, shape: r.shape(0) };
    if (to !== undefined && INT_TYPES.has(to) && INT_TYPES.has(r.elem(0) ?? 0)) {
      // A number outside int32 wraps when cast down (INT64_MAX slice ends become -1): unknown.
      const fits = (d: D) => to !== DataType.INT32 || !isNum(d) || (d >= -(2 ** 31) && d < 2 ** 31);
      fact.values = r.values(0)?.map((d) => (fits(d) ? d : null));
    }
    return [fact];
  },
  CastLike: (r) => [{ elemType: r.elem(1), shape: r.shape(0) }],
  // Before opset 10 the mask had the input's type; since then it is bool.
  Dropout: (r) => [
    { elemType: r.elem(0), shape: r.shape(0) },
    { elemType: r.opset >= 10 ? DataType.BOOL : r.elem(0), shape: r.shape(0) },
  ],
  // Y is shaped like X; in training mode (opset 14+) the running mean/var are shaped like the inputs.
  BatchNormalization: (r) => {
    const y: Fact = { elemType: r.elem(0), shape: r.shape(0) };
    if (r.opset >= 14 && attrIntOr(r.node, 'training_mode', 0) === 1) {
      return [y, { elemType: r.elem(3), shape: r.shape(3) }, { elemType: r.elem(4), shape: r.shape(4) }];
    }
    return [y];
  },
  // Mean and InvStdDev keep the dims before `axis` and have ones after; their type is stash_type.
  LayerNormalization: (r) => {
    const x = r.shape(0);
    const y: Fact = { elemType: r.elem(0), shape: x };
    if (!x) return [y, { elemType: attrIntOr(r.node, 'stash_type', DataType.FLOAT) }, { elemType: attrIntOr(r.node, 'stash_type', DataType.FLOAT) }];
    let axis = attrIntOr(r.node, 'axis', -1);
    if (axis < 0) axis += x.length;
    if (axis < 0 || axis >= x.length) return [y];
    const stat: Fact = { elemType: attrIntOr(r.node, 'stash_type', DataType.FLOAT), shape: x.map((d, i) => (i < axis ? d : 1)) };
    return [y, stat, stat];
  },
  EyeLike: (r) => [{ elemType: attrIntOr(r.node, 'dtype', 0) || r.elem(0), shape: r.shape(0) }],
  RandomUniformLike: (r) => [{ elemType: attrIntOr(r.node, 'dtype', 0) || r.elem(0), shape: r.shape(0) }],
  RandomNormalLike: (r) => [{ elemType: attrIntOr(r.node, 'dtype', 0) || r.elem(0), shape: r.shape(0) }],
  Bernoulli: (r) => [{ elemType: attrIntOr(r.node, 'dtype', 0) || r.elem(0), shape: r.shape(0) }],
};

/**
 * Ops whose inputs must share one element type (the type constraint T): for the dtype check.
 * 'all' means every given input.
 */
export const SAME_TYPE_INPUTS: Record<string, number[] | 'all'> = {
  ...Object.fromEntries(
    ['Add', 'Sub', 'Mul', 'Div', 'Max', 'Min', 'Sum', 'Mean', 'Mod', 'Equal', 'Less', 'Greater', 'LessOrEqual', 'GreaterOrEqual', 'And', 'Or', 'Xor', 'BitShift', 'Concat'].map(
      (op) => [op, 'all' as const],
    ),
  ),
  MatMul: [0, 1],
  Gemm: [0, 1, 2],
  Where: [1, 2],
  Conv: [0, 1, 2],
  ConvTranspose: [0, 1, 2],
  PRelu: [0, 1],
  LayerNormalization: [0, 1, 2],
};

/**
 * Shape and constant kernels: Constant, Identity, Shape, Size, Reshape, Flatten, Squeeze,
 * Unsqueeze, ConstantOfShape, Range. The reshaping ones return the input's data under new dims
 * without reading or copying it (external weights stay lazy); the rest build small tensors.
 * The data-movement ops (Gather, Slice, Concat, ...) live in data-movement.ts; both work for every
 * dtype through movement.ts. Invalid inputs are PeftcErrors naming the node; KernelUnsupported is
 * kept for forms this reference does not implement.
 */
import { DataType, dtypeName, elementCount } from '../src/ir/dtype.js';
import type { Node } from '../src/ir/graph.js';
import { Tensor, type SparseTensor } from '../src/ir/tensor.js';
import { KernelUnsupported } from './registry.js';
import { axisOf, bigIntsOf, fail, fillWith, intsOf, kernelWith, need, sameData, scatterInto, stridesOf } from './movement.js';
import { fromBig, fromF64, readBig, readF64 } from './util.js';

const int64 = (dims: readonly number[], values: readonly (number | bigint)[]) =>
  Tensor.fromTypedArray('', DataType.INT64, dims, BigInt64Array.from(values, (v) => BigInt(v)));

// ---------------------------------------------------------------------------------------------
// Constant

/** The dense tensor of a SparseTensorProto (indices [NNZ] linear or [NNZ, rank]; zero elsewhere). */
function densify(node: Node, sp: SparseTensor): Tensor {
  const { values, indices, dims } = sp;
  const nnz = values.elementCount;
  const total = elementCount(dims);
  const idx = bigIntsOf(node, indices, 'sparse indices').map(Number);
  const positions = new Float64Array(nnz);
  if (indices.dims.length === 1 && indices.dims[0] === nnz) {
    positions.set(idx);
  } else if (indices.dims.length === 2 && indices.dims[0] === nnz && indices.dims[1] === dims.length) {
    const strides = stridesOf(dims);
    for (let i = 0; i < nnz; i++) {
      let flat = 0;
      for (let d = 0; d < dims.length; d++) {
        const c = idx[i * dims.length + d]!;
        if (!(c >= 0 && c < dims[d]!)) fail(node, `sparse index ${c} out of range for dim ${d} of [${dims.join(',')}]`);
        flat += c * strides[d]!;
      }
      positions[i] = flat;
    }
  } else {
    fail(node, `sparse indices of shape [${indices.dims.join(',')}] for ${nnz} values of a [${dims.join(',')}] tensor`);
  }
  for (const p of positions) if (!(p >= 0 && p < total)) fail(node, `sparse index ${p} out of range for ${total} elements`);
  return scatterInto('Constant', values, positions, dims);
}

/** Each value attribute and the opset that introduced it. */
const CONSTANT_FORMS: Record<string, number> = {
  value: 1,
  sparse_value: 11,
  value_float: 12,
  value_floats: 12,
  value_int: 12,
  value_ints: 12,
  value_string: 12,
  value_strings: 12,
};

kernelWith('Constant', 1, Object.keys(CONSTANT_FORMS), (_inputs, node, ctx) => {
  const forms = node.attributes.filter((a) => a.name in CONSTANT_FORMS);
  if (forms.length !== 1) fail(node, `needs exactly one value attribute, has ${forms.length}`);
  const a = forms[0]!;
  if (ctx.opsetVersion < CONSTANT_FORMS[a.name]!) fail(node, `attribute '${a.name}' needs opset ${CONSTANT_FORMS[a.name]} (model has ${ctx.opsetVersion})`);
  switch (a.type) {
    case 'tensor':
      if (a.name === 'value') return [a.value];
      break;
    case 'sparse_tensor':
      if (a.name === 'sparse_value') return [densify(node, a.value)];
      break;
    case 'float':
      if (a.name === 'value_float') return [fromF64(DataType.FLOAT, [], [a.value])];
      break;
    case 'floats':
      if (a.name === 'value_floats') return [fromF64(DataType.FLOAT, [a.value.length], a.value)];
      break;
    case 'int':
      if (a.name === 'value_int') return [int64([], [a.value])];
      break;
    case 'ints':
      if (a.name === 'value_ints') return [int64([a.value.length], a.value)];
      break;
    case 'string':
      if (a.name === 'value_string') return [Tensor.fromStrings('', [], [a.value])];
      break;
    case 'strings':
      if (a.name === 'value_strings') return [Tensor.fromStrings('', [a.value.length], a.value)];
      break;
    case 'ref':
      throw new KernelUnsupported('Constant', `attribute '${a.name}' referring to function attribute '${a.refAttrName}'`);
  }
  return fail(node, `attribute '${a.name}' has type ${a.type}`);
});

kernelWith('Identity', 1, [], (inputs, node) => [need(node, inputs, 0, 'input')]);

// ---------------------------------------------------------------------------------------------
// Shape, Size

kernelWith('Shape', 1, [], (inputs, node) => [int64([need(node, inputs, 0, 'data').dims.length], need(node, inputs, 0, 'data').dims)], 15);
kernelWith('Shape', 15, ['start', 'end'], (inputs, node) => {
  const x = need(node, inputs, 0, 'data');
  const r = x.dims.length;
  const clamp = (i: number) => Math.min(Math.max(i < 0 ? i + r : i, 0), r);
  const start = clamp(node.attrInt('start', 0));
  const end = node.attribute('end') ? clamp(node.attrInt('end', r)) : r;
  const dims = x.dims.slice(start, Math.max(start, end));
  return [int64([dims.length], dims)];
});

kernelWith('Size', 1, [], (inputs, node) => [int64([], [need(node, inputs, 0, 'data').elementCount])]);

// ---------------------------------------------------------------------------------------------
// Reshape, Flatten, Squeeze, Unsqueeze

function reshape(x: Tensor, node: Node, shape: readonly number[], allowZero: boolean): Tensor[] {
  const dims = shape.map((d, i) => {
    if (d < -1 || !Number.isSafeInteger(d)) fail(node, `shape [${shape.join(',')}] has an invalid dim ${d}`);
    if (d !== 0 || allowZero) return d;
    if (i >= x.dims.length) fail(node, `shape dim ${i} is 0 (copy) but the input has rank ${x.dims.length}`);
    return x.dims[i]!;
  });
  const unknown = dims.indexOf(-1);
  if (unknown >= 0) {
    if (dims.lastIndexOf(-1) !== unknown) fail(node, `shape [${shape.join(',')}] has more than one -1`);
    const known = dims.reduce((a, d, i) => (i === unknown ? a : a * d), 1);
    if (known === 0 || x.elementCount % known !== 0) fail(node, `cannot infer the -1 of [${shape.join(',')}] for ${x.elementCount} elements`);
    dims[unknown] = x.elementCount / known;
  }
  if (elementCount(dims) !== x.elementCount) fail(node, `cannot reshape [${x.dims.join(',')}] to [${dims.join(',')}]`);
  return [sameData(x, dims)];
}

// Reshape-1: shape attribute. From 5: shape input. From 14: allowzero.
kernelWith('Reshape', 1, ['shape', 'consumed_inputs'], (inputs, node) => {
  const shape = node.attrInts('shape');
  if (!shape) fail(node, "attribute 'shape' is required");
  return reshape(need(node, inputs, 0, 'data'), node, shape, false);
}, 5);
kernelWith('Reshape', 5, (opset) => (opset >= 14 ? ['allowzero'] : []), (inputs, node, ctx) => {
  const shape = intsOf(node, need(node, inputs, 1, 'shape'), 'shape');
  const allowZero = ctx.opsetVersion >= 14 && node.attrInt('allowzero', 0) !== 0;
  return reshape(need(node, inputs, 0, 'data'), node, shape, allowZero);
});

kernelWith('Flatten', 1, ['axis'], (inputs, node) => {
  const x = need(node, inputs, 0, 'input');
  const r = x.dims.length;
  const raw = node.attrInt('axis', 1);
  const axis = raw < 0 ? raw + r : raw;
  if (!(axis >= 0 && axis <= r)) fail(node, `axis ${raw} is out of range for rank ${r}`);
  return [sameData(x, [elementCount(x.dims.slice(0, axis)), elementCount(x.dims.slice(axis))])];
});

function squeeze(x: Tensor, node: Node, axesIn: number[] | undefined): Tensor[] {
  const r = x.dims.length;
  const axes = new Set(axesIn?.map((a) => axisOf(node, a, r)));
  for (const a of axes) if (x.dims[a] !== 1) fail(node, `cannot squeeze axis ${a} of size ${x.dims[a]}`);
  return [sameData(x, x.dims.filter((d, i) => (axesIn ? !axes.has(i) : d !== 1)))];
}

function unsqueeze(x: Tensor, node: Node, axesIn: number[] | undefined): Tensor[] {
  if (!axesIn) fail(node, 'axes are required');
  const r = x.dims.length + axesIn.length;
  const axes = axesIn.map((a) => axisOf(node, a, r));
  if (new Set(axes).size !== axes.length) fail(node, `axes [${axesIn.join(',')}] repeat an axis`);
  const dims: number[] = [];
  let k = 0;
  for (let i = 0; i < r; i++) dims.push(axes.includes(i) ? 1 : x.dims[k++]!);
  return [sameData(x, dims)];
}

// Squeeze/Unsqueeze-1 and -11: axes attribute. From 13: axes input.
kernelWith('Squeeze', 1, ['axes'], (inputs, node) => squeeze(need(node, inputs, 0, 'data'), node, node.attrInts('axes')), 13);
kernelWith('Squeeze', 13, [], (inputs, node) => {
  const axes = inputs[1] ? intsOf(node, inputs[1], 'axes') : undefined;
  // An empty axes tensor: ONNX's shape inference and reference squeeze nothing, onnxruntime
  // squeezes every 1. Either answer would change what the model computes somewhere, so decline.
  if (axes?.length === 0) throw new KernelUnsupported('Squeeze', 'an empty axes input (the ONNX spec and onnxruntime disagree on it)');
  return squeeze(need(node, inputs, 0, 'data'), node, axes);
});
kernelWith('Unsqueeze', 1, ['axes'], (inputs, node) => unsqueeze(need(node, inputs, 0, 'data'), node, node.attrInts('axes')), 13);
kernelWith('Unsqueeze', 13, [], (inputs, node) => unsqueeze(need(node, inputs, 0, 'data'), node, intsOf(node, need(node, inputs, 1, 'axes'), 'axes')));

// ---------------------------------------------------------------------------------------------
// ConstantOfShape, Range

kernelWith('ConstantOfShape', 9, ['value'], (inputs, node) => {
  const dims = intsOf(node, need(node, inputs, 0, 'input'), 'shape');
  if (dims.some((d) => !(d >= 0 && Number.isSafeInteger(d)))) fail(node, `shape [${dims.join(',')}] has a negative dim`);
  const a = node.attribute('value');
  if (a && a.type !== 'tensor') fail(node, `attribute 'value' is ${a.type}, expected a tensor`);
  const value = a?.type === 'tensor' ? a.value : fromF64(DataType.FLOAT, [1], [0]);
  if (value.elementCount !== 1) fail(node, `'value' holds ${value.elementCount} elements, not one`);
  return [fillWith('ConstantOfShape', value, dims)];
});

const RANGE_TYPES = new Set<DataType>([DataType.FLOAT, DataType.DOUBLE, DataType.INT16, DataType.INT32, DataType.INT64]);
/** Range outputs beyond this many elements are refused rather than allocated. */
const RANGE_MAX = 2 ** 31 - 1;

kernelWith('Range', 11, [], (inputs, node) => {
  const [start, limit, delta] = [0, 1, 2].map((i) => need(node, inputs, i, ['start', 'limit', 'delta'][i]!));
  const dtype = start!.dtype;
  if (limit!.dtype !== dtype || delta!.dtype !== dtype) fail(node, 'start, limit and delta differ in type');
  if (!RANGE_TYPES.has(dtype)) throw new KernelUnsupported('Range', `${dtypeName(dtype)} inputs`);
  for (const t of [start!, limit!, delta!]) if (t.elementCount !== 1) fail(node, `start, limit and delta must be scalars, got [${t.dims.join(',')}]`);
  if (dtype === DataType.INT64) {
    const [s, l, d] = [readBig(start!)[0]!, readBig(limit!)[0]!, readBig(delta!)[0]!];
    if (d === 0n) fail(node, 'delta is 0');
    const span = l - s;
    // ceil(span / d) for either sign of d (bigint division truncates toward zero).
    const q = span / d;
    const n = q * d === span || (span > 0n) !== (d > 0n) ? q : q + 1n;
    if (n > BigInt(RANGE_MAX)) throw new KernelUnsupported('Range', `an output of ${n} elements`);
    const count = n > 0n ? Number(n) : 0;
    return [fromBig(dtype, [count], Array.from({ length: count }, (_, i) => s + BigInt(i) * d))];
  }
  const [s, l, d] = [readF64(start!)[0]!, readF64(limit!)[0]!, readF64(delta!)[0]!];
  if (d === 0) fail(node, 'delta is 0');
  // ONNX: count = max(ceil((limit - start) / delta), 0), the difference taken in the input type;
  // element i = start + i * delta, rounded to the type.
  const round = dtype === DataType.FLOAT ? Math.fround : (v: number) => v;
  const n = Math.ceil(round(l - s) / d);
  if (Number.isNaN(n)) fail(node, 'start, limit or delta is NaN');
  if (n > RANGE_MAX) throw new KernelUnsupported('Range', `an output of ${n} elements`);
  const count = Math.max(n, 0);
  return [fromF64(dtype, [count], Array.from({ length: count }, (_, i) => round(s + i * d)))];
});

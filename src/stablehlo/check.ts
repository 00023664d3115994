/**
 * Well-formedness of a parsed StableHLO module, by the specification's rules:
 *  - every SSA value is defined once, before its uses (function arguments, op results, region
 *    block arguments), and each use's declared type is the type it was defined with;
 *  - every op's result types follow from its operands and attributes by the op's constraints in
 *    the spec (shape rules, element types, attribute ranges), e.g. dot_general's (C1)-(C13) and
 *    its result shape (C12), gather's (C1)-(C23), convolution's (C1)-(C27);
 *  - region bodies (reduce, reduce_window) take and return 0-d tensors of the right types;
 *  - each function ends with a return of its declared result types.
 * checkModule collects every violation (with the op's line:column) and throws them together.
 */
import { float16BitsToFloat32 } from '../ir/dtype.js';
import type { Attribute, Block, FuncOp, Module, Operation } from './parser.js';
import {
  allocate,
  convertScalar,
  formatType,
  isBool,
  isFloat,
  isInteger,
  isSigned,
  isUnsigned,
  numElements,
  sameShape,
  sameType,
  tensorOf,
  type ElementType,
  type HloTensor,
  type TensorType,
} from './types.js';

export class WellFormednessError extends Error {
  override readonly name = 'WellFormednessError';
  constructor(readonly problems: string[]) {
    super(`the module is not well-formed:\n  ${problems.slice(0, 30).join('\n  ')}${problems.length > 30 ? `\n  ... and ${problems.length - 30} more` : ''}`);
  }
}

/** A violated constraint of one op (caught per op, so checking goes on). */
class Violation extends Error {}

function fail(message: string): never {
  throw new Violation(message);
}

function require(cond: boolean, message: string): asserts cond {
  if (!cond) fail(message);
}

// ------------------------------------------------------------------------------------------------
// Attribute access

export function attrInts(op: Operation, name: string, fallback?: number[]): number[] {
  const a = op.attributes.get(name);
  if (!a) {
    if (fallback) return fallback;
    fail(`missing attribute '${name}'`);
  }
  if (a.kind === 'array') return a.values;
  if (a.kind === 'dense' && a.literal.form !== 'hex') return denseInts(a);
  fail(`attribute '${name}' is not an integer array`);
}

export function attrInt(op: Operation, name: string, fallback?: number): number {
  const a = op.attributes.get(name);
  if (!a) {
    if (fallback !== undefined) return fallback;
    fail(`missing attribute '${name}'`);
  }
  if (a.kind === 'int') return a.value;
  fail(`attribute '${name}' is not an integer`);
}

export function attrEnum(op: Operation, name: string): string | undefined {
  const a = op.attributes.get(name);
  if (!a) return undefined;
  if (a.kind === 'enum') return a.value;
  fail(`attribute '${name}' is not an enum`);
}

/** A 2-d `dense<...> : tensor<Nx2xi64>` (padding) as [low, high] pairs. */
export function attrPairs(op: Operation, name: string, rows: number): Array<[number, number]> {
  const a = op.attributes.get(name);
  if (!a) return Array.from({ length: rows }, () => [0, 0] as [number, number]);
  require(a.kind === 'dense', `attribute '${name}' is not a dense tensor`);
  require(a.type.shape.length === 2 && a.type.shape[0] === rows && a.type.shape[1] === 2, `attribute '${name}' has shape [${a.type.shape.join(', ')}], expected [${rows}, 2]`);
  const v = denseInts(a);
  return Array.from({ length: rows }, (_, i) => [v[2 * i]!, v[2 * i + 1]!] as [number, number]);
}

function denseInts(a: Attribute & { kind: 'dense' }): number[] {
  return [...decodeDense(a).data];
}

// ------------------------------------------------------------------------------------------------
// Dense literals (the spec's "Tensor constants": NumPy-like nested lists, a splat, or MLIR's hex form)

const dv = new DataView(new ArrayBuffer(8));

function bitsToFloat(e: ElementType, bits: bigint): number {
  switch (e) {
    case 'f32':
      dv.setUint32(0, Number(bits));
      return dv.getFloat32(0);
    case 'f64':
      dv.setBigUint64(0, bits);
      return dv.getFloat64(0);
    case 'bf16':
      dv.setUint32(0, Number(bits) << 16);
      return dv.getFloat32(0);
    case 'f16':
      return float16BitsToFloat32(Number(bits));
    default:
      fail(`internal: ${e} is not a float type`);
  }
}

const FLOAT_HEX_DIGITS: Partial<Record<ElementType, number>> = { f16: 4, bf16: 4, f32: 8, f64: 16 };

function decodeToken(token: string, e: ElementType): number {
  if (token === 'true' || token === 'false') {
    require(e === 'i1', `boolean literal '${token}' for element type ${e}`);
    return token === 'true' ? 1 : 0;
  }
  const hex = /^([-+]?)0x([0-9A-Fa-f]+)$/.exec(token);
  if (isFloat(e)) {
    if (hex) {
      // (C2) of float constants: hex digits give the bits and must fill the type exactly.
      require(hex[1] === '' && hex[2]!.length === FLOAT_HEX_DIGITS[e], `hex float literal '${token}' needs exactly ${FLOAT_HEX_DIGITS[e]} digits for ${e}`);
      return bitsToFloat(e, BigInt(`0x${hex[2]}`));
    }
    const v = Number(token);
    require(!Number.isNaN(v) || /nan/i.test(token), `'${token}' is not a float literal`);
    return convertScalar(e, v);
  }
  const v = hex ? (hex[1] === '-' ? -1 : 1) * parseInt(hex[2]!, 16) : Number(token);
  require(Number.isInteger(v), `'${token}' is not an integer literal of ${e}`);
  if (e === 'i1') {
    require(v === 0 || v === 1, `'${token}' is not a boolean`);
    return v;
  }
  // (C1) is_wellformed: the value must be representable in the type.
  const wrapped = convertScalar(e, v);
  require(wrapped === v, `integer literal ${token} does not fit ${e}`);
  return v;
}

const decoded = new WeakMap<Attribute, HloTensor>();

/** The tensor a dense attribute denotes; checks the literal against its type (has_syntax, has_shape). */
export function decodeDense(a: Attribute & { kind: 'dense' }): HloTensor {
  const hit = decoded.get(a);
  if (hit) return hit;
  const type = a.type;
  const e = type.element;
  const n = numElements(type.shape);
  const data = allocate(type);
  const lit = a.literal;
  if (lit.form === 'splat') {
    data.fill(decodeToken(lit.token, e));
  } else if (lit.form === 'list') {
    require(lit.structure !== 'ragged', `dense literal is ragged (sibling lists of different lengths)`);
    require(sameShape(lit.structure, type.shape) || (lit.tokens.length === n && n === 0), `dense literal has shape [${(lit.structure as number[]).join(', ')}], its type ${formatType(type)}`);
    for (let i = 0; i < n; i++) data[i] = decodeToken(lit.tokens[i]!, e);
  } else {
    const width = ({ i1: 1, i8: 1, ui8: 1, i16: 2, ui16: 2, f16: 2, bf16: 2, i32: 4, ui32: 4, f32: 4, i64: 8, ui64: 8, f64: 8 } as Partial<Record<ElementType, number>>)[e];
    require(width !== undefined, `hex dense literals of ${e} are not supported`);
    const bytes = lit.bytes;
    const count = bytes.length / width;
    require(count === n || count === 1, `hex dense literal holds ${count} element(s), ${formatType(type)} needs ${n}`);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const read = (i: number): number => {
      const o = i * width;
      switch (e) {
        case 'i1':
          return bytes[o]! ? 1 : 0;
        case 'i8':
          return view.getInt8(o);
        case 'ui8':
          return view.getUint8(o);
        case 'i16':
          return view.getInt16(o, true);
        case 'ui16':
          return view.getUint16(o, true);
        case 'i32':
          return view.getInt32(o, true);
        case 'ui32':
          return view.getUint32(o, true);
        case 'i64':
          return Number(view.getBigInt64(o, true));
        case 'ui64':
          return Number(view.getBigUint64(o, true));
        case 'f16':
        case 'bf16':
          return bitsToFloat(e, BigInt(view.getUint16(o, true)));
        case 'f32':
          return view.getFloat32(o, true);
        default:
          return view.getFloat64(o, true);
      }
    };
    if (count === 1) data.fill(read(0));
    else for (let i = 0; i < n; i++) data[i] = read(i);
  }
  const t = tensorOf(type, data);
  decoded.set(a, t);
  return t;
}

// ------------------------------------------------------------------------------------------------
// Result types by op (the spec's constraints)

type Infer = (op: Operation, ins: TensorType[]) => TensorType[];

const UNARY_FLOAT = ['sqrt', 'rsqrt', 'exponential', 'exponential_minus_one', 'log', 'log_plus_one', 'logistic', 'tanh', 'sine', 'cosine', 'floor', 'ceil', 'round_nearest_even', 'round_nearest_afz', 'cbrt'];
const UNARY_SIGNED = ['abs', 'negate', 'sign'];
const BINARY_ANY = ['add', 'multiply', 'maximum', 'minimum'];
const BINARY_NUMERIC = ['subtract', 'divide', 'remainder', 'power'];
const BINARY_LOGICAL = ['and', 'or', 'xor'];
const BINARY_SHIFT = ['shift_left', 'shift_right_arithmetic', 'shift_right_logical'];

function arity(ins: TensorType[], n: number, what: string): void {
  require(ins.length === n, `${what} takes ${n} operand(s), got ${ins.length}`);
}

function unique(xs: readonly number[]): boolean {
  return new Set(xs).size === xs.length;
}

function inRange(xs: readonly number[], n: number): boolean {
  return xs.every((x) => Number.isInteger(x) && x >= 0 && x < n);
}

export const RESULT_TYPES: Record<string, Infer> = {
  constant(op, ins) {
    arity(ins, 0, 'constant');
    const v = op.attributes.get('value');
    require(v?.kind === 'dense', "constant needs a dense 'value' attribute");
    decodeDense(v);
    return [v.type];
  },
  iota(op, ins) {
    arity(ins, 0, 'iota');
    const t = op.resultTypes[0];
    require(t !== undefined, 'iota declares no result');
    const d = attrInt(op, 'iota_dimension');
    require(d >= 0 && d < t.shape.length, `(C1) iota_dimension ${d} is outside [0, ${t.shape.length})`);
    require(!isBool(t.element), 'iota result must be an integer or float tensor');
    return [t];
  },
  convert(op, ins) {
    arity(ins, 1, 'convert');
    const t = op.resultTypes[0];
    require(t !== undefined && sameShape(t.shape, ins[0]!.shape), '(C1) shape(operand) = shape(result)');
    return [t];
  },
  compare(op, [a, b, ...rest]) {
    require(a !== undefined && b !== undefined && rest.length === 0, 'compare takes 2 operands');
    require(a.element === b.element, `(C1) element types differ (${a.element}, ${b.element})`);
    require(sameShape(a.shape, b.shape), '(C2) shape(lhs) = shape(rhs)');
    const dir = attrEnum(op, 'comparison_direction');
    require(dir !== undefined && ['EQ', 'NE', 'GE', 'GT', 'LE', 'LT'].includes(dir), `comparison_direction '${dir}' is not EQ, NE, GE, GT, LE or LT`);
    const ct = attrEnum(op, 'compare_type');
    if (ct !== undefined) {
      const ok = isSigned(a.element) ? ct === 'SIGNED' : isUnsigned(a.element) || isBool(a.element) ? ct === 'UNSIGNED' : ct === 'FLOAT' || ct === 'TOTALORDER';
      require(ok, `(C3) compare_type ${ct} does not fit ${a.element}`);
    }
    return [{ shape: a.shape, element: 'i1' }];
  },
  select(_op, [pred, t, f, ...rest]) {
    require(pred !== undefined && t !== undefined && f !== undefined && rest.length === 0, 'select takes 3 operands');
    require(pred.element === 'i1', 'pred must be a boolean tensor');
    require(pred.shape.length === 0 || sameShape(pred.shape, t.shape), '(C1) rank(pred) = 0 or shape(pred) = shape(on_true)');
    require(sameType(t, f), '(C2) type(on_true) = type(on_false)');
    return [t];
  },
  clamp(_op, [lo, x, hi, ...rest]) {
    require(lo !== undefined && x !== undefined && hi !== undefined && rest.length === 0, 'clamp takes 3 operands');
    require(lo.shape.length === 0 || sameShape(lo.shape, x.shape), '(C1) rank(min) = 0 or shape(min) = shape(operand)');
    require(hi.shape.length === 0 || sameShape(hi.shape, x.shape), '(C2) rank(max) = 0 or shape(max) = shape(operand)');
    require(lo.element === x.element && hi.element === x.element, '(C3) element types of min, operand and max agree');
    return [x];
  },
  broadcast_in_dim(op, ins) {
    arity(ins, 1, 'broadcast_in_dim');
    const x = ins[0]!;
    const t = op.resultTypes[0];
    require(t !== undefined, 'broadcast_in_dim declares no result');
    const dims = attrInts(op, 'broadcast_dimensions');
    require(t.element === x.element, '(C1) element_type(result) = element_type(operand)');
    require(dims.length === x.shape.length, `(C2) size(broadcast_dimensions) ${dims.length} = rank(operand) ${x.shape.length}`);
    require(inRange(dims, t.shape.length), '(C3) 0 <= broadcast_dimensions < rank(result)');
    require(unique(dims), '(C4) broadcast_dimensions are unique');
    x.shape.forEach((d, i) => require(d === 1 || d === t.shape[dims[i]!], `(C5) operand dimension ${i} (${d}) is neither 1 nor dim(result, ${dims[i]}) = ${t.shape[dims[i]!]}`));
    return [t];
  },
  reshape(op, ins) {
    arity(ins, 1, 'reshape');
    const t = op.resultTypes[0];
    require(t !== undefined && t.element === ins[0]!.element, 'reshape keeps the element type');
    require(numElements(t.shape) === numElements(ins[0]!.shape), `(C2) size(operand) ${numElements(ins[0]!.shape)} = size(result) ${numElements(t.shape)}`);
    return [t];
  },
  transpose(op, ins) {
    arity(ins, 1, 'transpose');
    const x = ins[0]!;
    const perm = attrInts(op, 'permutation');
    require(perm.length === x.shape.length && unique(perm) && inRange(perm, x.shape.length), `(C2) permutation [${perm.join(', ')}] is not a permutation of range(${x.shape.length})`);
    return [{ shape: perm.map((p) => x.shape[p]!), element: x.element }];
  },
  reverse(op, ins) {
    arity(ins, 1, 'reverse');
    const dims = attrInts(op, 'dimensions');
    require(unique(dims) && inRange(dims, ins[0]!.shape.length), '(C2)/(C3) dimensions are unique and in range');
    return [ins[0]!];
  },
  concatenate(op, ins) {
    require(ins.length >= 1, '(C1) concatenate needs at least one input');
    const d = attrInt(op, 'dimension');
    const r = ins[0]!.shape.length;
    require(d >= 0 && d < r, `(C4) 0 <= dimension ${d} < rank ${r}`);
    let total = 0;
    for (const t of ins) {
      require(t.element === ins[0]!.element, '(C1) same element types');
      require(t.shape.length === r && t.shape.every((x, i) => i === d || x === ins[0]!.shape[i]), '(C2) same shapes except at dimension');
      total += t.shape[d]!;
    }
    return [{ shape: ins[0]!.shape.map((x, i) => (i === d ? total : x)), element: ins[0]!.element }];
  },
  slice(op, ins) {
    arity(ins, 1, 'slice');
    const x = ins[0]!;
    const start = attrInts(op, 'start_indices');
    const limit = attrInts(op, 'limit_indices');
    const strides = attrInts(op, 'strides');
    const r = x.shape.length;
    require(start.length === r && limit.length === r && strides.length === r, '(C2) size(start_indices) = size(limit_indices) = size(strides) = rank(operand)');
    const shape = x.shape.map((d, i) => {
      require(0 <= start[i]! && start[i]! <= limit[i]! && limit[i]! <= d, `(C3) 0 <= start ${start[i]} <= limit ${limit[i]} <= ${d} in dimension ${i}`);
      require(strides[i]! > 0, '(C4) 0 < strides');
      return Math.ceil((limit[i]! - start[i]!) / strides[i]!);
    });
    return [{ shape, element: x.element }];
  },
  pad(op, ins) {
    arity(ins, 2, 'pad');
    const [x, v] = ins as [TensorType, TensorType];
    require(v.shape.length === 0 && v.element === x.element, '(C1) padding_value is a 0-d tensor of the operand element type');
    const lo = attrInts(op, 'edge_padding_low');
    const hi = attrInts(op, 'edge_padding_high');
    const interior = attrInts(op, 'interior_padding');
    const r = x.shape.length;
    require(lo.length === r && hi.length === r && interior.length === r, '(C2) padding sizes = rank(operand)');
    require(interior.every((p) => p >= 0), '(C3) 0 <= interior_padding');
    const shape = x.shape.map((d, i) => lo[i]! + d + Math.max(d - 1, 0) * interior[i]! + hi[i]!);
    require(shape.every((d) => d >= 0), '(C4) padded dimensions are non-negative');
    return [{ shape, element: x.element }];
  },
  dot_general(op, ins) {
    arity(ins, 2, 'dot_general');
    const [l, r] = ins as [TensorType, TensorType];
    const dn = op.attributes.get('dot_dimension_numbers');
    require(dn?.kind === 'dot', "dot_general needs 'dot_dimension_numbers'");
    const { lhsBatching: lb, rhsBatching: rb, lhsContracting: lc, rhsContracting: rc } = dn;
    require(lb.length === rb.length, '(C1) size(lhs_batching_dimensions) = size(rhs_batching_dimensions)');
    require(lc.length === rc.length, '(C2) size(lhs_contracting_dimensions) = size(rhs_contracting_dimensions)');
    require(unique([...lb, ...lc]), '(C3) lhs batching and contracting dimensions are unique');
    require(unique([...rb, ...rc]), '(C4) rhs batching and contracting dimensions are unique');
    require(inRange(lb, l.shape.length) && inRange(lc, l.shape.length), '(C5)/(C6) lhs dimensions in range');
    require(inRange(rb, r.shape.length) && inRange(rc, r.shape.length), '(C7)/(C8) rhs dimensions in range');
    lb.forEach((d, i) => require(l.shape[d] === r.shape[rb[i]!], `(C9) batching dimension sizes differ (${l.shape[d]} vs ${r.shape[rb[i]!]})`));
    lc.forEach((d, i) => require(l.shape[d] === r.shape[rc[i]!], `(C10) contracting dimension sizes differ (${l.shape[d]} vs ${r.shape[rc[i]!]})`));
    const pc = op.attributes.get('precision_config');
    if (pc) require(pc.kind === 'list' && pc.items.length === 2, '(C11) size(precision_config) = 2');
    require(l.element === r.element, `(C13) element_type(lhs) ${l.element} = element_type(rhs) ${r.element}`);
    const lf = l.shape.map((_, i) => i).filter((i) => !lb.includes(i) && !lc.includes(i));
    const rf = r.shape.map((_, i) => i).filter((i) => !rb.includes(i) && !rc.includes(i));
    const shape = [...lb.map((d) => l.shape[d]!), ...lf.map((d) => l.shape[d]!), ...rf.map((d) => r.shape[d]!)];
    const t = op.resultTypes[0];
    require(t !== undefined, 'dot_general declares no result');
    require(isFloat(t.element) === isFloat(l.element), `result element ${t.element} is not of the operands' kind (${l.element})`);
    return [{ shape, element: t.element }];
  },
  reduce(op, ins) {
    const n = ins.length / 2;
    require(Number.isInteger(n) && n > 0, '(C3) reduce takes N inputs and N init values');
    const inputs = ins.slice(0, n);
    const inits = ins.slice(n);
    require(inputs.every((t) => sameShape(t.shape, inputs[0]!.shape)), '(C1) inputs have the same shape');
    inits.forEach((t, i) => require(t.shape.length === 0 && t.element === inputs[i]!.element, '(C2) init values are 0-d tensors of the inputs\' element types'));
    const dims = attrInts(op, 'dimensions');
    require(inRange(dims, inputs[0]!.shape.length), '(C4) 0 <= dimensions < rank');
    require(unique(dims), '(C5) dimensions are unique');
    const body = checkBody(op, inputs.map((t) => t.element));
    const shape = inputs[0]!.shape.filter((_, i) => !dims.includes(i));
    return body.map((e) => ({ shape, element: e }));
  },
  reduce_window(op, ins) {
    const n = ins.length / 2;
    require(Number.isInteger(n) && n > 0, '(C1) reduce_window takes N inputs and N init values');
    const inputs = ins.slice(0, n);
    const inits = ins.slice(n);
    const r = inputs[0]!.shape.length;
    require(inputs.every((t) => sameShape(t.shape, inputs[0]!.shape)), '(C2) inputs have the same shape');
    inits.forEach((t, i) => require(t.shape.length === 0 && t.element === inputs[i]!.element, '(C3) init values match the inputs\' element types'));
    const wd = attrInts(op, 'window_dimensions');
    const ws = attrInts(op, 'window_strides', new Array(r).fill(1));
    const bd = attrInts(op, 'base_dilations', new Array(r).fill(1));
    const wdl = attrInts(op, 'window_dilations', new Array(r).fill(1));
    const pad = attrPairs(op, 'padding', r);
    require(wd.length === r && wd.every((x) => x > 0), '(C4)/(C5) window_dimensions: rank entries, positive');
    require(ws.length === r && ws.every((x) => x > 0), '(C6)/(C7) window_strides: rank entries, positive');
    require(bd.length === r && bd.every((x) => x > 0), '(C8)/(C9) base_dilations: rank entries, positive');
    require(wdl.length === r && wdl.every((x) => x > 0), '(C10)/(C11) window_dilations: rank entries, positive');
    const body = checkBody(op, inputs.map((t) => t.element));
    const shape = inputs[0]!.shape.map((d, i) => {
      const dilated = d === 0 ? 0 : (d - 1) * bd[i]! + 1;
      const padded = pad[i]![0] + dilated + pad[i]![1];
      const window = (wd[i]! - 1) * wdl[i]! + 1;
      return padded === 0 || window > padded ? 0 : Math.floor((padded - window) / ws[i]!) + 1;
    });
    return body.map((e) => ({ shape, element: e }));
  },
  gather(op, ins) {
    arity(ins, 2, 'gather');
    const [x, idx] = ins as [TensorType, TensorType];
    require(isInteger(idx.element), 'start_indices must be integers');
    const dn = op.attributes.get('dimension_numbers');
    require(dn?.kind === 'gather', "gather needs 'dimension_numbers'");
    const { offsetDims, collapsedSliceDims, operandBatchingDims, startIndicesBatchingDims, startIndexMap, indexVectorDim } = dn;
    const sizes = attrInts(op, 'slice_sizes');
    const rx = x.shape.length;
    const ri = idx.shape.length;
    require(rx === offsetDims.length + collapsedSliceDims.length + operandBatchingDims.length, '(C1) rank(operand) = size(offset_dims) + size(collapsed_slice_dims) + size(operand_batching_dims)');
    require(indexVectorDim >= 0 && indexVectorDim <= ri, '(C2) 0 <= index_vector_dim <= rank(start_indices)');
    require(startIndexMap.length === (indexVectorDim < ri ? idx.shape[indexVectorDim] : 1), '(C3) size(start_index_map) matches the index vector');
    require(unique(offsetDims) && offsetDims.every((d, i) => i === 0 || d > offsetDims[i - 1]!), '(C4) offset_dims unique and sorted');
    require(unique([...collapsedSliceDims, ...operandBatchingDims]), '(C6) collapsed_slice_dims and operand_batching_dims unique');
    require(collapsedSliceDims.every((d, i) => i === 0 || d > collapsedSliceDims[i - 1]!), '(C7) collapsed_slice_dims sorted');
    require(inRange(collapsedSliceDims, rx), '(C8) 0 <= collapsed_slice_dims < rank(operand)');
    require(collapsedSliceDims.every((d) => sizes[d]! <= 1), '(C9) slice_sizes[collapsed_slice_dims...] <= 1');
    require(inRange(operandBatchingDims, rx) && operandBatchingDims.every((d) => sizes[d]! <= 1), '(C10)-(C12) operand_batching_dims');
    require(unique(startIndicesBatchingDims) && inRange(startIndicesBatchingDims, ri) && !startIndicesBatchingDims.includes(indexVectorDim), '(C13)-(C15) start_indices_batching_dims');
    require(operandBatchingDims.length === startIndicesBatchingDims.length, '(C16) batching dims sizes agree');
    operandBatchingDims.forEach((d, i) => require(x.shape[d] === idx.shape[startIndicesBatchingDims[i]!], '(C17) batching dimension sizes agree'));
    require(unique([...startIndexMap, ...operandBatchingDims]) && inRange(startIndexMap, rx), '(C18)/(C19) start_index_map');
    require(sizes.length === rx, '(C20) size(slice_sizes) = rank(operand)');
    require(sizes.every((s, i) => s >= 0 && s <= x.shape[i]!), '(C21) 0 <= slice_sizes <= shape(operand)');
    const batchSizes = idx.shape.filter((_, i) => i !== indexVectorDim);
    const offsetSizes = sizes.filter((_, i) => !collapsedSliceDims.includes(i) && !operandBatchingDims.includes(i));
    const rank = batchSizes.length + offsetSizes.length;
    require(inRange(offsetDims, rank), '(C5) 0 <= offset_dims < rank(result)');
    const shape: number[] = [];
    let b = 0;
    let o = 0;
    for (let d = 0; d < rank; d++) shape.push(offsetDims.includes(d) ? offsetSizes[o++]! : batchSizes[b++]!);
    return [{ shape, element: x.element }];
  },
  convolution(op, ins) {
    arity(ins, 2, 'convolution');
    const [l, k] = ins as [TensorType, TensorType];
    const n = l.shape.length;
    require(k.shape.length === n, '(C1) rank(lhs) = rank(rhs)');
    const s = n - 2;
    const dn = op.attributes.get('dimension_numbers');
    require(dn?.kind === 'conv', "convolution needs 'dimension_numbers'");
    const d = dn.dims;
    const strides = attrInts(op, 'window_strides', new Array(s).fill(1));
    const pad = attrPairs(op, 'padding', s);
    const lhsDil = attrInts(op, 'lhs_dilation', new Array(s).fill(1));
    const rhsDil = attrInts(op, 'rhs_dilation', new Array(s).fill(1));
    const fgc = attrInt(op, 'feature_group_count', 1);
    const bgc = attrInt(op, 'batch_group_count', 1);
    require(strides.length === s && strides.every((x) => x > 0), '(C2)/(C3) window_strides');
    require(lhsDil.length === s && lhsDil.every((x) => x > 0), '(C5)/(C6) lhs_dilation');
    require(rhsDil.length === s && rhsDil.every((x) => x > 0), '(C7)/(C8) rhs_dilation');
    const rev = op.attributes.get('window_reversal');
    if (rev) require(rev.kind === 'array' && rev.values.length === s, '(C9) size(window_reversal) = N - 2');
    require(l.shape[d.inputBatch]! % bgc === 0, '(C10) batch divisible by batch_group_count');
    require(l.shape[d.inputFeature]! % fgc === 0, '(C11) features divisible by feature_group_count');
    const inDims = [d.inputBatch, ...d.inputSpatial, d.inputFeature];
    const kDims = [...d.kernelSpatial, d.kernelInputFeature, d.kernelOutputFeature];
    const outDims = [d.outputBatch, ...d.outputSpatial, d.outputFeature];
    require(d.inputSpatial.length === s && unique(inDims) && inRange(inDims, n), '(C12)/(C13) input dimensions');
    require(k.shape[d.kernelInputFeature] === l.shape[d.inputFeature]! / fgc, '(C14) kernel input features = input features / feature_group_count');
    require(k.shape[d.kernelOutputFeature]! % bgc === 0 && k.shape[d.kernelOutputFeature]! % fgc === 0, '(C15)/(C16) kernel output features divisible by group counts');
    require(d.kernelSpatial.length === s && unique(kDims) && inRange(kDims, n), '(C17)/(C18) kernel dimensions');
    require(d.outputSpatial.length === s && unique(outDims) && inRange(outDims, n), '(C19)/(C20) output dimensions');
    require(fgc > 0 && bgc > 0 && (fgc === 1 || bgc === 1), '(C21)-(C23) group counts');
    const pc = op.attributes.get('precision_config');
    if (pc) require(pc.kind === 'list' && pc.items.length === 2, '(C24) size(precision_config) = 2');
    require(l.element === k.element, '(C27) element_type(lhs) = element_type(rhs)');
    const shape = new Array<number>(n);
    shape[d.outputBatch] = l.shape[d.inputBatch]! / bgc;
    shape[d.outputFeature] = k.shape[d.kernelOutputFeature]!;
    for (let i = 0; i < s; i++) {
      const din = l.shape[d.inputSpatial[i]!]!;
      const dk = k.shape[d.kernelSpatial[i]!]!;
      const dilated = din === 0 ? 0 : (din - 1) * lhsDil[i]! + 1;
      const padded = pad[i]![0] + dilated + pad[i]![1];
      const window = dk === 0 ? 0 : (dk - 1) * rhsDil[i]! + 1;
      shape[d.outputSpatial[i]!] = padded === 0 || window > padded ? 0 : Math.floor((padded - window) / strides[i]!) + 1;
    }
    return [{ shape, element: l.element }];
  },
};

for (const name of UNARY_FLOAT) {
  RESULT_TYPES[name] = (_op, ins) => {
    arity(ins, 1, name);
    require(isFloat(ins[0]!.element), `${name} takes a floating-point tensor, not ${ins[0]!.element}`);
    return [ins[0]!];
  };
}
for (const name of UNARY_SIGNED) {
  RESULT_TYPES[name] = (_op, ins) => {
    arity(ins, 1, name);
    require(isFloat(ins[0]!.element) || isSigned(ins[0]!.element), `${name} takes a signed integer or float tensor, not ${ins[0]!.element}`);
    return [ins[0]!];
  };
}
RESULT_TYPES.not = (_op, ins) => {
  arity(ins, 1, 'not');
  require(isBool(ins[0]!.element) || isInteger(ins[0]!.element), 'not takes a boolean or integer tensor');
  return [ins[0]!];
};
RESULT_TYPES.is_finite = (_op, ins) => {
  arity(ins, 1, 'is_finite');
  require(isFloat(ins[0]!.element), 'is_finite takes a float tensor');
  return [{ shape: ins[0]!.shape, element: 'i1' }];
};
for (const name of [...BINARY_ANY, ...BINARY_NUMERIC, ...BINARY_LOGICAL, ...BINARY_SHIFT]) {
  RESULT_TYPES[name] = (_op, ins) => {
    arity(ins, 2, name);
    require(sameType(ins[0]!, ins[1]!), `(C1) type(lhs) ${formatType(ins[0]!)} = type(rhs) ${formatType(ins[1]!)}`);
    const e = ins[0]!.element;
    if (BINARY_LOGICAL.includes(name)) require(isBool(e) || isInteger(e), `${name} takes boolean or integer tensors`);
    if (BINARY_SHIFT.includes(name)) require(isInteger(e), `${name} takes integer tensors`);
    if (BINARY_NUMERIC.includes(name)) require(!isBool(e), `${name} does not take booleans`);
    return [ins[0]!];
  };
}

/** Checks a reduction body: 2N 0-d args (inputs' element types), returns N of the same types. */
function checkBody(op: Operation, elements: ElementType[]): ElementType[] {
  require(op.regions.length === 1, `${op.name} needs exactly one region (body)`);
  const body = op.regions[0]!;
  const n = elements.length;
  require(body.args.length === 2 * n, `(C6) body takes ${2 * n} arguments, has ${body.args.length}`);
  const types = body.args.map((a) => a.type);
  types.forEach((t, i) => require(t.shape.length === 0, `body argument ${i} must be a 0-d tensor`));
  for (let i = 0; i < n; i++) {
    require(types[i]!.element === types[i + n]!.element, '(C6) body argument types pair up');
    // is_promotable: same kind, at least as wide. peftc and the spec examples use the same type.
    require(types[i]!.element === elements[i] || (isFloat(elements[i]!) && isFloat(types[i]!.element)), `(C6) body element type ${types[i]!.element} cannot hold ${elements[i]}`);
  }
  const ret = body.ops[body.ops.length - 1];
  require(ret?.name === 'stablehlo.return', 'the body must end with stablehlo.return');
  require(ret.operandTypes.length === n && ret.operandTypes.every((t, i) => t.shape.length === 0 && t.element === types[i]!.element), '(C6) the body returns N 0-d tensors of its argument types');
  return types.slice(0, n).map((t) => t.element);
}

// ------------------------------------------------------------------------------------------------

/** Op name without the dialect prefix, for the stablehlo dialect. */
export function shortName(op: Operation): string | undefined {
  return op.name.startsWith('stablehlo.') ? op.name.slice('stablehlo.'.length) : undefined;
}

export function checkModule(m: Module): void {
  const problems: string[] = [];
  const seenFuncs = new Set<string>();
  for (const f of m.funcs) {
    if (seenFuncs.has(f.name)) problems.push(`${f.at}: function @${f.name} is defined twice`);
    seenFuncs.add(f.name);
    checkFunc(f, problems);
  }
  if (problems.length) throw new WellFormednessError(problems);
}

function checkFunc(f: FuncOp, problems: string[]): void {
  const defined = new Map<string, TensorType>();
  for (const a of f.args) {
    if (defined.has(a.name)) problems.push(`${f.at}: @${f.name}: argument ${a.name} is defined twice`);
    defined.set(a.name, a.type);
  }
  const ops = f.body.ops;
  const last = ops[ops.length - 1];
  if (last?.name !== 'func.return') problems.push(`${f.at}: @${f.name} does not end with return`);
  checkBlock(f.body, defined, problems, `@${f.name}`);
  if (last?.name === 'func.return') {
    const got = last.operandTypes;
    if (got.length !== f.resultTypes.length || got.some((t, i) => !sameType(t, f.resultTypes[i]!))) {
      problems.push(`${last.at}: return types (${got.map(formatType).join(', ')}) differ from @${f.name}'s result types (${f.resultTypes.map(formatType).join(', ')})`);
    }
  }
}

/**
 * Checks a block's ops in order. `scope` holds the values visible so far (for a region, the
 * enclosing ones too: a name may not be redefined while it is visible); values defined here are
 * added to it.
 */
function checkBlock(block: Block, scope: Map<string, TensorType>, problems: string[], where: string): void {
  block.ops.forEach((op, index) => {
    const terminator = op.name === 'func.return' || op.name === 'stablehlo.return';
    if (terminator && index !== block.ops.length - 1) problems.push(`${op.at}: ${op.name} is not the last op of its block`);
    if (op.operands.length !== op.operandTypes.length) {
      problems.push(`${op.at}: ${op.name} has ${op.operands.length} operand(s) and ${op.operandTypes.length} operand type(s)`);
      return;
    }
    let usable = true;
    op.operands.forEach((name, i) => {
      const t = scope.get(name);
      if (!t) {
        problems.push(`${op.at}: ${op.name} uses ${name} before it is defined (${where})`);
        usable = false;
      } else if (!sameType(t, op.operandTypes[i]!)) {
        problems.push(`${op.at}: ${op.name} operand ${name} is declared ${formatType(op.operandTypes[i]!)}, defined as ${formatType(t)}`);
        usable = false;
      }
    });
    if (op.results.length !== op.resultTypes.length && !terminator) problems.push(`${op.at}: ${op.name} names ${op.results.length} result(s) and declares ${op.resultTypes.length} type(s)`);
    if (!terminator) {
      const short = shortName(op);
      const infer = short !== undefined ? RESULT_TYPES[short] : undefined;
      if (!infer) problems.push(`${op.at}: ${op.name} is not an op this interpreter knows`);
      else if (usable) {
        try {
          // Region bodies are checked first (the reductions' result types come from them).
          for (const region of op.regions) {
            const inner = new Map(scope);
            for (const a of region.args) {
              if (inner.has(a.name)) problems.push(`${op.at}: region argument ${a.name} shadows a value already defined`);
              inner.set(a.name, a.type);
            }
            const last = region.ops[region.ops.length - 1];
            if (last?.name !== 'stablehlo.return') problems.push(`${op.at}: ${op.name}'s region does not end with stablehlo.return`);
            // Names defined inside the region are forgotten when it ends (sibling regions may reuse them).
            checkBlock(region, inner, problems, `${where}, region of ${op.name}`);
          }
          const inferred = infer(op, op.operandTypes);
          if (inferred.length !== op.resultTypes.length || inferred.some((t, i) => !sameType(t, op.resultTypes[i]!))) {
            problems.push(`${op.at}: ${op.name} declares result type(s) ${op.resultTypes.map(formatType).join(', ')}, the spec's rules give ${inferred.map(formatType).join(', ')}`);
          }
        } catch (err) {
          if (!(err instanceof Violation)) throw err;
          problems.push(`${op.at}: ${op.name}: ${err.message}`);
        }
      }
    }
    for (let i = 0; i < op.results.length; i++) {
      const name = op.results[i]!;
      if (scope.has(name)) problems.push(`${op.at}: ${name} is defined twice`);
      scope.set(name, op.resultTypes[i] ?? { shape: [], element: 'f32' });
    }
  });
}

/**
 * Evaluates a checked StableHLO module on typed arrays, op by op, following the semantics the
 * specification gives each op (docs/spec.md, "Ops"). Values are immutable once computed (reshape
 * shares its operand's elements); a value is dropped after its last use, so a long function holds
 * only the tensors still needed.
 *
 * Numerics: elementwise float ops compute in doubles and round to the result's element type
 * (bf16/f16 round to nearest even after every op, as those types' values must); reductions apply
 * their body left to right, rounding after each step; dot_general and convolution form each dot
 * product in doubles and round it once to the result type (products of bf16/f16/f32 values are
 * exact in doubles, so this is the spec's multiply-then-reduce with exact partial sums).
 */
import { attrEnum, attrInt, attrInts, attrPairs, checkModule, decodeDense, shortName } from './check.js';
import type { Block, FuncOp, Module, Operation } from './parser.js';
import {
  allocate,
  convertScalar,
  formatType,
  isBool,
  isFloat,
  numElements,
  roundBf16,
  roundF16,
  roundInPlace,
  sameType,
  stridesOf,
  tensorOf,
  wrapInteger,
  type ElementType,
  type HloTensor,
  type IntType,
  type Storage,
  type TensorType,
} from './types.js';

export class EvaluationError extends Error {
  override readonly name = 'EvaluationError';
}

type Kernel = (op: Operation, ins: HloTensor[], out: TensorType[]) => HloTensor[];

// ------------------------------------------------------------------------------------------------
// Helpers

/** Copies `dst.length` elements: dst[i] = src[base + sum(index_d * strides_d)] over `shape` in row-major order. */
function strideCopy(src: Storage, dst: Storage | Float64Array, shape: readonly number[], strides: readonly number[], base: number): void {
  const n = dst.length;
  if (n === 0) return;
  const r = shape.length;
  if (r === 0) {
    dst[0] = src[base]!;
    return;
  }
  const inner = shape[r - 1]!;
  const istr = strides[r - 1]!;
  const idx = new Array<number>(r).fill(0);
  let off = base;
  let o = 0;
  const outer = n / inner;
  for (let k = 0; k < outer; k++) {
    let s = off;
    for (let j = 0; j < inner; j++, s += istr) dst[o++] = src[s]!;
    for (let d = r - 2; d >= 0; d--) {
      idx[d]!++;
      off += strides[d]!;
      if (idx[d]! < shape[d]!) break;
      off -= strides[d]! * shape[d]!;
      idx[d] = 0;
    }
  }
}

/** Rounding of one computed double to element type `e` (per step of a reduction). */
function rounder(e: ElementType): (x: number) => number {
  if (e === 'f32') return Math.fround;
  if (e === 'f64') return (x) => x;
  if (e === 'bf16') return roundBf16;
  if (e === 'f16') return roundF16;
  if (e === 'i1') return (x) => (x ? 1 : 0);
  return (x) => wrapInteger(e as IntType, x);
}

function mapUnary(x: HloTensor, type: TensorType, f: (v: number) => number): HloTensor {
  const out = allocate(type);
  const a = x.data;
  for (let i = 0; i < out.length; i++) out[i] = f(a[i]!);
  roundInPlace(type.element, out);
  return tensorOf(type, out);
}

function mapBinary(x: HloTensor, y: HloTensor, type: TensorType, f: (a: number, b: number) => number): HloTensor {
  const out = allocate(type);
  const a = x.data;
  const b = y.data;
  for (let i = 0; i < out.length; i++) out[i] = f(a[i]!, b[i]!);
  roundInPlace(type.element, out);
  return tensorOf(type, out);
}

function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

function intDivide(e: ElementType, a: number, b: number): number {
  if (b === 0) throw new EvaluationError(`integer division by zero (${e})`);
  return Math.trunc(a / b);
}

function intRemainder(e: ElementType, a: number, b: number): number {
  if (b === 0) throw new EvaluationError(`integer remainder by zero (${e})`);
  return a % b;
}

/** IEEE-754 totalOrder key: -NaN < -Inf < ... < -0 < +0 < ... < +Inf < +NaN. */
const tkBuf = new Float64Array(1);
const tkBits = new BigInt64Array(tkBuf.buffer);
function totalOrderKey(x: number): bigint {
  tkBuf[0] = x;
  const b = tkBits[0]!;
  return b < 0n ? -(b & 0x7fffffffffffffffn) - 1n : b;
}

// ------------------------------------------------------------------------------------------------
// Elementwise kernels

const UNARY: Record<string, (e: ElementType) => (v: number) => number> = {
  abs: () => Math.abs,
  negate: () => (v) => -v,
  sign: (e) => (isFloat(e) ? (v) => (Number.isNaN(v) ? NaN : v === 0 ? v : Math.sign(v)) : Math.sign),
  sqrt: () => Math.sqrt,
  rsqrt: () => (v) => 1 / Math.sqrt(v),
  cbrt: () => Math.cbrt,
  exponential: () => Math.exp,
  exponential_minus_one: () => Math.expm1,
  log: () => Math.log,
  log_plus_one: () => Math.log1p,
  logistic: () => (v) => 1 / (1 + Math.exp(-v)),
  tanh: () => Math.tanh,
  sine: () => Math.sin,
  cosine: () => Math.cos,
  floor: () => Math.floor,
  ceil: () => Math.ceil,
  round_nearest_even: () => roundHalfEven,
  round_nearest_afz: () => (v) => Math.sign(v) * Math.round(Math.abs(v)),
  not: (e) => (isBool(e) ? (v) => 1 - v : (v) => ~v),
};

const BINARY: Record<string, (e: ElementType) => (a: number, b: number) => number> = {
  // For booleans, add is logical OR and multiply logical AND (the spec's semantics).
  add: (e) => (isBool(e) ? (a, b) => a | b : (a, b) => a + b),
  subtract: () => (a, b) => a - b,
  multiply: (e) => (isBool(e) ? (a, b) => a & b : (a, b) => a * b),
  divide: (e) => (isFloat(e) ? (a, b) => a / b : (a, b) => intDivide(e, a, b)),
  remainder: (e) => (isFloat(e) ? (a, b) => a % b : (a, b) => intRemainder(e, a, b)),
  power: (e) =>
    isFloat(e)
      ? Math.pow
      : (a, b) => {
          if (b < 0) return a === 1 ? 1 : a === -1 ? (b % 2 === 0 ? 1 : -1) : 0;
          let r = 1;
          for (let i = 0; i < b; i++) r = wrapInteger(e as IntType, r * a);
          return r;
        },
  maximum: () => (a, b) => (Number.isNaN(a) || Number.isNaN(b) ? NaN : a > b ? a : b === a ? (Object.is(a, -0) ? b : a) : b),
  minimum: () => (a, b) => (Number.isNaN(a) || Number.isNaN(b) ? NaN : a < b ? a : b === a ? (Object.is(a, -0) ? a : b) : b),
  and: () => (a, b) => a & b,
  or: () => (a, b) => a | b,
  xor: () => (a, b) => a ^ b,
  shift_left: (e) => (a, b) => (b < 0 || b >= bitsOf(e) ? 0 : a * 2 ** b),
  shift_right_arithmetic: (e) => (a, b) => (b < 0 || b >= bitsOf(e) ? (a < 0 ? -1 : 0) : Math.floor(a / 2 ** b)),
  shift_right_logical: (e) => (a, b) => {
    const bits = bitsOf(e);
    if (b < 0 || b >= bits) return 0;
    const u = a < 0 ? a + 2 ** bits : a;
    return Math.floor(u / 2 ** b);
  },
};

function bitsOf(e: ElementType): number {
  return Number(/\d+/.exec(e)![0]);
}

/**
 * out[b, m, n] = sum_k L[b, m, k] * R[b, n, k], in doubles. Blocks of 2 rows of L by 4 rows of R
 * share their loads (8 running sums), and R is walked in column blocks that stay in cache.
 */
function dotProducts(L: Float64Array, R: Float64Array, out: Float64Array, B: number, M: number, N: number, K: number): void {
  const NB = 32;
  const dot = (l: number, r: number): number => {
    let s = 0;
    for (let k = 0; k < K; k++) s += L[l + k]! * R[r + k]!;
    return s;
  };
  for (let b = 0; b < B; b++) {
    const lb = b * M * K;
    const rb = b * N * K;
    const ob = b * M * N;
    for (let n0 = 0; n0 < N; n0 += NB) {
      const n1 = Math.min(N, n0 + NB);
      let m = 0;
      for (; m + 1 < M; m += 2) {
        const l0 = lb + m * K;
        const l1 = l0 + K;
        const o0 = ob + m * N;
        const o1 = o0 + N;
        let n = n0;
        for (; n + 3 < n1; n += 4) {
          const r0 = rb + n * K;
          const r1 = r0 + K;
          const r2 = r1 + K;
          const r3 = r2 + K;
          let s00 = 0, s01 = 0, s02 = 0, s03 = 0, s10 = 0, s11 = 0, s12 = 0, s13 = 0; // prettier-ignore
          for (let k = 0; k < K; k++) {
            const a = L[l0 + k]!;
            const c = L[l1 + k]!;
            const x0 = R[r0 + k]!;
            const x1 = R[r1 + k]!;
            const x2 = R[r2 + k]!;
            const x3 = R[r3 + k]!;
            s00 += a * x0;
            s01 += a * x1;
            s02 += a * x2;
            s03 += a * x3;
            s10 += c * x0;
            s11 += c * x1;
            s12 += c * x2;
            s13 += c * x3;
          }
          out[o0 + n] = s00;
          out[o0 + n + 1] = s01;
          out[o0 + n + 2] = s02;
          out[o0 + n + 3] = s03;
          out[o1 + n] = s10;
          out[o1 + n + 1] = s11;
          out[o1 + n + 2] = s12;
          out[o1 + n + 3] = s13;
        }
        for (; n < n1; n++) {
          out[o0 + n] = dot(l0, rb + n * K);
          out[o1 + n] = dot(l1, rb + n * K);
        }
      }
      for (; m < M; m++) for (let n = n0; n < n1; n++) out[ob + m * N + n] = dot(lb + m * K, rb + n * K);
    }
  }
}

// ------------------------------------------------------------------------------------------------
// Op kernels

const KERNELS: Record<string, Kernel> = {
  constant(op) {
    const v = op.attributes.get('value');
    if (v?.kind !== 'dense') throw new EvaluationError('constant without a dense value');
    return [decodeDense(v)];
  },
  iota(op, _ins, [t]) {
    const d = attrInt(op, 'iota_dimension');
    const out = allocate(t!);
    const stride = stridesOf(t!.shape)[d]!;
    const size = t!.shape[d]!;
    for (let i = 0; i < out.length; i++) out[i] = Math.floor(i / stride) % size;
    roundInPlace(t!.element, out);
    return [tensorOf(t!, out)];
  },
  convert(_op, [x], [t]) {
    const out = allocate(t!);
    const e = t!.element;
    const a = x!.data;
    if (e === 'f32' || e === 'f64') for (let i = 0; i < out.length; i++) out[i] = a[i]!;
    else for (let i = 0; i < out.length; i++) out[i] = convertScalar(e, a[i]!);
    return [tensorOf(t!, out)];
  },
  compare(op, [x, y], [t]) {
    const dir = attrEnum(op, 'comparison_direction')!;
    const total = attrEnum(op, 'compare_type') === 'TOTALORDER';
    const out = allocate(t!) as Uint8Array;
    const a = x!.data;
    const b = y!.data;
    const n = out.length;
    if (total) {
      for (let i = 0; i < n; i++) {
        const p = totalOrderKey(a[i]!);
        const q = totalOrderKey(b[i]!);
        out[i] = Number(dir === 'EQ' ? p === q : dir === 'NE' ? p !== q : dir === 'LT' ? p < q : dir === 'LE' ? p <= q : dir === 'GT' ? p > q : p >= q);
      }
    } else {
      // IEEE quiet comparisons: any comparison with NaN is false, except NE.
      switch (dir) {
        case 'EQ':
          for (let i = 0; i < n; i++) out[i] = a[i] === b[i] ? 1 : 0;
          break;
        case 'NE':
          for (let i = 0; i < n; i++) out[i] = a[i] !== b[i] ? 1 : 0;
          break;
        case 'LT':
          for (let i = 0; i < n; i++) out[i] = a[i]! < b[i]! ? 1 : 0;
          break;
        case 'LE':
          for (let i = 0; i < n; i++) out[i] = a[i]! <= b[i]! ? 1 : 0;
          break;
        case 'GT':
          for (let i = 0; i < n; i++) out[i] = a[i]! > b[i]! ? 1 : 0;
          break;
        default:
          for (let i = 0; i < n; i++) out[i] = a[i]! >= b[i]! ? 1 : 0;
      }
    }
    return [tensorOf(t!, out)];
  },
  select(_op, [p, x, y], [t]) {
    const out = allocate(t!);
    const c = p!.data;
    const a = x!.data;
    const b = y!.data;
    if (c.length === 1) return [c[0] ? x! : y!];
    for (let i = 0; i < out.length; i++) out[i] = c[i] ? a[i]! : b[i]!;
    return [tensorOf(t!, out)];
  },
  clamp(_op, [lo, x, hi], [t]) {
    const out = allocate(t!);
    const l = lo!.data;
    const h = hi!.data;
    const a = x!.data;
    const ls = l.length === 1;
    const hs = h.length === 1;
    const max = BINARY.maximum!(t!.element);
    const min = BINARY.minimum!(t!.element);
    for (let i = 0; i < out.length; i++) out[i] = min(max(a[i]!, l[ls ? 0 : i]!), h[hs ? 0 : i]!);
    return [tensorOf(t!, out)];
  },
  broadcast_in_dim(op, [x], [t]) {
    const dims = attrInts(op, 'broadcast_dimensions');
    const xs = stridesOf(x!.type.shape);
    const strides = new Array<number>(t!.shape.length).fill(0);
    x!.type.shape.forEach((d, i) => {
      if (d !== 1) strides[dims[i]!] = xs[i]!;
    });
    const out = allocate(t!);
    strideCopy(x!.data, out, t!.shape, strides, 0);
    return [tensorOf(t!, out)];
  },
  reshape(_op, [x], [t]) {
    return [tensorOf(t!, x!.data)];
  },
  transpose(op, [x], [t]) {
    const perm = attrInts(op, 'permutation');
    const xs = stridesOf(x!.type.shape);
    const out = allocate(t!);
    strideCopy(x!.data, out, t!.shape, perm.map((p) => xs[p]!), 0);
    return [tensorOf(t!, out)];
  },
  reverse(op, [x], [t]) {
    const dims = attrInts(op, 'dimensions');
    const xs = stridesOf(x!.type.shape);
    let base = 0;
    const strides = xs.map((s, i) => {
      if (!dims.includes(i)) return s;
      base += (x!.type.shape[i]! - 1) * s;
      return -s;
    });
    const out = allocate(t!);
    strideCopy(x!.data, out, t!.shape, strides, base);
    return [tensorOf(t!, out)];
  },
  slice(op, [x], [t]) {
    const start = attrInts(op, 'start_indices');
    const strides = attrInts(op, 'strides');
    const xs = stridesOf(x!.type.shape);
    const base = start.reduce((acc, s, i) => acc + s * xs[i]!, 0);
    const out = allocate(t!);
    strideCopy(x!.data, out, t!.shape, xs.map((s, i) => s * strides[i]!), base);
    return [tensorOf(t!, out)];
  },
  concatenate(op, ins, [t]) {
    const d = attrInt(op, 'dimension');
    const out = allocate(t!);
    const outer = numElements(t!.shape.slice(0, d));
    const inner = numElements(t!.shape.slice(d + 1));
    const row = t!.shape[d]! * inner;
    let at = 0;
    for (const x of ins) {
      const chunk = x.type.shape[d]! * inner;
      for (let o = 0; o < outer; o++) out.set(x.data.subarray(o * chunk, (o + 1) * chunk) as never, o * row + at);
      at += chunk;
    }
    return [tensorOf(t!, out)];
  },
  pad(op, [x, v], [t]) {
    const lo = attrInts(op, 'edge_padding_low');
    const interior = attrInts(op, 'interior_padding');
    const out = allocate(t!);
    out.fill(v!.data[0]!);
    const xshape = x!.type.shape;
    const r = xshape.length;
    const os = stridesOf(t!.shape);
    const n = x!.data.length;
    const idx = new Array<number>(r).fill(0);
    for (let i = 0; i < n; i++) {
      let off = 0;
      let inside = true;
      for (let d = 0; d < r; d++) {
        const c = lo[d]! + idx[d]! * (interior[d]! + 1);
        if (c < 0 || c >= t!.shape[d]!) {
          inside = false;
          break;
        }
        off += c * os[d]!;
      }
      if (inside) out[off] = x!.data[i]!;
      for (let d = r - 1; d >= 0; d--) {
        if (++idx[d]! < xshape[d]!) break;
        idx[d] = 0;
      }
    }
    return [tensorOf(t!, out)];
  },
  dot_general(op, [x, y], [t]) {
    const dn = op.attributes.get('dot_dimension_numbers');
    if (dn?.kind !== 'dot') throw new EvaluationError('dot_general without dimension numbers');
    const { lhsBatching: lb, rhsBatching: rb, lhsContracting: lc, rhsContracting: rc } = dn;
    const ls = x!.type.shape;
    const rs = y!.type.shape;
    const lf = ls.map((_, i) => i).filter((i) => !lb.includes(i) && !lc.includes(i));
    const rf = rs.map((_, i) => i).filter((i) => !rb.includes(i) && !rc.includes(i));
    const size = (shape: readonly number[], dims: number[]) => dims.reduce((a, d) => a * shape[d]!, 1);
    const B = size(ls, lb);
    const M = size(ls, lf);
    const K = size(ls, lc);
    const N = size(rs, rf);
    // transpose(lhs, batching + result + contracting) and transpose(rhs, batching + result + contracting):
    // both operands then hold each dot product's factors contiguously.
    const lperm = [...lb, ...lf, ...lc];
    const rperm = [...rb, ...rf, ...rc];
    const lstr = stridesOf(ls);
    const rstr = stridesOf(rs);
    const L = new Float64Array(B * M * K);
    const R = new Float64Array(B * N * K);
    strideCopy(x!.data, L, lperm.map((d) => ls[d]!), lperm.map((d) => lstr[d]!), 0);
    strideCopy(y!.data, R, rperm.map((d) => rs[d]!), rperm.map((d) => rstr[d]!), 0);
    const acc = new Float64Array(B * M * N);
    dotProducts(L, R, acc, B, M, N, K);
    const out = allocate(t!);
    if (out instanceof Float64Array) out.set(acc);
    else for (let i = 0; i < out.length; i++) out[i] = acc[i]!;
    roundInPlace(t!.element, out);
    return [tensorOf(t!, out)];
  },
  reduce(op, ins, outTypes) {
    if (ins.length !== 2) throw new EvaluationError('reduce with several inputs is not supported by this interpreter');
    const [x, init] = ins as [HloTensor, HloTensor];
    const t = outTypes[0]!;
    const dims = attrInts(op, 'dimensions');
    const shape = x.type.shape;
    const kept = shape.map((_, i) => i).filter((i) => !dims.includes(i));
    const perm = [...kept, ...dims];
    const xs = stridesOf(shape);
    const moved = new Float64Array(x.data.length);
    strideCopy(x.data, moved, perm.map((d) => shape[d]!), perm.map((d) => xs[d]!), 0);
    const inner = numElements(dims.map((d) => shape[d]!));
    const out = allocate(t);
    const step = bodyFunction(op, t.element);
    const round = rounder(t.element);
    const start = init.data[0]!;
    for (let o = 0; o < out.length; o++) {
      let acc = start;
      const base = o * inner;
      for (let j = 0; j < inner; j++) acc = round(step(acc, moved[base + j]!));
      out[o] = acc;
    }
    return [tensorOf(t, out)];
  },
  reduce_window(op, ins, outTypes) {
    if (ins.length !== 2) throw new EvaluationError('reduce_window with several inputs is not supported by this interpreter');
    const [x, init] = ins as [HloTensor, HloTensor];
    const t = outTypes[0]!;
    const shape = x.type.shape;
    const r = shape.length;
    const wd = attrInts(op, 'window_dimensions');
    const ws = attrInts(op, 'window_strides', new Array(r).fill(1));
    const bd = attrInts(op, 'base_dilations', new Array(r).fill(1));
    const wdl = attrInts(op, 'window_dilations', new Array(r).fill(1));
    const pad = attrPairs(op, 'padding', r);
    const xs = stridesOf(shape);
    const step = bodyFunction(op, t.element);
    const round = rounder(t.element);
    const out = allocate(t);
    const start = init.data[0]!;
    const oidx = new Array<number>(r).fill(0);
    const widx = new Array<number>(r).fill(0);
    const wcount = numElements(wd);
    for (let o = 0; o < out.length; o++) {
      let acc = start;
      widx.fill(0);
      for (let w = 0; w < wcount; w++) {
        // Position in the padded, base-dilated input; holes and padding hold the init value.
        let off = 0;
        let value = start;
        let real = true;
        for (let d = 0; d < r; d++) {
          const p = oidx[d]! * ws[d]! + widx[d]! * wdl[d]! - pad[d]![0];
          if (p < 0 || p % bd[d]! !== 0 || p / bd[d]! >= shape[d]!) {
            real = false;
            break;
          }
          off += (p / bd[d]!) * xs[d]!;
        }
        if (real) value = x.data[off]!;
        acc = round(step(acc, value));
        for (let d = r - 1; d >= 0; d--) {
          if (++widx[d]! < wd[d]!) break;
          widx[d] = 0;
        }
      }
      out[o] = acc;
      for (let d = r - 1; d >= 0; d--) {
        if (++oidx[d]! < t.shape[d]!) break;
        oidx[d] = 0;
      }
    }
    return [tensorOf(t, out)];
  },
  gather(op, [x, idx], [t]) {
    const dn = op.attributes.get('dimension_numbers');
    if (dn?.kind !== 'gather') throw new EvaluationError('gather without dimension numbers');
    const { offsetDims, collapsedSliceDims, operandBatchingDims, startIndicesBatchingDims, startIndexMap, indexVectorDim: ivd } = dn;
    const sizes = attrInts(op, 'slice_sizes');
    const xshape = x!.type.shape;
    const xs = stridesOf(xshape);
    const ishape = idx!.type.shape;
    const is = stridesOf(ishape);
    const rshape = t!.shape;
    const rs = stridesOf(rshape);
    const ri = ishape.length;
    const batchDims = rshape.map((_, i) => i).filter((i) => !offsetDims.includes(i));
    const idxBatchDims = ishape.map((_, i) => i).filter((i) => i !== ivd);
    const comps = ivd < ri ? ishape[ivd]! : 1;
    const compStride = ivd < ri ? is[ivd]! : 0;
    // Offsets within one slice: result offset dims <-> operand dims that are neither collapsed nor batching.
    const operandOffsetDims = xshape.map((_, i) => i).filter((i) => !collapsedSliceDims.includes(i) && !operandBatchingDims.includes(i));
    const offSizes = operandOffsetDims.map((d) => sizes[d]!);
    const nOff = numElements(offSizes);
    const opDelta = new Int32Array(nOff);
    const resDelta = new Int32Array(nOff);
    {
      const c = new Array<number>(offSizes.length).fill(0);
      for (let k = 0; k < nOff; k++) {
        let a = 0;
        let b = 0;
        for (let j = 0; j < c.length; j++) {
          a += c[j]! * xs[operandOffsetDims[j]!]!;
          b += c[j]! * rs[offsetDims[j]!]!;
        }
        opDelta[k] = a;
        resDelta[k] = b;
        for (let j = c.length - 1; j >= 0; j--) {
          if (++c[j]! < offSizes[j]!) break;
          c[j] = 0;
        }
      }
    }
    const out = allocate(t!);
    const batchSizes = idxBatchDims.map((d) => ishape[d]!);
    const nBatch = numElements(batchSizes);
    const bi = new Array<number>(batchSizes.length).fill(0);
    for (let k = 0; k < nBatch; k++) {
      let idxOff = 0;
      let resOff = 0;
      for (let j = 0; j < bi.length; j++) {
        idxOff += bi[j]! * is[idxBatchDims[j]!]!;
        resOff += bi[j]! * rs[batchDims[j]!]!;
      }
      let opOff = 0;
      for (let c = 0; c < comps; c++) {
        const d = startIndexMap[c]!;
        const s = Math.min(Math.max(idx!.data[idxOff + c * compStride]!, 0), xshape[d]! - sizes[d]!);
        opOff += s * xs[d]!;
      }
      operandBatchingDims.forEach((d, i) => {
        const ds = startIndicesBatchingDims[i]!;
        opOff += bi[ds - (ds < ivd ? 0 : 1)]! * xs[d]!;
      });
      for (let q = 0; q < nOff; q++) out[resOff + resDelta[q]!] = x!.data[opOff + opDelta[q]!]!;
      for (let j = bi.length - 1; j >= 0; j--) {
        if (++bi[j]! < batchSizes[j]!) break;
        bi[j] = 0;
      }
    }
    return [tensorOf(t!, out)];
  },
  convolution(op, [x, w], [t]) {
    const dn = op.attributes.get('dimension_numbers');
    if (dn?.kind !== 'conv') throw new EvaluationError('convolution without dimension numbers');
    const d = dn.dims;
    const s = d.inputSpatial.length;
    if (attrInt(op, 'batch_group_count', 1) !== 1) throw new EvaluationError('convolution with batch_group_count > 1 is not supported by this interpreter');
    const groups = attrInt(op, 'feature_group_count', 1);
    const strides = attrInts(op, 'window_strides', new Array(s).fill(1));
    const pad = attrPairs(op, 'padding', s);
    const lhsDil = attrInts(op, 'lhs_dilation', new Array(s).fill(1));
    const rhsDil = attrInts(op, 'rhs_dilation', new Array(s).fill(1));
    const revAttr = op.attributes.get('window_reversal');
    const reversed = revAttr?.kind === 'array' ? revAttr.values.map(Boolean) : new Array<boolean>(s).fill(false);
    // Work in [N, C, spatial...] x [O, I, spatial...] -> [N, O, spatial...].
    const xl = x!.type.shape;
    const wl = w!.type.shape;
    const xperm = [d.inputBatch, d.inputFeature, ...d.inputSpatial];
    const wperm = [d.kernelOutputFeature, d.kernelInputFeature, ...d.kernelSpatial];
    const xstr = stridesOf(xl);
    const wstr = stridesOf(wl);
    const X = new Float64Array(numElements(xl));
    const W = new Float64Array(numElements(wl));
    strideCopy(x!.data, X, xperm.map((i) => xl[i]!), xperm.map((i) => xstr[i]!), 0);
    strideCopy(w!.data, W, wperm.map((i) => wl[i]!), wperm.map((i) => wstr[i]!), 0);
    const N = xl[d.inputBatch]!;
    const C = xl[d.inputFeature]!;
    const insp = d.inputSpatial.map((i) => xl[i]!);
    const O = wl[d.kernelOutputFeature]!;
    const I = wl[d.kernelInputFeature]!;
    const ksp = d.kernelSpatial.map((i) => wl[i]!);
    const osp = d.outputSpatial.map((i) => t!.shape[i]!);
    const inStr = stridesOf(insp);
    const kStr = stridesOf(ksp);
    const inSize = numElements(insp);
    const kSize = numElements(ksp);
    const oSize = numElements(osp);
    const perGroupOut = O / groups;
    const Y = new Float64Array(N * O * oSize);
    const oi = new Array<number>(s).fill(0);
    const ki = new Array<number>(s).fill(0);
    for (let p = 0; p < oSize; p++) {
      // Valid (input offset, kernel offset) pairs for this output position.
      const pairs: number[] = [];
      ki.fill(0);
      for (let k = 0; k < kSize; k++) {
        let inOff = 0;
        let kOff = 0;
        let ok = true;
        for (let j = 0; j < s; j++) {
          const kj = reversed[j] ? ksp[j]! - 1 - ki[j]! : ki[j]!;
          const pos = oi[j]! * strides[j]! + ki[j]! * rhsDil[j]! - pad[j]![0];
          if (pos < 0 || pos % lhsDil[j]! !== 0 || pos / lhsDil[j]! >= insp[j]!) {
            ok = false;
            break;
          }
          inOff += (pos / lhsDil[j]!) * inStr[j]!;
          kOff += kj * kStr[j]!;
        }
        if (ok) pairs.push(inOff, kOff);
        for (let j = s - 1; j >= 0; j--) {
          if (++ki[j]! < ksp[j]!) break;
          ki[j] = 0;
        }
      }
      for (let n = 0; n < N; n++) {
        for (let o = 0; o < O; o++) {
          const g = Math.floor(o / perGroupOut);
          let acc = 0;
          for (let c = 0; c < I; c++) {
            const xBase = (n * C + g * I + c) * inSize;
            const wBase = (o * I + c) * kSize;
            for (let q = 0; q < pairs.length; q += 2) acc += X[xBase + pairs[q]!]! * W[wBase + pairs[q + 1]!]!;
          }
          Y[(n * O + o) * oSize + p] = acc;
        }
      }
      for (let j = s - 1; j >= 0; j--) {
        if (++oi[j]! < osp[j]!) break;
        oi[j] = 0;
      }
    }
    // [N, O, spatial...] -> the output layout.
    const out = allocate(t!);
    const yShape = [N, O, ...osp];
    const yStr = stridesOf(yShape);
    const outDims = [d.outputBatch, d.outputFeature, ...d.outputSpatial];
    const srcStrides = new Array<number>(t!.shape.length);
    outDims.forEach((od, i) => (srcStrides[od] = yStr[i]!));
    strideCopy(Y, out, t!.shape, srcStrides, 0);
    roundInPlace(t!.element, out);
    return [tensorOf(t!, out)];
  },
};

for (const [name, make] of Object.entries(UNARY)) {
  KERNELS[name] = (_op, [x], [t]) => [mapUnary(x!, t!, make(t!.element))];
}
KERNELS.is_finite = (_op, [x], [t]) => [mapUnary(x!, t!, (v) => (Number.isFinite(v) ? 1 : 0))];
for (const [name, make] of Object.entries(BINARY)) {
  KERNELS[name] = (_op, [x, y], [t]) => [mapBinary(x!, y!, t!, make(t!.element))];
}

/**
 * The reduction body as a function of (accumulator, element). A body that is one binary op of its
 * two arguments runs as that op; any other body is evaluated op by op on 0-d tensors.
 */
function bodyFunction(op: Operation, e: ElementType): (a: number, b: number) => number {
  const body = op.regions[0]!;
  const [p, q] = body.args;
  const ops = body.ops;
  if (ops.length === 2 && ops[1]!.name === 'stablehlo.return' && ops[1]!.operands[0] === ops[0]!.results[0]) {
    const first = ops[0]!;
    const name = shortName(first);
    const make = name !== undefined ? BINARY[name] : undefined;
    if (make && first.operands[0] === p!.name && first.operands[1] === q!.name) return make(e);
    if (make && first.operands[0] === q!.name && first.operands[1] === p!.name) {
      const f = make(e);
      return (a, b) => f(b, a);
    }
  }
  const scalar: TensorType = { shape: [], element: e };
  return (a, b) => {
    const da = allocate(scalar);
    const db = allocate(scalar);
    da[0] = a;
    db[0] = b;
    const [r] = runBlock(body, [tensorOf(scalar, da), tensorOf(scalar, db)]);
    return r!.data[0]!;
  };
}

// ------------------------------------------------------------------------------------------------
// Blocks and functions

const lastUses = new WeakMap<Block, Map<number, string[]>>();

/** For each op index, the values whose last use it is (to drop them after it runs). */
function lastUseTable(block: Block): Map<number, string[]> {
  let t = lastUses.get(block);
  if (t) return t;
  const last = new Map<string, number>();
  block.ops.forEach((op, i) => {
    for (const name of op.operands) last.set(name, i);
  });
  t = new Map();
  for (const [name, i] of last) {
    const list = t.get(i) ?? [];
    list.push(name);
    t.set(i, list);
  }
  lastUses.set(block, t);
  return t;
}

function runBlock(block: Block, args: HloTensor[]): HloTensor[] {
  const env = new Map<string, HloTensor>();
  block.args.forEach((a, i) => env.set(a.name, args[i]!));
  const drop = lastUseTable(block);
  for (let i = 0; i < block.ops.length; i++) {
    const op = block.ops[i]!;
    const ins = op.operands.map((n) => {
      const v = env.get(n);
      if (!v) throw new EvaluationError(`${op.at}: ${n} has no value`);
      return v;
    });
    if (op.name === 'func.return' || op.name === 'stablehlo.return') return ins;
    const name = shortName(op);
    const kernel = name !== undefined ? KERNELS[name] : undefined;
    if (!kernel) throw new EvaluationError(`${op.at}: ${op.name} is not an op this interpreter evaluates`);
    let outs: HloTensor[];
    try {
      outs = kernel(op, ins, op.resultTypes);
    } catch (err) {
      throw new EvaluationError(`${op.at}: ${op.name}: ${(err as Error).message}`, { cause: err });
    }
    op.results.forEach((r, j) => env.set(r, outs[j]!));
    for (const n of drop.get(i) ?? []) env.delete(n);
  }
  throw new EvaluationError('block ends without a return');
}

/** A parsed, checked module ready to run. */
export class Program {
  private constructor(readonly module: Module) {}

  /** Checks the module's well-formedness (throws WellFormednessError listing every problem). */
  static fromModule(module: Module): Program {
    checkModule(module);
    return new Program(module);
  }

  func(name: string): FuncOp {
    const f = this.module.funcs.find((x) => x.name === name);
    if (!f) throw new EvaluationError(`the module has no function @${name} (it has ${this.module.funcs.map((x) => `@${x.name}`).join(', ')})`);
    return f;
  }

  /** Runs @name on `args` (types must be exactly the function's argument types). */
  run(name: string, args: readonly HloTensor[]): HloTensor[] {
    const f = this.func(name);
    if (args.length !== f.args.length) throw new EvaluationError(`@${name} takes ${f.args.length} argument(s), got ${args.length}`);
    args.forEach((a, i) => {
      if (!sameType(a.type, f.args[i]!.type)) throw new EvaluationError(`@${name} argument ${i} (${f.args[i]!.name}) is ${formatType(f.args[i]!.type)}, got ${formatType(a.type)}`);
    });
    return runBlock(f.body, [...args]);
  }
}

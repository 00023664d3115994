/**
 * WebAssembly SIMD kernels for integer block quantization (blockwise.ts), four float32 lanes at a
 * time. JavaScript is near its floor on these loops (every value goes through two float32
 * roundings, a clamp, a round, a dequantization and a float64 error); the kernels do the same
 * arithmetic with no bounds checks and four values per instruction.
 *
 * Same results as the scalar code, bit for bit, because each step is one IEEE operation with one
 * rounding in both: float32 multiply/add/sub of float32 operands equals Math.fround of the float64
 * operation (binary64 has more than 2 * 24 + 2 bits, so the double rounding is innocuous); the
 * error v - dequantized is formed in float64 from the widened float32 values, as the scalar code
 * does. Rounding differs in form only: the scalar code takes trunc(y + 0.5) (in float64) of the
 * value y clamped to [0, maxq]; here y is clamped first, then q = trunc(y) + (y - trunc(y) >= 0.5),
 * where y - trunc(y) is exact. For y in [0, maxq] both are floor(y + 0.5) (adding 0.5 in float32
 * could round 0.49999997 up to 1, which is why it is not done that way).
 *
 *   codes(ptr, groups, inv, z, s, maxq, out): 4 * groups float32 at ptr -> uint8 codes at out;
 *       adds (v - deq)^2, v^2 into the float64x2 sums at bytes 0 and 16, max |v - deq| into 32.
 *   sse(ptr, groups, inv, z, s, maxq, bound) -> float64: the sum of (v - deq)^2 in index order
 *       (lane by lane, as the scalar loop adds), returned as soon as it reaches `bound` (checked
 *       every four values: the sum never decreases, so stopping later changes no comparison).
 *   score(ptr, groups, cand, count, maxq, best) -> i32: sse of the block for each of `count`
 *       candidates (float32 inv, z, s at cand + 12 c) in order, each bounded by the best so far
 *       (initially `best`); a candidate wins only when strictly below it, as the scalar search.
 *       Returns 1 + the index of the last winner (0: none) and stores its sse at SCORE_AT. One
 *       call per block instead of one per candidate: calls from JavaScript cost more than a
 *       candidate's arithmetic.
 *   codesRows(ptr, rows, groups, rowBytes, params, maxq, out, outStride): codes for `rows` blocks
 *       of 4 * groups values, block j at ptr + j * rowBytes with float32 (inv, z, s) at
 *       params + 12 j, its codes at out + j * outStride: one call per tile instead of one per block.
 *   moments(ptr, groups, inv, z, s, maxq): for the codes q of the block, sum q and sum q^2 (int32x4
 *       lanes, exact) at MOMENTS_AT, sum v and sum v q (float64, in index order) after them: the
 *       least-squares refit's inputs.
 *   gather(src, rowBytes, groups, len, dst, bsBytes, lohi): the transposing gather of a tile: for
 *       4 * groups rows j and len values k, dst[j * bs + k] = src[k * rows + j] (float32), the
 *       smallest and largest value of each row j to lohi[j] and lohi[64 + j], and v - v of every
 *       value added to the float32x4 at byte 48 (NaN there means a non-finite weight).
 * Addresses are byte offsets into the module's imported memory. Assembled here from opcodes with
 * src/wasm/assembler.ts (no build step).
 */

import { assembleModule, bump, countedLoop, F32, F64, get, i32c, I32, I32_ADD, set, simd, tee, uleb, V128, vec, instantiateKernels, type KernelMemory } from '../wasm/assembler.js';

const F64_ADD = [0xa0];
const F64_GE = [0x66];
const V128_LOAD = simd(0x00, 2, 0); // alignment hint 4 bytes (float32 data), offset 0
const V128_STORE = simd(0x0b, 2, 0);
const v128Const = (bytes: number[]) => simd(0x0c, ...bytes);
const I8X16_SHUFFLE_HIGH_PAIR = simd(0x0d, 8, 9, 10, 11, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15);
const F32X4_SPLAT = simd(0x13);
const F64X2_EXTRACT = (lane: number) => simd(0x21, lane);
const STORE32_LANE0 = simd(0x5a, 0, 0, 0);
const F64X2_PROMOTE_LOW = simd(0x5f);
const I8X16_NARROW_U = simd(0x66);
const F32X4_TRUNC = simd(0x69);
const F32X4_GE = simd(0x46);
const I16X8_NARROW_U = simd(0x86);
const I32X4_SUB = simd(0xb1);
const F32X4_ADD = simd(0xe4);
const F32X4_SUB = simd(0xe5);
const F32X4_MUL = simd(0xe6);
const F32X4_MIN = simd(0xe8);
const F32X4_MAX = simd(0xe9);
const F64X2_ABS = simd(0xec);
const F64X2_ADD = simd(0xf0);
const F64X2_SUB = simd(0xf1);
const F64X2_MUL = simd(0xf2);
const F64X2_MAX = simd(0xf5);
const I32X4_TRUNC_SAT_F32X4_S = simd(0xf8);
const F32X4_CONVERT_I32X4_S = simd(0xfa);

const f32Bytes = (x: number) => Array.from(new Uint8Array(Float32Array.of(x).buffer));
const ZERO = v128Const(new Array<number>(16).fill(0));
const HALF = v128Const([0, 1, 2, 3].flatMap(() => f32Bytes(0.5)));
const INF_POS = v128Const([0, 1, 2, 3].flatMap(() => f32Bytes(Infinity)));
const INF_NEG = v128Const([0, 1, 2, 3].flatMap(() => f32Bytes(-Infinity)));



// Parameters shared by both functions: ptr, groups, inv, z, s, maxq (then out / bound).
const [P_PTR, P_GROUPS, P_INV, P_Z, P_S, P_MAXQ] = [0, 1, 2, 3, 4, 5];

/** Locals from `first` on: vinv, vz, vs, vmaxq, v, qi, deq, t (v128). */
function prologue(first: number): { code: number[]; l: Record<'vinv' | 'vz' | 'vs' | 'vmaxq' | 'v' | 'qi' | 'deq' | 't', number> } {
  const l = { vinv: first, vz: first + 1, vs: first + 2, vmaxq: first + 3, v: first + 4, qi: first + 5, deq: first + 6, t: first + 7 };
  const code = [
    ...get(P_INV), ...F32X4_SPLAT, ...set(l.vinv),
    ...get(P_Z), ...F32X4_SPLAT, ...set(l.vz),
    ...get(P_S), ...F32X4_SPLAT, ...set(l.vs),
    ...get(P_MAXQ), ...F32X4_SPLAT, ...set(l.vmaxq),
  ];
  return { code, l };
}

/** v = load(ptr); qi = codes; deq = (qi - z) * s. */
function quantizeFour(l: ReturnType<typeof prologue>['l']): number[] {
  return [
    ...get(P_PTR), ...V128_LOAD, ...set(l.v),
    // t = min(max(fround(fround(v * inv) + z), 0), maxq)
    ...get(l.v), ...get(l.vinv), ...F32X4_MUL, ...get(l.vz), ...F32X4_ADD, ...ZERO, ...F32X4_MAX, ...get(l.vmaxq), ...F32X4_MIN, ...set(l.t),
    // qi = trunc(t) - (t - trunc(t) >= 0.5 ? -1 : 0)
    ...get(l.t), ...F32X4_TRUNC, ...I32X4_TRUNC_SAT_F32X4_S,
    ...get(l.t), ...get(l.t), ...F32X4_TRUNC, ...F32X4_SUB, ...HALF, ...F32X4_GE,
    ...I32X4_SUB, ...set(l.qi),
    // deq = fround((q - z) * s)
    ...get(l.qi), ...F32X4_CONVERT_I32X4_S, ...get(l.vz), ...F32X4_SUB, ...get(l.vs), ...F32X4_MUL, ...set(l.deq),
  ];
}

/** Pushes e = widen(x) - widen(deq) for the low (high = false) or high pair of lanes. */
function errorPair(l: ReturnType<typeof prologue>['l'], high: boolean): number[] {
  const half = (local: number) => (high ? [...get(local), ...get(local), ...I8X16_SHUFFLE_HIGH_PAIR] : get(local));
  return [...half(l.v), ...F64X2_PROMOTE_LOW, ...half(l.deq), ...F64X2_PROMOTE_LOW, ...F64X2_SUB];
}

/** codes: params ptr, groups, inv, z, s, maxq, out; locals 8 v128 + sse, ss, max, e, w (v128). */
function codesBody(): number[] {
  const P_OUT = 6;
  const { code, l } = prologue(7);
  const [sse, ss, mx, e, w] = [15, 16, 17, 18, 19];
  const pair = (high: boolean) => [
    ...errorPair(l, high), ...set(e),
    ...get(sse), ...get(e), ...get(e), ...F64X2_MUL, ...F64X2_ADD, ...set(sse),
    ...get(mx), ...get(e), ...F64X2_ABS, ...F64X2_MAX, ...set(mx),
    ...(high ? [...get(l.v), ...get(l.v), ...I8X16_SHUFFLE_HIGH_PAIR] : get(l.v)), ...F64X2_PROMOTE_LOW, ...set(w),
    ...get(ss), ...get(w), ...get(w), ...F64X2_MUL, ...F64X2_ADD, ...set(ss),
  ];
  const body = [
    ...quantizeFour(l),
    ...get(P_OUT), ...get(l.qi), ...get(l.qi), ...I16X8_NARROW_U, ...get(l.qi), ...get(l.qi), ...I16X8_NARROW_U, ...I8X16_NARROW_U, ...STORE32_LANE0,
    ...pair(false),
    ...pair(true),
    ...bump(P_PTR, 16),
    ...bump(P_OUT, 4),
  ];
  return [
    ...vec([[13, V128]]),
    ...code,
    ...i32c(0), ...V128_LOAD, ...set(sse),
    ...i32c(16), ...V128_LOAD, ...set(ss),
    ...i32c(32), ...V128_LOAD, ...set(mx),
    ...countedLoop(P_GROUPS, body),
    ...i32c(0), ...get(sse), ...V128_STORE,
    ...i32c(16), ...get(ss), ...V128_STORE,
    ...i32c(32), ...get(mx), ...V128_STORE,
    0x0b,
  ];
}

/** sse: params ptr, groups, inv, z, s, maxq, bound; locals 8 v128, e (v128), acc (f64). */
function sseBody(): number[] {
  const P_BOUND = 6;
  const { code, l } = prologue(7);
  const e = 15;
  const acc = 16;
  const addPair = (high: boolean) => [
    ...errorPair(l, high), ...tee(e), ...get(e), ...F64X2_MUL, ...set(e),
    ...get(acc), ...get(e), ...F64X2_EXTRACT(0), ...F64_ADD, ...get(e), ...F64X2_EXTRACT(1), ...F64_ADD, ...set(acc),
  ];
  const body = [
    ...quantizeFour(l),
    ...addPair(false),
    ...addPair(true),
    // if (acc >= bound) return acc
    ...get(acc), ...get(P_BOUND), ...F64_GE, 0x04, 0x40, ...get(acc), 0x0f, 0x0b,
    ...bump(P_PTR, 16),
  ];
  return [...vec([[9, V128], [1, F64]]), ...code, ...countedLoop(P_GROUPS, body), ...get(acc), 0x0b];
}

/** gather: params src, rowBytes, groups, len, dst, bsBytes, lohi; locals p, d, kk, b2, b3 (i32), v, vmin, vmax, chk (v128). */
function gatherBody(): number[] {
  const [src, rowBytes, groups, len, dst, bsBytes, lohi] = [0, 1, 2, 3, 4, 5, 6];
  const [p, d, kk, b2, b3] = [7, 8, 9, 10, 11];
  const [v, vmin, vmax, chk] = [12, 13, 14, 15];
  const lane = (addr: number[], l: number) => [...addr, ...get(v), ...simd(0x5a, 0, 0, l)];
  const inner = [
    ...get(p), ...V128_LOAD, ...set(v),
    ...get(vmin), ...get(v), ...F32X4_MIN, ...set(vmin),
    ...get(vmax), ...get(v), ...F32X4_MAX, ...set(vmax),
    ...get(chk), ...get(v), ...get(v), ...F32X4_SUB, ...F32X4_ADD, ...set(chk),
    ...lane(get(d), 0),
    ...lane([...get(d), ...get(bsBytes), ...I32_ADD], 1),
    ...lane([...get(d), ...get(b2), ...I32_ADD], 2),
    ...lane([...get(d), ...get(b3), ...I32_ADD], 3),
    ...get(p), ...get(rowBytes), ...I32_ADD, ...set(p),
    ...bump(d, 4),
  ];
  const outer = [
    ...INF_POS, ...set(vmin),
    ...INF_NEG, ...set(vmax),
    ...get(src), ...set(p),
    ...get(dst), ...set(d),
    ...get(len), ...set(kk),
    ...countedLoop(kk, inner),
    ...get(lohi), ...get(vmin), ...V128_STORE,
    ...get(lohi), ...get(vmax), ...simd(0x0b, 2, ...uleb(256)),
    ...bump(lohi, 16),
    ...bump(src, 16),
    ...get(dst), ...get(b2), ...get(b2), ...I32_ADD, ...I32_ADD, ...set(dst),
  ];
  return [
    ...vec([[5, I32], [4, V128]]),
    ...get(bsBytes), ...get(bsBytes), ...I32_ADD, ...set(b2),
    ...get(b2), ...get(bsBytes), ...I32_ADD, ...set(b3),
    ...i32c(48), ...V128_LOAD, ...set(chk),
    ...countedLoop(groups, outer),
    ...i32c(48), ...get(chk), ...V128_STORE,
    0x0b,
  ];
}

/** moments: params ptr, groups, inv, z, s, maxq; locals 8 v128, sq, sqq, w, pq (v128), sv, svq (f64). */
function momentsBody(): number[] {
  const { code, l } = prologue(6);
  const [sq, sqq, w, pq, sv, svq] = [14, 15, 16, 17, 18, 19];
  const I32X4_ADD = simd(0xae);
  const I32X4_MUL = simd(0xb5);
  const F64X2_CONVERT_LOW_I32X4_S = simd(0xfe);
  const high = (local: number) => [...get(local), ...get(local), ...I8X16_SHUFFLE_HIGH_PAIR];
  const pair = (hi: boolean) => [
    ...(hi ? high(l.v) : get(l.v)), ...F64X2_PROMOTE_LOW, ...set(w),
    ...(hi ? high(l.qi) : get(l.qi)), ...F64X2_CONVERT_LOW_I32X4_S, ...get(w), ...F64X2_MUL, ...set(pq),
    ...get(sv), ...get(w), ...F64X2_EXTRACT(0), ...F64_ADD, ...get(w), ...F64X2_EXTRACT(1), ...F64_ADD, ...set(sv),
    ...get(svq), ...get(pq), ...F64X2_EXTRACT(0), ...F64_ADD, ...get(pq), ...F64X2_EXTRACT(1), ...F64_ADD, ...set(svq),
  ];
  const body = [
    ...quantizeFour(l),
    ...get(sq), ...get(l.qi), ...I32X4_ADD, ...set(sq),
    ...get(sqq), ...get(l.qi), ...get(l.qi), ...I32X4_MUL, ...I32X4_ADD, ...set(sqq),
    ...pair(false),
    ...pair(true),
    ...bump(P_PTR, 16),
  ];
  const f64Store = (offset: number) => [0x39, 3, ...uleb(offset)];
  return [
    ...vec([[12, V128], [2, F64]]),
    ...code,
    ...countedLoop(P_GROUPS, body),
    ...i32c(0), ...get(sq), ...simd(0x0b, 2, ...uleb(MOMENTS_AT)),
    ...i32c(0), ...get(sqq), ...simd(0x0b, 2, ...uleb(MOMENTS_AT + 16)),
    ...i32c(0), ...get(sv), ...f64Store(MOMENTS_AT + 32),
    ...i32c(0), ...get(svq), ...f64Store(MOMENTS_AT + 40),
    0x0b,
  ];
}

/** codesRows: params ptr, rows, groups, rowBytes, params, maxq, out, outStride. */
function codesRowsBody(): number[] {
  const [ptr, rows, groups, rowBytes, params, maxq, out, outStride] = [0, 1, 2, 3, 4, 5, 6, 7];
  const f32Load = (offset: number) => [0x2a, 2, ...uleb(offset)];
  const body = [
    ...get(ptr), ...get(groups),
    ...get(params), ...f32Load(0),
    ...get(params), ...f32Load(4),
    ...get(params), ...f32Load(8),
    ...get(maxq), ...get(out),
    0x10, 0, // call codes
    ...get(ptr), ...get(rowBytes), ...I32_ADD, ...set(ptr),
    ...get(out), ...get(outStride), ...I32_ADD, ...set(out),
    ...bump(params, 12),
  ];
  return [...vec([]), ...countedLoop(rows, body), 0x0b];
}

/** score: params ptr, groups, cand, count, maxq, best; locals idx, c (i32), r (f64). */
function scoreBody(): number[] {
  const [ptr, groups, cand, count, maxq, best] = [0, 1, 2, 3, 4, 5];
  const [idx, c, r] = [6, 7, 8];
  const f32Load = (offset: number) => [0x2a, 2, ...uleb(offset)];
  const body = [
    ...get(ptr), ...get(groups),
    ...get(cand), ...f32Load(0),
    ...get(cand), ...f32Load(4),
    ...get(cand), ...f32Load(8),
    ...get(maxq), ...get(best),
    0x10, 1, // call sse
    ...set(r),
    ...bump(c, 1),
    // if (r < best) { best = r; idx = c }
    ...get(r), ...get(best), 0x63, 0x04, 0x40, ...get(r), ...set(best), ...get(c), ...set(idx), 0x0b,
    ...bump(cand, 12),
  ];
  return [...vec([[2, I32], [1, F64]]), ...countedLoop(count, body), ...i32c(SCORE_AT), ...get(best), 0x39, 3, 0, ...get(idx), 0x0b];
}

function moduleBytes(): Uint8Array {
  return assembleModule([
    { name: 'codes', params: [I32, I32, F32, F32, F32, F32, I32], results: [], body: codesBody() },
    { name: 'sse', params: [I32, I32, F32, F32, F32, F32, F64], results: [F64], body: sseBody() },
    { name: 'gather', params: [I32, I32, I32, I32, I32, I32, I32], results: [], body: gatherBody() },
    { name: 'score', params: [I32, I32, I32, I32, F32, F64], results: [I32], body: scoreBody() },
    { name: 'moments', params: [I32, I32, F32, F32, F32, F32], results: [], body: momentsBody() },
    { name: 'codesRows', params: [I32, I32, I32, I32, I32, F32, I32, I32], results: [], body: codesRowsBody() },
  ]);
}


/**
 * The memory's fixed part: bytes 0-47 the codes kernel's sums (sse, sum of squares, max), 48-63
 * the gather's finiteness check, 64-575 the gather's row minima and maxima (64 rows each),
 * 576-583 the score's best sse, 640-687 the moments (int32x4 sum q, sum q^2; float64 sum v,
 * sum v q), 1024-4095 the score's candidates (256 at most), 4096-4863 codesRows' parameters (64
 * rows); the caller's data from SIMD_DATA_AT on.
 */
export const STATS_BYTES = 64;
export const LOHI_AT = 64;
export const SIMD_TILE_ROWS = 64;
export const SCORE_AT = 576;
export const MOMENTS_AT = 640;
export const CAND_AT = 1024;
export const MAX_CANDIDATES = 256;
export const ROW_PARAMS_AT = 4096;
export const SIMD_DATA_AT = 8192;

export interface QuantSimd extends KernelMemory {
  codes(ptr: number, groups: number, inv: number, z: number, s: number, maxq: number, out: number): void;
  sse(ptr: number, groups: number, inv: number, z: number, s: number, maxq: number, bound: number): number;
  gather(src: number, rowBytes: number, groups: number, len: number, dst: number, bsBytes: number, lohi: number): void;
  score(ptr: number, groups: number, cand: number, count: number, maxq: number, best: number): number;
  moments(ptr: number, groups: number, inv: number, z: number, s: number, maxq: number): void;
  codesRows(ptr: number, rows: number, groups: number, rowBytes: number, params: number, maxq: number, out: number, outStride: number): void;
}

let kernels: QuantSimd | null | undefined;
let enabled = true;

/** The kernels of this thread (instantiated once), or null where WebAssembly SIMD is unavailable or turned off. */
export function quantSimd(): QuantSimd | null {
  if (!enabled) return null;
  if (kernels === undefined) kernels = instantiateKernels<QuantSimd>(moduleBytes());
  return kernels;
}

/** Tests: run the scalar JavaScript loops instead (false), or the kernels again (true). */
export function setQuantSimd(on: boolean): void {
  enabled = on;
}

/**
 * WebAssembly SIMD kernels for the LoRA merge's inner loops (merge-math.ts addCombinedRows), two
 * float64 lanes at a time. Each lane does exactly the scalar operations of the JavaScript loops,
 * in the same order (float32 widened exactly, float64 multiply, float64 add, one rounding to
 * float32 at the end), so results are bit for bit the same; only the speed differs (about 3x:
 * half the instructions per element, and no bounds checks). One exception, of no numeric
 * consequence: where a result is NaN (a NaN or infinite weight or factor went in), its sign bit
 * may differ from the JavaScript loops' NaN, as the two propagate NaN operands in a different
 * operand order. It is NaN either way, and the same on every run and in every thread.
 *
 * The module is a few hundred bytes, assembled here from its opcodes with src/wasm/assembler.ts
 * (no build step, no tool).
 * Its memory is imported, so the caller sizes and grows it.
 *
 *   acc4(acc, x0, x1, x2, x3, c0, c1, c2, c3, quads): for 4*quads float64 acc[j], float32 xk[j]:
 *       acc[j] = acc[j] + c0*x0[j] + c1*x1[j] + c2*x2[j] + c3*x3[j]   (left to right)
 *   acc8(acc, x0..x7, c0..c7, quads): the same with eight terms (one load and store of acc per eight)
 *   acc1(acc, x0, c0, quads):  acc[j] = acc[j] + c0*x0[j]
 *   finish(w, acc, f, quads):  w[j] = float32(w[j] + f*acc[j])          (w float32)
 * Addresses are byte offsets into the memory.
 */

import { assembleModule, bump, countedLoop, F64, get, I32, set, simd, uleb, V128, vec, instantiateKernels, type KernelMemory } from '../wasm/assembler.js';

const V128_LOAD = simd(0x00, 3, 0); // align hint 8, offset 0
const V128_STORE = simd(0x0b, 3, 0);
const V128_LOAD64_ZERO = simd(0x5d, 3, 0);
const v128Load = (offset: number) => simd(0x00, 3, ...uleb(offset));
const v128Store = (offset: number) => simd(0x0b, 3, ...uleb(offset));
const v128Load64Zero = (offset: number) => simd(0x5d, 3, ...uleb(offset));
const v128Store64Lane0 = (offset: number) => simd(0x5b, 3, ...uleb(offset), 0);
const V128_STORE64_LANE0 = simd(0x5b, 3, 0, 0);
const F64X2_SPLAT = simd(0x14);
const F64X2_ADD = simd(0xf0);
const F64X2_MUL = simd(0xf2);
const F64X2_PROMOTE_LOW_F32X4 = simd(0x5f);
const F32X4_DEMOTE_F64X2_ZERO = simd(0x5e);


/**
 * accN: params acc, x0..x{n-1}, c0..c{n-1}, quads; locals: the splatted coefficients and two
 * running sums. Four elements per iteration (two float64x2 chains), so pointer updates and loop
 * control are paid once per four elements.
 */
function accumulateBody(n: number): number[] {
  const acc = 0;
  const x = (k: number) => 1 + k;
  const c = (k: number) => 1 + n + k;
  const quads = 1 + 2 * n;
  const cv = (k: number) => quads + 1 + k;
  const [lo, hi] = [quads + 1 + n, quads + 2 + n];
  const code: number[] = [];
  for (let k = 0; k < n; k++) code.push(...get(c(k)), ...F64X2_SPLAT, ...set(cv(k)));
  const body: number[] = [...get(acc), ...v128Load(0), ...set(lo), ...get(acc), ...v128Load(16), ...set(hi)];
  for (let k = 0; k < n; k++) {
    body.push(...get(lo), ...get(cv(k)), ...get(x(k)), ...v128Load64Zero(0), ...F64X2_PROMOTE_LOW_F32X4, ...F64X2_MUL, ...F64X2_ADD, ...set(lo));
    body.push(...get(hi), ...get(cv(k)), ...get(x(k)), ...v128Load64Zero(8), ...F64X2_PROMOTE_LOW_F32X4, ...F64X2_MUL, ...F64X2_ADD, ...set(hi));
  }
  body.push(...get(acc), ...get(lo), ...v128Store(0), ...get(acc), ...get(hi), ...v128Store(16), ...bump(acc, 32));
  for (let k = 0; k < n; k++) body.push(...bump(x(k), 16));
  code.push(...countedLoop(quads, body));
  return [...vec([[n + 2, V128]]), ...code, 0x0b];
}

/** finish: params w, acc, f, quads; local: f splatted. Four elements per iteration. */
function finishBody(): number[] {
  const [w, acc, f, quads, fv] = [0, 1, 2, 3, 4];
  const half = (offW: number, offAcc: number) => [
    ...get(w),
    ...get(w),
    ...v128Load64Zero(offW),
    ...F64X2_PROMOTE_LOW_F32X4,
    ...get(fv),
    ...get(acc),
    ...v128Load(offAcc),
    ...F64X2_MUL,
    ...F64X2_ADD,
    ...F32X4_DEMOTE_F64X2_ZERO,
    ...v128Store64Lane0(offW),
  ];
  const body = [...half(0, 0), ...half(8, 16), ...bump(w, 16), ...bump(acc, 32)];
  return [...vec([[1, V128]]), ...get(f), ...F64X2_SPLAT, ...set(fv), ...countedLoop(quads, body), 0x0b];
}

function moduleBytes(): Uint8Array {
  const acc = (n: number) => [I32, ...Array<number>(n).fill(I32), ...Array<number>(n).fill(F64), I32];
  return assembleModule([
    { name: 'acc8', params: acc(8), results: [], body: accumulateBody(8) },
    { name: 'acc4', params: acc(4), results: [], body: accumulateBody(4) },
    { name: 'acc1', params: acc(1), results: [], body: accumulateBody(1) },
    { name: 'finish', params: [I32, I32, F64, I32], results: [], body: finishBody() },
  ]);
}

export interface SimdKernels extends KernelMemory {
  acc8(
    acc: number,
    x0: number, x1: number, x2: number, x3: number, x4: number, x5: number, x6: number, x7: number,
    c0: number, c1: number, c2: number, c3: number, c4: number, c5: number, c6: number, c7: number,
    pairs: number,
  ): void;
  acc4(acc: number, x0: number, x1: number, x2: number, x3: number, c0: number, c1: number, c2: number, c3: number, pairs: number): void;
  acc1(acc: number, x0: number, c0: number, pairs: number): void;
  finish(w: number, acc: number, f: number, pairs: number): void;
}

let kernels: SimdKernels | null | undefined;
let enabled = true;

/** The kernels of this thread (instantiated once), or null where WebAssembly SIMD is unavailable or turned off. */
export function simdKernels(): SimdKernels | null {
  if (!enabled) return null;
  if (kernels === undefined) kernels = instantiateKernels<SimdKernels>(moduleBytes());
  return kernels;
}

/** Turns the kernels off (the plain JavaScript loops run instead), for tests comparing the two. */
export function setSimdEnabled(on: boolean): void {
  enabled = on;
}

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
 * The module is a few hundred bytes, assembled here from its opcodes (no build step, no tool).
 * Its memory is imported, so the caller sizes and grows it.
 *
 *   acc4(acc, x0, x1, x2, x3, c0, c1, c2, c3, pairs): for 2*pairs float64 acc[j] and float32 xk[j]:
 *       acc[j] = acc[j] + c0*x0[j] + c1*x1[j] + c2*x2[j] + c3*x3[j]   (left to right)
 *   acc1(acc, x0, c0, pairs):  acc[j] = acc[j] + c0*x0[j]
 *   finish(w, acc, f, pairs):  w[j] = float32(w[j] + f*acc[j])          (w float32)
 * Addresses are byte offsets into the memory.
 */

const I32 = 0x7f;
const F64 = 0x7c;
const V128 = 0x7b;

/** Unsigned LEB128. */
function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
}

const vec = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];
const section = (id: number, body: number[]): number[] => [id, ...uleb(body.length), ...body];
const name = (s: string): number[] => [...uleb(s.length), ...Buffer.from(s, 'ascii')];

// Instructions.
const get = (i: number) => [0x20, ...uleb(i)];
const set = (i: number) => [0x21, ...uleb(i)];
const tee = (i: number) => [0x22, ...uleb(i)];
const i32c = (n: number) => [0x41, ...uleb(n)]; // small non-negative constants only
const I32_ADD = [0x6a];
const I32_SUB = [0x6b];
const I32_EQZ = [0x45];
const simd = (op: number, ...imm: number[]) => [0xfd, ...uleb(op), ...imm];
const V128_LOAD = simd(0x00, 3, 0); // align hint 8, offset 0
const V128_STORE = simd(0x0b, 3, 0);
const V128_LOAD64_ZERO = simd(0x5d, 3, 0);
const V128_STORE64_LANE0 = simd(0x5b, 3, 0, 0);
const F64X2_SPLAT = simd(0x14);
const F64X2_ADD = simd(0xf0);
const F64X2_MUL = simd(0xf2);
const F64X2_PROMOTE_LOW_F32X4 = simd(0x5f);
const F32X4_DEMOTE_F64X2_ZERO = simd(0x5e);

/** Two float32 at address local `p` widened to float64x2. */
const loadPair = (p: number) => [...get(p), ...V128_LOAD64_ZERO, ...F64X2_PROMOTE_LOW_F32X4];
const bump = (p: number, by: number) => [...get(p), ...i32c(by), ...I32_ADD, ...set(p)];

/** `block; if pairs == 0 skip; loop { body; pairs -= 1; continue while pairs != 0 } end` */
function countedLoop(pairs: number, body: number[]): number[] {
  return [0x02, 0x40, ...get(pairs), ...I32_EQZ, 0x0d, 0, 0x03, 0x40, ...body, ...get(pairs), ...i32c(1), ...I32_SUB, ...tee(pairs), 0x0d, 0, 0x0b, 0x0b];
}

/** accN: params acc, x0..x{n-1}, c0..c{n-1}, pairs; locals: the splatted coefficients. */
function accumulateBody(n: number): number[] {
  const acc = 0;
  const x = (k: number) => 1 + k;
  const c = (k: number) => 1 + n + k;
  const pairs = 1 + 2 * n;
  const cv = (k: number) => pairs + 1 + k;
  const code: number[] = [];
  for (let k = 0; k < n; k++) code.push(...get(c(k)), ...F64X2_SPLAT, ...set(cv(k)));
  const body: number[] = [...get(acc), ...get(acc), ...V128_LOAD];
  for (let k = 0; k < n; k++) body.push(...get(cv(k)), ...loadPair(x(k)), ...F64X2_MUL, ...F64X2_ADD);
  body.push(...V128_STORE, ...bump(acc, 16));
  for (let k = 0; k < n; k++) body.push(...bump(x(k), 8));
  code.push(...countedLoop(pairs, body));
  return [...vec([[...uleb(n), V128]]), ...code, 0x0b];
}

/** finish: params w, acc, f, pairs; local: f splatted. */
function finishBody(): number[] {
  const [w, acc, f, pairs, fv] = [0, 1, 2, 3, 4];
  const body = [
    ...get(w),
    ...loadPair(w),
    ...get(fv),
    ...get(acc),
    ...V128_LOAD,
    ...F64X2_MUL,
    ...F64X2_ADD,
    ...F32X4_DEMOTE_F64X2_ZERO,
    ...V128_STORE64_LANE0,
    ...bump(w, 8),
    ...bump(acc, 16),
  ];
  return [...vec([[1, V128]]), ...get(f), ...F64X2_SPLAT, ...set(fv), ...countedLoop(pairs, body), 0x0b];
}

function moduleBytes(): Uint8Array {
  const fnType = (params: number[]) => [0x60, ...vec(params.map((p) => [p])), ...vec([])];
  const types = section(1, vec([fnType([I32, I32, I32, I32, I32, F64, F64, F64, F64, I32]), fnType([I32, I32, F64, I32]), fnType([I32, I32, F64, I32])]));
  const imports = section(2, vec([[...name('env'), ...name('memory'), 0x02, 0x00, 1]]));
  const funcs = section(3, vec([[0], [1], [2]]));
  const exports = section(7, vec([[...name('acc4'), 0x00, 0], [...name('acc1'), 0x00, 1], [...name('finish'), 0x00, 2]]));
  const bodies = [accumulateBody(4), accumulateBody(1), finishBody()].map((b) => [...uleb(b.length), ...b]);
  const code = section(10, vec(bodies));
  return Uint8Array.from([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, ...types, ...imports, ...funcs, ...exports, ...code]);
}

/** The part of the WebAssembly API used here (the project's TypeScript libs carry no WebAssembly typings). */
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
interface WasmApi {
  Memory: new (descriptor: { initial: number }) => WasmMemory;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: unknown };
}
const wasm = (globalThis as unknown as { WebAssembly?: WasmApi }).WebAssembly;

export interface SimdKernels {
  memory: WasmMemory;
  acc4(acc: number, x0: number, x1: number, x2: number, x3: number, c0: number, c1: number, c2: number, c3: number, pairs: number): void;
  acc1(acc: number, x0: number, c0: number, pairs: number): void;
  finish(w: number, acc: number, f: number, pairs: number): void;
  /** Grows the memory to at least `bytes`. */
  reserve(bytes: number): void;
}

let kernels: SimdKernels | null | undefined;
let enabled = true;

/** The kernels of this thread (instantiated once), or null where WebAssembly SIMD is unavailable or turned off. */
export function simdKernels(): SimdKernels | null {
  if (!enabled) return null;
  if (kernels === undefined) {
    try {
      if (!wasm) throw new Error('no WebAssembly');
      const memory = new wasm.Memory({ initial: 1 });
      const instance = new wasm.Instance(new wasm.Module(moduleBytes()), { env: { memory } });
      const e = instance.exports as unknown as Pick<SimdKernels, 'acc4' | 'acc1' | 'finish'>;
      kernels = {
        memory,
        acc4: e.acc4,
        acc1: e.acc1,
        finish: e.finish,
        reserve(bytes: number) {
          const have = memory.buffer.byteLength;
          if (bytes > have) memory.grow(Math.ceil((bytes - have) / 65536));
        },
      };
    } catch {
      kernels = null;
    }
  }
  return kernels;
}

/** Turns the kernels off (the plain JavaScript loops run instead), for tests comparing the two. */
export function setSimdEnabled(on: boolean): void {
  enabled = on;
}

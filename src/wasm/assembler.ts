/**
 * A tiny WebAssembly assembler: the encodings the project's hand-written SIMD kernels
 * (src/peft/merge-simd.ts, src/quant/quant-simd.ts) are built from, and the module layout they
 * share (one imported memory `env.memory`, each function with its own type, all exported).
 * Kernels are assembled from opcodes at load time, so there is no build step and no toolchain;
 * each kernel file keeps only its own instructions and bodies.
 */

// Value types.
export const I32 = 0x7f;
export const F32 = 0x7d;
export const F64 = 0x7c;
export const V128 = 0x7b;

/** Unsigned LEB128. */
export function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
}

export const vec = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];
export const section = (id: number, body: number[]): number[] => [id, ...uleb(body.length), ...body];
/** An ASCII name. */
export const name = (s: string): number[] => [...uleb(s.length), ...Array.from(s, (c) => c.charCodeAt(0))];

// Instructions shared by the kernels.
export const get = (i: number) => [0x20, ...uleb(i)];
export const set = (i: number) => [0x21, ...uleb(i)];
export const tee = (i: number) => [0x22, ...uleb(i)];
export const i32c = (n: number) => [0x41, ...uleb(n)]; // small non-negative constants only
export const I32_ADD = [0x6a];
export const I32_SUB = [0x6b];
export const I32_EQZ = [0x45];
export const simd = (op: number, ...imm: number[]) => [0xfd, ...uleb(op), ...imm];

/** local p += by */
export const bump = (p: number, by: number) => [...get(p), ...i32c(by), ...I32_ADD, ...set(p)];

/** `block; if count == 0 skip; loop { body; count -= 1; continue while count != 0 } end` */
export function countedLoop(count: number, body: number[]): number[] {
  return [0x02, 0x40, ...get(count), ...I32_EQZ, 0x0d, 0, 0x03, 0x40, ...body, ...get(count), ...i32c(1), ...I32_SUB, ...tee(count), 0x0d, 0, 0x0b, 0x0b];
}

export interface WasmFunction {
  name: string;
  params: number[];
  results: number[];
  /** Locals declaration + instructions + end (0x0b). */
  body: number[];
}

/** A module importing one memory (env.memory, at least one page) and exporting `functions`. */
export function assembleModule(functions: readonly WasmFunction[]): Uint8Array {
  const fnType = (f: WasmFunction) => [0x60, ...vec(f.params.map((p) => [p])), ...vec(f.results.map((r) => [r]))];
  const types = section(1, vec(functions.map(fnType)));
  const imports = section(2, vec([[...name('env'), ...name('memory'), 0x02, 0x00, 1]]));
  const funcs = section(3, vec(functions.map((_, i) => uleb(i))));
  const exports = section(7, vec(functions.map((f, i) => [...name(f.name), 0x00, ...uleb(i)])));
  const code = section(10, vec(functions.map((f) => [...uleb(f.body.length), ...f.body])));
  return Uint8Array.from([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, ...types, ...imports, ...funcs, ...exports, ...code]);
}

/** The part of the WebAssembly API used here (the project's TypeScript libs carry no WebAssembly typings). */
export interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
export interface WasmApi {
  Memory: new (descriptor: { initial: number }) => WasmMemory;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: unknown };
  validate(bytes: Uint8Array): boolean;
}
/** WebAssembly, or undefined where the runtime has none. */
export const wasm = (globalThis as unknown as { WebAssembly?: WasmApi }).WebAssembly;

/** What every kernel set has besides its functions: its memory, and a way to grow it. */
export interface KernelMemory {
  memory: WasmMemory;
  /** Grows the memory to at least `bytes`. */
  reserve(bytes: number): void;
}

/**
 * Instantiates a module made by assembleModule against a fresh one-page memory and returns its
 * exports with the memory; null where WebAssembly (or the SIMD it uses) is unavailable, so
 * callers fall back to their JavaScript loops.
 */
export function instantiateKernels<T extends KernelMemory>(bytes: Uint8Array): T | null {
  try {
    if (!wasm) throw new Error('no WebAssembly');
    const memory = new wasm.Memory({ initial: 1 });
    const instance = new wasm.Instance(new wasm.Module(bytes), { env: { memory } });
    return {
      ...(instance.exports as object),
      memory,
      reserve(want: number) {
        const have = memory.buffer.byteLength;
        if (want > have) memory.grow(Math.ceil((want - have) / 65536));
      },
    } as T;
  } catch {
    return null;
  }
}

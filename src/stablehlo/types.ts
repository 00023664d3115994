/**
 * StableHLO element and tensor types, as the specification's "Types" section defines them, and
 * how this interpreter stores their values.
 *
 * Storage (one typed array per tensor, row-major, no per-element objects):
 *  - f16, bf16, f32: Float32Array holding values already rounded to the element type;
 *  - f64: Float64Array;
 *  - i1: Uint8Array of 0/1;
 *  - integers of at most 32 bits (ui32 excepted): Int32Array, wrapped to the type's width;
 *  - ui32, i64, ui64: Float64Array. Such values are exact only within +-2^53; an operation whose
 *    i64 result leaves that range is refused (see checkExactInteger) rather than computed wrongly.
 *
 * This folder (src/stablehlo/) is the reference interpreter; it is written from the StableHLO
 * specification (openxla/stablehlo docs/spec.md) and shares no code with any lowering.
 */

export type FloatType = 'f16' | 'bf16' | 'f32' | 'f64';
export type IntType = 'i2' | 'i4' | 'i8' | 'i16' | 'i32' | 'i64' | 'ui2' | 'ui4' | 'ui8' | 'ui16' | 'ui32' | 'ui64';
export type ElementType = 'i1' | FloatType | IntType;

export interface TensorType {
  readonly shape: readonly number[];
  readonly element: ElementType;
}

export type Storage = Float32Array | Float64Array | Int32Array | Uint8Array;

/** A tensor value: its type and its elements in row-major order. */
export interface HloTensor {
  readonly type: TensorType;
  readonly data: Storage;
}

interface ElementInfo {
  kind: 'bool' | 'signed' | 'unsigned' | 'float';
  bits: number;
}

const ELEMENTS: Record<ElementType, ElementInfo> = {
  i1: { kind: 'bool', bits: 1 },
  i2: { kind: 'signed', bits: 2 },
  i4: { kind: 'signed', bits: 4 },
  i8: { kind: 'signed', bits: 8 },
  i16: { kind: 'signed', bits: 16 },
  i32: { kind: 'signed', bits: 32 },
  i64: { kind: 'signed', bits: 64 },
  ui2: { kind: 'unsigned', bits: 2 },
  ui4: { kind: 'unsigned', bits: 4 },
  ui8: { kind: 'unsigned', bits: 8 },
  ui16: { kind: 'unsigned', bits: 16 },
  ui32: { kind: 'unsigned', bits: 32 },
  ui64: { kind: 'unsigned', bits: 64 },
  f16: { kind: 'float', bits: 16 },
  bf16: { kind: 'float', bits: 16 },
  f32: { kind: 'float', bits: 32 },
  f64: { kind: 'float', bits: 64 },
};

/** MLIR spells signless integers `iN`; StableHLO reads them as signed (`siN` is the spec's name). */
const SPELLINGS = new Map<string, ElementType>([
  ...Object.keys(ELEMENTS).map((k) => [k, k as ElementType] as const),
  ['si2', 'i2'],
  ['si4', 'i4'],
  ['si8', 'i8'],
  ['si16', 'i16'],
  ['si32', 'i32'],
  ['si64', 'i64'],
]);

export function parseElementType(text: string): ElementType | undefined {
  return SPELLINGS.get(text);
}

export function elementInfo(e: ElementType): ElementInfo {
  return ELEMENTS[e];
}

export const isFloat = (e: ElementType): e is FloatType => ELEMENTS[e].kind === 'float';
export const isBool = (e: ElementType): boolean => e === 'i1';
export const isInteger = (e: ElementType): e is IntType => ELEMENTS[e].kind === 'signed' || ELEMENTS[e].kind === 'unsigned';
export const isSigned = (e: ElementType): boolean => ELEMENTS[e].kind === 'signed';
export const isUnsigned = (e: ElementType): boolean => ELEMENTS[e].kind === 'unsigned';

export function formatType(t: TensorType): string {
  return `tensor<${[...t.shape.map(String), t.element].join('x')}>`;
}

export function sameType(a: TensorType, b: TensorType): boolean {
  return a.element === b.element && sameShape(a.shape, b.shape);
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

export function numElements(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Row-major strides (in elements). */
export function stridesOf(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i]!;
  }
  return s;
}

export function allocate(type: TensorType): Storage {
  const n = numElements(type.shape);
  const e = type.element;
  if (e === 'i1') return new Uint8Array(n);
  if (e === 'f64' || e === 'i64' || e === 'ui64' || e === 'ui32') return new Float64Array(n);
  if (isFloat(e)) return new Float32Array(n);
  return new Int32Array(n);
}

export function tensorOf(type: TensorType, data: Storage): HloTensor {
  if (data.length !== numElements(type.shape)) throw new Error(`internal: ${formatType(type)} needs ${numElements(type.shape)} elements, got ${data.length}`);
  return { type, data };
}

// ------------------------------------------------------------------------------------------------
// Rounding to an element type (the spec's semantics: every value of a tensor is a value of its type)

const f32box = new Float32Array(1);
const u32box = new Uint32Array(f32box.buffer);

/** Rounds a double to the nearest bfloat16 (ties to even, once: not through float32 first). */
export function roundBf16(x: number): number {
  if (Number.isNaN(x)) return NaN;
  f32box[0] = x;
  if (f32box[0] === x || !Number.isFinite(x)) {
    // Exactly a float32 (or infinite): round its bits.
    const bits = u32box[0]!;
    if ((bits & 0x7f800000) === 0x7f800000) return f32box[0]!;
    u32box[0] = ((bits + 0x7fff + ((bits >>> 16) & 1)) & 0xffff0000) >>> 0;
    return f32box[0]!;
  }
  return roundToPrecision(x, 8, -126, 3.3961775292304654e38);
}

/**
 * Rounds a finite double to `p` significant bits (ties to even), with the exponent floored at
 * `minExp` (subnormals), and magnitudes at or above `overflow` (the type's max + half an ulp) to
 * infinity.
 */
function roundToPrecision(x: number, p: number, minExp: number, overflow: number): number {
  if (x === 0) return x;
  const a = Math.abs(x);
  if (a >= overflow) return x > 0 ? Infinity : -Infinity;
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--;
  else if (2 ** (e + 1) <= a) e++;
  const ulp = 2 ** (Math.max(e, minExp) - (p - 1));
  const q = a / ulp;
  let r = Math.round(q);
  if (r - q === 0.5 && r % 2 === 1) r--; // Math.round rounds .5 up: make ties go to even
  return Math.sign(x) * r * ulp;
}

/** Rounds a double to the nearest IEEE binary16 value (ties to even), overflow to infinity. */
export function roundF16(x: number): number {
  if (!Number.isFinite(x)) return x;
  return roundToPrecision(x, 11, -14, 65520);
}

/** Wraps an integer to the element type's width (two's complement for signed types). */
export function wrapInteger(e: IntType | 'i1', x: number): number {
  switch (e) {
    case 'i1':
      return x ? 1 : 0;
    case 'i2':
      return (x << 30) >> 30;
    case 'i4':
      return (x << 28) >> 28;
    case 'i8':
      return (x << 24) >> 24;
    case 'i16':
      return (x << 16) >> 16;
    case 'i32':
      return x | 0;
    case 'ui2':
      return x & 3;
    case 'ui4':
      return x & 15;
    case 'ui8':
      return x & 255;
    case 'ui16':
      return x & 0xffff;
    case 'ui32':
      return x >>> 0;
    case 'i64':
    case 'ui64':
      return checkExactInteger(e, x);
  }
}

/** 64-bit integers live in doubles here: refuse a value that doubles cannot hold exactly. */
export function checkExactInteger(e: ElementType, x: number): number {
  if (!Number.isSafeInteger(x)) {
    throw new Error(`${e} value ${x} is outside +-2^53, the range this interpreter computes 64-bit integers exactly in`);
  }
  if (e === 'ui64' && x < 0) throw new Error(`ui64 value ${x} is negative`);
  return x;
}

/** Rounds every element of `data` (computed in doubles) to the element type, in place. */
export function roundInPlace(e: ElementType, data: Storage): void {
  const n = data.length;
  if (e === 'f32' || e === 'f64') return; // Float32Array stores round; Float64Array is exact
  if (e === 'bf16') {
    for (let i = 0; i < n; i++) data[i] = roundBf16(data[i]!);
    return;
  }
  if (e === 'f16') {
    for (let i = 0; i < n; i++) data[i] = roundF16(data[i]!);
    return;
  }
  if (e === 'i1') {
    for (let i = 0; i < n; i++) data[i] = data[i] ? 1 : 0;
    return;
  }
  if (e === 'i32' || e === 'i16' || e === 'i8' || e === 'i4' || e === 'i2' || e === 'ui16' || e === 'ui8' || e === 'ui4' || e === 'ui2') {
    for (let i = 0; i < n; i++) data[i] = wrapInteger(e, data[i]!);
    return;
  }
  for (let i = 0; i < n; i++) data[i] = wrapInteger(e as IntType, data[i]!);
}

/** Converts a double to a value of element type `e` (the `convert` op's semantics). */
export function convertScalar(e: ElementType, x: number): number {
  if (e === 'i1') return x !== 0 ? 1 : 0;
  if (e === 'f32') return Math.fround(x);
  if (e === 'f64') return x;
  if (e === 'bf16') return roundBf16(x);
  if (e === 'f16') return roundF16(x);
  // float-to-integer: the fractional part is truncated (out-of-range results are TBD in the spec;
  // here they wrap for narrow types and are refused for 64-bit ones).
  if (Number.isNaN(x)) return 0;
  return wrapInteger(e, Math.trunc(x));
}

/**
 * Dim arithmetic for shape inference. A dim is a number, a symbolic name (ONNX dim_param, or a
 * value read off a Shape op) or null (unknown). Every function here answers null or undefined
 * when it cannot be sure, never a guess.
 */

export type D = number | string | null;
export type Shape = D[];

export const isNum = (d: D | undefined): d is number => typeof d === 'number';
export const isStatic = (s: Shape | undefined): s is number[] => s !== undefined && s.every(isNum);

/** A normalized axis in [0, rank), or undefined when it is out of range. */
export function normAxis(axis: number, rank: number): number | undefined {
  const a = axis < 0 ? axis + rank : axis;
  return a >= 0 && a < rank && Number.isInteger(a) ? a : undefined;
}

/** Normalized axes, or undefined when one is out of range or repeated. */
export function normAxes(axes: readonly number[], rank: number): number[] | undefined {
  const out: number[] = [];
  for (const a of axes) {
    const n = normAxis(a, rank);
    if (n === undefined || out.includes(n)) return undefined;
    out.push(n);
  }
  return out;
}

/**
 * Multidirectional (numpy) broadcasting. A known dim other than 1 wins over unknown and symbolic
 * dims (in a valid model they can only be 1 or that dim); symbols survive when they all agree.
 * Undefined when a rank is unknown or two known dims clash.
 */
export function broadcastShapes(shapes: ReadonlyArray<Shape | undefined>): Shape | undefined {
  if (shapes.length === 0 || shapes.some((s) => s === undefined)) return undefined;
  const all = shapes as Shape[];
  const rank = Math.max(...all.map((s) => s.length));
  const out: Shape = [];
  for (let i = 0; i < rank; i++) {
    const dims = all.map((s) => (i - rank + s.length < 0 ? 1 : s[i - rank + s.length]!));
    const big = dims.filter((d): d is number => isNum(d) && d !== 1);
    if (big.some((d) => d !== big[0])) return undefined;
    if (big.length) {
      out.push(big[0]!);
      continue;
    }
    const rest = dims.filter((d) => d !== 1);
    if (rest.length === 0) out.push(1);
    else if (typeof rest[0] === 'string' && rest.every((d) => d === rest[0])) out.push(rest[0]);
    else out.push(null);
  }
  return out;
}

/** Two facts about the same dim: a number beats a symbol beats unknown. Undefined on a clash of numbers. */
export function mergeDim(a: D, b: D): D | undefined {
  if (isNum(a) && isNum(b)) return a === b ? a : undefined;
  if (isNum(a)) return a;
  if (isNum(b)) return b;
  return a ?? b;
}

/** Facts about the same shape (e.g. the non-axis dims of Concat inputs); undefined on a clash. */
export function mergeShapes(a: Shape | undefined, b: Shape | undefined): Shape | undefined {
  if (!a) return b;
  if (!b) return a;
  if (a.length !== b.length) return undefined;
  const out: Shape = [];
  for (let i = 0; i < a.length; i++) {
    const d = mergeDim(a[i]!, b[i]!);
    if (d === undefined) return undefined;
    out.push(d);
  }
  return out;
}

/**
 * What a dim is on either of two paths (If branches, Loop iterations): kept where both agree,
 * unknown where they differ. Undefined when the ranks differ.
 */
export function unionShapes(a: Shape | undefined, b: Shape | undefined): Shape | undefined {
  if (!a || !b || a.length !== b.length) return undefined;
  return a.map((d, i) => (d !== null && d === b[i] ? d : null));
}

/** A product of dims as coefficient x symbols; undefined when a dim is unknown. */
interface Monomial {
  coef: number;
  syms: Map<string, number>;
}

function monomial(dims: readonly D[]): Monomial | undefined {
  const m: Monomial = { coef: 1, syms: new Map() };
  for (const d of dims) {
    if (d === null) return undefined;
    if (isNum(d)) m.coef *= d;
    else m.syms.set(d, (m.syms.get(d) ?? 0) + 1);
  }
  return m;
}

function monomialDim(m: Monomial): D {
  if (m.coef === 0) return 0;
  if (m.syms.size === 0) return Number.isSafeInteger(m.coef) ? m.coef : null;
  if (m.syms.size === 1 && m.coef === 1) {
    const [[sym, power]] = [...m.syms];
    if (power === 1) return sym!;
  }
  return null;
}

/** Product of dims: a number, a single symbol (times ones), or unknown. */
export function productDim(dims: readonly D[]): D {
  const m = monomial(dims);
  return m ? monomialDim(m) : null;
}

/**
 * `product(total) / product(known)`, as Reshape's -1 needs it: numbers divide, symbols cancel
 * (batch*2048 / batch = 2048). Unknown when the division is not exact or a dim is unknown.
 * Symbols are taken to be non-zero, as in any model that runs.
 */
export function quotientDim(total: readonly D[], known: readonly D[]): D {
  const t = monomial(total);
  const k = monomial(known);
  if (!t || !k || k.coef === 0) return null;
  if (t.coef === 0) return 0;
  for (const [sym, p] of k.syms) {
    const have = t.syms.get(sym) ?? 0;
    if (have < p) return null;
    if (have === p) t.syms.delete(sym);
    else t.syms.set(sym, have - p);
  }
  if (t.coef % k.coef !== 0) return null;
  return monomialDim({ coef: t.coef / k.coef, syms: t.syms });
}

/** `a * b` for dims (Tile): numbers multiply, a symbol times one stays the symbol. */
export function mulDim(a: D, b: D): D {
  if (isNum(a) && isNum(b)) return a * b;
  if (a === 1) return b;
  if (b === 1) return a;
  if (a === 0 || b === 0) return 0;
  return null;
}

/** `a + b` for dims (Pad, Concat): numbers add, adding zero keeps a symbol. */
export function addDim(a: D, b: D): D {
  if (isNum(a) && isNum(b)) return a + b;
  if (a === 0) return b;
  if (b === 0) return a;
  return null;
}

/** A dim is valid to write when it is a non-negative safe integer, a name, or unknown. */
export function cleanDim(d: D | undefined): D {
  if (d === undefined) return null;
  if (isNum(d)) return Number.isSafeInteger(d) && d >= 0 ? d : null;
  return d === '' ? null : d;
}

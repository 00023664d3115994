/**
 * Parser for StableHLO modules in MLIR's textual form: the generic operation syntax that the
 * StableHLO specification writes its examples in,
 *
 *   %r = "stablehlo.add"(%a, %b) {attr = ...} : (tensor<2xf32>, tensor<2xf32>) -> tensor<2xf32>
 *   %r = "stablehlo.reduce"(%x, %init) ({ ^bb0(%p: tensor<f32>, %q: tensor<f32>): ... }) {...} : (...) -> ...
 *
 * inside `func.func` definitions, optionally wrapped in a `module`. Function bodies end with
 * `return`/`func.return` (pretty or generic form). Properties (`<{...}>`) and attribute
 * dictionaries are both accepted. Types are static `tensor<...>` types only: a dynamic dimension,
 * a tuple, a token or a quantized type is refused with the position. The result is a plain AST;
 * check.ts decides whether it is well-formed.
 */
import { parseElementType, type ElementType, type TensorType } from './types.js';

export type Attribute =
  | { kind: 'int'; value: number }
  | { kind: 'float'; value: number }
  | { kind: 'bool'; value: boolean }
  | { kind: 'string'; value: string }
  | { kind: 'unit' }
  /** `array<i64: 1, 2>` (booleans as 0/1). */
  | { kind: 'array'; element: string; values: number[] }
  /** `dense<...> : tensor<...>`: elements as literal text, decoded for the element type by check.ts. */
  | { kind: 'dense'; type: TensorType; literal: DenseLiteral }
  /** `#stablehlo<comparison_direction LT>` and the like. */
  | { kind: 'enum'; name: string; value: string }
  | { kind: 'list'; items: Attribute[] }
  | { kind: 'dot'; lhsBatching: number[]; rhsBatching: number[]; lhsContracting: number[]; rhsContracting: number[] }
  | { kind: 'gather'; offsetDims: number[]; collapsedSliceDims: number[]; operandBatchingDims: number[]; startIndicesBatchingDims: number[]; startIndexMap: number[]; indexVectorDim: number }
  | { kind: 'conv'; dims: ConvDimensions }
  /** Anything else, kept as its text (an attribute the interpreter has no use for). */
  | { kind: 'opaque'; text: string };

export interface ConvDimensions {
  inputBatch: number;
  inputFeature: number;
  inputSpatial: number[];
  kernelInputFeature: number;
  kernelOutputFeature: number;
  kernelSpatial: number[];
  outputBatch: number;
  outputFeature: number;
  outputSpatial: number[];
}

export type DenseLiteral =
  | { form: 'splat'; token: string }
  | { form: 'list'; tokens: string[]; structure: number[] | 'ragged' }
  | { form: 'hex'; bytes: Uint8Array };

export interface Operation {
  /** 'stablehlo.add', 'func.return', ... */
  readonly name: string;
  readonly results: string[];
  readonly operands: string[];
  readonly attributes: Map<string, Attribute>;
  readonly regions: Block[];
  readonly operandTypes: TensorType[];
  readonly resultTypes: TensorType[];
  /** "line:column" of the operation in the text. */
  readonly at: string;
}

export interface Block {
  readonly args: Array<{ name: string; type: TensorType }>;
  readonly ops: Operation[];
}

export interface FuncOp {
  readonly name: string;
  readonly visibility: string;
  readonly args: Array<{ name: string; type: TensorType }>;
  readonly resultTypes: TensorType[];
  readonly body: Block;
  readonly at: string;
}

export interface Module {
  readonly name: string | undefined;
  readonly funcs: FuncOp[];
}

export class ParseError extends Error {
  override readonly name = 'ParseError';
}

const IDENT_CHAR = /[A-Za-z0-9_$.\-]/;

class Scanner {
  pos = 0;
  constructor(readonly src: string) {}

  private lineStarts: number[] | undefined;

  /** "line:column" of a position (line starts indexed once, then binary search). */
  where(at = this.pos): string {
    if (!this.lineStarts) {
      this.lineStarts = [0];
      for (let i = this.src.indexOf('\n'); i >= 0; i = this.src.indexOf('\n', i + 1)) this.lineStarts.push(i + 1);
    }
    const starts = this.lineStarts;
    let lo = 0;
    let hi = starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (starts[mid]! <= at) lo = mid;
      else hi = mid - 1;
    }
    return `${lo + 1}:${at - starts[lo]! + 1}`;
  }

  fail(message: string, at = this.pos): never {
    const snippet = this.src.slice(at, at + 40).split('\n')[0];
    throw new ParseError(`${this.where(at)}: ${message} (at '${snippet}')`);
  }

  ws(): void {
    const s = this.src;
    for (;;) {
      const c = s.charCodeAt(this.pos);
      if (c === 32 || c === 9 || c === 10 || c === 13) this.pos++;
      else if (c === 47 && s.charCodeAt(this.pos + 1) === 47) {
        const nl = s.indexOf('\n', this.pos);
        this.pos = nl < 0 ? s.length : nl + 1;
      } else return;
    }
  }

  atEnd(): boolean {
    this.ws();
    return this.pos >= this.src.length;
  }

  peek(text: string): boolean {
    this.ws();
    return this.src.startsWith(text, this.pos);
  }

  /** Whether the next token is the keyword `word` (not a prefix of a longer identifier). */
  peekWord(word: string): boolean {
    this.ws();
    return this.src.startsWith(word, this.pos) && !IDENT_CHAR.test(this.src[this.pos + word.length] ?? '');
  }

  eat(text: string): boolean {
    if (this.peek(text)) {
      this.pos += text.length;
      return true;
    }
    return false;
  }

  expect(text: string): void {
    if (!this.eat(text)) this.fail(`expected '${text}'`);
  }

  ident(): string {
    this.ws();
    const start = this.pos;
    while (this.pos < this.src.length && IDENT_CHAR.test(this.src[this.pos]!)) this.pos++;
    if (this.pos === start) this.fail('expected an identifier');
    return this.src.slice(start, this.pos);
  }

  /** `%name`, `%0`, `%0#1`. */
  valueName(): string {
    this.ws();
    if (this.src[this.pos] !== '%') this.fail('expected an SSA value (%name)');
    const start = this.pos++;
    while (this.pos < this.src.length && /[A-Za-z0-9_$.\-#]/.test(this.src[this.pos]!)) this.pos++;
    if (this.pos === start + 1) this.fail('empty SSA value name');
    return this.src.slice(start, this.pos);
  }

  symbol(): string {
    this.ws();
    if (this.src[this.pos] !== '@') this.fail("expected a symbol (@name)");
    this.pos++;
    if (this.src[this.pos] === '"') return this.string();
    return this.ident();
  }

  string(): string {
    this.ws();
    if (this.src[this.pos] !== '"') this.fail('expected a string');
    let out = '';
    this.pos++;
    for (;;) {
      const c = this.src[this.pos];
      if (c === undefined) this.fail('unterminated string');
      this.pos++;
      if (c === '"') return out;
      if (c === '\\') {
        const d = this.src[this.pos]!;
        if (d === 'n') out += '\n';
        else if (d === 't') out += '\t';
        else if (d === '"' || d === '\\') out += d;
        else {
          out += String.fromCharCode(parseInt(this.src.slice(this.pos, this.pos + 2), 16));
          this.pos++;
        }
        this.pos++;
      } else out += c;
    }
  }

  /** A signed integer or float literal, or true/false, as written. */
  numberToken(): string {
    this.ws();
    const m = /^(?:true|false|[-+]?0x[0-9A-Fa-f]+|[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|[-+]?(?:inf|nan))/.exec(this.src.slice(this.pos, this.pos + 200));
    if (!m) this.fail('expected a number');
    this.pos += m[0].length;
    return m[0];
  }

  int(): number {
    const t = this.numberToken();
    const v = t.includes('0x') ? (t.startsWith('-') ? -parseInt(t.slice(3), 16) : parseInt(t.replace(/^\+/, '').slice(2), 16)) : Number(t);
    if (!Number.isSafeInteger(v)) this.fail(`expected an integer, got '${t}'`);
    return v;
  }

  /** Skips a balanced <...>, (...), [...] or {...} group and returns its text (for opaque attributes). */
  balanced(): string {
    this.ws();
    const start = this.pos;
    const open = this.src[this.pos]!;
    const close = ({ '<': '>', '(': ')', '[': ']', '{': '}' } as Record<string, string>)[open];
    if (!close) this.fail('expected a bracketed group');
    const stack: string[] = [close];
    this.pos++;
    while (stack.length) {
      const c = this.src[this.pos];
      if (c === undefined) this.fail('unbalanced brackets', start);
      if (c === '"') {
        this.string();
        continue;
      }
      this.pos++;
      if (c === stack[stack.length - 1]) stack.pop();
      else if (c === '<' || c === '(' || c === '[' || c === '{') stack.push(({ '<': '>', '(': ')', '[': ']', '{': '}' } as Record<string, string>)[c]!);
      else if (c === '-' && this.src[this.pos] === '>') this.pos++; // '->' inside a group is not a closing '>'
    }
    return this.src.slice(start, this.pos);
  }
}

// ------------------------------------------------------------------------------------------------

export function parseModule(text: string): Module {
  const s = new Scanner(text);
  const funcs: FuncOp[] = [];
  let name: string | undefined;
  if (s.peekWord('module')) {
    s.ident();
    if (s.peek('@')) name = s.symbol();
    if (s.peekWord('attributes')) {
      s.ident();
      parseAttrDict(s);
    }
    s.expect('{');
    while (!s.eat('}')) funcs.push(parseFunc(s));
  } else {
    while (!s.atEnd()) funcs.push(parseFunc(s));
  }
  if (!s.atEnd()) s.fail('unexpected text after the module');
  return { name, funcs };
}

function parseFunc(s: Scanner): FuncOp {
  s.ws();
  const at = s.where();
  const kw = s.ident();
  if (kw !== 'func.func') s.fail(`expected 'func.func', got '${kw}' (only functions are supported at module level)`);
  let visibility = 'public';
  if (s.peekWord('public') || s.peekWord('private') || s.peekWord('nested')) visibility = s.ident();
  const name = s.symbol();
  s.expect('(');
  const args: Array<{ name: string; type: TensorType }> = [];
  if (!s.eat(')')) {
    do {
      const n = s.valueName();
      s.expect(':');
      const type = parseType(s);
      if (s.peek('{')) parseAttrDict(s);
      if (s.peekWord('loc')) parseLoc(s);
      args.push({ name: n, type });
    } while (s.eat(','));
    s.expect(')');
  }
  const resultTypes: TensorType[] = [];
  if (s.eat('->')) {
    if (s.eat('(')) {
      if (!s.eat(')')) {
        do {
          resultTypes.push(parseType(s));
          if (s.peek('{')) parseAttrDict(s);
        } while (s.eat(','));
        s.expect(')');
      }
    } else resultTypes.push(parseType(s));
  }
  if (s.peekWord('attributes')) {
    s.ident();
    parseAttrDict(s);
  }
  s.expect('{');
  const ops = parseOps(s);
  s.expect('}');
  return { name, visibility, args, resultTypes, body: { args, ops }, at };
}

/** Operations up to (not including) the closing '}' of a block. */
function parseOps(s: Scanner): Operation[] {
  const ops: Operation[] = [];
  while (!s.peek('}')) {
    if (s.atEnd()) s.fail("expected '}'");
    ops.push(parseOp(s));
  }
  return ops;
}

function parseOp(s: Scanner): Operation {
  s.ws();
  const at = s.where();
  const results: string[] = [];
  if (s.peek('%')) {
    do {
      const r = s.valueName();
      if (s.eat(':')) {
        const n = s.int();
        for (let i = 0; i < n; i++) results.push(`${r}#${i}`);
      } else results.push(r);
    } while (s.eat(','));
    s.expect('=');
  }
  // Return in pretty form: `return %a, %b : T1, T2` (also func.return / stablehlo.return).
  if (s.peekWord('return') || s.peekWord('func.return') || s.peekWord('stablehlo.return')) {
    const kw = s.ident();
    const operands: string[] = [];
    const operandTypes: TensorType[] = [];
    if (s.peek('%')) {
      do operands.push(s.valueName());
      while (s.eat(','));
      s.expect(':');
      do operandTypes.push(parseType(s));
      while (s.eat(','));
    }
    if (s.peekWord('loc')) parseLoc(s);
    return { name: kw === 'stablehlo.return' ? 'stablehlo.return' : 'func.return', results, operands, attributes: new Map(), regions: [], operandTypes, resultTypes: [], at };
  }
  if (!s.peek('"')) s.fail('expected an operation in generic form ("dialect.op"(...) : type) or return');
  const name = s.string();
  s.expect('(');
  const operands: string[] = [];
  if (!s.eat(')')) {
    do operands.push(s.valueName());
    while (s.eat(','));
    s.expect(')');
  }
  const attributes = new Map<string, Attribute>();
  if (s.eat('<{')) {
    s.pos -= 1; // parse the '{...}' that follows '<'
    for (const [k, v] of parseAttrDict(s)) attributes.set(k, v);
    s.expect('>');
  }
  const regions: Block[] = [];
  if (s.peek('(')) {
    // Regions come before the attribute dictionary and the ':' of the type.
    s.expect('(');
    do regions.push(parseRegion(s));
    while (s.eat(','));
    s.expect(')');
  }
  if (s.peek('{')) for (const [k, v] of parseAttrDict(s)) attributes.set(k, v);
  s.expect(':');
  const { inputs, outputs } = parseFunctionType(s);
  if (s.peekWord('loc')) parseLoc(s);
  return { name, results, operands, attributes, regions, operandTypes: inputs, resultTypes: outputs, at };
}

function parseRegion(s: Scanner): Block {
  s.expect('{');
  const args: Array<{ name: string; type: TensorType }> = [];
  if (s.peek('^')) {
    s.expect('^');
    s.ident();
    if (s.eat('(')) {
      if (!s.eat(')')) {
        do {
          const n = s.valueName();
          s.expect(':');
          args.push({ name: n, type: parseType(s) });
          if (s.peekWord('loc')) parseLoc(s);
        } while (s.eat(','));
        s.expect(')');
      }
    }
    s.expect(':');
  }
  const ops = parseOps(s);
  s.expect('}');
  return { args, ops };
}

function parseLoc(s: Scanner): void {
  s.ident();
  s.balanced();
}

function parseFunctionType(s: Scanner): { inputs: TensorType[]; outputs: TensorType[] } {
  const inputs: TensorType[] = [];
  s.expect('(');
  if (!s.eat(')')) {
    do inputs.push(parseType(s));
    while (s.eat(','));
    s.expect(')');
  }
  s.expect('->');
  const outputs: TensorType[] = [];
  if (s.eat('(')) {
    if (!s.eat(')')) {
      do outputs.push(parseType(s));
      while (s.eat(','));
      s.expect(')');
    }
  } else outputs.push(parseType(s));
  return { inputs, outputs };
}

function parseType(s: Scanner): TensorType {
  s.ws();
  const at = s.pos;
  if (!s.src.startsWith('tensor<', s.pos)) {
    const word = /^[A-Za-z!][A-Za-z0-9_.]*/.exec(s.src.slice(s.pos))?.[0] ?? s.src.slice(s.pos, s.pos + 10);
    s.fail(`type '${word}' is not supported (only static tensor types are)`);
  }
  s.pos += 'tensor<'.length;
  const shape: number[] = [];
  for (;;) {
    const m = /^(\d+|\?)x/.exec(s.src.slice(s.pos, s.pos + 24));
    if (!m) break;
    if (m[1] === '?') s.fail('dynamic dimensions (?) are not supported: this interpreter evaluates static shapes only', at);
    shape.push(Number(m[1]));
    s.pos += m[0].length;
  }
  const em = /^[a-z][a-z0-9]*/.exec(s.src.slice(s.pos, s.pos + 16));
  const element = em ? parseElementType(em[0]) : undefined;
  if (!em || !element) s.fail(`unsupported element type '${em?.[0] ?? s.src.slice(s.pos, s.pos + 12)}'`, s.pos);
  s.pos += em[0].length;
  if (s.src[s.pos] === ',') s.fail('tensor encodings are not supported', s.pos);
  if (s.src[s.pos] !== '>') s.fail("expected '>' closing the tensor type", s.pos);
  s.pos++;
  return { shape, element: element as ElementType };
}

// ------------------------------------------------------------------------------------------------
// Attributes

function parseAttrDict(s: Scanner): Map<string, Attribute> {
  const out = new Map<string, Attribute>();
  s.expect('{');
  if (s.eat('}')) return out;
  do {
    if (s.peek('}')) break; // a trailing comma
    const key = s.peek('"') ? s.string() : s.ident();
    if (s.eat('=')) out.set(key, parseAttr(s));
    else out.set(key, { kind: 'unit' });
  } while (s.eat(','));
  s.expect('}');
  return out;
}

function parseAttr(s: Scanner): Attribute {
  s.ws();
  if (s.peek('"')) return { kind: 'string', value: s.string() };
  if (s.peek('[')) {
    s.expect('[');
    const items: Attribute[] = [];
    if (!s.eat(']')) {
      do items.push(parseAttr(s));
      while (s.eat(','));
      s.expect(']');
    }
    return { kind: 'list', items };
  }
  if (s.src.startsWith('array<', s.pos)) {
    s.pos += 'array<'.length;
    const element = s.ident();
    const values: number[] = [];
    if (s.eat(':')) {
      do {
        const t = s.numberToken();
        values.push(t === 'true' ? 1 : t === 'false' ? 0 : Number(t));
      } while (s.eat(','));
    }
    s.expect('>');
    return { kind: 'array', element, values };
  }
  if (s.src.startsWith('dense<', s.pos)) return parseDense(s);
  if (s.src.startsWith('#stablehlo<', s.pos)) {
    s.pos += '#stablehlo'.length;
    const inner = s.balanced().slice(1, -1).trim();
    const [name, value] = inner.split(/\s+/);
    return { kind: 'enum', name: name!, value: value ?? '' };
  }
  if (s.src.startsWith('#stablehlo.dot<', s.pos)) {
    s.pos += '#stablehlo.dot'.length;
    const f = fields(s, s.balanced());
    return { kind: 'dot', lhsBatching: f.list('lhs_batching_dimensions'), rhsBatching: f.list('rhs_batching_dimensions'), lhsContracting: f.list('lhs_contracting_dimensions'), rhsContracting: f.list('rhs_contracting_dimensions') };
  }
  if (s.src.startsWith('#stablehlo.gather<', s.pos)) {
    s.pos += '#stablehlo.gather'.length;
    const f = fields(s, s.balanced());
    return {
      kind: 'gather',
      offsetDims: f.list('offset_dims'),
      collapsedSliceDims: f.list('collapsed_slice_dims'),
      operandBatchingDims: f.list('operand_batching_dims'),
      startIndicesBatchingDims: f.list('start_indices_batching_dims'),
      startIndexMap: f.list('start_index_map'),
      indexVectorDim: f.int('index_vector_dim'),
    };
  }
  if (s.src.startsWith('#stablehlo.conv<', s.pos)) {
    s.pos += '#stablehlo.conv'.length;
    const at = s.pos;
    return { kind: 'conv', dims: parseConvDims(s, s.balanced().slice(1, -1).trim(), at) };
  }
  if (s.src[s.pos] === '#') {
    const start = s.pos;
    s.pos++;
    s.ident();
    if (s.peek('<')) s.balanced();
    return { kind: 'opaque', text: s.src.slice(start, s.pos) };
  }
  if (s.peekWord('unit')) {
    s.ident();
    return { kind: 'unit' };
  }
  const t = s.numberToken();
  if (t === 'true' || t === 'false') return { kind: 'bool', value: t === 'true' };
  let isFloatType = /[.eE]/.test(t) && !t.includes('0x');
  if (s.eat(':')) {
    const ty = s.ident();
    isFloatType = /^(f|bf)\d+$/.test(ty);
    if (ty === 'i1') return { kind: 'bool', value: t === 'true' || Number(t) !== 0 };
  }
  const v = t.includes('0x') ? (t.startsWith('-') ? -parseInt(t.slice(3), 16) : parseInt(t.replace(/^\+/, '').slice(2), 16)) : Number(t);
  return isFloatType ? { kind: 'float', value: v } : { kind: 'int', value: v };
}

/** `<name = [1, 2], other = 3>` fields of a struct-like attribute. */
function fields(s: Scanner, text: string): { list(name: string): number[]; int(name: string): number } {
  const body = text.slice(1, -1);
  const map = new Map<string, string>();
  const re = /([a-z_]+)\s*=\s*(\[[^\]]*\]|-?\d+)/g;
  for (let m = re.exec(body); m; m = re.exec(body)) map.set(m[1]!, m[2]!);
  return {
    list(name) {
      const v = map.get(name);
      if (v === undefined) return [];
      const inner = v.replace(/[[\]\s]/g, '');
      return inner ? inner.split(',').map((x) => {
        const n = Number(x);
        if (!Number.isInteger(n)) s.fail(`${name}: '${x}' is not an integer`);
        return n;
      }) : [];
    },
    int(name) {
      const v = map.get(name);
      if (v === undefined) s.fail(`missing ${name}`);
      return Number(v);
    },
  };
}

/** `[b, f, 0, 1]x[o, i, 0, 1]->[b, f, 0, 1]`, or the `raw input_batch_dimension = 0, ...` form. */
function parseConvDims(s: Scanner, text: string, at: number): ConvDimensions {
  if (text.startsWith('raw')) {
    const f = fields(s, `<${text.slice(3)}>`);
    return {
      inputBatch: f.int('input_batch_dimension'),
      inputFeature: f.int('input_feature_dimension'),
      inputSpatial: f.list('input_spatial_dimensions'),
      kernelInputFeature: f.int('kernel_input_feature_dimension'),
      kernelOutputFeature: f.int('kernel_output_feature_dimension'),
      kernelSpatial: f.list('kernel_spatial_dimensions'),
      outputBatch: f.int('output_batch_dimension'),
      outputFeature: f.int('output_feature_dimension'),
      outputSpatial: f.list('output_spatial_dimensions'),
    };
  }
  const m = /^\[([^\]]*)\]\s*x\s*\[([^\]]*)\]\s*->\s*\[([^\]]*)\]$/.exec(text);
  if (!m) s.fail(`convolution dimension numbers '${text}' are not of the form [..]x[..]->[..]`, at);
  const split = (t: string) => t.split(',').map((x) => x.trim());
  const layout = (items: string[], a: string, b: string, what: string) => {
    let ia = -1;
    let ib = -1;
    const spatial: number[] = [];
    items.forEach((x, i) => {
      if (x === a) ia = i;
      else if (x === b) ib = i;
      else if (/^\d+$/.test(x)) spatial[Number(x)] = i;
      else s.fail(`convolution ${what} dimension '${x}' is not ${a}, ${b} or a spatial index`, at);
    });
    if (ia < 0 || ib < 0 || spatial.length !== items.length - 2 || spatial.some((v) => v === undefined)) s.fail(`convolution ${what} dimensions [${items.join(', ')}] are incomplete`, at);
    return { a: ia, b: ib, spatial };
  };
  const input = layout(split(m[1]!), 'b', 'f', 'input');
  const kernel = layout(split(m[2]!), 'i', 'o', 'kernel');
  const output = layout(split(m[3]!), 'b', 'f', 'output');
  return {
    inputBatch: input.a,
    inputFeature: input.b,
    inputSpatial: input.spatial,
    kernelInputFeature: kernel.a,
    kernelOutputFeature: kernel.b,
    kernelSpatial: kernel.spatial,
    outputBatch: output.a,
    outputFeature: output.b,
    outputSpatial: output.spatial,
  };
}

function parseDense(s: Scanner): Attribute {
  s.pos += 'dense<'.length;
  let literal: DenseLiteral;
  if (s.peek('"')) {
    const hex = s.string();
    if (!/^0x([0-9A-Fa-f]{2})*$/.test(hex)) s.fail('a dense hex string must be 0x followed by whole bytes');
    const bytes = new Uint8Array((hex.length - 2) / 2);
    for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(hex.slice(2 + 2 * i, 4 + 2 * i), 16);
    literal = { form: 'hex', bytes };
  } else if (s.peek('[')) {
    const tokens: string[] = [];
    const structure = parseNested(s, tokens, 0, []);
    literal = { form: 'list', tokens, structure };
  } else if (s.peek('>')) {
    literal = { form: 'list', tokens: [], structure: [0] };
  } else {
    literal = { form: 'splat', token: s.numberToken() };
  }
  s.expect('>');
  s.expect(':');
  return { kind: 'dense', type: parseType(s), literal };
}

/** Reads a nested list; returns its dimensions, or 'ragged' when sibling lists differ. */
function parseNested(s: Scanner, tokens: string[], depth: number, dims: number[]): number[] | 'ragged' {
  s.expect('[');
  let count = 0;
  let ragged = false;
  let childDims: number[] | 'ragged' | undefined;
  if (!s.eat(']')) {
    do {
      count++;
      if (s.peek('[')) {
        const d = parseNested(s, tokens, depth + 1, dims);
        if (d === 'ragged' || (childDims !== undefined && (childDims === 'ragged' || childDims.join() !== d.join()))) ragged = true;
        childDims = d;
      } else {
        if (childDims !== undefined && (childDims === 'ragged' || childDims.length !== 0)) ragged = true;
        childDims = [];
        tokens.push(s.numberToken());
      }
    } while (s.eat(','));
    s.expect(']');
  }
  if (ragged || childDims === 'ragged') return 'ragged';
  return [count, ...(childDims ?? [])];
}

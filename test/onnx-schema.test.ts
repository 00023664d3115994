/**
 * Our ONNX schema (src/onnx/schema.ts, ONNX 1.20) against onnx-proto's generated code (ONNX 1.10),
 * on every field the two share:
 *  - every message and field onnx-proto has exists in ours, with the same field number, wire
 *    type, packed-ness and value encoding (single-field encodings are byte-identical);
 *  - the fields only we have are exactly the ones newer than ONNX 1.10;
 *  - random messages over the shared fields, encoded by either side, decode to the same thing on
 *    both sides; so do our encoder's models and ONNX's own conformance files;
 *  - fields holding default values (INT attribute 0, empty STRING) are written, as onnx does
 *    (proto2 presence; onnx.checker wants exactly one value field per attribute).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import fc from 'fast-check';
import protobuf from 'protobufjs';
import { describe, expect, it } from 'vitest';
import { bytesText } from '../src/ir/attribute.js';
import { DataType, dtypeInfo } from '../src/ir/dtype.js';
import { diffModels } from '../src/ir/equal.js';
import { checkModel } from '../src/ir/invariants.js';
import { Model } from '../src/ir/model.js';
import { tensorType } from '../src/ir/types.js';
import { decodeModel, decodeTensor } from '../src/onnx/decode.js';
import { encodeModel } from '../src/onnx/encode.js';
import { ModelProto as CodecModelProto, type Msg } from '../src/onnx/proto.js';
import { ONNX_SCHEMA } from '../src/onnx/schema.js';
import { arbModel } from './arbitrary-ir.js';

const require = createRequire(import.meta.url);
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const theirs: any = require('onnx-proto').onnx;
const ours = protobuf.Root.fromJSON(ONNX_SCHEMA);

type Static = {
  encode(m: unknown): { finish(): Uint8Array };
  decode(b: Uint8Array): unknown;
  fromObject(o: unknown): unknown;
  toObject(m: unknown, o?: unknown): Msg;
  prototype: object;
};

/** Every message class of onnx-proto, by its path under `onnx` ('TensorProto.Segment' ...). */
function theirTypes(ns: Record<string, unknown> = theirs, prefix = '', out = new Map<string, Static>()): Map<string, Static> {
  for (const [k, v] of Object.entries(ns)) {
    if (typeof v === 'function' && 'encode' in v) {
      out.set(prefix + k, v as unknown as Static);
      theirTypes(v as unknown as Record<string, unknown>, `${prefix}${k}.`, out);
    }
  }
  return out;
}

const THEIR_TYPES = theirTypes();
const theirFields = (T: Static) => Object.keys(T.prototype).filter((k) => typeof (T.prototype as Record<string, unknown>)[k] !== 'function');
const ourType = (path: string) => ours.lookupType(`onnx.${path}`);

/** Fields that ONNX added after 1.10 (our schema has them, onnx-proto cannot). */
const NEWER_THAN_1_10: Record<string, string[]> = {
  ValueInfoProto: ['metadataProps'],
  NodeProto: ['overload', 'metadataProps', 'deviceConfigurations'],
  ModelProto: ['configuration'],
  GraphProto: ['metadataProps'],
  TensorProto: ['metadataProps'],
  TypeProto: ['opaqueType'], // onnx-ml's Opaque (onnx-proto is built from onnx.proto without -ml)
  FunctionProto: ['attributeProto', 'overload', 'valueInfo', 'metadataProps'],
};
const NEWER_TYPES = [
  'IntIntListEntryProto',
  'NodeDeviceConfigurationProto',
  'ShardingSpecProto',
  'ShardedDimProto',
  'SimpleShardedDimProto',
  'DeviceConfigurationProto',
  'TypeProto.Opaque',
];

const TO_OBJECT = { longs: String, enums: Number, bytes: String, defaults: false, arrays: false };

/** A value for a single field, by our reflection. */
function probeValue(f: protobuf.Field): unknown {
  const scalar = (() => {
    switch (f.type) {
      case 'int32':
        return -7; // negative int32: a 10-byte varint unless it were sint32
      case 'int64':
        return '-1099511627781';
      case 'uint64':
        return '18446744073709551615';
      case 'float':
      case 'double':
        return 1.1; // not exactly representable in float32: float and double encode differently
      case 'string':
        return 'héllo';
      case 'bytes':
        return Uint8Array.from([0, 255, 7]);
      default:
        if (f.resolvedType instanceof protobuf.Enum) return Math.max(...Object.values(f.resolvedType.values));
        return {}; // a message
    }
  })();
  return f.repeated ? [scalar, scalar] : scalar;
}

describe('schema structure against onnx-proto (ONNX 1.10)', () => {
  it('onnx-proto has the message types we expect to share', () => {
    expect(THEIR_TYPES.size).toBeGreaterThanOrEqual(20);
    for (const path of THEIR_TYPES.keys()) expect(() => ourType(path), path).not.toThrow();
  });

  it('every shared field has the same number, wire type, packing and encoding', () => {
    let checked = 0;
    for (const [path, T] of THEIR_TYPES) {
      const O = ourType(path);
      for (const name of theirFields(T)) {
        const f = O.fields[name];
        expect(f, `${path}.${name} is missing from our schema`).toBeDefined();
        f!.resolve();
        const obj = { [name]: probeValue(f!) };
        const theirBytes = Buffer.from(T.encode(T.fromObject(obj)).finish());
        const ourBytes = Buffer.from(O.encode(O.fromObject(obj)).finish());
        expect(theirBytes.length, `${path}.${name}: the probe was not encoded`).toBeGreaterThan(0);
        const repeatedScalar = f!.repeated && !(f!.resolvedType instanceof protobuf.Type) && f!.type !== 'string' && f!.type !== 'bytes';
        if (repeatedScalar) {
          // onnx-proto packs every repeated scalar (it is generated with proto3 packing); onnx.proto
          // (proto2) packs only TensorProto's *_data fields, and so do we, as onnx itself writes.
          const packed = path === 'TensorProto' && /Data$/.test(name);
          expect(f!.packed, `${path}.${name} packed`).toBe(packed);
          expect(ourBytes[0]! & 7, `${path}.${name} wire type`).toBe(packed ? 2 : ({ float: 5, double: 1 } as Record<string, number>)[f!.type] ?? 0);
          expect(ourBytes[0]! >> 3).toBe(theirBytes[0]! >> 3);
        } else {
          expect(ourBytes.toString('hex'), `${path}.${name}: encodings differ`).toBe(theirBytes.toString('hex'));
        }
        // Both read either side's bytes to the same value.
        expect(O.toObject(O.decode(theirBytes), TO_OBJECT), `${path}.${name}`).toEqual(T.toObject(T.decode(theirBytes), TO_OBJECT));
        expect(T.toObject(T.decode(ourBytes), TO_OBJECT), `${path}.${name}`).toEqual(O.toObject(O.decode(ourBytes), TO_OBJECT));
        expect(O.toObject(O.decode(ourBytes), TO_OBJECT), `${path}.${name}`).toEqual(T.toObject(T.decode(theirBytes), TO_OBJECT));
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(100);
  });

  it('the fields only we have are the ones newer than ONNX 1.10', () => {
    const extra: Record<string, string[]> = {};
    const visit = (ns: protobuf.NamespaceBase, prefix: string) => {
      for (const o of ns.nestedArray) {
        if (!(o instanceof protobuf.Type)) continue;
        const path = prefix + o.name;
        const T = THEIR_TYPES.get(path);
        if (!T) {
          expect(NEWER_TYPES, `our message ${path} is unknown to onnx-proto`).toContain(path);
        } else {
          const known = new Set(theirFields(T));
          const mine = o.fieldsArray.map((f) => f.name).filter((n) => !known.has(n));
          if (mine.length) extra[path] = mine;
        }
        visit(o, `${path}.`);
      }
    };
    visit(ours.lookup('onnx') as protobuf.Namespace, '');
    expect(extra).toEqual(NEWER_THAN_1_10);
  });

  it('enums agree: attribute types, data locations, and the data types onnx-proto knows', () => {
    expect((ourType('AttributeProto').lookupEnum('AttributeType') as protobuf.Enum).values).toEqual({ ...theirs.AttributeProto.AttributeType });
    expect((ourType('TensorProto').lookupEnum('DataLocation') as protobuf.Enum).values).toEqual({ ...theirs.TensorProto.DataLocation });
    for (const [name, id] of Object.entries(theirs.TensorProto.DataType as Record<string, number>)) {
      expect(DataType[name as keyof typeof DataType], name).toBe(id);
    }
  });

  it('messages are proto2: fields holding their default value are still written', () => {
    const O = ourType('AttributeProto');
    for (const [field, value, type] of [
      ['i', 0, 2],
      ['f', 0, 1],
      ['s', new Uint8Array(0), 3],
    ] as const) {
      const bytes = O.encode({ name: 'a', type, [field]: value }).finish();
      const back = theirs.AttributeProto.decode(bytes);
      expect(Object.prototype.hasOwnProperty.call(back, field), `AttributeProto.${field} = default is dropped`).toBe(true);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Random messages over the shared fields

function arbMessage(path: string, depth: number): fc.Arbitrary<Msg> {
  const T = THEIR_TYPES.get(path)!;
  const O = ourType(path);
  const shared = new Set(theirFields(T));
  const fields = O.fieldsArray.filter((f) => shared.has(f.name));
  const oneofMembers = new Map<string, string[]>();
  for (const o of O.oneofsArray) oneofMembers.set(o.name, o.oneof.filter((n) => shared.has(n)));
  const value = (f: protobuf.Field): fc.Arbitrary<unknown> | null => {
    f.resolve();
    switch (f.type) {
      case 'int32':
        return fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 });
      case 'int64':
        return fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map(String);
      case 'uint64':
        return fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map(String);
      case 'float':
        return fc.float({ noNaN: true });
      case 'double':
        return fc.double({ noNaN: true });
      case 'string':
        return fc.string({ unit: 'binary', maxLength: 6 });
      case 'bytes':
        // base64: onnx-proto's fromObject drops an empty Uint8Array in a repeated bytes field
        return fc.uint8Array({ maxLength: 8 }).map((b) => Buffer.from(b).toString('base64'));
      default:
        if (f.resolvedType instanceof protobuf.Enum) return fc.constantFrom(...Object.values(f.resolvedType.values));
        if (depth <= 0) return null;
        return arbMessage(f.resolvedType!.fullName.replace(/^\.onnx\./, ''), depth - 1);
    }
  };
  const parts: Record<string, fc.Arbitrary<unknown>> = {};
  for (const f of fields) {
    if (f.partOf) continue;
    const v = value(f);
    if (!v) continue;
    parts[f.name] = f.repeated ? fc.array(v, { maxLength: 2 }) : v;
  }
  const oneofs = [...oneofMembers.values()]
    .map((names) =>
      names.flatMap((n) => {
        const v = value(O.fields[n]!);
        return v ? [v.map((x) => ({ [n]: x }))] : [];
      }),
    )
    .filter((choices) => choices.length)
    .map((choices) => fc.option(fc.oneof(...choices), { nil: undefined }));
  return fc
    .tuple(fc.record(parts, { requiredKeys: [] }), fc.tuple(...oneofs))
    .map(([base, chosen]) => Object.assign({}, base, ...chosen.filter(Boolean)) as Msg);
}

describe('random messages over the shared fields', () => {
  for (const path of ['ModelProto', 'TensorProto', 'AttributeProto', 'TypeProto', 'FunctionProto', 'TrainingInfoProto']) {
    it(`${path}: either side's encoding decodes the same on both sides`, () => {
      const T = THEIR_TYPES.get(path)!;
      const O = ourType(path);
      fc.assert(
        fc.property(arbMessage(path, 3), (obj) => {
          const theirBytes = T.encode(T.fromObject(obj)).finish();
          const ourBytes = O.encode(O.fromObject(obj)).finish();
          // Both read the same bytes the same way, whoever wrote them ...
          expect(O.toObject(O.decode(theirBytes), TO_OBJECT)).toEqual(T.toObject(T.decode(theirBytes), TO_OBJECT));
          expect(T.toObject(T.decode(ourBytes), TO_OBJECT)).toEqual(O.toObject(O.decode(ourBytes), TO_OBJECT));
          // ... and our bytes hold what we were given.
          expect(O.toObject(O.decode(ourBytes), TO_OBJECT)).toEqual(O.toObject(O.fromObject(obj), TO_OBJECT));
        }),
        { numRuns: 150 },
      );
    });
  }

  it('models our encoder writes are read by onnx-proto as we read them', () => {
    fc.assert(
      fc.property(arbModel({ maxNodes: 4 }), (m) => {
        const bytes = encodeModel(m);
        const theirMsg = theirs.ModelProto.toObject(theirs.ModelProto.decode(bytes), TO_OBJECT);
        // Compare on the fields onnx-proto knows: drop ours-only fields from our reading.
        const ourMsg = pickShared('ModelProto', ourType('ModelProto').toObject(ourType('ModelProto').decode(bytes), TO_OBJECT));
        expect(ourMsg).toEqual(theirMsg);
        // And the facts passes rely on.
        const g = theirMsg.graph ?? {};
        expect((g.node ?? []).map((n: Msg) => n.opType ?? '')).toEqual(m.graph.nodes.map((n) => n.opType));
        expect((g.initializer ?? []).map((t: Msg) => t.name)).toEqual(m.graph.initializers.map((v) => v.name));
      }),
      { numRuns: 150 },
    );
  });
});

/** Drops, recursively, the fields onnx-proto does not have. */
function pickShared(path: string, obj: Msg): Msg {
  const T = THEIR_TYPES.get(path);
  if (!T) return obj;
  const O = ourType(path);
  const known = new Set(theirFields(T));
  const out: Msg = {};
  for (const [k, v] of Object.entries(obj)) {
    if (!known.has(k)) continue;
    const f = O.fields[k]!;
    f.resolve();
    if (f.resolvedType instanceof protobuf.Type) {
      const sub = f.resolvedType.fullName.replace(/^\.onnx\./, '');
      out[k] = Array.isArray(v) ? v.map((x) => pickShared(sub, x)) : pickShared(sub, v);
    } else {
      out[k] = v;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// ONNX's conformance files

const DATA = '/usr/share/libonnx-testdata/data';

function findFiles(dir: string, ext: string, out: string[] = []): string[] {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) findFiles(p, ext, out);
    else if (e.name.endsWith(ext)) out.push(p);
  }
  return out;
}

/** TensorProto data as raw little-endian bytes, computed from onnx-proto's decoding. */
function theirTensorBytes(t: Msg): Uint8Array | Uint8Array[] {
  const dtype: number = t.dataType;
  if (dtype === DataType.STRING) return (t.stringData ?? []).map((s: Uint8Array) => Uint8Array.from(s));
  if (t.rawData && t.rawData.length) return Uint8Array.from(t.rawData);
  const num = (v: unknown) => (typeof v === 'number' ? v : Number(String(v)));
  const big = (v: unknown) => BigInt(String(v));
  const typed = (() => {
    switch (dtype) {
      case DataType.FLOAT:
      case DataType.COMPLEX64:
        return Float32Array.from(t.floatData ?? []);
      case DataType.DOUBLE:
      case DataType.COMPLEX128:
        return Float64Array.from(t.doubleData ?? []);
      case DataType.INT64:
        return BigInt64Array.from((t.int64Data ?? []).map(big));
      case DataType.UINT64:
        return BigUint64Array.from((t.uint64Data ?? []).map(big));
      case DataType.UINT32:
        return Uint32Array.from((t.uint64Data ?? []).map(num));
      case DataType.INT32:
        return Int32Array.from(t.int32Data ?? []);
      case DataType.INT16:
        return Int16Array.from(t.int32Data ?? []);
      case DataType.UINT16:
      case DataType.FLOAT16:
      case DataType.BFLOAT16:
        return Uint16Array.from(t.int32Data ?? []);
      case DataType.INT8:
        return Int8Array.from(t.int32Data ?? []);
      default:
        return Uint8Array.from(t.int32Data ?? []); // uint8, bool, 8-bit floats, packed 4-bit
    }
  })();
  return new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength);
}

describe("ONNX's conformance data decodes the same with both", () => {
  let models: string[] = [];
  let tensors: string[] = [];
  try {
    statSync(DATA);
    models = findFiles(DATA, '.onnx').sort();
    tensors = findFiles(DATA, '.pb').sort();
  } catch {
    /* reported by the first test */
  }

  it(`finds the conformance data in ${DATA} (Debian package libonnx-testdata)`, () => {
    expect(models.length, `no .onnx files under ${DATA}: apt-get install libonnx-testdata`).toBeGreaterThan(1000);
    expect(tensors.length).toBeGreaterThan(2000);
  });

  it('every model: same messages on the shared fields, same IR facts, exact IR round trip', () => {
    const problems: string[] = [];
    for (const file of models) {
      const bytes = readFileSync(file);
      const theirMsg = theirs.ModelProto.toObject(theirs.ModelProto.decode(bytes), TO_OBJECT);
      const ourMsg = pickShared('ModelProto', ourType('ModelProto').toObject(ourType('ModelProto').decode(bytes), TO_OBJECT));
      try {
        expect(ourMsg).toEqual(theirMsg);
        const m = decodeModel(bytes, { source: file });
        expect(checkModel(m)).toEqual([]);
        const g = theirMsg.graph;
        expect(m.irVersion).toBe(Number(theirMsg.irVersion));
        expect(m.opsetImports).toEqual((theirMsg.opsetImport ?? []).map((o: Msg) => ({ domain: o.domain ?? '', version: Number(o.version) })));
        expect(m.graph.nodes.map((n) => `${n.domain}:${n.opType}`)).toEqual((g.node ?? []).map((n: Msg) => `${n.domain ?? ''}:${n.opType}`));
        expect(m.graph.inputs.map((v) => v.name)).toEqual((g.input ?? []).map((v: Msg) => v.name));
        expect(m.graph.outputs.map((v) => v.name)).toEqual((g.output ?? []).map((v: Msg) => v.name));
        for (const [i, t] of (g.initializer ?? []).entries()) {
          const mine = m.graph.initializers[i]!.initializer!;
          expect([mine.name, mine.dtype, [...mine.dims]]).toEqual([t.name, t.dataType, (t.dims ?? []).map(Number)]);
        }
        const again = decodeModel(encodeModel(m));
        expect(diffModels(m, again)).toBeNull();
        // Our re-encoding is still the same model for onnx-proto (data moves to raw_data).
        const reread = theirs.ModelProto.decode(encodeModel(m));
        expect(reread.graph.node.length).toBe((g.node ?? []).length);
      } catch (err) {
        problems.push(`${file}: ${(err as Error).message.split('\n')[0]}`);
      }
    }
    expect(problems.slice(0, 20)).toEqual([]);
    expect(models.length).toBeGreaterThan(1000);
  });

  /** Whether test_data_set_N/{input,output}_K.pb holds a TensorProto (not a sequence, map or optional). */
  const modelIo = new Map<string, { inputs: boolean[]; outputs: boolean[] }>();
  function holdsTensor(pb: string): boolean {
    const m = /^(.*)\/test_data_set_\d+\/(input|output)_(\d+)\.pb$/.exec(pb);
    if (!m) return false;
    let io = modelIo.get(m[1]!);
    if (!io) {
      const g = theirs.ModelProto.decode(readFileSync(join(m[1]!, 'model.onnx'))).graph;
      const inits = new Set((g.initializer ?? []).map((t: Msg) => t.name));
      const isTensor = (v: Msg) => Boolean(v.type?.tensorType);
      io = { inputs: g.input.filter((v: Msg) => !inits.has(v.name)).map(isTensor), outputs: g.output.map(isTensor) };
      modelIo.set(m[1]!, io);
    }
    return (m[2] === 'input' ? io.inputs : io.outputs)[Number(m[3])] === true;
  }

  it('every test tensor (.pb): decodeTensor gives the bytes onnx-proto reads', () => {
    const problems: string[] = [];
    let checked = 0;
    for (const file of tensors) {
      if (!holdsTensor(file)) continue;
      const bytes = readFileSync(file);
      const t: Msg = theirs.TensorProto.decode(bytes);
      try {
        const mine = decodeTensor(bytes, { source: file });
        expect(mine.dtype).toBe(t.dataType);
        expect([...mine.dims]).toEqual((t.dims ?? []).map(Number));
        expect(mine.name).toBe(t.name ?? '');
        const want = theirTensorBytes(t);
        if (Array.isArray(want)) {
          expect(mine.strings().map((s) => bytesText(s))).toEqual(want.map((s) => bytesText(s)));
        } else {
          expect(Buffer.from(mine.bytes()).equals(Buffer.from(want)), `${dtypeInfo(mine.dtype).name} data differs`).toBe(true);
        }
        checked++;
      } catch (err) {
        problems.push(`${file}: ${(err as Error).message.split('\n')[0]}`);
      }
    }
    expect(problems.slice(0, 20)).toEqual([]);
    expect(checked).toBeGreaterThan(2000);
  });
});

// A model using only 1.10 fields, built in IR and read by onnx-proto field by field.
describe('our encoder, read by onnx-proto', () => {
  it('writes every attribute with exactly one value field', () => {
    const m = new Model();
    const g = m.graph;
    const x = g.createValue('x', tensorType(DataType.FLOAT, [2]));
    g.inputs.push(x);
    const n = g.addNode('Custom', [x], ['y'], { domain: 'test', name: 'n' });
    n.setAttribute('i0', { type: 'int', value: 0n });
    n.setAttribute('f0', { type: 'float', value: 0 });
    n.setAttribute('s0', { type: 'string', value: new Uint8Array(0) });
    n.setAttribute('fs', { type: 'floats', value: [] });
    n.setAttribute('is', { type: 'ints', value: [] });
    g.outputs = [n.outputs[0]!];
    const back = theirs.ModelProto.decode(encodeModel(m));
    const valueFields = ['f', 'i', 's', 't', 'g', 'sparseTensor', 'tp'];
    for (const a of back.graph.node[0].attribute as Msg[]) {
      const set = valueFields.filter((f) => Object.prototype.hasOwnProperty.call(a, f));
      const expected = { i0: ['i'], f0: ['f'], s0: ['s'], fs: [], is: [] }[a.name as 'i0'];
      expect(set, `attribute ${a.name}`).toEqual(expected);
    }
    expect(CodecModelProto.decode(encodeModel(m))).toBeTruthy();
  });
});

/**
 * The ONNX codec, proven by properties:
 *  1. random IR models round-trip exactly through encodeModel/decodeModel, and through
 *     saveModel/loadModel with every initializer in external data;
 *  2. malformed input (truncated, bit-flipped, random, crafted huge lengths and dims, deep nesting)
 *     makes decodeModel throw a PeftcError: never another error type, a hang or a huge allocation.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import protobuf from 'protobufjs';
import { afterAll, describe, expect, it } from 'vitest';
import { PeftcError } from '../src/errors.js';
import { summarizeModel } from '../src/inspect.js';
import { ALL_DTYPES, DataType } from '../src/ir/dtype.js';
import type { Graph } from '../src/ir/graph.js';
import { diffModels } from '../src/ir/equal.js';
import { checkModel } from '../src/ir/invariants.js';
import { IrFunction, type Model } from '../src/ir/model.js';
import { Tensor } from '../src/ir/tensor.js';
import { decodeModel, decodeTensor } from '../src/onnx/decode.js';
import { encodeModel } from '../src/onnx/encode.js';
import { loadModel, saveModel } from '../src/onnx/io.js';
import { ModelProto, type Msg } from '../src/onnx/proto.js';
import { allGraphs, arbModel, arbModelSpec, buildModel, INT64_MAX, INT64_MIN, wire } from './arbitrary-ir.js';

const tmpRoot = mkdtempSync(join(tmpdir(), 'peftc-codec-'));
afterAll(() => rmSync(tmpRoot, { recursive: true, force: true }));

describe('round trip', () => {
  it('decode(encode(m)) is m, for random models', () => {
    fc.assert(
      fc.property(arbModel(), (m) => {
        expect(checkModel(m)).toEqual([]);
        const bytes = encodeModel(m);
        const d = decodeModel(bytes);
        expect(diffModels(m, d)).toBeNull();
        expect(checkModel(d)).toEqual([]);
        // Encoding is deterministic: the decoded model encodes to the same bytes.
        expect(Buffer.from(encodeModel(d)).equals(Buffer.from(bytes))).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('saveModel/loadModel with every initializer in external data is identical', () => {
    let n = 0;
    fc.assert(
      fc.property(arbModel({ maxDim: 6 }), fc.integer({ min: 0, max: 64 }), fc.constantFrom(1, 16, 4096), (m, threshold, alignment) => {
        const dir = join(tmpRoot, `save-${n++}`);
        rmSync(dir, { recursive: true, force: true });
        mkdirSync(dir, { recursive: true });
        const file = join(dir, 'model.onnx');
        const res = saveModel(m, file, { externalData: 'all', threshold, alignment });
        const loaded = loadModel(file);
        expect(diffModels(m, loaded)).toBeNull();
        expect(checkModel(loaded)).toEqual([]);
        const movable = m.graph.initializers.filter((v) => v.initializer!.dtype !== DataType.STRING && v.initializer!.byteLength >= threshold);
        expect(res.externalTensors).toBe(movable.length);
        for (const v of loaded.graph.initializers) {
          const t = v.initializer!;
          const shouldBeOut = t.dtype !== DataType.STRING && t.byteLength >= threshold;
          expect(t.isExternal).toBe(shouldBeOut);
          if (t.source.kind === 'external') expect(t.source.ref.location).toBe('model.onnx.data');
        }
        // Only the model and its data file; no temporary files left behind.
        expect(readdirSync(dir).sort()).toEqual(movable.length ? ['model.onnx', 'model.onnx.data'] : ['model.onnx']);
        // Saving the loaded (external) model again elsewhere gives the same IR.
        const file2 = join(dir, 'again.onnx');
        saveModel(loaded, file2);
        expect(diffModels(m, loadModel(file2))).toBeNull();
      }),
      { numRuns: 60 },
    );
  });

  it('keeps int64 extremes, -0, NaN and Inf attributes exactly', () => {
    const m = buildModel(fc.sample(arbModelSpec({ maxNodes: 0, maxFunctions: 0, opaqueBytes: false }), { numRuns: 1, seed: 1 })[0]!);
    const g = m.graph;
    const x = g.createValue('x');
    g.inputs.push(x);
    const node = g.addNode('Custom', [x], ['y'], { domain: 'test' });
    node.setAttribute('max', { type: 'int', value: INT64_MAX });
    node.setAttribute('min', { type: 'int', value: INT64_MIN });
    node.setAttribute('ints', { type: 'ints', value: [INT64_MAX, INT64_MIN, -1n, 0n] });
    node.setAttribute('negzero', { type: 'float', value: -0 });
    node.setAttribute('floats', { type: 'floats', value: [-0, NaN, Infinity, -Infinity, 1.401298464324817e-45] });
    g.outputs = [node.outputs[0]!];
    const d = decodeModel(encodeModel(m));
    expect(diffModels(m, d)).toBeNull();
    const dn = d.graph.nodes.at(-1)!;
    expect(dn.attribute('max')).toMatchObject({ type: 'int', value: INT64_MAX });
    expect(dn.attribute('min')).toMatchObject({ type: 'int', value: INT64_MIN });
    expect(Object.is((dn.attribute('negzero') as { value: number }).value, -0)).toBe(true);
    expect((dn.attribute('floats') as { value: number[] }).value.map(String)).toEqual(['0', 'NaN', 'Infinity', '-Infinity', '1.401298464324817e-45']);
    expect(Object.is((dn.attribute('floats') as { value: number[] }).value[0], -0)).toBe(true);
  });

  it('diffModels is not vacuous: it sees a one-byte change in a tensor, an attribute, a type', () => {
    fc.assert(
      fc.property(arbModel(), (m) => {
        const d = decodeModel(encodeModel(m));
        const withData = d.graph.initializers.find((v) => v.initializer!.byteLength > 0);
        if (withData) {
          const bytes = Uint8Array.from(withData.initializer!.bytes());
          bytes[bytes.length - 1] ^= 1;
          const t = withData.initializer!;
          const changed = Tensor.fromBytes(t.name, t.dtype, t.dims, bytes);
          changed.docString = t.docString;
          changed.metadataProps = t.metadataProps;
          withData.initializer = changed;
          expect(diffModels(m, d)).toMatch(/data bytes differ/);
          withData.initializer = t;
        }
        const typed = d.graph.inputs.find((v) => v.type?.kind === 'tensor');
        if (typed && typed.type?.kind === 'tensor') {
          const old = typed.type;
          typed.type = { ...old, elemType: old.elemType + 1 };
          expect(diffModels(m, d)).toMatch(/type/);
          typed.type = old;
        }
        expect(diffModels(m, d)).toBeNull();
      }),
      { numRuns: 100 },
    );
  });
});


describe('encoding refuses what it cannot write faithfully', () => {
  const base = () => {
    const m = buildModel(fc.sample(arbModelSpec({ maxNodes: 0, maxFunctions: 0, opaqueBytes: false }), { numRuns: 1, seed: 3 })[0]!);
    const x = m.graph.createValue('x');
    m.graph.inputs.push(x);
    return m;
  };
  const refuse = (m: ReturnType<typeof base>, pattern: RegExp) => {
    let err: unknown;
    try {
      encodeModel(m);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PeftcError);
    expect((err as Error).message).toMatch(pattern);
  };

  it('a tensor whose data does not match its dims', () => {
    const m = base();
    m.graph.addInitializer(Tensor.fromBytes('short', DataType.FLOAT, [4], new Uint8Array(12)));
    refuse(m, /'short'.*12 bytes.*need 16/);
    const m2 = base();
    const n = m2.graph.addNode('Constant', [], ['c']);
    n.setAttribute('value', { type: 'tensor', value: Tensor.fromBytes('long', DataType.INT4, [3], new Uint8Array(3)) });
    refuse(m2, /'long'.*3 bytes.*need 2/);
    const m3 = base();
    m3.graph.addInitializer(Tensor.fromStrings('s', [2], [new Uint8Array(1)]));
    refuse(m3, /'s'.*1 strings for 2 elements/);
    const m4 = base();
    m4.graph.addInitializer(Tensor.fromBytes('neg', DataType.UINT8, [-1], new Uint8Array(0)));
    refuse(m4, /'neg'.*dimension -1/);
  });

  it('an int attribute outside int64', () => {
    const m = base();
    m.graph.addNode('Custom', [], ['y']).setAttribute('big', { type: 'int', value: INT64_MAX + 1n });
    refuse(m, /'big'.*does not fit in int64/);
    const m2 = base();
    m2.graph.addNode('Custom', [], ['y']).setAttribute('bigs', { type: 'ints', value: [0n, INT64_MIN - 1n] });
    refuse(m2, /'bigs'.*does not fit in int64/);
  });

  it('a function body with initializers (FunctionProto has none)', () => {
    const m = base();
    const fn = new IrFunction();
    fn.name = 'f';
    fn.domain = 'local';
    fn.body.addInitializer(Tensor.fromBytes('w', DataType.UINT8, [1], new Uint8Array(1)));
    m.functions.push(fn);
    refuse(m, /function 'local::f'.*initializers/);
  });
});

describe('the arbitrary reaches every feature it promises', () => {
  it('covers dtypes, shapes, attribute kinds, scoping, functions and metadata', () => {
    const seen = new Set<string>();
    const tensor = (t: Tensor) => {
      seen.add(`dtype:${t.dtype}`);
      if (t.dims.length === 0) seen.add('scalar');
      if (t.elementCount === 0) seen.add('zero-size');
      if (t.metadataProps.length) seen.add('meta:tensor');
      if (t.source.kind === 'bytes' && t.source.bytes.byteOffset % 4 !== 0) seen.add('misaligned view');
    };
    for (const m of fc.sample(arbModel(), { numRuns: 300, seed: 11 })) {
      if (m.metadataProps.length) seen.add('meta:model');
      if (m.trainingInfo.length) seen.add('trainingInfo');
      if (m.configuration.length) seen.add('configuration');
      for (const fn of m.functions) {
        seen.add('function');
        if (fn.attributeDefaults.length) seen.add('attribute defaults');
      }
      for (const { graph } of allGraphs(m)) {
        if (graph.metadataProps.length) seen.add('meta:graph');
        if (graph.sparseInitializers.length) seen.add('sparse initializer');
        if (graph.quantizationAnnotations.length) seen.add('quantization annotation');
        if (graph.valueInfos.length) seen.add('value_info');
        graph.initializers.forEach((v) => tensor(v.initializer!));
        for (const v of graph.allValues()) if (v.metadataProps.length) seen.add('meta:value');
        for (const n of graph.nodes) {
          if (n.metadataProps.length) seen.add('meta:node');
          if (n.deviceConfigurations.length) seen.add('device configuration');
          if (n.inputs.some((v) => v && v.graph !== graph)) seen.add('outer-scope reference');
          for (const a of n.attributes) {
            seen.add(`attr:${a.type}`);
            if (a.type === 'tensor') tensor(a.value);
            if (a.type === 'int' && (a.value === INT64_MAX || a.value === INT64_MIN)) seen.add('int64 extreme');
            if (a.type === 'float' && Object.is(a.value, -0)) seen.add('-0');
            if (a.type === 'floats' && a.value.some(Number.isNaN)) seen.add('NaN');
            if ((a.type === 'float' && !Number.isFinite(a.value) && !Number.isNaN(a.value)) || (a.type === 'floats' && a.value.some((x) => x === Infinity || x === -Infinity))) seen.add('Inf');
            if (a.type === 'tensors') a.value.forEach(tensor);
          }
        }
      }
    }
    const want = [
      ...ALL_DTYPES.map((d) => `dtype:${d}`),
      'scalar', 'zero-size', 'misaligned view', 'trainingInfo', 'configuration', 'function', 'attribute defaults',
      'sparse initializer', 'quantization annotation', 'value_info', 'outer-scope reference', 'device configuration',
      'int64 extreme', '-0', 'NaN', 'Inf',
      ...['model', 'graph', 'node', 'value', 'tensor'].map((k) => `meta:${k}`),
      ...['float', 'int', 'string', 'tensor', 'graph', 'sparse_tensor', 'type_proto', 'floats', 'ints', 'strings', 'tensors', 'graphs', 'sparse_tensors', 'type_protos', 'ref'].map((k) => `attr:${k}`),
    ];
    expect(want.filter((w) => !seen.has(w))).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------
// Robustness

const { varint, key, int, ld, ldLying, str, bytes: wireBytes } = wire;
const modelWith = (graph: number[], extra: number[] = []): Uint8Array => wireBytes(int(1, 8), ld(7, graph), extra);
const graphWithInitializer = (tensor: number[]): number[] => [...str(2, 'g'), ...ld(5, tensor)];

/**
 * Decodes `bytes`; returns the model or the PeftcError. Anything else thrown fails the test, and
 * so does a decode that takes long (a hang) or leaves the process holding much more memory.
 */
function decodeOutcome(bytes: Uint8Array, options: { baseDir?: string } = {}): { model?: Model; error?: PeftcError; ms: number } {
  const t0 = performance.now();
  try {
    const model = decodeModel(bytes, options);
    return { model, ms: performance.now() - t0 };
  } catch (err) {
    if (!(err instanceof PeftcError)) throw new Error(`decodeModel threw ${(err as Error)?.constructor?.name}, not PeftcError: ${String(err)}`, { cause: err });
    return { error: err, ms: performance.now() - t0 };
  }
}

/** A decoded (possibly corrupted) model must still be usable: summarized, checked, re-encoded. */
function exerciseAccepted(m: Model): void {
  summarizeModel(m);
  checkModel(m);
  try {
    decodeModel(encodeModel(m));
  } catch (err) {
    if (!(err instanceof PeftcError)) throw new Error(`re-encoding an accepted model threw ${String(err)}`, { cause: err });
  }
}

/** Did the failure come from an allocation that was attempted (and failed), rather than from a check? */
function fromHugeAllocation(err: PeftcError): boolean {
  for (let e: unknown = err; e; e = (e as { cause?: unknown }).cause) {
    if (e instanceof RangeError && /allocation|Invalid typed array length|Array buffer|Invalid array length/i.test(e.message)) return true;
  }
  return false;
}

describe('robustness: malformed bytes make decodeModel throw PeftcError', () => {
  // Valid encodings to corrupt: random models, and real ONNX test models when present.
  const seeds: Uint8Array[] = fc.sample(arbModel({ maxNodes: 4 }), { numRuns: 40, seed: 42 }).map((m) => encodeModel(m));
  const testdata = '/usr/share/libonnx-testdata/data/node';
  for (const name of ['test_if', 'test_loop11', 'test_scan9_sum', 'test_gemm_default_zero_bias', 'test_constant']) {
    try {
      seeds.push(readFileSync(join(testdata, name, 'model.onnx')));
    } catch {
      /* the conformance data is checked by onnx-schema.test.ts */
    }
  }
  let maxMs = 0;
  let accepted = 0;
  let rejected = 0;

  const mutation = fc.oneof(
    fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
    fc.record({ kind: fc.constant('flip' as const), bits: fc.array(fc.nat(), { minLength: 1, maxLength: 8 }) }),
    fc.record({ kind: fc.constant('overwrite' as const), at: fc.nat(), data: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
    fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), data: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
  );

  const check = (bytes: Uint8Array) => {
    const rssBefore = process.memoryUsage.rss();
    const r = decodeOutcome(bytes);
    maxMs = Math.max(maxMs, r.ms);
    if (r.model) {
      accepted++;
      exerciseAccepted(r.model);
    } else {
      rejected++;
      expect(r.error!.message.length).toBeGreaterThan(0);
      expect(fromHugeAllocation(r.error!), r.error!.message).toBe(false);
    }
    expect(process.memoryUsage.rss() - rssBefore).toBeLessThan(512 << 20);
  };

  it('truncated, bit-flipped, overwritten and spliced models', () => {
    fc.assert(
      fc.property(fc.nat(seeds.length - 1), mutation, (i, mu) => {
        const src = seeds[i]!;
        let b: Uint8Array;
        switch (mu.kind) {
          case 'truncate':
            b = src.slice(0, src.length ? mu.at % src.length : 0);
            break;
          case 'flip':
            b = Uint8Array.from(src);
            for (const bit of mu.bits) if (b.length) b[(bit >> 3) % b.length]! ^= 1 << (bit & 7);
            break;
          case 'overwrite': {
            b = Uint8Array.from(src);
            const at = b.length ? mu.at % b.length : 0;
            b.set(mu.data.subarray(0, Math.max(0, b.length - at)), at);
            break;
          }
          case 'insert': {
            const at = src.length ? mu.at % src.length : 0;
            b = Uint8Array.from([...src.subarray(0, at), ...mu.data, ...src.subarray(at)]);
            break;
          }
        }
        check(b);
      }),
      { numRuns: 3000 },
    );
    // Every truncation of one model, byte by byte.
    const one = seeds.find((s) => s.length > 200) ?? seeds[0]!;
    for (let n = 0; n < one.length; n++) check(one.subarray(0, n));
    expect(rejected).toBeGreaterThan(1000);
    expect(maxMs).toBeLessThan(1000);
  });

  it('random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 4096 }), (b) => check(b)),
      { numRuns: 1500 },
    );
    // Random bytes behind a valid model header and graph key, so decoding gets past the first field.
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512 }), (b) => check(wireBytes(int(1, 8), ldLying(7, b.length, b)))),
      { numRuns: 1500 },
    );
    expect(maxMs).toBeLessThan(1000);
  });

  const crafted: Array<[string, Uint8Array, RegExp]> = [
    ['empty input', new Uint8Array(0), /no graph/],
    ['graph declaring 2^31-1 bytes', wireBytes(int(1, 8), ldLying(7, 2 ** 31 - 1, [1, 2, 3])), /protobuf|out of range/],
    ['graph declaring 2^40 bytes', wireBytes(int(1, 8), ldLying(7, 2 ** 40, [1, 2, 3])), /protobuf|out of range|varint/i],
    ['raw_data declaring 2^32 bytes', modelWith(graphWithInitializer([...int(2, 1), ...ldLying(9, 2 ** 32, [0, 0, 0, 0])])), /protobuf|out of range/],
    ['packed float_data declaring 2^31 bytes', modelWith(graphWithInitializer([...int(2, 1), ...ldLying(4, 2 ** 31, [0, 0, 0, 0])])), /protobuf|out of range/],
    ['string declaring 2^30 bytes', modelWith([...ldLying(2, 2 ** 30, [65, 66])]), /protobuf|out of range/],
    ['dims [2^40, 2^40] with 4 bytes of raw_data', modelWith(graphWithInitializer([...int(1, 2 ** 40), ...int(1, 2 ** 40), ...int(2, 1), ...str(8, 'w'), ...ld(9, [0, 0, 0, 0])])), /element count overflows/],
    ['dims [2^26, 2^26] with 4 bytes of raw_data', modelWith(graphWithInitializer([...int(1, 2 ** 26), ...int(1, 2 ** 26), ...int(2, 1), ...str(8, 'w'), ...ld(9, [0, 0, 0, 0])])), /'w'.*raw_data has 4 bytes/],
    ['dims [2^40] and no data', modelWith(graphWithInitializer([...int(1, 2 ** 40), ...int(2, 1), ...str(8, 'w')])), /'w'.*has no data/],
    ['dims [2^40] with one float_data value', modelWith(graphWithInitializer([...int(1, 2 ** 40), ...int(2, 1), ...str(8, 'w'), ...ld(4, [0, 0, 128, 63])])), /'w'.*holds 1 values/],
    ['dims [2^40] int4 with one int32_data value', modelWith(graphWithInitializer([...int(1, 2 ** 40), ...int(2, 22), ...str(8, 'w'), ...ld(5, [7])])), /'w'.*holds 1 values/],
    ['string tensor of 2^40 elements with one string', modelWith(graphWithInitializer([...int(1, 2 ** 40), ...int(2, 8), ...str(8, 's'), ...str(6, 'x')])), /'s'.*1 strings for 1099511627776 elements/],
    ['dims [INT64_MAX]', modelWith(graphWithInitializer([...int(1, INT64_MAX), ...int(2, 1), ...str(8, 'w')])), /out of range/],
    ['dims [-1]', modelWith(graphWithInitializer([...int(1, -1), ...int(2, 1), ...str(8, 'w')])), /negative dimension/],
    ['unknown data type 99', modelWith(graphWithInitializer([...int(1, 1), ...int(2, 99), ...str(8, 'w')])), /unknown data type 99/],
    ['dims [2^40, 2^40] in an attribute tensor', modelWith([...ld(1, [...str(4, 'Constant'), ...ld(5, [...str(1, 'value'), ...int(20, 4), ...ld(5, [...int(1, 2 ** 40), ...int(1, 2 ** 40), ...int(2, 1), ...ld(9, [1])])])])]), /element count overflows/],
    ['sparse values of 2^40 elements with 4 bytes', modelWith([...ld(15, [...ld(1, [...int(1, 2 ** 40), ...int(2, 1), ...str(8, 'sp'), ...ld(9, [0, 0, 0, 0])]), ...ld(2, [...int(1, 1), ...int(2, 7), ...ld(9, [0, 0, 0, 0, 0, 0, 0, 0])])])]), /raw_data has 4 bytes/],
    ['opset version 2^63-1', wireBytes(int(1, 8), ld(8, [...str(1, ''), ...int(2, INT64_MAX)]), ld(7, [])), /out of range/],
    ['varint of 11 bytes', wireBytes([8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), /protobuf/],
    ['end-group tag without a start', wireBytes(key(99, 4)), /protobuf/],
    ['wire type 7', wireBytes(key(99, 7), [0]), /protobuf/],
    ['attribute graph without a graph', modelWith([...ld(1, [...str(4, 'If'), ...ld(5, [...str(1, 'then_branch'), ...int(20, 5)])])]), /GRAPH attribute without a graph/],
    ['node output defined twice', modelWith([...ld(1, [...str(2, 'y'), ...str(4, 'A')]), ...ld(1, [...str(2, 'y'), ...str(4, 'B')])]), /'y' is defined twice/],
  ];

  it.each(crafted)('crafted: %s', (_name, bytes, message) => {
    const rssBefore = process.memoryUsage.rss();
    const r = decodeOutcome(bytes);
    expect(r.error, 'must be rejected').toBeInstanceOf(PeftcError);
    expect(r.error!.message).toMatch(message);
    expect(fromHugeAllocation(r.error!)).toBe(false);
    expect(r.ms).toBeLessThan(200);
    expect(process.memoryUsage.rss() - rssBefore).toBeLessThan(64 << 20);
  });

  it('huge external-data dims are refused before any read', () => {
    const dir = mkdtempSync(join(tmpRoot, 'ext-'));
    writeFileSync(join(dir, 'w.bin'), new Uint8Array(64));
    const ext = (k: string, v: string) => ld(13, [...str(1, k), ...str(2, v)]);
    const r = decodeOutcome(modelWith(graphWithInitializer([...int(1, 2 ** 40), ...int(1, 2 ** 10), ...int(2, 1), ...str(8, 'big'), ...int(14, 1), ...ext('location', 'w.bin')])), { baseDir: dir });
    expect(r.error).toBeInstanceOf(PeftcError);
    expect(r.error!.message).toMatch(/'big'.*w\.bin.*has 64 bytes/);
    const r2 = decodeOutcome(modelWith(graphWithInitializer([...int(1, 2 ** 40), ...int(1, 2 ** 40), ...int(2, 1), ...str(8, 'big'), ...int(14, 1), ...ext('location', 'w.bin')])), { baseDir: dir });
    expect(r2.error!.message).toMatch(/element count overflows/);
  });

  /** GraphProto nested `depth` times through If nodes' graph attributes. */
  function nestedGraphs(depth: number): Uint8Array {
    const prefixes: number[][] = [];
    let inner = 0; // the innermost graph is empty
    for (let i = 0; i < depth; i++) {
      const attrPrefix = [...str(1, 'g'), ...int(20, 5), ...key(6, 2), ...varint(inner)];
      const attrLen = attrPrefix.length + inner;
      const nodePrefix = [...str(4, 'If'), ...key(5, 2), ...varint(attrLen)];
      const nodeLen = nodePrefix.length + attrLen;
      const graphPrefix = [...key(1, 2), ...varint(nodeLen)];
      prefixes.push([...graphPrefix, ...nodePrefix, ...attrPrefix]);
      inner = graphPrefix.length + nodeLen;
    }
    const out: number[] = [...int(1, 8), ...key(7, 2), ...varint(inner)];
    for (let i = prefixes.length - 1; i >= 0; i--) for (const b of prefixes[i]!) out.push(b);
    return Uint8Array.from(out);
  }

  /** A graph input whose TypeProto is a sequence nested `depth` times. */
  function nestedTypes(depth: number): Uint8Array {
    const prefixes: number[][] = [];
    let inner = 0;
    for (let i = 0; i < depth; i++) {
      const seqPrefix = [...key(1, 2), ...varint(inner)]; // Sequence.elem_type
      const seqLen = seqPrefix.length + inner;
      const typePrefix = [...key(4, 2), ...varint(seqLen)]; // TypeProto.sequence_type
      prefixes.push([...typePrefix, ...seqPrefix]);
      inner = typePrefix.length + seqLen;
    }
    const vi: number[] = [...str(1, 'x'), ...key(2, 2), ...varint(inner)];
    for (let i = prefixes.length - 1; i >= 0; i--) for (const b of prefixes[i]!) vi.push(b);
    return modelWith(ld(11, vi));
  }

  it('deep nesting is refused with a PeftcError, not a stack overflow', () => {
    // Moderate nesting decodes.
    const ok = decodeOutcome(nestedGraphs(20));
    expect(ok.error).toBeUndefined();
    let depth = 0;
    for (let g: Graph | undefined = ok.model!.graph; g; g = g.nodes[0]?.subgraphs()[0]) depth++;
    expect(depth).toBe(21);
    expect(decodeOutcome(nestedTypes(30)).error).toBeUndefined();
    for (const bytes of [nestedGraphs(5000), nestedGraphs(100_000), nestedTypes(5000), nestedTypes(100_000)]) {
      const r = decodeOutcome(bytes);
      expect(r.error).toBeInstanceOf(PeftcError);
      expect(r.error!.message).toMatch(/depth|nest/i);
      expect(r.ms).toBeLessThan(2000);
    }
    // Unknown fields nested as groups.
    const groups = wireBytes(...Array.from({ length: 50_000 }, () => key(99, 3)));
    expect(decodeOutcome(groups).error).toBeInstanceOf(PeftcError);
  });

  it('decodeTensor: malformed TensorProto bytes throw PeftcError', () => {
    const good = wireBytes(int(1, 2), int(1, 3), int(2, 1), str(8, 't'), ld(9, new Array(24).fill(1)));
    expect(decodeTensor(good).dims).toEqual([2, 3]);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), fc.nat(), (noise, at) => {
        const b = Uint8Array.from([...good.subarray(0, at % good.length), ...noise]);
        try {
          decodeTensor(b);
        } catch (err) {
          expect(err).toBeInstanceOf(PeftcError);
        }
      }),
      { numRuns: 1000 },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Semantic mutations: well-formed protobuf whose content is wrong (dims, data types, lengths,
// names, attribute types, external-data entries). These get past the wire parser, so they test
// the decoder's own checks: a rejection must be a PeftcError raised by a check (not a TypeError
// from reading something that is not there), and an accepted model must stay usable.

type Slot = { parent: Msg; field: protobuf.Field; index?: number };

function slots(type: protobuf.Type, msg: Msg, out: Slot[]): Slot[] {
  for (const field of type.fieldsArray) {
    field.resolve();
    const v = msg[field.name];
    out.push({ parent: msg, field });
    if (v == null || !(field.resolvedType instanceof protobuf.Type)) continue;
    const sub = field.resolvedType;
    if (field.repeated) (v as Msg[]).forEach((x, i) => (out.push({ parent: msg, field, index: i }), slots(sub, x, out)));
    else slots(sub, v, out);
  }
  return out;
}

const NUMBERS = [0, -1, 1, 2, 7, 8, 22, 26, 27, 99, 2 ** 31 - 1, -(2 ** 31), 2 ** 40, -(2 ** 40), 2 ** 53];

function mutate(model: Msg, picks: number[], names: string[]): void {
  const all = slots(ModelProto, model, []);
  let k = 0;
  const pick = () => picks[k++ % picks.length]!;
  const rounds = 1 + (pick() % 3);
  for (let r = 0; r < rounds; r++) {
    const s = all[pick() % all.length]!;
    const { parent, field } = s;
    const name = field.name;
    const action = pick() % 4;
    if (s.index !== undefined) {
      const arr = parent[name] as unknown[] | undefined;
      if (!Array.isArray(arr) || s.index >= arr.length) continue; // an earlier round removed it
      if (action === 0) arr.splice(s.index, 1);
      else if (action === 1) arr.push(arr[s.index]);
      else arr[s.index] = {};
      continue;
    }
    if (action === 0) {
      delete parent[name];
      continue;
    }
    const scalar = (): unknown => {
      switch (field.type) {
        case 'string':
          return [names[pick() % Math.max(1, names.length)] ?? '', '', 'location', 'offset', 'length', 'checksum', 'w.bin', '../x', '/etc/passwd'][pick() % 9];
        case 'bytes':
          return Uint8Array.from({ length: pick() % 9 }, () => pick() & 255);
        case 'float':
        case 'double':
          return [NaN, Infinity, -0, 1.5][pick() % 4];
        default:
          return field.resolvedType instanceof protobuf.Type ? {} : NUMBERS[pick() % NUMBERS.length];
      }
    };
    if (field.repeated) {
      const arr = (parent[name] ??= []) as unknown[];
      if (action === 1) arr.push(scalar());
      else if (arr.length) arr.splice(pick() % arr.length, 1);
    } else {
      parent[name] = scalar();
    }
  }
}

function hasCause(err: unknown, ctor: new (...a: never[]) => Error): boolean {
  for (let e: unknown = err; e; e = (e as { cause?: unknown }).cause) if (e instanceof ctor) return true;
  return false;
}

describe('robustness: well-formed protobuf with wrong content', () => {
  const sources = fc.sample(arbModel({ maxNodes: 4, opaqueBytes: false }), { numRuns: 30, seed: 7 });
  const seeds = sources.map((m) => ModelProto.decode(encodeModel(m)) as Msg);
  const names = sources.flatMap((m) => [...m.graph.allValues()].map((v) => v.name));

  it('mutated fields are rejected by checks, or decode to a usable model', () => {
    const dir = mkdtempSync(join(tmpRoot, 'mut-'));
    writeFileSync(join(dir, 'w.bin'), new Uint8Array(256));
    let rejected = 0;
    let accepted = 0;
    fc.assert(
      fc.property(fc.nat(seeds.length - 1), fc.array(fc.nat(), { minLength: 3, maxLength: 12 }), (i, picks) => {
        const msg = structuredClone(ModelProto.toObject(seeds[i] as protobuf.Message, { longs: String, bytes: Uint8Array } as protobuf.IConversionOptions));
        mutate(msg, picks, names);
        let bytes: Uint8Array;
        try {
          bytes = ModelProto.encode(ModelProto.fromObject(msg)).finish();
        } catch {
          return; // not encodable: not a test of the decoder
        }
        const r = decodeOutcome(bytes, { baseDir: dir });
        if (r.error) {
          rejected++;
          expect(hasCause(r.error, TypeError), r.error.message).toBe(false);
          expect(fromHugeAllocation(r.error), r.error.message).toBe(false);
        } else {
          accepted++;
          exerciseAccepted(r.model!);
        }
      }),
      { numRuns: 2000 },
    );
    expect(rejected).toBeGreaterThan(100);
    expect(accepted).toBeGreaterThan(100);
  });
});

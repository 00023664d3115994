/**
 * External data: lazy reads, offsets and lengths, checksums, refusal of unsafe or broken
 * locations, saveModel's atomicity and self-overwrite protection, alignment, and a model whose
 * weights pass protobuf's 2 GiB limit.
 */
import { createHash } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statfsSync,
  symlinkSync,
  truncateSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { PeftcError } from '../src/errors.js';
import { DataType } from '../src/ir/dtype.js';
import { diffModels, diffTensors } from '../src/ir/equal.js';
import { checkModel } from '../src/ir/invariants.js';
import { Model } from '../src/ir/model.js';
import { Tensor } from '../src/ir/tensor.js';
import { tensorType } from '../src/ir/types.js';
import { decodeModel } from '../src/onnx/decode.js';
import { encodeModel, planEncoding, PROTOBUF_LIMIT } from '../src/onnx/encode.js';
import { loadModel, saveModel } from '../src/onnx/io.js';
import { ModelProto, type Msg } from '../src/onnx/proto.js';

const root = mkdtempSync(join(tmpdir(), 'peftc-extdata-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

let dir: string;
let counter = 0;
beforeEach(() => {
  dir = join(root, `case-${counter++}`);
  mkdirSync(dir);
});

interface ExtTensor {
  name: string;
  dataType: number;
  dims: number[];
  external: Record<string, string>;
}

/** Writes a model whose initializers are external with exactly the given external_data entries. */
function writeExternalModel(file: string, tensors: ExtTensor[]): void {
  const msg: Msg = {
    irVersion: 10,
    opsetImport: [{ domain: '', version: 21 }],
    producerName: 'external-data.test',
    graph: {
      name: 'g',
      initializer: tensors.map((t) => ({
        name: t.name,
        dims: t.dims,
        dataType: t.dataType,
        dataLocation: 1,
        externalData: Object.entries(t.external).map(([key, value]) => ({ key, value })),
      })),
      output: tensors.map((t) => ({ name: t.name })),
    },
  };
  writeFileSync(file, ModelProto.encode(msg).finish());
}

/** 4096 bytes: byte i is (i * 7) & 255. */
function patternFile(path: string, size = 4096): Uint8Array {
  const data = Uint8Array.from({ length: size }, (_, i) => (i * 7) & 255);
  writeFileSync(path, data);
  return data;
}

const sha1 = (b: Uint8Array) => createHash('sha1').update(b).digest('hex');

/** Asserts that `fn` throws a PeftcError whose message matches every pattern. */
function expectPeftcError(fn: () => unknown, ...patterns: Array<RegExp | string>): PeftcError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught, 'expected a PeftcError').toBeInstanceOf(PeftcError);
  const message = (caught as Error).message;
  for (const p of patterns) expect(message).toMatch(typeof p === 'string' ? new RegExp(p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')) : p);
  return caught as PeftcError;
}

const files = (d: string) => readdirSync(d).sort();

/** A small in-memory model with `n` float32 initializers of the given sizes (elements). */
function inlineModel(sizes: number[]): Model {
  const m = new Model();
  m.producerName = 'external-data.test';
  const g = m.graph;
  g.name = 'g';
  const x = g.createValue('x', tensorType(DataType.FLOAT, [1]));
  g.inputs.push(x);
  let prev = x;
  sizes.forEach((n, i) => {
    const data = new Float32Array(n);
    for (let k = 0; k < n; k++) data[k] = (k % 97) + i;
    const w = g.addInitializer(Tensor.fromTypedArray(`w${i}`, DataType.FLOAT, [n], data));
    const node = g.addNode('Add', [prev, w], [`y${i}`], { name: `add${i}` });
    prev = node.outputs[0]!;
  });
  prev.type = tensorType(DataType.FLOAT, [null]);
  g.outputs = [prev];
  return m;
}

// ---------------------------------------------------------------------------------------------

describe('lazy reads, offsets and lengths', () => {
  function setup() {
    const data = patternFile(join(dir, 'w.bin'));
    const file = join(dir, 'model.onnx');
    writeExternalModel(file, [
      { name: 'a', dataType: DataType.FLOAT, dims: [4], external: { location: 'w.bin', offset: '0', length: '16' } },
      { name: 'b', dataType: DataType.UINT8, dims: [100], external: { location: 'w.bin', offset: '1000' } },
      { name: 'c', dataType: DataType.INT4, dims: [5], external: { location: 'w.bin', offset: '4093', length: '3' } },
      { name: 'd', dataType: DataType.FLOAT16, dims: [2, 2], external: { location: 'w.bin' } },
      { name: 'e', dataType: DataType.FLOAT, dims: [0, 3], external: { location: 'w.bin', offset: '4096', length: '0' } },
    ]);
    return { data, file };
  }

  it('reads each tensor from its offset and length, only when asked', () => {
    const { data, file } = setup();
    const m = loadModel(file);
    const t = (name: string) => m.graph.localValue(name)!.initializer!;
    for (const name of ['a', 'b', 'c', 'd', 'e']) expect(t(name).isExternal).toBe(true);
    const refOf = (name: string) => (t(name).source as { ref: { offset: number; length: number | undefined; location: string; path: string } }).ref;
    expect(refOf('a')).toMatchObject({ offset: 0, length: 16, location: 'w.bin' });
    expect(refOf('b')).toMatchObject({ offset: 1000, length: undefined });
    expect(refOf('d')).toMatchObject({ offset: 0, length: undefined });
    expect(refOf('a').path.startsWith(root) || refOf('a').path.endsWith(join('case-0', 'w.bin')) || existsSync(refOf('a').path)).toBe(true);
    expect(t('a').bytes()).toEqual(Buffer.from(data.subarray(0, 16)));
    expect(t('b').bytes()).toEqual(Buffer.from(data.subarray(1000, 1100)));
    expect(t('c').bytes()).toEqual(Buffer.from(data.subarray(4093, 4096)));
    expect(t('d').bytes()).toEqual(Buffer.from(data.subarray(0, 8)));
    expect(t('e').bytes().byteLength).toBe(0);
    // Chunked reads give the same bytes.
    expect(Buffer.concat([...t('b').chunks(7)].map((c) => Buffer.from(c)))).toEqual(Buffer.from(data.subarray(1000, 1100)));
    expect(Array.from(t('a').toTypedArray<Float32Array>())).toEqual(Array.from(new Float32Array(data.slice(0, 16).buffer)));
  });

  it('decoding does not read the data: changes after load show up, a deleted file fails on use', () => {
    const { data, file } = setup();
    const m = loadModel(file);
    const a = m.graph.localValue('a')!.initializer!;
    const b = m.graph.localValue('b')!.initializer!;
    // Change the data file in place after loading: the tensor reflects the new bytes.
    const changed = Uint8Array.from(data, (x) => x ^ 0xff);
    writeFileSync(join(dir, 'w.bin'), changed);
    expect(a.bytes()).toEqual(Buffer.from(changed.subarray(0, 16)));
    // Shrink it: tensors still inside read fine, one past the end fails, naming the tensor.
    truncateSync(join(dir, 'w.bin'), 500);
    expect(a.bytes()).toEqual(Buffer.from(changed.subarray(0, 16)));
    expectPeftcError(() => b.bytes(), "tensor 'b'", 'ends early');
    expectPeftcError(() => [...b.chunks()], "tensor 'b'", 'ends early');
    // Replace it with a directory: reads fail with a PeftcError too.
    unlinkSync(join(dir, 'w.bin'));
    mkdirSync(join(dir, 'w.bin'));
    expectPeftcError(() => a.bytes(), "tensor 'a'", 'w.bin');
    expectPeftcError(() => [...a.chunks()], "tensor 'a'", 'w.bin');
    rmSync(join(dir, 'w.bin'), { recursive: true });
    writeFileSync(join(dir, 'w.bin'), changed);
    // Delete it: every read fails with a PeftcError naming the tensor and the file.
    unlinkSync(join(dir, 'w.bin'));
    expectPeftcError(() => a.bytes(), "tensor 'a'", 'w.bin');
    expectPeftcError(() => [...a.chunks()], "tensor 'a'", 'w.bin');
    expectPeftcError(() => encodeModel(m), "'a'", 'w.bin');
    // ... and saving it fails cleanly, leaving nothing behind.
    const before = files(dir);
    expectPeftcError(() => saveModel(m, join(dir, 'copy.onnx'), { externalData: 'none' }), 'w.bin');
    expectPeftcError(() => saveModel(m, join(dir, 'copy.onnx')), 'w.bin');
    expect(files(dir)).toEqual(before);
  });

  it('loading a model backed by a 4 GiB (sparse) data file reads none of it', () => {
    const big = join(dir, 'big.bin');
    closeSync(openSync(big, 'w'));
    truncateSync(big, 4 * 2 ** 30);
    const fd = openSync(big, 'r+');
    writeSync(fd, Uint8Array.from([1, 2, 3]), 0, 3, 4 * 2 ** 30 - 3);
    closeSync(fd);
    const file = join(dir, 'model.onnx');
    writeExternalModel(file, [
      { name: 'huge', dataType: DataType.UINT8, dims: [2 ** 32], external: { location: 'big.bin', length: String(2 ** 32) } },
      { name: 'tail', dataType: DataType.UINT8, dims: [3], external: { location: 'big.bin', offset: String(2 ** 32 - 3) } },
    ]);
    const rss = process.memoryUsage.rss();
    const t0 = performance.now();
    const m = loadModel(file);
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(process.memoryUsage.rss() - rss).toBeLessThan(64 << 20);
    const t = m.graph.localValue('huge')!.initializer!;
    expect(t.byteLength).toBe(2 ** 32);
    expect(Array.from(m.graph.localValue('tail')!.initializer!.bytes())).toEqual([1, 2, 3]);
    // Streaming reads one chunk at a time; stopping early reads no more.
    const it = t.chunks();
    expect(it.next().value!.byteLength).toBe(16 << 20);
    it.return(undefined);
  });
});

describe('checksums (SHA-1 of the tensor bytes)', () => {
  it('a matching checksum reads; a wrong one fails naming the tensor', () => {
    const data = patternFile(join(dir, 'w.bin'));
    const file = join(dir, 'model.onnx');
    writeExternalModel(file, [
      { name: 'good', dataType: DataType.UINT8, dims: [64], external: { location: 'w.bin', offset: '128', checksum: sha1(data.subarray(128, 192)) } },
      { name: 'upper', dataType: DataType.UINT8, dims: [64], external: { location: 'w.bin', offset: '128', checksum: sha1(data.subarray(128, 192)).toUpperCase() } },
      { name: 'bad', dataType: DataType.UINT8, dims: [64], external: { location: 'w.bin', offset: '129', checksum: sha1(data.subarray(128, 192)) } },
    ]);
    const m = loadModel(file); // checksums are verified on read, not at load
    const t = (name: string) => m.graph.localValue(name)!.initializer!;
    expect(t('good').bytes()).toEqual(Buffer.from(data.subarray(128, 192)));
    expect(t('upper').bytes()).toEqual(Buffer.from(data.subarray(128, 192)));
    expect(Buffer.concat([...t('good').chunks(10)].map((c) => Buffer.from(c)))).toEqual(Buffer.from(data.subarray(128, 192)));
    expectPeftcError(() => t('bad').bytes(), "tensor 'bad'", 'checksum');
    expectPeftcError(() => [...t('bad').chunks(10)], "tensor 'bad'", 'checksum');
    expectPeftcError(() => encodeModel(m), "'bad'", 'checksum');
    const before = files(dir);
    expectPeftcError(() => saveModel(m, join(dir, 'out.onnx'), { externalData: 'all', threshold: 0 }), "'bad'", 'checksum');
    expect(files(dir)).toEqual(before);
  });
});

describe('unsafe or broken locations are refused, naming the model and the tensor', () => {
  const outside = () => {
    const o = join(root, `outside-${counter}`);
    mkdirSync(o, { recursive: true });
    writeFileSync(join(o, 'secret.bin'), new Uint8Array(64).fill(0x5e));
    return o;
  };
  const refuse = (external: Record<string, string>, ...patterns: Array<RegExp | string>) => {
    const file = join(dir, 'model.onnx');
    writeExternalModel(file, [{ name: 'w', dataType: DataType.UINT8, dims: [16], external }]);
    return expectPeftcError(() => loadModel(file), file, "'w'", ...patterns);
  };

  it('absolute locations', () => {
    const o = outside();
    refuse({ location: join(o, 'secret.bin') }, /absolute/);
    refuse({ location: 'C:\\weights\\w.bin' }, /absolute/);
  });

  it("locations with '..'", () => {
    outside();
    patternFile(join(dir, 'w.bin'));
    mkdirSync(join(dir, 'sub'));
    refuse({ location: `../outside-${counter}/secret.bin` }, /'\.\.'/);
    refuse({ location: 'sub/../w.bin' }, /'\.\.'/);
    refuse({ location: 'sub\\..\\..\\x.bin' }, /'\.\.'/);
  });

  it('a file symlink that leads outside the folder', () => {
    const o = outside();
    symlinkSync(join(o, 'secret.bin'), join(dir, 'link.bin'));
    refuse({ location: 'link.bin' }, /outside the model's folder/);
  });

  it('a directory symlink that leads outside the folder', () => {
    const o = outside();
    symlinkSync(o, join(dir, 'sub'));
    refuse({ location: 'sub/secret.bin' }, /outside the model's folder/);
    // A relative symlink climbing out is the same.
    symlinkSync(`../outside-${counter}`, join(dir, 'rel'));
    refuse({ location: 'rel/secret.bin' }, /outside the model's folder/);
  });

  it('symlinks that stay inside the folder are fine', () => {
    const data = patternFile(join(dir, 'real.bin'));
    mkdirSync(join(dir, 'weights'));
    symlinkSync(join(dir, 'real.bin'), join(dir, 'weights', 'alias.bin'));
    symlinkSync('weights', join(dir, 'wdir'));
    const file = join(dir, 'model.onnx');
    writeExternalModel(file, [
      { name: 'a', dataType: DataType.UINT8, dims: [8], external: { location: 'weights/alias.bin', offset: '8' } },
      { name: 'b', dataType: DataType.UINT8, dims: [8], external: { location: 'wdir/alias.bin', offset: '16' } },
    ]);
    const m = loadModel(file);
    expect(m.graph.localValue('a')!.initializer!.bytes()).toEqual(Buffer.from(data.subarray(8, 16)));
    expect(m.graph.localValue('b')!.initializer!.bytes()).toEqual(Buffer.from(data.subarray(16, 24)));
  });

  it('a missing file', () => {
    refuse({ location: 'nope.bin' }, 'nope.bin', /cannot be read|ENOENT/);
  });

  it('a file too short for offset + length', () => {
    patternFile(join(dir, 'w.bin'), 100);
    refuse({ location: 'w.bin', offset: '90' }, 'w.bin', /has 100 bytes.*needs 16 at offset 90/);
    refuse({ location: 'w.bin', offset: '101', length: '16' }, /has 100 bytes/);
    refuse({ location: 'w.bin', offset: '9007199254740991' }, /has 100 bytes|not a valid byte count/);
  });

  it('malformed external_data entries', () => {
    patternFile(join(dir, 'w.bin'));
    mkdirSync(join(dir, 'adir'));
    refuse({ location: 'w.bin', length: '15' }, /length 15 does not match/);
    refuse({ location: 'w.bin', offset: '-1' }, /offset '-1' is not a valid byte count/);
    refuse({ location: 'w.bin', offset: '1e3' }, /not a valid byte count/);
    refuse({ location: 'w.bin', offset: '99999999999999999999' }, /not a valid byte count/);
    refuse({ location: 'w.bin', colour: 'blue' }, /unknown external_data key 'colour'/);
    refuse({ offset: '0' }, /without a location/);
    refuse({ location: '' }, /without a location/);
    refuse({ location: 'adir' }, /not a regular file/);
    refuse({ location: 'w.bin\u0000x' }, /NUL/);
  });

  it('external data without a model folder, and external string tensors', () => {
    patternFile(join(dir, 'w.bin'));
    const file = join(dir, 'model.onnx');
    writeExternalModel(file, [{ name: 'w', dataType: DataType.UINT8, dims: [16], external: { location: 'w.bin' } }]);
    expectPeftcError(() => decodeModel(readFileSync(file)), "'w'", /folder|from a file/);
    writeExternalModel(file, [{ name: 's', dataType: DataType.STRING, dims: [1], external: { location: 'w.bin' } }]);
    expectPeftcError(() => loadModel(file), "'s'", /string tensors cannot use external data/);
  });
});

// ---------------------------------------------------------------------------------------------

describe('saveModel', () => {
  it('writes the default side file <name>.data and loads back identical', () => {
    const m = inlineModel([600, 10, 300]);
    const file = join(dir, 'out.onnx');
    const res = saveModel(m, file, { externalData: 'all' });
    expect(files(dir)).toEqual(['out.onnx', 'out.onnx.data']);
    expect(res.externalDataPath).toMatch(/out\.onnx\.data$/);
    expect(res.externalTensors).toBe(2); // the 40-byte tensor stays under the 1 KiB threshold
    const back = loadModel(file);
    expect(diffModels(m, back)).toBeNull();
    expect(checkModel(back)).toEqual([]);
    for (const v of back.graph.initializers) {
      const t = v.initializer!;
      expect(t.isExternal).toBe(t.byteLength >= 1024);
      if (t.source.kind === 'external') expect(t.source.ref.location).toBe('out.onnx.data');
    }
  });

  it('honours a location in a subfolder, and refuses one outside the folder', () => {
    mkdirSync(join(dir, 'weights'));
    const m = inlineModel([600]);
    const file = join(dir, 'out.onnx');
    saveModel(m, file, { externalData: 'all', location: 'weights/w.bin' });
    expect(files(join(dir, 'weights'))).toEqual(['w.bin']);
    expect(diffModels(m, loadModel(file))).toBeNull();
    for (const location of ['../w.bin', '/tmp/w.bin', 'nowhere/w.bin']) {
      const before = files(dir);
      expectPeftcError(() => saveModel(m, join(dir, 'other.onnx'), { externalData: 'all', location }));
      expect(files(dir)).toEqual(before);
    }
  });

  it('aligns large tensors (>= 1 MiB) to the alignment in the side file', () => {
    const sizes = [300_000, 10, 400_000, 700, 262_144];
    for (const alignment of [4096, 65536]) {
      const sub = join(dir, `a${alignment}`);
      mkdirSync(sub);
      const m = inlineModel(sizes);
      const file = join(sub, 'm.onnx');
      saveModel(m, file, alignment === 65536 ? { externalData: 'all', threshold: 1 } : { externalData: 'all', threshold: 1, alignment });
      const raw = ModelProto.decode(readFileSync(file)) as Msg;
      const offsets = new Map<string, { offset: number; length: number }>();
      for (const t of raw.graph.initializer as Msg[]) {
        const kv = Object.fromEntries((t.externalData as Msg[]).map((e) => [e.key, e.value]));
        expect(kv.location).toBe('m.onnx.data');
        offsets.set(t.name, { offset: Number(kv.offset), length: Number(kv.length) });
      }
      let end = 0;
      sizes.forEach((n, i) => {
        const { offset, length } = offsets.get(`w${i}`)!;
        expect(length).toBe(n * 4);
        expect(offset).toBeGreaterThanOrEqual(end); // in order, no overlap
        if (length >= 1 << 20) expect(offset % alignment).toBe(0);
        else expect(offset).toBe(end); // small tensors are packed
        end = offset + length;
      });
      expect(diffModels(m, loadModel(file))).toBeNull();
    }
  });

  it('is atomic: a failed save leaves no output, no side file and no temporary file', () => {
    const m = inlineModel([600, 600]);
    // A tensor whose data cannot be read, last, so the side file is half written when it fails.
    patternFile(join(dir, 'gone.bin'));
    writeExternalModel(join(dir, 'src.onnx'), [{ name: 'gone', dataType: DataType.UINT8, dims: [2048], external: { location: 'gone.bin' } }]);
    const gone = loadModel(join(dir, 'src.onnx')).graph.localValue('gone')!.initializer!;
    m.graph.addInitializer(gone);
    unlinkSync(join(dir, 'gone.bin'));
    const before = files(dir);
    expectPeftcError(() => saveModel(m, join(dir, 'out.onnx'), { externalData: 'all' }), 'gone');
    expectPeftcError(() => saveModel(m, join(dir, 'out.onnx'), { externalData: 'none' }), 'gone');
    expect(files(dir)).toEqual(before);
    // An existing output is left as it was.
    writeFileSync(join(dir, 'out.onnx'), 'previous');
    expectPeftcError(() => saveModel(m, join(dir, 'out.onnx'), { externalData: 'all' }), 'gone');
    expect(readFileSync(join(dir, 'out.onnx'), 'utf8')).toBe('previous');
    expect(files(dir)).toEqual([...before, 'out.onnx'].sort());
  });

  it('is atomic when the final rename fails (the target is a directory)', () => {
    const m = inlineModel([600]);
    mkdirSync(join(dir, 'out.onnx'));
    const before = files(dir);
    expectPeftcError(() => saveModel(m, join(dir, 'out.onnx'), { externalData: 'all' }), 'out.onnx');
    expect(files(dir)).toEqual(before);
    expect(files(join(dir, 'out.onnx'))).toEqual([]);
  });

  it('refuses a side file that is the model file itself, or a directory', () => {
    const m = inlineModel([600]);
    expectPeftcError(() => saveModel(m, join(dir, 'out.onnx'), { externalData: 'all', location: 'out.onnx' }), /model file itself/);
    mkdirSync(join(dir, 'weights'));
    expectPeftcError(() => saveModel(m, join(dir, 'out.onnx'), { externalData: 'all', location: 'weights' }), /directory/);
    expect(files(dir)).toEqual(['weights']);
  });

  it('leaves no temporary files after success', () => {
    const m = inlineModel([600, 5000]);
    saveModel(m, join(dir, 'a.onnx'), { externalData: 'all' });
    saveModel(m, join(dir, 'a.onnx'), { externalData: 'all' }); // overwrite an earlier output
    saveModel(m, join(dir, 'b.onnx'), { externalData: 'none' });
    expect(files(dir)).toEqual(['a.onnx', 'a.onnx.data', 'b.onnx']);
    expect(diffModels(m, loadModel(join(dir, 'a.onnx')))).toBeNull();
    expect(diffModels(m, loadModel(join(dir, 'b.onnx')))).toBeNull();
  });

  it('refuses to overwrite the model it was read from, or its external data', () => {
    const m0 = inlineModel([600, 5000]);
    const src = join(dir, 'src.onnx');
    saveModel(m0, src, { externalData: 'all' });
    const srcBytes = readFileSync(src);
    const dataBytes = readFileSync(`${src}.data`);
    const m = loadModel(src);
    expectPeftcError(() => saveModel(m, src), /refusing to overwrite/, 'src.onnx');
    expectPeftcError(() => saveModel(m, src, { externalData: 'none' }), /refusing to overwrite/);
    // Another output name whose side file would be the source's data file.
    expectPeftcError(() => saveModel(m, join(dir, 'new.onnx'), { location: 'src.onnx.data' }), /refusing to overwrite/, 'src.onnx.data');
    // The same files under another name (a symlink) are still the same files.
    symlinkSync(src, join(dir, 'alias.onnx'));
    expectPeftcError(() => saveModel(m, join(dir, 'alias.onnx')), /refusing to overwrite/);
    symlinkSync(`${src}.data`, join(dir, 'alias.data'));
    expectPeftcError(() => saveModel(m, join(dir, 'new.onnx'), { location: 'alias.data' }), /refusing to overwrite/);
    expect(readFileSync(src).equals(srcBytes)).toBe(true);
    expect(readFileSync(`${src}.data`).equals(dataBytes)).toBe(true);
    expect(files(dir)).toEqual(['alias.data', 'alias.onnx', 'src.onnx', 'src.onnx.data']);
    // A new name is fine, and the result is the same model.
    saveModel(m, join(dir, 'new.onnx'));
    expect(diffModels(m0, loadModel(join(dir, 'new.onnx')))).toBeNull();
  });

  it('diffModels closes the data files it reads, even when it stops at a difference', () => {
    const data = patternFile(join(dir, 'w.bin'));
    writeExternalModel(join(dir, 'm.onnx'), [{ name: 'w', dataType: DataType.UINT8, dims: [64], external: { location: 'w.bin' } }]);
    const m = loadModel(join(dir, 'm.onnx'));
    const t = m.graph.localValue('w')!.initializer!;
    const other = Tensor.fromBytes('w', DataType.UINT8, [64], Uint8Array.from(data.subarray(0, 64), (x) => x ^ 1));
    const fds = () => readdirSync('/proc/self/fd').length;
    const before = fds();
    for (let i = 0; i < 50; i++) expect(diffTensors(t, other, 't')).toMatch(/differ/);
    for (let i = 0; i < 50; i++) expect(diffTensors(t, t, 't')).toBeNull();
    expect(fds() - before).toBeLessThan(5);
  });
});

// ---------------------------------------------------------------------------------------------

describe('models past protobuf 2 GiB limit', () => {
  const TENSOR = 750_000_000; // three of these: 2.25 GB, over 2^31 - 1
  const NEED = 2.5 * 2 ** 30;

  it('plan: external tensors stay external (auto); inline-only is refused', () => {
    // A model built lazily: three 750 MB tensors pointing into one sparse 2.2 GiB file.
    const big = join(dir, 'sparse.bin');
    closeSync(openSync(big, 'w'));
    truncateSync(big, 3 * TENSOR);
    writeExternalModel(
      join(dir, 'lazy.onnx'),
      [0, 1, 2].map((i) => ({ name: `w${i}`, dataType: DataType.UINT8, dims: [TENSOR], external: { location: 'sparse.bin', offset: String(i * TENSOR), length: String(TENSOR) } })),
    );
    const m = loadModel(join(dir, 'lazy.onnx'));
    const plan = planEncoding(m, { location: 'out.data' });
    expect(plan.external.map((e) => e.tensor.name)).toEqual(['w0', 'w1', 'w2']);
    expect(plan.modelBytes).toBeLessThan(4096);
    expect(plan.externalBytes).toBeGreaterThanOrEqual(3 * TENSOR);
    expectPeftcError(() => planEncoding(m, { externalData: 'none' }), /2 GiB/, /external data was turned off/);
    expectPeftcError(() => encodeModel(m), /2 GiB/);
  });

  it('saveModel moves in-memory weights to external data past 2 GiB, and they load back identical', () => {
    const free = statfsSync(tmpdir());
    const avail = Number(free.bavail) * Number(free.bsize);
    if (avail < NEED) {
      throw new Error(`this test writes a 2.25 GB side file and needs ${(NEED / 2 ** 30).toFixed(1)} GiB free in ${tmpdir()}; only ${(avail / 2 ** 30).toFixed(2)} GiB are free`);
    }
    // In-memory ("inline") tensors: zero-filled buffers are only backed by memory where written.
    const m = new Model();
    const g = m.graph;
    const x = g.createValue('x', tensorType(DataType.UINT8, [TENSOR]));
    g.inputs.push(x);
    let prev = x;
    for (let i = 0; i < 3; i++) {
      const buf = Buffer.alloc(TENSOR);
      for (const at of [0, 1, 4095, TENSOR >> 1, TENSOR - 2, TENSOR - 1]) buf[at] = (at * 31 + i * 7 + 1) & 255;
      const w = g.addInitializer(Tensor.fromBytes(`w${i}`, DataType.UINT8, [TENSOR], buf));
      prev = g.addNode('Add', [prev, w], [`y${i}`]).outputs[0]!;
    }
    prev.type = tensorType(DataType.UINT8, [TENSOR]);
    g.outputs = [prev];
    g.addInitializer(Tensor.fromBytes('small', DataType.UINT8, [4], Uint8Array.from([1, 2, 3, 4])));

    // Inline, the protobuf would pass 2 GiB: 'none' is refused, 'auto' (the default) moves the
    // initializers of 1 KiB or more to the side file.
    expectPeftcError(() => planEncoding(m, { externalData: 'none' }), /over protobuf's 2 GiB limit/, /external data was turned off/);
    const plan = planEncoding(m, { location: 'big.onnx.data' });
    expect(plan.external.map((e) => e.tensor.name)).toEqual(['w0', 'w1', 'w2']);
    expect(plan.modelBytes).toBeLessThan(64 << 10);
    expect(plan.modelBytes).toBeLessThan(PROTOBUF_LIMIT);
    const file = join(dir, 'big.onnx');
    try {
      expectPeftcError(() => saveModel(m, file, { externalData: 'none' }), /2 GiB/);
      expect(files(dir)).toEqual([]);
      const res = saveModel(m, file);
      expect(res.externalTensors).toBe(3);
      expect(res.externalBytes).toBeGreaterThanOrEqual(3 * TENSOR);
      expect(files(dir)).toEqual(['big.onnx', 'big.onnx.data']);
      const back = loadModel(file);
      expect(back.graph.initializers.map((v) => v.initializer!.isExternal)).toEqual([true, true, true, false]);
      expect(checkModel(back)).toEqual([]);
      expect(diffModels(m, back)).toBeNull(); // streams both sides chunk by chunk
    } finally {
      rmSync(file, { force: true });
      rmSync(`${file}.data`, { force: true });
    }
  });
});

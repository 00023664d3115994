import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DataType, dtypeName, float16BitsToFloat32 } from '../src/ir/dtype.js';
import { readArrays } from '../src/runtime/npy.js';

// Arrays are written by NumPy itself (Debian's python3-numpy, a dependency of python3-onnx).
const PY = '/usr/bin/python3';
const dir = mkdtempSync(join(tmpdir(), 'peftc-npy-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function numpy(script: string): string {
  try {
    return execFileSync(PY, ['-c', `import numpy as np, json, sys\nd=sys.argv[1]\n${script}`, dir], { encoding: 'utf8' });
  } catch (err) {
    throw new Error(`NumPy is needed for this test (apt-get install python3-onnx brings python3-numpy): ${(err as Error).message}`);
  }
}

describe('.npy / .npz', () => {
  it('reads every supported dtype exactly as NumPy wrote it', () => {
    const expected = JSON.parse(
      numpy(`
out = {}
for name, dt in [('f4','<f4'),('f8','<f8'),('f2','<f2'),('i1','i1'),('i2','<i2'),('i4','<i4'),('i8','<i8'),('u1','u1'),('u2','<u2'),('u4','<u4'),('u8','<u8'),('b1','?')]:
    a = (np.arange(24).reshape(2,3,4) * 7 - 40).astype(dt) if dt != '?' else (np.arange(24).reshape(2,3,4) % 3 == 0)
    np.save(f'{d}/{name}.npy', a)
    out[name] = {'shape': list(a.shape), 'values': [float(v) for v in a.astype('f8').ravel()]}
np.save(f'{d}/scalar.npy', np.float32(3.5))
print(json.dumps(out))`),
    ) as Record<string, { shape: number[]; values: number[] }>;
    for (const [name, e] of Object.entries(expected)) {
      const t = readArrays(join(dir, `${name}.npy`), 'x').get('x')!;
      expect(t.dims, name).toEqual(e.shape);
      const raw = t.toTypedArray() as ArrayLike<number | bigint>;
      const values = Array.from(raw, (v) => (t.dtype === DataType.FLOAT16 ? float16BitsToFloat32(Number(v)) : Number(v)));
      expect(values, `${name} (${dtypeName(t.dtype)})`).toEqual(e.values);
    }
    const s = readArrays(join(dir, 'scalar.npy')).get('input')!;
    expect(s.dims).toEqual([]);
    expect(Array.from(s.toTypedArray<Float32Array>())).toEqual([3.5]);
  });

  it('reads .npz archives (stored and deflated) keyed by array name', () => {
    numpy(`
np.savez(f'{d}/plain.npz', input_ids=np.array([[1,2,3]], dtype=np.int64), mask=np.ones((1,3), dtype=np.int64))
np.savez_compressed(f'{d}/packed.npz', x=np.linspace(0,1,1000, dtype=np.float32).reshape(10,100))`);
    const plain = readArrays(join(dir, 'plain.npz'));
    expect([...plain.keys()].sort()).toEqual(['input_ids', 'mask']);
    expect(Array.from(plain.get('input_ids')!.toTypedArray<BigInt64Array>())).toEqual([1n, 2n, 3n]);
    const packed = readArrays(join(dir, 'packed.npz')).get('x')!;
    expect(packed.dims).toEqual([10, 100]);
    expect(packed.toTypedArray<Float32Array>()[999]).toBe(1);
  });

  it('refuses Fortran order, big-endian data, unicode arrays and garbage with the file named', () => {
    numpy(`
np.save(f'{d}/fortran.npy', np.asfortranarray(np.ones((2,3), dtype=np.float32)))
np.save(f'{d}/big.npy', np.ones(3, dtype='>f4'))
np.save(f'{d}/text.npy', np.array(['a','b']))
open(f'{d}/junk.npy','wb').write(b'not numpy at all')`);
    expect(() => readArrays(join(dir, 'fortran.npy'))).toThrowError(/fortran\.npy.*Fortran-ordered/);
    expect(() => readArrays(join(dir, 'big.npy'))).toThrowError(/big\.npy.*'>f4' is not supported/);
    expect(() => readArrays(join(dir, 'text.npy'))).toThrowError(/text\.npy.*'<U1' is not supported/);
    expect(() => readArrays(join(dir, 'junk.npy'))).toThrowError(/junk\.npy: neither a \.npy array nor a \.npz archive/);
  });
});

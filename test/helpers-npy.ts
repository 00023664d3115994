/**
 * Writes NumPy .npy / .npz files for tests (format 1.0: magic, version, a header dict padded to a
 * multiple of 64 bytes, then the little-endian data), so CLI tests can give calibration data.
 */
import { writeFileSync } from 'node:fs';
import { zipSync } from 'fflate';

export type NpyArray = { descr: '<f4' | '<f8' | '<i8' | '<i4' | '<f2'; dims: number[]; data: Float32Array | Float64Array | BigInt64Array | Int32Array | Uint16Array };

export function npyBytes(a: NpyArray): Uint8Array {
  const shape = a.dims.length === 1 ? `(${a.dims[0]},)` : `(${a.dims.join(', ')})`;
  let header = `{'descr': '${a.descr}', 'fortran_order': False, 'shape': ${shape}, }`;
  const total = 10 + header.length + 1;
  header += ' '.repeat((64 - (total % 64)) % 64) + '\n';
  const out = new Uint8Array(10 + header.length + a.data.byteLength);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
  new DataView(out.buffer).setUint16(8, header.length, true);
  out.set(new TextEncoder().encode(header), 10);
  out.set(new Uint8Array(a.data.buffer, a.data.byteOffset, a.data.byteLength), 10 + header.length);
  return out;
}

export function writeNpy(path: string, a: NpyArray): void {
  writeFileSync(path, npyBytes(a));
}

export function writeNpz(path: string, arrays: Record<string, NpyArray>): void {
  const files: Record<string, Uint8Array> = {};
  for (const [name, a] of Object.entries(arrays)) files[`${name}.npy`] = npyBytes(a);
  writeFileSync(path, zipSync(files));
}

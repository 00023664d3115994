/**
 * NumPy .npy / .npz files as IR tensors: the data format ML users already have for calibration
 * and verification inputs (`--calib DATA`, `--inputs DATA`).
 *
 * .npy: magic "\x93NUMPY", version, a little header dict {'descr', 'fortran_order', 'shape'},
 * then the raw array. Little-endian numeric dtypes and bool are read; Fortran order, big-endian,
 * object and unicode arrays are refused with a clear message. .npz is a zip of .npy files named
 * after the arrays (fflate unzips it, stored or deflated).
 */
import { readFileSync } from 'node:fs';
import { unzipSync, zipSync } from 'fflate';
import { PeftcError } from '../errors.js';
import { byteSize, DataType, dtypeName, elementCount } from '../ir/dtype.js';
import { Tensor } from '../ir/tensor.js';

const DESCR: Record<string, DataType> = {
  f4: DataType.FLOAT,
  f8: DataType.DOUBLE,
  f2: DataType.FLOAT16,
  i1: DataType.INT8,
  i2: DataType.INT16,
  i4: DataType.INT32,
  i8: DataType.INT64,
  u1: DataType.UINT8,
  u2: DataType.UINT16,
  u4: DataType.UINT32,
  u8: DataType.UINT64,
  b1: DataType.BOOL,
};

export function parseNpy(bytes: Uint8Array, name: string, source: string): Tensor {
  const fail = (what: string): never => {
    throw new PeftcError(`${source}: array '${name}': ${what}`);
  };
  const magic = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59];
  if (bytes.byteLength < 10 || !magic.every((b, i) => bytes[i] === b)) fail('not a .npy array (bad magic)');
  const major = bytes[6]!;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const start = major === 1 ? 10 : 12;
  if (start + headerLen > bytes.byteLength) fail('header is truncated');
  const header = new TextDecoder('latin1').decode(bytes.subarray(start, start + headerLen));
  const descr = /'descr'\s*:\s*'([^']*)'/.exec(header)?.[1];
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape'\s*:\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) fail(`unreadable header ${JSON.stringify(header.trim())}`);
  if (fortran === 'True') fail('Fortran-ordered arrays are not supported; save with np.ascontiguousarray');
  const order = descr![0];
  const code = descr!.slice(1);
  const dtype = DESCR[code];
  if (dtype === undefined || (order === '>' && !code.endsWith('1'))) fail(`dtype '${descr}' is not supported (little-endian numeric or bool only)`);
  const dims = shapeText!
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map(Number);
  if (!dims.every((d) => Number.isSafeInteger(d) && d >= 0)) fail(`bad shape (${shapeText})`);
  const need = byteSize(dtype!, elementCount(dims));
  const data = bytes.subarray(start + headerLen);
  if (data.byteLength < need) fail(`holds ${data.byteLength} bytes of data, shape (${dims.join(', ')}) needs ${need}`);
  return Tensor.fromBytes(name, dtype!, dims, data.subarray(0, need));
}

/** Reads a .npy (one array, named after `defaultName`) or .npz (arrays by name). */
export function readArrays(path: string, defaultName = 'input'): Map<string, Tensor> {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    throw new PeftcError(`${path}: cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const out = new Map<string, Tensor>();
  if (bytes[0] === 0x93) {
    out.set(defaultName, parseNpy(bytes, defaultName, path));
    return out;
  }
  let files: Record<string, Uint8Array>;
  try {
    files = unzipSync(bytes);
  } catch (err) {
    throw new PeftcError(`${path}: neither a .npy array nor a .npz archive (${(err as Error).message})`);
  }
  for (const [file, content] of Object.entries(files)) {
    const name = file.replace(/\.npy$/, '');
    out.set(name, parseNpy(content, name, path));
  }
  if (out.size === 0) throw new PeftcError(`${path}: the archive holds no arrays`);
  return out;
}

const DESCR_OF = new Map<DataType, string>(Object.entries(DESCR).map(([code, dtype]) => [dtype, code]));

/**
 * A tensor as .npy bytes (format 1.0, little-endian, C order), the header padded so the data
 * starts on a 64-byte boundary as NumPy writes it. Refuses types NumPy has no code for here.
 */
export function encodeNpy(t: Tensor): Uint8Array {
  const code = DESCR_OF.get(t.dtype);
  if (code === undefined) throw new PeftcError(`tensor '${t.name}': no .npy type for ${dtypeName(t.dtype)}`);
  const descr = `${code.endsWith('1') ? '|' : '<'}${code}`;
  const shape = t.dims.length === 1 ? `(${t.dims[0]},)` : `(${t.dims.join(', ')})`;
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shape}, }`;
  header += ' '.repeat((64 - ((10 + header.length + 1) % 64)) % 64) + '\n';
  const data = t.bytes();
  const out = new Uint8Array(10 + header.length + data.byteLength);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
  new DataView(out.buffer).setUint16(8, header.length, true);
  out.set(new TextEncoder().encode(header), 10);
  out.set(data, 10 + header.length);
  return out;
}

/** Arrays as .npz bytes (a stored zip of .npy files named after the arrays). */
export function encodeNpz(arrays: ReadonlyMap<string, Tensor>): Uint8Array {
  const files: Record<string, [Uint8Array, { level: 0 }]> = {};
  for (const [name, t] of arrays) files[`${name}.npy`] = [encodeNpy(t), { level: 0 }];
  return zipSync(files);
}

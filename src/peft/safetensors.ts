/**
 * safetensors reader: the header is parsed and validated; tensor data stays in the file and is
 * read lazily through the IR's external-data machinery (one tensor at a time).
 *
 * Format: u64 little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets:
 * [begin, end]}, "__metadata__": {...}}, then the data section; offsets are relative to it.
 * A file that is truncated, or whose header lies (offsets out of the file, overlapping, a size
 * that does not match dtype x shape), is refused with a PeftcError naming the file and tensor.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { resolve } from 'node:path';
import { PeftcError } from '../errors.js';
import { byteSize, DataType, elementCount } from '../ir/dtype.js';
import { Tensor } from '../ir/tensor.js';

const DTYPES: Record<string, DataType> = {
  F64: DataType.DOUBLE,
  F32: DataType.FLOAT,
  F16: DataType.FLOAT16,
  BF16: DataType.BFLOAT16,
  I64: DataType.INT64,
  I32: DataType.INT32,
  I16: DataType.INT16,
  I8: DataType.INT8,
  U64: DataType.UINT64,
  U32: DataType.UINT32,
  U16: DataType.UINT16,
  U8: DataType.UINT8,
  BOOL: DataType.BOOL,
  F8_E4M3: DataType.FLOAT8E4M3FN,
  F8_E5M2: DataType.FLOAT8E5M2,
};

/** Headers larger than this are refused rather than allocated (real ones are kilobytes). */
const MAX_HEADER_BYTES = 100 << 20;

export interface SafetensorsFile {
  path: string;
  tensors: Map<string, Tensor>;
  metadata: Record<string, string>;
}

export function readSafetensors(path: string): SafetensorsFile {
  const file = resolve(path);
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    throw new PeftcError(`${path}: cannot open: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  try {
    const size = fstatSync(fd).size;
    const fail = (what: string): never => {
      throw new PeftcError(`${path}: not a valid safetensors file: ${what}`);
    };
    if (size < 8) fail(`only ${size} bytes (truncated)`);
    const head = Buffer.alloc(8);
    readSync(fd, head, 0, 8, 0);
    const n = head.readBigUInt64LE(0);
    if (n > BigInt(Math.min(size - 8, MAX_HEADER_BYTES))) fail(`header length ${n} exceeds the file (${size} bytes)`);
    const headerLen = Number(n);
    const json = Buffer.alloc(headerLen);
    if (readSync(fd, json, 0, headerLen, 8) !== headerLen) fail('header is truncated');
    let header: Record<string, unknown>;
    try {
      header = JSON.parse(json.toString('utf8')) as Record<string, unknown>;
    } catch (err) {
      return fail(`header is not JSON (${(err as Error).message})`);
    }
    if (typeof header !== 'object' || header === null || Array.isArray(header)) fail('header is not a JSON object');
    const dataStart = 8 + headerLen;
    const dataBytes = size - dataStart;
    const tensors = new Map<string, Tensor>();
    const spans: Array<[number, number, string]> = [];
    let metadata: Record<string, string> = {};
    for (const [name, entry] of Object.entries(header)) {
      if (name === '__metadata__') {
        metadata = (entry ?? {}) as Record<string, string>;
        continue;
      }
      const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
      const dtype = typeof e.dtype === 'string' ? DTYPES[e.dtype] : undefined;
      if (dtype === undefined) fail(`tensor '${name}' has unsupported dtype ${JSON.stringify(e.dtype)}`);
      const shape = e.shape;
      if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) fail(`tensor '${name}' has a bad shape ${JSON.stringify(shape)}`);
      const off = e.data_offsets;
      if (!Array.isArray(off) || off.length !== 2 || !off.every((d) => Number.isSafeInteger(d) && d >= 0)) {
        fail(`tensor '${name}' has bad data_offsets ${JSON.stringify(off)}`);
      }
      const [begin, end] = off as [number, number];
      const dims = shape as number[];
      const need = byteSize(dtype!, elementCount(dims));
      if (end < begin || end - begin !== need) fail(`tensor '${name}' spans ${end - begin} bytes, ${e.dtype}[${dims.join(',')}] needs ${need}`);
      if (end > dataBytes) fail(`tensor '${name}' ends at byte ${end} of a ${dataBytes}-byte data section (truncated file or lying offsets)`);
      spans.push([begin, end, name]);
      tensors.set(
        name,
        new Tensor(name, dtype!, dims, {
          kind: 'external',
          ref: { path: file, location: file, offset: dataStart + begin, length: need, checksum: undefined },
        }),
      );
    }
    spans.sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < spans.length; i++) {
      if (spans[i]![0] < spans[i - 1]![1]) fail(`tensors '${spans[i - 1]![2]}' and '${spans[i]![2]}' overlap`);
    }
    return { path: file, tensors, metadata };
  } finally {
    closeSync(fd);
  }
}

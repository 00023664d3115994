/**
 * safetensors writer, streamed tensor by tensor: the header (every tensor's dtype, shape and byte
 * range) is computed from the sizes alone, then each tensor's bytes are written as its `chunks()`
 * yields them, so a model larger than memory is written holding one chunk at a time. The file is
 * written to a temporary name beside the target and renamed into place (a reader never sees a
 * half-written file; a failed write leaves nothing behind).
 *
 * Format (huggingface/safetensors): u64 little-endian header length N, N bytes of JSON
 * {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}, then the data;
 * offsets are relative to the data section. The header is padded with spaces so the data starts
 * 8-byte aligned, as the reference implementation does.
 */
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import { PeftcError } from './errors.js';

export interface SafetensorsEntry {
  name: string;
  /** safetensors dtype: F32, F16, BF16, I64, I32, I16, I8, U8, BOOL, ... */
  dtype: string;
  shape: readonly number[];
  /** Exactly the number of bytes `chunks()` yields. */
  byteLength: number;
  /** The bytes in order; a chunk may be reused by the producer once the next one is asked for. */
  chunks(): Iterable<Uint8Array>;
}

export interface SafetensorsWriteResult {
  path: string;
  bytes: number;
  headerBytes: number;
  tensors: number;
}

function writeAll(fd: number, chunk: Uint8Array, position: number): void {
  let done = 0;
  while (done < chunk.byteLength) done += writeSync(fd, chunk, done, chunk.byteLength - done, position + done);
}

export function writeSafetensors(path: string, entries: readonly SafetensorsEntry[], options: { metadata?: Record<string, string>; durable?: boolean } = {}): SafetensorsWriteResult {
  const target = resolve(path);
  const header: Record<string, unknown> = {};
  if (options.metadata && Object.keys(options.metadata).length) header.__metadata__ = options.metadata;
  let offset = 0;
  for (const e of entries) {
    if (e.name === '__metadata__' || Object.prototype.hasOwnProperty.call(header, e.name)) throw new PeftcError(`${path}: tensor name '${e.name}' is used twice (or reserved)`);
    header[e.name] = { dtype: e.dtype, shape: e.shape, data_offsets: [offset, offset + e.byteLength] };
    offset += e.byteLength;
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  const pad = (8 - ((8 + json.byteLength) % 8)) % 8;
  if (pad) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(json.byteLength));
  const tmp = `${target}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  let fd: number | undefined;
  try {
    fd = openSync(tmp, 'wx');
    writeAll(fd, prefix, 0);
    writeAll(fd, json, 8);
    let at = 8 + json.byteLength;
    for (const e of entries) {
      const start = at;
      for (const c of e.chunks()) {
        writeAll(fd, c, at);
        at += c.byteLength;
      }
      if (at - start !== e.byteLength) throw new PeftcError(`${path}: tensor '${e.name}' yielded ${at - start} bytes, its header says ${e.byteLength}`);
    }
    if (options.durable ?? true) fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, target);
  } catch (err) {
    if (fd !== undefined) closeSync(fd);
    rmSync(tmp, { force: true });
    if (err instanceof PeftcError) throw err;
    throw new PeftcError(`${path}: writing failed: ${(err as Error).message}`, 2, { cause: err });
  }
  return { path: target, bytes: 8 + json.byteLength + offset, headerBytes: json.byteLength, tensors: entries.length };
}

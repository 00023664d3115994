/** Writes safetensors files for tests (the format is tiny: u64 header length, JSON header, data). */
import { writeFileSync } from 'node:fs';

export function writeSafetensors(path: string, tensors: Record<string, { dtype: string; shape: number[]; data: Uint8Array }>, tamper?: (header: Record<string, unknown>) => void): void {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let offset = 0;
  const chunks: Uint8Array[] = [];
  for (const [name, t] of Object.entries(tensors)) {
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    chunks.push(t.data);
    offset += t.data.byteLength;
  }
  tamper?.(header);
  let json = Buffer.from(JSON.stringify(header));
  const pad = (8 - (json.length % 8)) % 8;
  json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(path, Buffer.concat([len, json, ...chunks]));
}

export const f32 = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

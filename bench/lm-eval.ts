/**
 * models/lm's held-out evaluation, shared by the benches that report its perplexity: every
 * `seq`-byte window of eval.bin, fed in batches, scored by src/verify/metrics.ts's
 * PerplexityAccumulator (the same figure `peftc verify` reports).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DataType } from '../src/ir/dtype.js';
import { Tensor } from '../src/ir/tensor.js';
import type { OrtSession } from '../src/runtime/ort.js';
import { PerplexityAccumulator } from '../src/verify/metrics.js';

export const LM_DIR = join(process.cwd(), 'models', 'lm');

/** Byte windows of eval.bin as int64 ids, [count, seq] row-major. */
export function evalWindows(seq: number): { ids: BigInt64Array; count: number } {
  const bytes = readFileSync(join(LM_DIR, 'eval.bin'));
  const count = Math.floor(bytes.length / seq);
  const ids = new BigInt64Array(count * seq);
  for (let i = 0; i < ids.length; i++) ids[i] = BigInt(bytes[i]!);
  return { ids, count };
}

/** Perplexity of `session` over `count` windows of `ids`, `batch` windows per run. */
export async function windowPerplexity(session: OrtSession, ids: BigInt64Array, count: number, seq: number, batch = 16): Promise<number> {
  const acc = new PerplexityAccumulator();
  for (let w = 0; w < count; w += batch) {
    const rows = Math.min(batch, count - w);
    const part = ids.subarray(w * seq, (w + rows) * seq);
    const out = await session.run({ input_ids: Tensor.fromTypedArray('input_ids', DataType.INT64, [rows, seq], part) });
    acc.add(Object.values(out)[0]!.toTypedArray<Float32Array>(), part, rows, seq);
  }
  return acc.perplexity();
}

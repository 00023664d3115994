/**
 * Causal language models (token ids in, next-token logits out): how to recognise one, and greedy
 * continuation with a sliding window, so that a reference and a candidate can be compared on the
 * text they would generate, not only on their logits.
 */
import { DataType } from '../ir/dtype.js';
import type { Model } from '../ir/model.js';
import { Tensor } from '../ir/tensor.js';
import { shapeOf } from '../ir/types.js';
import type { ModelRunner } from '../../targets/target.js';
import { feedableInputs } from '../runtime/input-data.js';
import { argmax } from './metrics.js';

export interface CausalLmSpec {
  /** The token-id input ([batch, seq], int32/int64). */
  ids: string;
  /** The logits output ([batch, seq, vocab]). */
  logits: string;
  vocab: number;
}

/**
 * A model is taken as a causal LM when one int32/int64 rank-2 input indexes an embedding table
 * (Gather on a constant of V rows) and a float output of rank 3 ends in V. A masked LM has the same
 * signature; `--task generic` turns the LM metrics off for those.
 */
export function detectCausalLm(model: Model): CausalLmSpec | undefined {
  const g = model.graph;
  for (const v of feedableInputs(g)) {
    if (v.type?.kind !== 'tensor' || (v.type.elemType !== DataType.INT64 && v.type.elemType !== DataType.INT32)) continue;
    if (shapeOf(v.type)?.length !== 2 || /mask|position|type/i.test(v.name)) continue;
    const rows = embeddingRows(v);
    if (rows === undefined) continue;
    for (const out of g.outputs) {
      const shape = shapeOf(out.type);
      if (out.type?.kind === 'tensor' && out.type.elemType === DataType.FLOAT && shape?.length === 3 && shape[2] === rows) {
        return { ids: v.name, logits: out.name, vocab: rows };
      }
    }
  }
  return undefined;
}

function embeddingRows(v: import('../ir/graph.js').Value, depth = 0): number | undefined {
  for (const use of v.uses) {
    const n = use.node;
    if (n.domain !== '') continue;
    if (n.opType === 'Gather' && use.index === 1 && n.inputs[0]?.initializer) return n.inputs[0].initializer.dims[0];
    if (n.opType === 'Cast' && depth < 3) {
      for (const o of n.outputs) {
        const r = o ? embeddingRows(o, depth + 1) : undefined;
        if (r !== undefined) return r;
      }
    }
  }
  return undefined;
}

/**
 * Greedy continuation of every row of `feed`'s ids: at each step the model sees the last `seq`
 * tokens (the window slides, so a model with a fixed or bounded sequence length keeps its shape),
 * the argmax at the last position is appended. Other inputs are fed unchanged.
 */
export async function greedyContinuations(session: ModelRunner, feed: Record<string, Tensor>, spec: CausalLmSpec, tokens: number): Promise<number[][]> {
  const ids = feed[spec.ids]!;
  const [rows, seq] = ids.dims as [number, number];
  const wide = ids.dtype === DataType.INT64;
  const window = Float64Array.from(ids.toTypedArray() as ArrayLike<number | bigint>, Number);
  const out: number[][] = Array.from({ length: rows }, () => []);
  for (let step = 0; step < tokens; step++) {
    const data = wide ? BigInt64Array.from(window, (x) => BigInt(x)) : Int32Array.from(window);
    const t = Tensor.fromTypedArray(spec.ids, ids.dtype, [rows, seq], data);
    const logits = (await session.run({ ...feed, [spec.ids]: t }, [spec.logits]))[spec.logits]!.toTypedArray<Float32Array>();
    const vocab = logits.length / (rows * seq);
    for (let r = 0; r < rows; r++) {
      const next = argmax(logits, (r * seq + seq - 1) * vocab, vocab);
      out[r]!.push(next);
      window.copyWithin(r * seq, r * seq + 1, (r + 1) * seq);
      window[(r + 1) * seq - 1] = next;
    }
  }
  return out;
}

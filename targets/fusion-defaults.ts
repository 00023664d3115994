/**
 * Which fusions a target runs when the user names none (`--fuse` absent). The attention fusion
 * packs the Q/K/V projection weights into the fused op, where weight-only quantization cannot
 * reach them: with --quant int4/nf4/int8-weight it is left out unless asked for by name, so the
 * projections stay quantized (Llama's GroupQueryAttention keeps its projections as MatMuls).
 */
import { selectFusions } from '../passes/fusion.js';
import type { LoweringOptions } from './target.js';

// int8 too: the packed Attention op would keep Q/K/V out of the integer kernels.
const WEIGHT_ONLY = new Set(['int4', 'nf4', 'int8-weight', 'int8', 'int8-dynamic']);

export function defaultFusions(target: 'cpu' | 'cuda', o: LoweringOptions): readonly string[] | undefined {
  if (o.fuse) return o.fuse;
  if (!WEIGHT_ONLY.has(o.quant)) return undefined;
  return selectFusions({ target }).map((f) => f.name).filter((n) => n !== 'attention');
}

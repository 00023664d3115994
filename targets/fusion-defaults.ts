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

/**
 * Fusions whose output crashed onnxruntime's CUDA provider: com.microsoft GroupQueryAttention as
 * rotary-attention wrote it ran on onnxruntime-node 1.29's CPU provider but ended the process
 * with a segmentation fault at the first run on the CUDA provider (H200, CUDA 13; every float16,
 * bfloat16, int4 and nf4 Llama artifact; the same graphs without that one fusion ran and matched,
 * bench/gpu/README.md). The likely cause, found in onnxruntime's CUDA kernel source afterwards:
 * it writes the present_key/present_value outputs without checking they exist, and the fusion
 * left them unnamed; it names them now, but no GPU run has confirmed the fix, so the fusion stays
 * out of the cuda defaults until one does. `--fuse rotary-attention` still asks for it.
 */
export const CUDA_CRASHING_FUSIONS: ReadonlySet<string> = new Set(['rotary-attention']);

export function defaultFusions(target: 'cpu' | 'cuda', o: LoweringOptions): readonly string[] | undefined {
  if (o.fuse) return o.fuse;
  const drop = new Set<string>(target === 'cuda' ? CUDA_CRASHING_FUSIONS : []);
  if (WEIGHT_ONLY.has(o.quant)) drop.add('attention');
  if (!drop.size) return undefined;
  return selectFusions({ target }).map((f) => f.name).filter((n) => !drop.has(n));
}

/**
 * cuda: onnxruntime's CUDA execution provider.
 *
 * - `--quant fp16|bf16`: weights and activations in float16/bfloat16, float32 kept where precision
 *   or the CUDA EP needs it (passes/float16.ts; the CUDA kernel table decides which ops have a
 *   low-precision kernel); graph inputs/outputs stay float32 unless `--io-types fp16`.
 * - `--quant int4|nf4|int8-weight`: MatMulNBits/MatMulBnb4 weights with float16 activations (the
 *   form the CUDA kernels are fastest in); `--activations fp32` keeps them float32.
 * - Legality: every node is checked against the CUDA EP's kernel table (targets/cuda/kernels.json);
 *   nodes that would fall back to the CPU are reported by name, `--strict` refuses them.
 * - Verification here (no GPU): float32 forms run on onnxruntime-node's CPU provider as they are;
 *   float16/bfloat16 forms run as an emulation (targets/low-precision-emulation.ts).
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { precisionConversion, type LowType } from '../../passes/float16.js';
import type { Pass } from '../../passes/pass.js';
import type { Model } from '../../src/ir/model.js';
import { KernelIndex, type KernelTable } from '../legality.js';
import { schemaWhyNot } from '../onnx/index.js';
import { emulateLowPrecision } from '../low-precision-emulation.js';
import type { LoweringOptions, Target } from '../target.js';
import { fusionPass } from '../../passes/fusion.js';
import { CUDA_CRASHING_FUSIONS, defaultFusions } from '../fusion-defaults.js';

const here = dirname(fileURLToPath(import.meta.url));

let index: KernelIndex | undefined;
/** The CUDA EP's kernel table (read once). From dist/targets/cuda the data sits in the sources' folder. */
export function cudaKernels(): KernelIndex {
  if (!index) {
    const candidates = [join(here, 'kernels.json'), join(here, '..', '..', '..', 'targets', 'cuda', 'kernels.json')];
    const file = candidates.find((f) => {
      try {
        readFileSync(f);
        return true;
      } catch {
        return false;
      }
    });
    if (!file) throw new Error(`targets/cuda/kernels.json is missing (looked in ${candidates.join(', ')})`);
    index = new KernelIndex(JSON.parse(readFileSync(file, 'utf8')) as KernelTable);
  }
  return index;
}

/** The low type a cuda compile lowers to, if any. */
export function cudaLowType(o: LoweringOptions): LowType | undefined {
  if (o.quant === 'fp16') return 'float16';
  if (o.quant === 'bf16') return 'bfloat16';
  if (['int4', 'nf4', 'int8-weight'].includes(o.quant) && (o.activations ?? 'fp16') === 'fp16') return 'float16';
  return undefined;
}

export const cudaTarget: Target = {
  name: 'cuda',
  runtime: "onnxruntime's CUDA execution provider",
  quantModes: ['none', 'fp16', 'bf16', 'int8-weight', 'int4', 'nf4'],
  weightFormat: 'matmulnbits',
  // fp16/bf16 conversion comes after fusion: the fusions judge kernel types by the type it will be.
  beforeQuant: (o) => {
    const low = cudaLowType(o);
    const crashing = (o.fuse ?? []).filter((f) => CUDA_CRASHING_FUSIONS.has(f));
    if (crashing.length) o.log?.(`warning: --fuse ${crashing.join(',')} on cuda: onnxruntime 1.29's CUDA provider crashed (segmentation fault) running what this fusion writes on an H200; see bench/gpu/README.md`);
    return [fusionPass({ target: 'cuda', only: defaultFusions('cuda', o), ...(low ? { lowerFloatTo: low === 'float16' ? 'fp16' : 'bf16' } : {}) })];
  },
  afterQuant(o: LoweringOptions): Pass[] {
    const to = cudaLowType(o);
    if (!to) return [];
    let model: Model | undefined;
    const pass = precisionConversion({
      to,
      ioTypes: o.ioTypes === 'fp16' ? 'low' : 'float32',
      ...(o.overflowing ? { overflowing: o.overflowing } : {}),
      // Lowered only where the CUDA EP has a kernel for the node's low-precision types and ONNX's
      // schema admits them at the model's opset.
      supports: (node, typeOf) => cudaKernels().whyNot(model!, node, typeOf) === undefined && schemaWhyNot(model!, node, typeOf) === undefined,
    });
    // The table lookup needs the model's opsets: bind it when the pass runs.
    return [{ ...pass, run: (m, ctx) => ((model = m), pass.run(m, ctx)) }];
  },
  legality: (model) => cudaKernels().check(model),
  cpuEquivalent(model) {
    const rounded = emulateLowPrecision(model);
    return rounded ? { model, how: `float16/bfloat16 emulated on the CPU provider: float32 compute, ${rounded} low-precision values rounded after the op producing them` } : undefined;
  },
};

/**
 * Operator fusion for a target: the fusions of passes/fuse/, each a pattern + checks + rewrite,
 * applied by the engine (passes/fuse/engine.ts) in the order of FUSIONS, repeated until nothing
 * changes. A target applies only the fusions whose fused op its runtime implements (each fusion's
 * `targets`, from onnxruntime's OperatorKernels.md), and by default not those measured slower on
 * it (`slowerOn`: onnxruntime 1.30's CPU Skip*LayerNormalization kernels); `only` picks a named
 * list instead (`--fuse LIST`), which may include those.
 *
 * Precondition: the cleanup pipeline has run (shape inference in particular: most checks read
 * ranks and dims; without them fusions turn into near-misses, never into wrong rewrites).
 * The pass records every fusion applied (`applied`, accumulated over runs of this pass object)
 * and the near-misses of its latest run (`nearMisses`: the op skeleton matched, a check failed;
 * each with its reason; see engine.ts for which are kept), logs one line per application and per near-miss, and reports counts per
 * fusion in its details.
 */
import { PeftcError } from '../src/errors.js';
import { DataType } from '../src/ir/dtype.js';
import type { Model } from '../src/ir/model.js';
import { applyFusions, FUSION_TARGETS, type Fusion, type FusionApplied, type FusionTarget, type NearMiss } from './fuse/engine.js';
import { attention } from './fuse/attention.js';
import { biasGelu } from './fuse/bias-gelu.js';
import { convBatchNorm } from './fuse/conv-bn.js';
import { fastGelu } from './fuse/fast-gelu.js';
import { fusedMatMul } from './fuse/fused-matmul.js';
import { gelu } from './fuse/gelu.js';
import { layerNorm } from './fuse/layer-norm.js';
import { matmulAddGemm } from './fuse/matmul-add-gemm.js';
import { rmsNorm } from './fuse/rms-norm.js';
import { rotaryAttention } from './fuse/rotary-attention.js';
import { silu } from './fuse/silu.js';
import { skipLayerNorm } from './fuse/skip-layer-norm.js';
import { skipRmsNorm } from './fuse/skip-rms-norm.js';
import type { Pass, PassContext, PassResult } from './pass.js';

export type { Fusion, FusionApplied, FusionTarget, NearMiss } from './fuse/engine.js';
export { FUSION_TARGETS } from './fuse/engine.js';

/**
 * Every fusion, in the order they are tried: normalizations before the Add + norm fusions that
 * build on them, activations before their bias forms, attention before the MatMul-level fusions
 * whose ops it takes whole.
 */
export const FUSIONS: readonly Fusion[] = [
  convBatchNorm,
  layerNorm,
  rmsNorm,
  skipLayerNorm,
  skipRmsNorm,
  gelu,
  fastGelu,
  biasGelu,
  silu,
  attention,
  rotaryAttention,
  fusedMatMul,
  matmulAddGemm,
];

export interface FusionOptions {
  target: FusionTarget;
  /** Fusion names to apply (default: every fusion tagged for the target and not slower on it; [] = none). */
  only?: readonly string[];
  /**
   * The precision float32 values get later in the pipeline (cuda --quant fp16/bf16 lowers after
   * fusion): kernel type checks judge by it, so e.g. GroupQueryAttention (float16/bfloat16 only on
   * the CUDA EP) is fused in a graph that is still float32 here. Default: float32 stays.
   */
  lowerFloatTo?: 'fp16' | 'bf16';
}

export interface FusionPass extends Pass {
  /** Every fusion applied, over all runs of this pass object. */
  readonly applied: FusionApplied[];
  /** The near-misses of the latest run. */
  readonly nearMisses: NearMiss[];
}

/**
 * The fusions a target applies: by default every fusion tagged for it except those measured
 * slower there (`slowerOn`); with `only`, exactly the named ones. Refuses unknown names and names
 * the target cannot run.
 */
export function selectFusions(options: FusionOptions): Fusion[] {
  if (!FUSION_TARGETS.includes(options.target)) {
    throw new PeftcError(`fusion has no target '${options.target}' (targets: ${FUSION_TARGETS.join(', ')})`);
  }
  if (options.only) {
    const unknown = options.only.filter((n) => !FUSIONS.some((f) => f.name === n));
    if (unknown.length) throw new PeftcError(`unknown fusion${unknown.length > 1 ? 's' : ''} ${unknown.map((n) => `'${n}'`).join(', ')} (fusions: ${FUSIONS.map((f) => f.name).join(', ')})`);
    const elsewhere = FUSIONS.filter((f) => options.only!.includes(f.name) && !f.targets.includes(options.target));
    if (elsewhere.length) {
      throw new PeftcError(`fusion ${elsewhere.map((f) => `'${f.name}' (runs on ${f.targets.join(', ')})`).join(', ')} is not available for target ${options.target}`);
    }
  }
  return FUSIONS.filter((f) => f.targets.includes(options.target) && (options.only ? options.only.includes(f.name) : !f.slowerOn?.[options.target]));
}

export function fusionPass(options: FusionOptions): FusionPass {
  const fusions = selectFusions(options);
  const applied: FusionApplied[] = [];
  const nearMisses: NearMiss[] = [];
  return {
    name: 'fusion',
    description: `operator fusion for ${options.target} (${fusions.map((f) => f.name).join(', ') || 'none selected'})`,
    applied,
    nearMisses,
    run(model: Model, ctx: PassContext): PassResult {
      const floatAs = options.lowerFloatTo === 'fp16' ? DataType.FLOAT16 : options.lowerFloatTo === 'bf16' ? DataType.BFLOAT16 : DataType.FLOAT;
      const result = applyFusions(model, fusions, { target: options.target, floatAs, log: ctx.log });
      applied.push(...result.applied);
      nearMisses.splice(0, nearMisses.length, ...result.nearMisses);
      for (const n of result.nearMisses) ctx.log(`near-miss ${n.fusion} at ${n.at}: ${n.reason}`);
      const details: Record<string, number | string> = { applied: result.applied.length, nearMisses: result.nearMisses.length, rounds: result.rounds };
      const counts = new Map<string, number>();
      for (const a of result.applied) counts.set(a.fusion, (counts.get(a.fusion) ?? 0) + 1);
      for (const [name, n] of counts) details[`fused:${name}`] = n;
      const misses = new Map<string, number>();
      for (const n of result.nearMisses) misses.set(n.fusion, (misses.get(n.fusion) ?? 0) + 1);
      for (const [name, n] of misses) details[`near-miss:${name}`] = n;
      return { changed: result.applied.length > 0, details };
    },
  };
}

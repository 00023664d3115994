/**
 * tfjs: TensorFlow.js graph models (model.json + 4 MiB weight shards) that tfjs-converter's
 * loadGraphModel runs in browsers and Node on any TF.js backend (CPU, WebAssembly, WebGL, WebGPU).
 *
 * - Lowering: the op table in ops.ts turns each ONNX node into the TF ops tfjs-converter 4.22
 *   executes; convolutions, pooling and BatchNormalization run in NHWC with the layout changed
 *   once where values enter or leave that region (lower.ts); shapes are static (`--shape` for
 *   models with symbolic inputs).
 * - Legality: nodes the table cannot lower are named with the reason and the whole compile is
 *   refused (TF.js has no fallback runtime), see legality.ts.
 * - `--quant none|fp16|uint8|uint16`: weight storage in the manifest forms TF.js dequantizes on
 *   load (weights.ts); compute is float32 in every case.
 * - Verified here by running the artifact with tfjs-converter on tfjs-core's CPU backend
 *   (runner.ts), the same ModelRunner contract onnxruntime sessions have.
 */
import type { QuantModeName, Target, WriteContext } from '../target.js';
import { checkTfjs } from './legality.js';
import { writeTfjsArtifact } from './artifact.js';
import { TFJS_WEIGHT_QUANTS, type TfjsWeightQuant } from './weights.js';

/** The quant modes of this target: uint8/uint16 are TF.js's own affine weight forms. */
export const TFJS_QUANT_MODES: readonly QuantModeName[] = TFJS_WEIGHT_QUANTS;

function quantOf(context: WriteContext): TfjsWeightQuant {
  const q = String(context.options.quant ?? 'none');
  if (!(TFJS_WEIGHT_QUANTS as readonly string[]).includes(q)) throw new Error(`internal: --quant ${q} reached the tfjs writer`);
  return q as TfjsWeightQuant;
}

export const tfjsTarget: Target = {
  name: 'tfjs',
  runtime: 'TF.js (tfjs-converter graph models)',
  quantModes: TFJS_QUANT_MODES,
  // Weight-only MatMulNBits/QDQ modes are not offered on this target; TF.js quantizes in its manifest.
  weightFormat: 'qdq',
  beforeQuant: () => [],
  afterQuant: () => [],
  legality: checkTfjs,
  writesFolder: true,
  /** Nodes the legality check lists cannot run anywhere: the write refuses them. */
  fallsBack: false,
  write: (model, output, context) => writeTfjsArtifact(model, output, { quant: quantOf(context), source: context.source, ...(context.log ? { log: context.log } : {}) }),
  // imported on use: tfjs-core is only needed to run an artifact, not to compile one
  openArtifact: async (path) => (await import('./runner.js')).openTfjsArtifact(path, 'cpu'),
};

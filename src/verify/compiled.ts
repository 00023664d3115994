/**
 * `compile --verify`: checks the artifact just written against what it was compiled from, with
 * the default tolerance of its quantization mode (src/verify/tolerance.ts) unless one is given.
 * With `--lora`, the source model alone computes something else on purpose, so the reference is
 * the source with only the adapters merged (written to a temporary folder): what is verified is
 * everything compile did after the merge; the merge itself is checked against PEFT in the tests.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mergeAdapters } from '../../passes/lora-adapter-merge.js';
import { runPipeline } from '../../passes/pass.js';
import type { CompileResult } from '../compile.js';
import { loadModel, saveModel } from '../onnx/io.js';
import { loadAdapter } from '../peft/adapter.js';
import { defaultTolerance } from './tolerance.js';
import { verifyModels, type VerifyOptions, type VerifyReport } from './verify.js';

/**
 * Sizes of the source's symbolic dimensions that the compile fixed (--shape): generated inputs
 * must have them, or an artifact with static shapes (xla, tfjs) refuses them.
 */
function fixedDims(result: CompileResult): Record<string, number> {
  const dims: Record<string, number> = {};
  for (const input of result.before.inputs) {
    const after = result.after.inputs.find((i) => i.name === input.name)?.shape;
    input.shape?.forEach((d, i) => {
      const fixed = after?.[i];
      if (typeof d === 'string' && typeof fixed === 'number') dims[d] = fixed;
    });
  }
  return dims;
}

export async function verifyCompiled(result: CompileResult, lora: ReadonlyArray<{ dir: string; weight: number }>, options: VerifyOptions = {}): Promise<VerifyReport> {
  const tolerance = options.tolerance ?? defaultTolerance(result.quant);
  options = { ...options, dims: { ...fixedDims(result), ...options.dims } };
  if (!lora.length) return verifyModels(result.input, result.output, { ...options, tolerance, target: result.target });
  const tmp = mkdtempSync(join(tmpdir(), 'peftc-verify-'));
  try {
    const model = loadModel(result.input);
    runPipeline(model, [mergeAdapters(lora.map(({ dir, weight }) => loadAdapter(dir, weight)))]);
    const reference = join(tmp, 'merged.onnx');
    saveModel(model, reference, { durable: false });
    options.log?.(`verify: reference is ${result.input} with the adapters merged and nothing else`);
    const report = await verifyModels(reference, result.output, { ...options, tolerance, target: result.target });
    return { ...report, reference: `${result.input} + adapters` };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

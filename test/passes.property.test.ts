/**
 * Property: every cleanup pass, and the whole pipeline, keeps a model's outputs. Random
 * computable graphs (test/arbitrary-graph.ts: elementwise and shape ops, constant subexpressions,
 * shape arithmetic, fp16 round trips, duplicated computations) are run on onnxruntime before and
 * after; outputs must agree within atol 1e-5 + rtol 1e-5 (constant folding computes in our
 * kernels, whose transcendental functions may differ from onnxruntime's in the last bits), and
 * the IR invariants must hold after every pass.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeModel } from '../src/onnx/decode.js';
import { encodeModel } from '../src/onnx/encode.js';
import { runModel } from '../src/runtime/ort.js';
import { compareTensors } from '../src/runtime/compare.js';
import { runPipeline, type Pass } from '../passes/pass.js';
import { cleanupPipeline } from '../passes/pipelines.js';
import { buildRecipe, graphRecipe, recipeFeeds } from './arbitrary-graph.js';

const TOL = { rtol: 1e-5, atol: 1e-5 };

async function checkPreserves(passes: Pass[], runs: number, stats: { nodesBefore: number; nodesAfter: number }) {
  await fc.assert(
    fc.asyncProperty(graphRecipe, async (recipe) => {
      const original = buildRecipe(recipe);
      const bytes = encodeModel(original);
      const feeds = recipeFeeds(recipe);
      const expected = await runModel(bytes, feeds);
      const model = decodeModel(bytes);
      const before = model.graph.nodes.length;
      runPipeline(model, passes, { fixpoint: true, check: true });
      stats.nodesBefore += before;
      stats.nodesAfter += model.graph.nodes.length;
      const actual = await runModel(model, feeds);
      for (const [name, e] of Object.entries(expected)) {
        const c = compareTensors(e, actual[name]!, TOL);
        if (!c.ok) throw new Error(`output '${name}': ${c.reason}`);
      }
    }),
    { numRuns: runs },
  );
}

describe('cleanup passes preserve outputs on random graphs (onnxruntime before vs after)', () => {
  const pipeline = cleanupPipeline();
  for (const pass of pipeline) {
    it(`pass ${pass.name}`, async () => {
      const stats = { nodesBefore: 0, nodesAfter: 0 };
      await checkPreserves([pass], 40, stats);
      expect(stats.nodesAfter).toBeLessThanOrEqual(stats.nodesBefore);
    });
  }
  it('the whole pipeline to a fixpoint, and it shrinks the graphs', async () => {
    const stats = { nodesBefore: 0, nodesAfter: 0 };
    await checkPreserves(pipeline, 80, stats);
    console.log(`cleanup pipeline on 80 random graphs: ${stats.nodesBefore} -> ${stats.nodesAfter} nodes`);
    expect(stats.nodesAfter).toBeLessThan(stats.nodesBefore);
  });
});

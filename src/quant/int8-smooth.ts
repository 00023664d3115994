/**
 * SmoothQuant support for static INT8: which activations to smooth (the inputs of quantized
 * MatMul/Gemm nodes with constant weights, grouped by activation), and the search for alpha: each
 * candidate is applied to a copy of the model, calibrated on the first runs of the data and
 * measured with the fake-quant simulation (src/quant/int8-sensitivity.ts) against the float
 * model's outputs; the alpha with the least output error wins (no smoothing is measured too, and
 * wins when nothing helps).
 */
import type { Model } from '../ir/model.js';
import { decodeModel } from '../onnx/decode.js';
import { encodeModel } from '../onnx/encode.js';
import type { InputData } from '../runtime/input-data.js';
import { runPipeline } from '../../passes/pass.js';
import { smoothQuant, type SmoothTarget } from '../../passes/smooth-quant.js';
import { collectStatistics } from '../calibration/collect.js';
import type { CalibMethod } from '../calibration/methods.js';
import type { Graph, Node } from '../ir/graph.js';
import type { Int8Type } from './int8-math.js';
import { planInt8, type PlanOptions } from './int8-plan.js';
import { boundedOutputs, parameters } from './int8.js';
import { SensitivityModel } from './int8-sensitivity.js';

export const DEFAULT_ALPHAS = [0.3, 0.4, 0.5, 0.6, 0.7, 0.8];

export function smoothingTargets(g: Graph, planOptions: PlanOptions): SmoothTarget[] {
  const plan = planInt8(g, planOptions);
  const groups = new Map<string, SmoothTarget>();
  for (const u of plan.units) {
    const n = u.node;
    if (!u.weight || (n.opType !== 'MatMul' && n.opType !== 'Gemm')) continue;
    const t = n.inputs[1]!.initializer!;
    if (t.dims.length !== 2) continue;
    const k = n.opType === 'Gemm' && n.attrInt('transB', 0) ? t.dims[1]! : t.dims[0]!;
    const x = n.inputs[0]!.name;
    const grp = groups.get(x) ?? { activation: x, channels: k, nodes: [] };
    if (grp.channels !== k) continue;
    grp.nodes.push(n.name);
    groups.set(x, grp);
  }
  return [...groups.values()];
}

export interface SmoothQuantSearch {
  /** Relative output error (fake-quant simulation) per alpha; 'none' is no smoothing. */
  errors: Array<{ alpha: number | 'none'; error: number }>;
  best: number;
  /** Whether no smoothing measured better than every alpha (the best alpha is applied anyway when asked). */
  noneWasBetter: boolean;
  runs: number;
}

export async function searchSmoothQuant(
  model: Model,
  data: InputData,
  maxima: ReadonlyMap<string, Float32Array>,
  o: { method: CalibMethod; activationType: Int8Type; errorRuns: number; planOptions: PlanOptions; alphas?: readonly number[]; log?: (m: string) => void; progress?: boolean; bins?: number },
): Promise<SmoothQuantSearch> {
  const reference = await SensitivityModel.referenceOutputs(model, data, o.errorRuns);
  const measure = async (alpha: number | undefined): Promise<number> => {
    const copy = decodeModel(encodeModel(model));
    if (alpha !== undefined) runPipeline(copy, [smoothQuant({ maxima, alpha, targets: smoothingTargets(copy.graph, withExclude(o.planOptions, copy.graph, model.graph)) })]);
    const planOf = (exclude: (n: Node) => boolean): PlanOptions => ({ ...withExclude(o.planOptions, copy.graph, model.graph), exclude: (n) => exclude(n) || excludedByName(o.planOptions, model.graph, n.name) });
    const values = [...planInt8(copy.graph, planOf(() => false)).tensors.keys()];
    const { calibrationValues } = await import('./int8-plan.js');
    const all = new Set([...values, ...calibrationValues(copy.graph, planOf(() => false))]);
    const stats = await collectStatistics(copy, data, [...all].map((name) => ({ name })), { maxRuns: o.errorRuns, progress: false, label: `smoothquant alpha ${alpha ?? 'none'}`, ...(o.bins ? { bins: o.bins } : {}) });
    const { params } = parameters(stats, { method: o.method, activationType: o.activationType, bounded: boundedOutputs(copy) });
    const sim = await SensitivityModel.create(copy, data, params, planOf, { runs: o.errorRuns, activationType: o.activationType, reference });
    try {
      return await sim.error(new Set());
    } finally {
      await sim.release();
    }
  };
  const errors: SmoothQuantSearch['errors'] = [];
  const none = await measure(undefined);
  errors.push({ alpha: 'none', error: none });
  o.log?.(`smoothquant search: no smoothing: relative error ${none.toExponential(3)}`);
  let best = NaN;
  let bestErr = Infinity;
  for (const alpha of o.alphas ?? DEFAULT_ALPHAS) {
    const e = await measure(alpha);
    errors.push({ alpha, error: e });
    o.log?.(`smoothquant search: alpha ${alpha}: relative error ${e.toExponential(3)}`);
    if (e < bestErr) {
      bestErr = e;
      best = alpha;
    }
  }
  o.log?.(`smoothquant search: alpha ${best} (error ${bestErr.toExponential(3)}, ${none.toExponential(3)} without smoothing) on ${reference.runs} run(s)`);
  return { errors, best, noneWasBetter: none < bestErr, runs: reference.runs };
}

/** The caller's plan options with node exclusion resolved by name (the copy's nodes are other objects). */
function withExclude(p: PlanOptions, _copy: Graph, original: Graph): PlanOptions {
  return { ...p, exclude: (n) => excludedByName(p, original, n.name) };
}

function excludedByName(p: PlanOptions, original: Graph, name: string): boolean {
  if (!p.exclude) return false;
  const n = original.nodes.find((x) => x.name === name);
  return n ? p.exclude(n) : false;
}

/**
 * Per-node error attribution for static INT8, and mixed precision under an error budget.
 *
 * A copy of the model carries, for every activation a plan may quantize and every weight a unit
 * may quantize, a fake-quantized alternative (QuantizeLinear -> DequantizeLinear with the
 * calibrated parameters, or the int8 weight dequantized) behind a switch:
 *
 *     T' = Where(switches[i], DequantizeLinear(QuantizeLinear(T)), T)
 *
 * `switches` is one bool vector input, so a single onnxruntime session measures any mix of
 * quantized and float nodes: the switches of a configuration are exactly the activations and
 * weights its plan (src/quant/int8-plan.ts) quantizes. A pass-through output that shares its
 * input's parameters is not switched (its values are already on the input's grid). The error of a
 * configuration is the relative L2 error ||c - r|| / ||r|| over every float output, accumulated
 * over the first runs of the calibration data (the same figure verify reports as "rel"), against
 * the float model's outputs on the same runs.
 *
 * The simulation computes in float what onnxruntime's integer kernels compute exactly in int32
 * (the same quantization grid), so its figures match the artifact's closely, not bit for bit: the
 * final artifact is verified on its own.
 */
import { freshNodeName } from './int8-plan.js';
import { DataType } from '../ir/dtype.js';
import type { Node, Value } from '../ir/graph.js';
import type { Model } from '../ir/model.js';
import { Tensor } from '../ir/tensor.js';
import { tensorType } from '../ir/types.js';
import { decodeModel } from '../onnx/decode.js';
import { encodeModel } from '../onnx/encode.js';
import { progress } from '../progress.js';
import type { InputData } from '../runtime/input-data.js';
import { OrtSession } from '../runtime/ort.js';
import { ErrorAccumulator } from '../verify/metrics.js';
import { quantizeWeightSymmetric, type Int8Type, type QuantParams } from './int8-math.js';
import { calibrationValues, planInt8, type Int8Plan, type PlanOptions } from './int8-plan.js';
import { availableParallelism } from 'node:os';

export interface QdqSensitivity {
  /** The activation (parameter source) or weight the QDQ pair quantizes. */
  tensor: string;
  kind: 'activation' | 'weight';
  /** The nodes that quantize it in the full plan (its producer and readers). */
  nodes: string[];
  /** Relative output error with only this pair quantized. */
  alone: number;
}

interface SwitchInfo {
  index: number;
  kind: 'activation' | 'weight';
  /** Activation name, or weight key (value and axis). */
  key: string;
  name: string;
}

export interface ReferenceOutputs {
  runs: number;
  outputs: Array<Record<string, Tensor>>;
}

const SWITCHES = 'peftc_int8_switches';

export class SensitivityModel {
  private constructor(
    private readonly model: Model,
    private readonly session: OrtSession,
    private readonly data: InputData,
    private readonly reference: ReferenceOutputs,
    /** Switch index of each activation (own parameters) and each (weight, axis). */
    private readonly activationSwitch: Map<string, number>,
    private readonly weightSwitch: Map<string, number>,
    private readonly switchCount: number,
    private readonly planOptions: (exclude: (n: Node) => boolean) => PlanOptions,
  ) {}

  /** The float model's outputs on the first `runs` runs (float outputs only). */
  static async referenceOutputs(model: Model, data: InputData, runs: number): Promise<ReferenceOutputs> {
    const n = Math.min(runs, data.runs);
    const s = await OrtSession.create(model, { intraOpThreads: availableParallelism(), label: 'the float model (reference outputs)' });
    try {
      const outputs: Array<Record<string, Tensor>> = [];
      const names = model.graph.outputs.filter((v) => v.type?.kind === 'tensor' && (v.type.elemType === DataType.FLOAT || v.type.elemType === DataType.FLOAT16)).map((v) => v.name);
      for (let r = 0; r < n; r++) outputs.push(await s.run(data.feed(r), names));
      return { runs: n, outputs };
    } finally {
      await s.release();
    }
  }

  /** Relative L2 error of `model` (as it is) against reference outputs. */
  static async errorOf(model: Model, data: InputData, reference: ReferenceOutputs): Promise<number> {
    const s = await OrtSession.create(model, { intraOpThreads: availableParallelism(), label: 'the quantized model' });
    try {
      const acc = new ErrorAccumulator();
      for (let r = 0; r < reference.runs; r++) {
        const names = Object.keys(reference.outputs[r]!);
        const out = await s.run(data.feed(r), names);
        for (const name of names) acc.add(reference.outputs[r]![name]!, out[name]!);
      }
      return acc.stats().relErr;
    } finally {
      await s.release();
    }
  }

  /**
   * Builds the switchable copy of `model` for the activations and weights of every plan
   * `planOptions` can make (the full plan with nothing excluded), with `params` per activation.
   */
  static async create(
    model: Model,
    data: InputData,
    params: ReadonlyMap<string, QuantParams>,
    planOptions: (exclude: (n: Node) => boolean) => PlanOptions,
    options: { runs: number; log?: (m: string) => void; activationType: Int8Type; reference?: ReferenceOutputs },
  ): Promise<SensitivityModel> {
    const reference = options.reference ?? (await SensitivityModel.referenceOutputs(model, data, options.runs));
    const full = planInt8(model.graph, planOptions(() => false));
    const values = calibrationValues(model.graph, planOptions(() => false));
    const copy = decodeModel(encodeModel(model));
    const g = copy.graph;
    const flags = g.createValue(g.uniqueName(SWITCHES));
    g.inputs.push(flags);
    let count = 0;
    const activationSwitch = new Map<string, number>();
    const weightSwitch = new Map<string, number>();
    const weightAlt = new Map<string, Value>();
    const switchOf = (t: Value, alternative: Value, index: number, readers: Node[]) => {
      const idx = g.addInitializer(Tensor.fromTypedArray(g.uniqueName(`${t.name}_switch_index`), DataType.INT64, [], BigInt64Array.of(BigInt(index))));
      const first = g.nodes.find((n) => readers.includes(n))!;
      const cond = g.addNode('Gather', [flags, idx], [g.uniqueName(`${t.name}_switch`)], { before: first, name: freshNodeName(g, `${t.name}_switch_Gather`) });
      cond.outputs[0]!.type = tensorType(DataType.BOOL, []);
      const sel = g.addNode('Where', [cond.outputs[0]!, alternative, t], [g.uniqueName(`${t.name}_switched`)], { before: first, name: freshNodeName(g, `${t.name}_switch_Where`) });
      sel.outputs[0]!.type = t.type;
      for (const n of readers) n.inputs.forEach((v, i) => v === t && n.setInput(i, sel.outputs[0]!));
    };
    for (const name of values) {
      const t = g.localValue(name);
      const p = params.get(name);
      if (!t || !p || !t.uses.length) continue;
      const readers = [...new Set(t.uses.map((u) => u.node))];
      const zpType = p.type === 'uint8' ? DataType.UINT8 : DataType.INT8;
      const s = g.addInitializer(Tensor.fromTypedArray(g.uniqueName(`${name}_sim_scale`), DataType.FLOAT, [], Float32Array.of(p.scale)));
      const z = g.addInitializer(zpType === DataType.UINT8 ? Tensor.fromTypedArray(g.uniqueName(`${name}_sim_zp`), zpType, [], Uint8Array.of(p.zeroPoint)) : Tensor.fromTypedArray(g.uniqueName(`${name}_sim_zp`), zpType, [], Int8Array.of(p.zeroPoint)));
      const first = g.nodes.find((n) => readers.includes(n))!;
      const q = g.addNode('QuantizeLinear', [t, s, z], [g.uniqueName(`${name}_sim_q`)], { before: first, name: freshNodeName(g, `${name}_sim_Q`) });
      const dq = g.addNode('DequantizeLinear', [q.outputs[0]!, s, z], [g.uniqueName(`${name}_sim_dq`)], { before: first, name: freshNodeName(g, `${name}_sim_DQ`) });
      dq.outputs[0]!.type = t.type;
      activationSwitch.set(name, count);
      switchOf(t, dq.outputs[0]!, count++, readers);
    }
    for (const u of full.units) {
      if (!u.weight) continue;
      const key = `${u.weight.value}\u0000${u.weight.axis ?? 'tensor'}`;
      const node = g.nodes.find((n) => n.name === u.node.name && n.opType === u.node.opType);
      const w = g.localValue(u.weight.value);
      if (!node || !w?.initializer) continue;
      let index = weightSwitch.get(key);
      if (index === undefined) {
        const t = w.initializer;
        const q = quantizeWeightSymmetric(t.toTypedArray<Float32Array>(), t.dims, u.weight.axis);
        const deq = new Float32Array(q.data.length);
        const inner = u.weight.axis === undefined ? deq.length : t.dims.slice(u.weight.axis + 1).reduce((a, b) => a * b, 1);
        const channels = q.scales.length;
        for (let i = 0; i < deq.length; i++) deq[i] = Math.fround(q.data[i]! * q.scales[u.weight.axis === undefined ? 0 : Math.floor(i / inner) % channels]!);
        const alt = g.addInitializer(Tensor.fromTypedArray(g.uniqueName(`${w.name}_sim_int8`), DataType.FLOAT, [...t.dims], deq));
        index = count++;
        weightSwitch.set(key, index);
        weightAlt.set(key, alt);
        switchOf(w, alt, index, [node]);
      } else {
        // The same weight for another unit: its own switch node reading the same alternative.
        switchOf(w, weightAlt.get(key)!, index, [node]);
      }
    }
    flags.type = tensorType(DataType.BOOL, [count]);
    options.log?.(`int8 sensitivity: ${activationSwitch.size} activation and ${weightSwitch.size} weight switch(es) over ${reference.runs} calibration run(s)`);
    const session = await OrtSession.create(copy, { intraOpThreads: availableParallelism(), graphOptimization: 'basic', label: 'the fake-quantized model (sensitivity)' });
    return new SensitivityModel(model, session, data, reference, activationSwitch, weightSwitch, count, planOptions);
  }

  /** The switches of a plan: activations with their own parameters, and unit weights. */
  switchesOf(plan: Int8Plan): Uint8Array {
    const on = new Uint8Array(this.switchCount);
    for (const [name, source] of plan.tensors) {
      if (name !== source) continue;
      const i = this.activationSwitch.get(name);
      if (i !== undefined) on[i] = 1;
    }
    for (const u of plan.units) {
      if (!u.weight) continue;
      const i = this.weightSwitch.get(`${u.weight.value}\u0000${u.weight.axis ?? 'tensor'}`);
      if (i !== undefined) on[i] = 1;
    }
    return on;
  }

  /** Every switch: its index, kind and what it quantizes. */
  switchList(): SwitchInfo[] {
    const out: SwitchInfo[] = [];
    for (const [name, index] of this.activationSwitch) out.push({ index, kind: 'activation', key: name, name });
    for (const [key, index] of this.weightSwitch) out.push({ index, kind: 'weight', key, name: key.split('\u0000')[0]! });
    return out.sort((x, y) => x.index - y.index);
  }

  /** Relative L2 output error with the given switches on. */
  async errorOfSwitches(on: Uint8Array): Promise<number> {
    const acc = new ErrorAccumulator();
    const flags = Tensor.fromTypedArray(SWITCHES, DataType.BOOL, [on.length], on);
    for (let r = 0; r < this.reference.runs; r++) {
      const names = Object.keys(this.reference.outputs[r]!);
      const feed = { ...this.data.feed(r), [this.session.inputNames.find((n) => n.startsWith(SWITCHES))!]: flags };
      const out = await this.session.run(feed, names);
      for (const name of names) acc.add(this.reference.outputs[r]![name]!, out[name]!);
    }
    return acc.stats().relErr;
  }

  /** Relative L2 output error of the plan that keeps `excluded` nodes float. */
  async error(excluded: ReadonlySet<string>): Promise<number> {
    return this.errorOfSwitches(this.switchesOf(this.plan(excluded)));
  }

  plan(excluded: ReadonlySet<string>): Int8Plan {
    return planInt8(this.model.graph, this.planOptions((n) => excluded.has(n.name)));
  }

  get runs(): number {
    return this.reference.runs;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

/** The nodes that quantize a switch's tensor in `plan`: its producer unit and its reader units (or a weight's units). */
function nodesOfSwitch(plan: Int8Plan, sw: SwitchInfo): string[] {
  const out = new Set<string>();
  for (const u of plan.units) {
    if (sw.kind === 'weight') {
      if (u.weight && `${u.weight.value}\u0000${u.weight.axis ?? 'tensor'}` === sw.key) out.add(u.node.name);
      continue;
    }
    const src = (v: string) => plan.tensors.get(v) ?? v;
    if (u.inputs.some((i) => src(i.value) === sw.key) || (u.quantizedOutput && src(u.result) === sw.key)) out.add(u.node.name);
  }
  // Pass-through ops carrying the pair's parameters on (they would keep quantizing it).
  if (sw.kind === 'activation') for (const p of plan.passThrough) if ((plan.tensors.get(p.output) ?? p.output) === sw.key) out.add(p.node.name);
  return [...out];
}

/**
 * The error each QDQ pair introduces: every activation pair (and every int8 weight) of the full
 * plan switched on alone, the rest float. Sorted worst first.
 */
export async function measureSensitivity(sim: SensitivityModel, full: Int8Plan, options: { log?: (m: string) => void; progress?: boolean } = {}): Promise<QdqSensitivity[]> {
  const all = sim.switchesOf(full);
  const switches = sim.switchList().filter((sw) => all[sw.index]);
  const out: QdqSensitivity[] = [];
  const bar = progress('int8 sensitivity', switches.length, { enabled: options.progress ?? true });
  try {
    for (const sw of switches) {
      const on = new Uint8Array(all.length);
      on[sw.index] = 1;
      out.push({ tensor: sw.name, kind: sw.kind, nodes: nodesOfSwitch(full, sw), alone: await sim.errorOfSwitches(on) });
      bar.update(out.length, sw.name);
    }
  } finally {
    bar.done();
  }
  out.sort((a, b) => b.alone - a.alone);
  const top = out.slice(0, 5).map((x) => `${x.tensor} ${x.alone.toExponential(2)}`).join(', ');
  options.log?.(`int8 sensitivity: ${out.length} QDQ pair(s) measured alone on ${sim.runs} run(s); worst: ${top}`);
  return out;
}

export interface KeptFloat {
  /** The QDQ pair whose removal this step aimed at, and the nodes kept float for it. */
  tensor: string;
  nodes: Array<{ node: string; op: string }>;
  errorBefore: number;
  errorAfter: number;
}

/**
 * Keeps nodes float until the error of the whole plan is at most `budget`: the QDQ pairs in order
 * of their error alone, each taking the nodes that quantize it (its producer and readers, or a
 * weight's nodes) out of the plan. A step that does not lower the error is undone (it would cost
 * int8 speed for nothing).
 */
export async function greedyMaxError(
  sim: SensitivityModel,
  full: Int8Plan,
  sensitivity: readonly QdqSensitivity[],
  budget: number,
  options: { log?: (m: string) => void; maxSteps?: number } = {},
): Promise<{ kept: KeptFloat[]; excluded: Set<string>; error: number }> {
  const excluded = new Set<string>();
  let error = await sim.error(excluded);
  options.log?.(`int8 --max-error ${budget}: all ${full.units.length} node(s) quantized: relative error ${error.toExponential(3)}`);
  const kept: KeptFloat[] = [];
  const ops = new Map([...full.units.map((u) => [u.node.name, u.node.opType] as const), ...full.passThrough.map((p) => [p.node.name, p.node.opType] as const)]);
  let steps = 0;
  for (const s of sensitivity) {
    if (error <= budget || steps >= (options.maxSteps ?? Infinity)) break;
    const plan = sim.plan(excluded);
    const info = sim.switchList().find((x) => x.name === s.tensor && x.kind === s.kind)!;
    const nodes = nodesOfSwitch(plan, info).filter((n) => !excluded.has(n));
    if (!nodes.length) continue;
    steps++;
    for (const n of nodes) excluded.add(n);
    const next = await sim.error(excluded);
    if (next < error) {
      kept.push({ tensor: s.tensor, nodes: nodes.map((node) => ({ node, op: ops.get(node) ?? '' })), errorBefore: error, errorAfter: next });
      options.log?.(`int8 --max-error: keeping ${nodes.map((n) => `'${n}'`).join(', ')} float (for '${s.tensor}'): error ${error.toExponential(3)} -> ${next.toExponential(3)}`);
      error = next;
    } else for (const n of nodes) excluded.delete(n);
  }
  if (error > budget) options.log?.(`int8 --max-error ${budget}: not met (error ${error.toExponential(3)} with ${excluded.size} node(s) float)`);
  return { kept, excluded, error };
}

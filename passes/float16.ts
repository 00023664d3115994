/**
 * Mixed precision: float32 compute lowered to float16 or bfloat16, float32 kept where precision
 * or the runtime needs it.
 *
 * Each node that touches float32 values is put in one of three classes, in topological order:
 * - kept in float32: ops on the block list (numerically sensitive: Softmax, reductions that sum,
 *   Pow/Exp/Log, Range, CumSum), ops the target has no low-precision kernel for (`supports`),
 *   nodes with subgraphs, and nodes reading or writing a value observed to overflow float16
 *   (`overflowing`, from calibration);
 * - lowered: compute ops; Cast/ConstantOfShape/Constant producing float32 are retargeted;
 * - following: data-movement ops (Reshape, Transpose, Gather, Concat, Slice...) take the precision
 *   of their float inputs, so no Cast pair is spent around a reshape.
 * Then a Cast is inserted only where a value crosses between classes (one per value and
 * direction, shared by every consumer), Cast(low -> float32) -> Cast(float32 -> low) chains left
 * by the model's own Casts are cancelled, initializers read by lowered nodes are converted (float16:
 * values beyond +-65504 clamped and counted), and graph inputs/outputs stay float32 unless
 * `ioTypes: 'low'` (outputs keep their names: the lowered value is renamed and a Cast writes the
 * original name).
 *
 * Normalizations (LayerNormalization and its contrib forms) are lowered: onnxruntime computes
 * their statistics in float32 internally, and their mean/inv-std outputs stay float32 (type U).
 */
import { PeftcError } from '../src/errors.js';
import { DataType, float32ToBfloat16Bits, float32ToFloat16Bits, float16BitsToFloat32, bfloat16BitsToFloat32 } from '../src/ir/dtype.js';
import type { Graph, Node, Value } from '../src/ir/graph.js';
import type { Model } from '../src/ir/model.js';
import { Tensor } from '../src/ir/tensor.js';
import type { TypeInfo } from '../src/ir/types.js';
import type { Pass, PassContext, PassResult } from './pass.js';
import { shapeInference, topologicalOrder } from './shape-inference.js';

export type LowType = 'float16' | 'bfloat16';

/** Numerically sensitive ops kept in float32 by default. */
export const PRECISION_BLOCK_LIST: ReadonlySet<string> = new Set([
  'Softmax',
  'LogSoftmax',
  'ReduceMean',
  'ReduceSum',
  'ReduceSumSquare',
  'ReduceL1',
  'ReduceL2',
  'ReduceLogSum',
  'ReduceLogSumExp',
  'ReduceProd',
  'Pow',
  'Exp',
  'Log',
  'CumSum',
  'Range',
  'RandomNormal',
  'RandomUniform',
  'RandomNormalLike',
  'RandomUniformLike',
  'EyeLike',
]);

/** Ops that move data without arithmetic: they follow their inputs' precision. */
const FOLLOWERS: ReadonlySet<string> = new Set([
  'Reshape',
  'Transpose',
  'Squeeze',
  'Unsqueeze',
  'Flatten',
  'Slice',
  'Gather',
  'GatherElements',
  'GatherND',
  'Concat',
  'Split',
  'Expand',
  'Identity',
  'Tile',
  'Where',
  'Pad',
  'DepthToSpace',
  'SpaceToDepth',
]);

/** Ops that read any element type and whose float inputs need no conversion (Shape of a float16 value is the same). */
const ANY_TYPE: ReadonlySet<string> = new Set(['Shape', 'Size']);

/** Float inputs that keep float32 whatever the node's precision (literal tensor(float) in the schema). */
const FLOAT32_INPUTS: Readonly<Record<string, readonly number[]>> = {
  Resize: [1, 2],
  Upsample: [1],
};

/** Float outputs that stay float32 (the U statistics of normalizations). */
const FLOAT32_OUTPUTS: Readonly<Record<string, readonly number[]>> = {
  LayerNormalization: [1, 2],
  'com.microsoft::LayerNormalization': [1, 2],
  'com.microsoft::SimplifiedLayerNormalization': [1],
  SimplifiedLayerNormalization: [1],
  'com.microsoft::SkipLayerNormalization': [1, 2],
  'com.microsoft::SkipSimplifiedLayerNormalization': [1, 2],
};

export interface PrecisionOptions {
  to: LowType;
  /** Ops kept in float32 (default PRECISION_BLOCK_LIST). */
  blockList?: ReadonlySet<string>;
  /**
   * Whether the target runs this node with the element types `typeOf` gives its inputs and
   * outputs once lowered (default: yes).
   */
  supports?: (node: Node, typeOf: (v: Value) => number | undefined) => boolean;
  /** Values seen to overflow float16 (calibration): their producers and consumers stay float32. */
  overflowing?: ReadonlySet<string>;
  /** Graph inputs/outputs in float32 (default) or in the low type. */
  ioTypes?: 'float32' | 'low';
}

export interface PrecisionReport {
  lowered: number;
  kept: number;
  /** Kept nodes with the reason, for the report (first 200). */
  keptNodes: Array<{ node: string; op: string; reason: string }>;
  castsInserted: number;
  castPairsCancelled: number;
  initializersConverted: number;
  /** Initializer elements beyond float16's range, clamped to +-65504. */
  clampedElements: number;
}

type Cls = 'low' | 'f32' | 'none';

/** A value's element type: its declared type, or for an initializer its tensor's. */
export const elemTypeOf = (v: Value): number | undefined => (v.type?.kind === 'tensor' ? v.type.elemType : v.initializer?.dtype);
const isFloat32 = (v: Value | null | undefined): v is Value => !!v && elemTypeOf(v) === DataType.FLOAT;

export function precisionConversion(options: PrecisionOptions): Pass & { report: PrecisionReport } {
  const report: PrecisionReport = { lowered: 0, kept: 0, keptNodes: [], castsInserted: 0, castPairsCancelled: 0, initializersConverted: 0, clampedElements: 0 };
  return {
    name: `precision-${options.to}`,
    description: `lower float32 compute to ${options.to}, keeping float32 where precision or the runtime needs it`,
    report,
    run(model: Model, ctx: PassContext): PassResult {
      const g = model.graph;
      // Classification reads element types: make sure every value has one.
      shapeInference.run(model, ctx);
      const low = options.to === 'float16' ? DataType.FLOAT16 : DataType.BFLOAT16;
      const block = options.blockList ?? PRECISION_BLOCK_LIST;
      const overflowing = options.overflowing ?? new Set<string>();
      const ioLow = options.ioTypes === 'low';
      // 1. Classify nodes; `lowValues` = float32 values that will hold the low type.
      const cls = new Map<Node, Cls>();
      const lowValues = new Set<Value>();
      const keep = (n: Node, reason: string) => {
        cls.set(n, 'f32');
        report.kept++;
        if (report.keptNodes.length < 200) report.keptNodes.push({ node: n.name, op: n.qualifiedOp, reason });
      };
      if (ioLow) for (const v of g.inputs) if (isFloat32(v) && !v.initializer) lowValues.add(v);
      for (const n of topologicalOrder(g)) {
        const floatIns = n.inputs.filter(isFloat32);
        const floatOuts = n.outputs.filter(isFloat32);
        if (!floatIns.length && !floatOuts.length && !producesFloat32(n)) {
          cls.set(n, 'none');
          continue;
        }
        if (ANY_TYPE.has(n.opType) && n.domain === '') {
          cls.set(n, 'none');
          continue;
        }
        const lowIn = (v: Value) => lowValues.has(v) || (v.initializer !== undefined && !v.isGraphInput);
        let decided: Cls;
        if (n.subgraphs().length) {
          keep(n, 'has a subgraph');
          continue;
        } else if (block.has(n.opType) && n.domain === '') {
          keep(n, 'numerically sensitive (block list)');
          continue;
        } else if ([...floatIns, ...floatOuts].some((v) => overflowing.has(v.name))) {
          keep(n, `a value overflows ${options.to} on the calibration data (${[...floatIns, ...floatOuts].filter((v) => overflowing.has(v.name)).map((v) => `'${v.name}'`).join(', ')})`);
          continue;
        } else if (n.opType === 'Cast' && n.domain === '') {
          // Cast to float32 is retargeted to the low type; a Cast from float to something else
          // reads the low type directly.
          decided = floatOuts.length ? 'low' : 'none';
        } else if (FOLLOWERS.has(n.opType) && n.domain === '') {
          const data = floatIns.filter((v) => !(v.initializer && !v.isGraphInput));
          decided = data.every(lowIn) ? 'low' : 'f32';
        } else {
          decided = 'low';
        }
        if (decided === 'low' && options.supports && !options.supports(n, prospectiveTypes(n, low))) {
          keep(n, `no ${options.to} kernel on the target`);
          continue;
        }
        cls.set(n, decided);
        if (decided === 'low') {
          report.lowered++;
          const f32Out = FLOAT32_OUTPUTS[n.qualifiedOp] ?? [];
          n.outputs.forEach((o, i) => {
            if (isFloat32(o) && !f32Out.includes(i)) lowValues.add(o);
          });
          if (n.opType === 'Cast' && floatOuts.length) n.setAttribute('to', { type: 'int', value: BigInt(low) });
          if ((n.opType === 'ConstantOfShape' || n.opType === 'Constant') && n.domain === '') convertValueAttribute(n, low, report);
        }
      }
      // 2. Insert Casts where a value crosses classes; convert initializers read in low precision.
      const casts = new Map<string, Value>();
      const lowCopies = new Map<Value, Value>();
      const castOf = (v: Value, to: number, before: Node): Value => {
        const key = `${v.name}\u0000${to}`;
        let out = casts.get(key);
        if (!out) {
          out = g.createValue(g.uniqueName(`${v.name}_${to === DataType.FLOAT ? 'fp32' : options.to}`), retype(v.type, to));
          const c = g.addNode('Cast', [v], [''], { name: g.uniqueName(`${v.name}_cast`), attributes: [{ name: 'to', type: 'int', value: BigInt(to) }], before });
          c.setOutput(0, out);
          casts.set(key, out);
          report.castsInserted++;
        }
        return out;
      };
      for (const n of topologicalOrder(g)) {
        const c = cls.get(n);
        if (!c || c === 'none') continue;
        const f32In = FLOAT32_INPUTS[n.opType] ?? [];
        n.inputs.forEach((v, i) => {
          if (!isFloat32(v)) return;
          const wantLow = c === 'low' && !f32In.includes(i);
          const isConst = v.initializer !== undefined && !v.isGraphInput;
          if (wantLow && isConst) n.setInput(i, lowCopy(g, v, low, lowCopies, report));
          else if (wantLow && !lowValues.has(v)) n.setInput(i, castOf(v, low, n));
          else if (!wantLow && lowValues.has(v)) n.setInput(i, castOf(v, DataType.FLOAT, n));
        });
      }
      // 3. Retype the lowered values; graph outputs keep float32 (and their names) unless ioTypes low.
      for (const v of lowValues) v.type = retype(v.type, low);
      g.outputs.forEach((v, i) => {
        if (!lowValues.has(v) || ioLow) return;
        const name = v.name;
        g.renameValue(v, g.uniqueName(`${name}_${options.to}`));
        const out = g.createValue(name, retype(v.type, DataType.FLOAT));
        const c = g.addNode('Cast', [v], [''], { name: g.uniqueName(`${name}_to_float32`), attributes: [{ name: 'to', type: 'int', value: BigInt(DataType.FLOAT) }] });
        c.setOutput(0, out);
        g.outputs[i] = out;
        report.castsInserted++;
      });
      // 4. Cancel Cast(low -> float32) -> Cast(float32 -> low).
      report.castPairsCancelled += cancelCastPairs(g, low);
      // Initializers only the lowered nodes read are now unused in float32: drop them.
      for (const v of [...g.initializers]) if (!v.uses.length && !v.isGraphOutput && !v.isGraphInput && lowCopies.has(v)) g.deleteValue(v);
      return { changed: report.lowered > 0, details: { lowered: report.lowered, kept: report.kept, casts: report.castsInserted, cancelled: report.castPairsCancelled, clamped: report.clampedElements } };
    },
  };
}

/** Element types of a node's values once it is lowered (float32 ones become `low`, but for the fixed-float32 slots). */
function prospectiveTypes(n: Node, low: number): (v: Value) => number | undefined {
  const f32In = FLOAT32_INPUTS[n.opType] ?? [];
  const f32Out = FLOAT32_OUTPUTS[n.qualifiedOp] ?? [];
  const fixed = new Set<Value>([...f32In.map((i) => n.inputs[i]), ...f32Out.map((i) => n.outputs[i])].filter((v): v is Value => !!v));
  return (v) => {
    const t = elemTypeOf(v);
    return t === DataType.FLOAT && !fixed.has(v) ? low : t;
  };
}

function producesFloat32(n: Node): boolean {
  if (n.opType === 'Cast' && n.domain === '') return n.attrInt('to', 0) === DataType.FLOAT;
  return false;
}

function retype(t: TypeInfo | undefined, elemType: number): TypeInfo {
  if (t?.kind === 'tensor') return { ...t, elemType };
  return { kind: 'tensor', elemType };
}

/** The low-precision copy of a float32 initializer (made once, shared by its low readers). */
function lowCopy(g: Graph, v: Value, low: number, copies: Map<Value, Value>, report: PrecisionReport): Value {
  let c = copies.get(v);
  if (!c) {
    const t = convertTensor(v.initializer!, low, report);
    // Readers that stay float32 keep the original; if none do, it is dropped afterwards.
    c = g.addInitializer(Tensor.fromBytes(g.uniqueName(`${v.name}_${low === DataType.FLOAT16 ? 'fp16' : 'bf16'}`), low as DataType, t.dims, t.bytes()));
    c.type = retype(v.type, low);
    copies.set(v, c);
    report.initializersConverted++;
  }
  return c;
}

const F16_MAX = 65504;

/** A float32 tensor as float16 (clamped to +-65504, counted) or bfloat16 (round to nearest even). */
export function convertTensor(t: Tensor, low: number, report?: { clampedElements: number }): Tensor {
  const src = t.toTypedArray<Float32Array>();
  const bits = new Uint16Array(src.length);
  if (low === DataType.FLOAT16) {
    let clamped = 0;
    for (let i = 0; i < src.length; i++) {
      let x = src[i]!;
      if (x > F16_MAX) {
        x = F16_MAX;
        clamped++;
      } else if (x < -F16_MAX) {
        x = -F16_MAX;
        clamped++;
      }
      bits[i] = float32ToFloat16Bits(x);
    }
    if (report) report.clampedElements += clamped;
  } else if (low === DataType.BFLOAT16) {
    for (let i = 0; i < src.length; i++) bits[i] = float32ToBfloat16Bits(src[i]!);
  } else {
    throw new PeftcError(`internal: convertTensor to ${low}`);
  }
  return Tensor.fromTypedArray(t.name, low as DataType, t.dims, bits);
}

/** A low-precision tensor widened back to float32 (exact). */
export function widenTensor(t: Tensor): Tensor {
  const bits = t.toTypedArray<Uint16Array>();
  const f = t.dtype === DataType.FLOAT16 ? float16BitsToFloat32 : bfloat16BitsToFloat32;
  return Tensor.fromTypedArray(t.name, DataType.FLOAT, t.dims, Float32Array.from(bits, f));
}

function convertValueAttribute(n: Node, low: number, report: PrecisionReport): void {
  const a = n.attribute('value');
  if (a?.type === 'tensor' && a.value.dtype === DataType.FLOAT) n.setAttribute('value', { type: 'tensor', value: convertTensor(a.value, low, report) });
}

/** Removes Cast(x: low -> float32) -> Cast(-> low) chains, reading x directly; returns the count. */
function cancelCastPairs(g: Graph, low: number): number {
  let count = 0;
  for (const n of [...g.nodes]) {
    if (n.opType !== 'Cast' || n.domain !== '' || n.attrInt('to', 0) !== low) continue;
    const up = n.inputs[0]?.producer;
    if (!up || up.opType !== 'Cast' || up.domain !== '' || up.attrInt('to', 0) !== DataType.FLOAT) continue;
    const x = up.inputs[0];
    if (!x || elemTypeOf(x) !== low) continue;
    const out = n.outputs[0]!;
    if (out.isGraphOutput) continue;
    g.replaceAllUses(out, x);
    g.removeNode(n);
    if (!up.outputs[0]!.uses.length && !up.outputs[0]!.isGraphOutput) g.removeNode(up);
    count++;
  }
  return count;
}

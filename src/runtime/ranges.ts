/**
 * Activation ranges: the largest |x| each float32 value of the main graph takes over some input
 * data, observed by running the model in onnxruntime-node with those values listed as extra
 * outputs (only while the session loads; the model is restored exactly). Values are fetched in
 * groups, so the activations alive at once stay bounded; only one number per value is kept.
 */
import { availableParallelism } from 'node:os';
import { DataType } from '../ir/dtype.js';
import type { Value } from '../ir/graph.js';
import type { Model } from '../ir/model.js';
import type { InputData } from './input-data.js';
import { OrtSession } from './ort.js';

export const FLOAT16_MAX = 65504;

/** Values fetched per onnxruntime run. */
const GROUP = 64;

export async function observeRanges(model: Model, data: InputData, options: { log?: (m: string) => void } = {}): Promise<Map<string, number>> {
  const g = model.graph;
  const values: Value[] = [];
  for (const n of g.nodes) for (const o of n.outputs) if (o && o.type?.kind === 'tensor' && o.type.elemType === DataType.FLOAT) values.push(o);
  const ranges = new Map<string, number>();
  if (!values.length) return ranges;
  const outputs = [...g.outputs];
  for (const v of values) if (!v.isGraphOutput) g.outputs.push(v);
  let session: OrtSession;
  try {
    session = await OrtSession.create(model, { label: 'the model with its float32 activations as outputs (range observation)', intraOpThreads: availableParallelism() });
  } finally {
    g.outputs.length = 0;
    g.outputs.push(...outputs);
  }
  try {
    for (let run = 0; run < data.runs; run++) {
      const feed = data.feed(run);
      for (let i = 0; i < values.length; i += GROUP) {
        const names = values.slice(i, i + GROUP).map((v) => v.name);
        const out = await session.run(feed, names);
        for (const name of names) {
          const a = out[name]!.toTypedArray<Float32Array>();
          let max = ranges.get(name) ?? 0;
          for (let k = 0; k < a.length; k++) {
            const x = Math.abs(a[k]!);
            if (x > max || Number.isNaN(x)) max = Number.isNaN(x) ? Infinity : x;
          }
          ranges.set(name, max);
        }
      }
    }
  } finally {
    await session.release();
  }
  options.log?.(`ranges: ${values.length} float32 activation(s) observed over ${data.runs} run(s) of ${data.path}`);
  return ranges;
}

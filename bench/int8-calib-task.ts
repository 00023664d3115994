/**
 * One static INT8 calibration of models/lm in a process of its own, so its peak RSS is its own:
 * `node dist/bench/int8-calib-task.js '{"samples": 128, "method": "percentile"}'`. The calibration
 * windows are 256-byte windows of models/lm/eval.bin (as many as asked; only memory and time are
 * measured here, not fidelity). Prints one JSON line: time, peak RSS, the RSS before calibrating,
 * the statistics' bytes, and the activation bytes that streamed through them.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DataType } from '../src/ir/dtype.js';
import { Tensor } from '../src/ir/tensor.js';
import { loadModel } from '../src/onnx/io.js';
import { runPipeline } from '../passes/pass.js';
import { cleanupPipeline } from '../passes/pipelines.js';
import { matchInputData } from '../src/runtime/input-data.js';
import { quantizeInt8 } from '../src/quant/int8.js';
import type { CalibMethod } from '../src/calibration/methods.js';

const args = JSON.parse(process.argv[2]!) as { samples: number; method: CalibMethod; seq?: number };
const seq = args.seq ?? 256;
const lm = join(process.cwd(), 'models', 'lm');
const model = loadModel(join(lm, 'model.onnx'));
runPipeline(model, cleanupPipeline(), { fixpoint: true });
const bytes = readFileSync(join(lm, 'eval.bin'));
const windows = Math.floor(bytes.length / seq);
const ids = new BigInt64Array(args.samples * seq);
for (let i = 0; i < ids.length; i++) ids[i] = BigInt(bytes[((Math.floor(i / seq) % windows) * seq + (i % seq))]!);
const data = matchInputData({ path: `${args.samples} windows of eval.bin`, arrays: new Map([['input_ids', Tensor.fromTypedArray('input_ids', DataType.INT64, [args.samples, seq], ids)]]) }, model);
global.gc?.();
const rssBeforeMiB = process.memoryUsage().rss / 2 ** 20;
const t0 = performance.now();
const report = await quantizeInt8(model, data, { mode: 'static', calibMethod: args.method, progress: false });
const ms = performance.now() - t0;
const cal = report.calibration!;
console.log(
  JSON.stringify({
    ms,
    calibrationMs: cal.ms,
    peakRssMiB: process.resourceUsage().maxRSS / 1024,
    rssBeforeMiB,
    statBytes: cal.statBytes,
    peakActivationBytes: cal.peakActivationBytes,
    bytesSeen: cal.bytesSeen,
    runs: cal.runs,
    activations: cal.activations,
  }),
);

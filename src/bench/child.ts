/**
 * One measurement of one model, in a process of its own (so its peak RSS is its own): open an
 * onnxruntime-node session, warm up, time `runs` calls on the same feed, print one JSON line.
 * Run by src/bench/bench.ts; arguments come as one JSON string.
 */
import { statSync } from 'node:fs';
import { loadModel } from '../onnx/io.js';
import { inputDataFor } from '../verify/verify.js';
import { OrtSession, type ExecutionProvider } from '../runtime/ort.js';

export interface ChildArgs {
  model: string;
  inputs?: string;
  seed: number;
  dims?: Record<string, number>;
  runs: number;
  warmup: number;
  threads: number;
  /** onnxruntime execution provider (default cpu). */
  ep?: ExecutionProvider;
}

export interface ChildResult {
  sessionMs: number;
  /** Per-call latencies, ms, in call order. */
  latenciesMs: number[];
  /** Samples per call (leading axis of the first input fed). */
  batch: number;
  peakRssMiB: number;
  artifactBytes: number;
}

async function main(): Promise<void> {
  const args = JSON.parse(process.argv[2]!) as ChildArgs;
  const model = loadModel(args.model);
  // Artifact size: the model file plus every external data file it names.
  const files = new Set<string>();
  for (const v of model.graph.initializers) {
    const src = v.initializer!.source;
    if (src.kind === 'external') files.add(src.ref.path);
  }
  const artifactBytes = statSync(args.model).size + [...files].reduce((a, f) => a + statSync(f).size, 0);
  const data = inputDataFor(model, { ...(args.inputs ? { inputs: args.inputs } : {}), seed: args.seed, samples: 1, ...(args.dims ? { dims: args.dims } : {}) });
  const feed = data.feed(0);
  const first = Object.values(feed)[0];
  const t0 = performance.now();
  const session = await OrtSession.create(args.model, { intraOpThreads: args.threads, label: args.model, ...(args.ep ? { executionProvider: args.ep } : {}) });
  const sessionMs = performance.now() - t0;
  for (let i = 0; i < args.warmup; i++) await session.run(feed);
  const latenciesMs: number[] = [];
  for (let i = 0; i < args.runs; i++) {
    const t = performance.now();
    await session.run(feed);
    latenciesMs.push(performance.now() - t);
  }
  await session.release();
  const result: ChildResult = {
    sessionMs,
    latenciesMs,
    batch: first && first.dims.length ? first.dims[0]! : 1,
    peakRssMiB: process.resourceUsage().maxRSS / 1024,
    artifactBytes,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(2);
});

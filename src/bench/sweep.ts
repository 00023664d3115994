/**
 * `peftc bench --sweep MODEL --targets cpu,... --quant none,int4,...`: the trade-off study in one
 * command. Every target x quant variant is compiled, verified against the source model on the
 * same inputs (fidelity), and timed side by side with the others (interleaved rounds, each
 * measurement in its own process). The first variant that compiled is the baseline of the
 * ratios, so list `none` first. A variant that cannot be compiled is kept as a row with its error.
 */
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { compileModelAsync, type QuantMode, type Target } from '../compile.js';
import { PeftcError } from '../errors.js';
import { loadModel } from '../onnx/io.js';
import type { Fidelity, SweepResults, SweepVariant } from '../report/results.js';
import { OrtSession } from '../runtime/ort.js';
import { detectCausalLm } from '../verify/causal-lm.js';
import { compareOutputs, inputDataFor, openCandidate } from '../verify/verify.js';
import { benchModels, formatSize, machineFacts, table, type BenchOptions } from './bench.js';

export interface SweepOptions extends BenchOptions {
  targets: Target[];
  quants: QuantMode[];
  /** Folder for the compiled variants (created). */
  outDir: string;
  log?: (message: string) => void;
}

export async function sweep(model: string, options: SweepOptions): Promise<SweepResults> {
  const log = options.log ?? (() => {});
  mkdirSync(options.outDir, { recursive: true });
  const variants: SweepVariant[] = [];
  for (const target of options.targets) {
    for (const quant of options.quants) {
      const label = `${target}-${quant}`;
      const artifact = resolve(join(options.outDir, `${label}.onnx`));
      try {
        const r = await compileModelAsync(model, { target, quant, output: artifact });
        variants.push({ label, target, quant, artifact, bytes: r.written.modelBytes + r.written.externalBytes, nodes: r.after.nodeCount });
        log(`sweep: compiled ${label}: ${r.after.nodeCount} nodes, ${formatSize(r.written.modelBytes + r.written.externalBytes)}`);
      } catch (err) {
        if (!(err instanceof PeftcError)) throw err;
        variants.push({ label, target, quant, artifact, bytes: 0, nodes: 0, error: err.message });
        log(`sweep: ${label} not compiled: ${err.message}`);
      }
    }
  }
  const ok = variants.filter((v) => !v.error);
  if (!ok.length) throw new PeftcError(`${model}: no variant of the sweep compiled (${variants.map((v) => `${v.label}: ${v.error}`).join('; ')})`);
  // Fidelity: every variant against the source model, on the same inputs.
  const source = loadModel(model);
  const data = inputDataFor(source, { ...(options.inputs ? { inputs: options.inputs } : {}), seed: options.seed ?? 0, samples: 2, ...(options.dims ? { dims: options.dims } : {}), log });
  const lm = detectCausalLm(source);
  const ref = await OrtSession.create(model, { intraOpThreads: options.threads ?? 1 });
  try {
    for (const v of ok) {
      const { session: cand } = await openCandidate(v.artifact, v.target, options.threads ?? 1);
      try {
        const c = await compareOutputs(cand, data, (_run, feed) => ref.run(feed), lm, {});
        const f: Fidelity = { maxAbs: c.overall.maxAbs, meanAbs: c.overall.meanAbs, relErr: c.overall.relErr, cosine: c.overall.cosine };
        if (c.overall.top1 !== undefined) f.top1 = c.overall.top1;
        if (c.lm) Object.assign(f, { perplexity: c.lm.perplexity, referencePerplexity: c.lm.referencePerplexity });
        v.fidelity = f;
      } catch (err) {
        if (!(err instanceof PeftcError)) throw err;
        v.error = `verification failed: ${err.message}`;
      } finally {
        await cand.release();
      }
    }
  } finally {
    await ref.release();
  }
  // Latency is only meaningful where the artifact's runtime is: this machine runs the cpu target.
  for (const v of ok) if (!v.error && v.target !== 'cpu') v.note = `not timed: ${v.target} artifacts run on their own runtime (fidelity checked here${v.target === 'cuda' ? ', float16 emulated' : ''})`;
  const timed = ok.filter((v) => !v.error && v.target === 'cpu');
  if (!timed.length) throw new PeftcError(`${model}: no variant of the sweep runs on this machine's onnxruntime CPU provider to be timed; add --targets cpu`);
  const bench = await benchModels(
    timed.map((v) => v.artifact),
    options,
  );
  timed.forEach((v, i) => {
    const b = bench.models[i]!;
    v.latency = b.latency;
    v.sessionMs = b.sessionMs;
    v.peakRssMiB = b.peakRssMiB;
    v.latencyRatio = b.latencyRatio;
    v.sizeRatio = v.bytes / timed[0]!.bytes;
  });
  return {
    kind: 'peftc-sweep',
    model,
    date: new Date().toISOString(),
    machine: machineFacts(),
    settings: { rounds: bench.settings.rounds, runs: bench.settings.runs, threads: bench.settings.threads },
    variants,
  };
}

export function renderSweep(r: SweepResults): string {
  const header = ['variant', 'size', 'x size', 'nodes', 'rel err', 'cosine', 'top-1', 'ppl', 'p50 ms', 'p50 min-max', 'p99 ms', 'x p50', 'session ms', 'RSS MiB'];
  const rows = r.variants.map((v) =>
    v.error
      ? [v.label, '-', '-', '-', '-', '-', '-', '-', '-', '-', '-', '-', '-', `${v.error.slice(0, 60)}`]
      : [
          v.label,
          formatSize(v.bytes),
          (v.sizeRatio ?? 1).toFixed(2),
          String(v.nodes),
          v.fidelity ? v.fidelity.relErr.toExponential(2) : '-',
          v.fidelity ? v.fidelity.cosine.toFixed(5) : '-',
          v.fidelity?.top1 !== undefined ? `${(v.fidelity.top1 * 100).toFixed(1)}%` : '-',
          v.fidelity?.perplexity !== undefined ? v.fidelity.perplexity.toFixed(3) : '-',
          v.latency ? v.latency.p50Ms.toFixed(3) : '-',
          v.latency ? `${v.latency.p50MinMs.toFixed(3)}-${v.latency.p50MaxMs.toFixed(3)}` : '-',
          v.latency ? v.latency.p99Ms.toFixed(3) : '-',
          v.latencyRatio !== undefined ? v.latencyRatio.toFixed(2) : '-',
          v.sessionMs !== undefined ? v.sessionMs.toFixed(1) : '-',
          v.peakRssMiB !== undefined ? v.peakRssMiB.toFixed(0) : '-',
        ],
  );
  return [`sweep of ${r.model}`, table(header, rows), `ratios against ${r.variants.find((v) => !v.error)?.label}; ${r.settings.rounds} interleaved round(s) x ${r.settings.runs} runs, ${r.settings.threads} thread(s); ${r.machine.cpus} x ${r.machine.cpuModel}`].join('\n');
}

/**
 * `peftc verify REFERENCE CANDIDATE`: runs both models on onnxruntime-node over the same inputs and
 * reports how far the candidate's outputs are from the reference's, per output and over all
 * (src/verify/metrics.ts), with perplexity, greedy-continuation agreement, ROUGE-L and BLEU for
 * causal LMs. The verdict is a tolerance check (src/verify/tolerance.ts).
 *
 * `compareOutputs` is the shared core: the golden gate calls it with stored reference outputs
 * instead of a reference session.
 */
import { PeftcError } from '../errors.js';
import { dtypeInfo, dtypeName } from '../ir/dtype.js';
import type { Model } from '../ir/model.js';
import type { Tensor } from '../ir/tensor.js';
import { loadModel } from '../onnx/io.js';
import { matchInputData, readInputArrays, synthesizeInputs, type InputData } from '../runtime/input-data.js';
import { OrtSession, type ExecutionProvider } from '../runtime/ort.js';
import { getTarget } from '../../targets/index.js';
import type { ModelRunner } from '../../targets/target.js';
import { detectCausalLm, greedyContinuations, type CausalLmSpec } from './causal-lm.js';
import { corpusBleu, ErrorAccumulator, PerplexityAccumulator, rougeL, type ErrorStats } from './metrics.js';
import { checkTolerance, fmt, type Tolerance } from './tolerance.js';

export type Task = 'auto' | 'causal-lm' | 'generic';

export interface OutputFidelity extends ErrorStats {
  name: string;
  dtype: string;
  shape: number[];
}

export interface LmFidelity {
  ids: string;
  logits: string;
  /** Tokens scored (windows x (seq - 1)). */
  tokens: number;
  referencePerplexity: number;
  perplexity: number;
  /** Candidate / reference perplexity. */
  perplexityRatio: number;
  /** Greedy continuations compared (rows of the first run), and tokens generated per row. */
  continuations?: { rows: number; tokens: number; agreement: number; prefix: number; rougeL: number; bleu: number };
}

/** What a comparison measured (before any tolerance is applied). */
export interface Comparison {
  runs: number;
  samples: number;
  outputs: OutputFidelity[];
  /** All float outputs together (integer outputs count their mismatches). */
  overall: ErrorStats;
  lm?: LmFidelity;
}

export interface VerifyReport extends Comparison {
  reference: string;
  candidate: string;
  /** How the candidate ran here when not as it is (e.g. float16 emulated on the CPU provider). */
  emulation?: string;
  inputs: { source: string; notes: string[] };
  tolerance: Tolerance;
  /** Bounds broken, in words. */
  failures: string[];
  ok: boolean;
  ms: number;
}

export interface CompareOptions {
  /** LM metrics: 'auto' detects a causal LM; 'generic' never computes them. */
  task?: Task;
  /** Greedy continuation length (tokens) for causal LMs; 0 turns it off. */
  continuationTokens?: number;
  /** Reference session for continuations (verify); without it, none are made (golden). */
  referenceSession?: ModelRunner;
  log?: (message: string) => void;
  /** Called after each run (progress). */
  onRun?: (done: number, total: number) => void;
}

/**
 * Runs the candidate over every run of `data` and compares its outputs with `reference(run)`'s.
 * Output names come from the reference; the candidate must produce each with the same dtype and
 * shape, or the comparison fails with a PeftcError naming the output.
 */
export async function compareOutputs(
  candidate: ModelRunner,
  data: InputData,
  reference: (run: number, feed: Record<string, Tensor>) => Promise<Record<string, Tensor>>,
  lmSpec: CausalLmSpec | undefined,
  options: CompareOptions = {},
): Promise<Comparison> {
  const per = new Map<string, { acc: ErrorAccumulator; dtype: string; shape: number[] }>();
  const refPpl = new PerplexityAccumulator();
  const candPpl = new PerplexityAccumulator();
  let outputNames: string[] | undefined;
  for (let run = 0; run < data.runs; run++) {
    const feed = data.feed(run);
    const ref = await reference(run, feed);
    outputNames ??= Object.keys(ref);
    const missing = outputNames.filter((n) => !candidate.outputNames.includes(n));
    if (missing.length) throw new PeftcError(`${candidate.label}: no output named ${missing.map((n) => `'${n}'`).join(', ')} (the reference has ${outputNames.join(', ')}; the candidate ${candidate.outputNames.join(', ')})`);
    const cand = await candidate.run(feed, outputNames);
    for (const name of outputNames) {
      const r = ref[name]!;
      const c = cand[name]!;
      if (r.dtype !== c.dtype) throw new PeftcError(`${candidate.label}: output '${name}' is ${dtypeName(c.dtype)}, the reference's is ${dtypeName(r.dtype)}`);
      if (r.dims.join() !== c.dims.join()) throw new PeftcError(`${candidate.label}: output '${name}' has shape [${c.dims.join(', ')}], the reference's [${r.dims.join(', ')}]`);
      let entry = per.get(name);
      if (!entry) per.set(name, (entry = { acc: new ErrorAccumulator(scoresLike(name, r.dims, lmSpec)), dtype: dtypeName(r.dtype), shape: [...r.dims] }));
      entry.acc.add(r, c);
    }
    if (lmSpec) {
      const ids = feed[lmSpec.ids]!;
      const rows = ids.elementCount / ids.dims[ids.dims.length - 1]!;
      const seq = ids.dims[ids.dims.length - 1]!;
      const idv = ids.toTypedArray() as ArrayLike<number | bigint>;
      refPpl.add(ref[lmSpec.logits]!.toTypedArray<Float32Array>(), idv, rows, seq);
      candPpl.add(cand[lmSpec.logits]!.toTypedArray<Float32Array>(), idv, rows, seq);
    }
    options.onRun?.(run + 1, data.runs);
  }
  const overallAcc = new ErrorAccumulator();
  const outputs: OutputFidelity[] = [];
  for (const [name, { acc, dtype, shape }] of per) {
    outputs.push({ name, dtype, shape, ...acc.stats() });
    overallAcc.merge(acc);
  }
  const result: Comparison = { runs: data.runs, samples: data.samples, outputs, overall: overallAcc.stats() };
  if (lmSpec) {
    const lm: LmFidelity = {
      ids: lmSpec.ids,
      logits: lmSpec.logits,
      tokens: candPpl.tokens,
      referencePerplexity: refPpl.perplexity(),
      perplexity: candPpl.perplexity(),
      perplexityRatio: candPpl.perplexity() / refPpl.perplexity(),
    };
    const tokens = options.continuationTokens ?? 32;
    if (options.referenceSession && tokens > 0) {
      const feed = data.feed(0);
      const refSeqs = await greedyContinuations(options.referenceSession, feed, lmSpec, tokens);
      const candSeqs = await greedyContinuations(candidate, feed, lmSpec, tokens);
      let same = 0;
      let prefix = 0;
      let rouge = 0;
      for (let r = 0; r < refSeqs.length; r++) {
        const a = refSeqs[r]!;
        const b = candSeqs[r]!;
        let p = 0;
        while (p < a.length && a[p] === b[p]) p++;
        prefix += p / a.length;
        for (let i = 0; i < a.length; i++) if (a[i] === b[i]) same++;
        rouge += rougeL(b, a);
      }
      const rows = refSeqs.length;
      lm.continuations = { rows, tokens, agreement: same / (rows * tokens), prefix: prefix / rows, rougeL: rouge / rows, bleu: corpusBleu(candSeqs, refSeqs) };
    }
    result.lm = lm;
  }
  return result;
}

/**
 * Outputs where top-1 agreement is reported: LM logits, outputs named like scores
 * (logits, scores, probabilities, predictions, classes), and [batch, classes] matrices.
 */
function scoresLike(name: string, dims: readonly number[], lm: CausalLmSpec | undefined): boolean {
  return name === lm?.logits || /logit|score|prob|class|pred/i.test(name) || dims.length === 2;
}

export interface VerifyOptions extends Omit<CompareOptions, 'referenceSession'> {
  /** .npy/.npz data; without it, inputs are generated from the declared shapes. */
  inputs?: string;
  /** Seed and sizes for generated inputs. */
  seed?: number;
  samples?: number;
  dims?: Record<string, number>;
  tolerance?: Tolerance;
  /** onnxruntime intra-op threads for both sessions (default 1: reproducible). */
  threads?: number;
  /** Where the candidate runs (default cpu); the reference always runs on the CPU provider. */
  ep?: ExecutionProvider;
  /** The target the candidate was compiled for: its artifacts run through the target's CPU equivalent. */
  target?: string;
}

/**
 * A session that runs `path` on onnxruntime's CPU provider: the artifact itself, or, for targets
 * whose artifacts the CPU cannot run as they are (float16 for CUDA), the target's CPU equivalent.
 */
export async function openCandidate(path: string, target: string | undefined, threads: number, ep: ExecutionProvider = 'cpu'): Promise<{ session: ModelRunner; emulation?: string }> {
  const t = target ? getTarget(target) : undefined;
  // An ONNX artifact asked to run on a GPU provider runs as it is there: no CPU equivalent.
  if (ep !== 'cpu') {
    if (t?.openArtifact) throw new PeftcError(`${path}: a ${target} artifact does not run on onnxruntime's ${ep} provider (--ep is for ONNX models)`);
    return { session: await OrtSession.create(path, { intraOpThreads: threads, executionProvider: ep }) };
  }
  if (t?.openArtifact) {
    const session = await t.openArtifact(path);
    return { session, emulation: `${session.label}` };
  }
  if (target) {
    const equivalent = getTarget(target).cpuEquivalent?.(loadModel(path));
    if (equivalent) {
      const session = await OrtSession.create(equivalent.model, { intraOpThreads: threads, graphOptimization: 'disabled', label: `${path} (${equivalent.how})` });
      return { session, emulation: equivalent.how };
    }
  }
  return { session: await OrtSession.create(path, { intraOpThreads: threads }) };
}

/** Opens the input data for a model: the given file, or generated inputs (logged). */
export function inputDataFor(model: Model, options: Pick<VerifyOptions, 'inputs' | 'seed' | 'samples' | 'dims' | 'log'>): InputData {
  const arrays = options.inputs ? readInputArrays(options.inputs) : synthesizeInputs(model, { seed: options.seed ?? 0, samples: options.samples ?? 2, ...(options.dims ? { dims: options.dims } : {}) });
  const data = matchInputData(arrays, model);
  if (!options.inputs) options.log?.(`inputs: ${data.samples} sample(s) generated from the declared shapes (seed ${options.seed ?? 0}); give --inputs DATA for real data`);
  for (const note of data.notes) options.log?.(`inputs: ${note}`);
  return data;
}

/** Verifies `candidate` against `reference` (both .onnx paths) on the same inputs. */
export async function verifyModels(reference: string, candidate: string, options: VerifyOptions = {}): Promise<VerifyReport> {
  const t0 = performance.now();
  const refModel = loadModel(reference);
  const data = inputDataFor(refModel, options);
  const task = options.task ?? 'auto';
  let lmSpec = task === 'generic' ? undefined : detectCausalLm(refModel);
  if (task === 'causal-lm' && !lmSpec) throw new PeftcError(`${reference}: --task causal-lm, but no int token-id input [batch, seq] feeding an embedding with a matching [batch, seq, vocab] output was found`);
  if (lmSpec) options.log?.(`causal LM: ids '${lmSpec.ids}', logits '${lmSpec.logits}' (vocab ${lmSpec.vocab}); --task generic turns the LM metrics off`);
  const threads = options.threads ?? 1;
  const ref = await OrtSession.create(reference, { intraOpThreads: threads });
  let cand: ModelRunner | undefined;
  let emulation: string | undefined;
  try {
    ({ session: cand, emulation } = await openCandidate(candidate, options.target, threads, options.ep));
    if (emulation) options.log?.(`verify: ${candidate} runs as ${emulation}`);
    const missing = ref.inputNames.filter((n) => !cand!.inputNames.includes(n));
    if (missing.length) throw new PeftcError(`${candidate}: takes no input named ${missing.map((n) => `'${n}'`).join(', ')} (the reference does)`);
    const floatOutputs = refModel.graph.outputs.filter((v) => v.type?.kind === 'tensor' && dtypeInfo(v.type.elemType).isFloat);
    if (lmSpec && !floatOutputs.some((v) => v.name === lmSpec!.logits)) lmSpec = undefined;
    const comparison = await compareOutputs(cand, data, (_run, feed) => ref.run(feed), lmSpec, { ...options, referenceSession: ref });
    const tolerance = options.tolerance ?? { relErr: 1e-4 };
    const failures = checkTolerance(
      { overall: comparison.overall, ...(comparison.lm ? { perplexityRatio: comparison.lm.perplexityRatio } : {}), ...(comparison.lm?.continuations ? { greedy: comparison.lm.continuations.agreement } : {}) },
      tolerance,
    );
    return {
      reference,
      candidate,
      ...(emulation ? { emulation } : {}),
      inputs: { source: data.path, notes: data.notes },
      ...comparison,
      tolerance,
      failures,
      ok: failures.length === 0,
      ms: performance.now() - t0,
    };
  } finally {
    await cand?.release();
    await ref.release();
  }
}

/** The report as text: a line per output, the overall figures, LM figures, the verdict. */
export function renderVerifyReport(r: VerifyReport): string {
  const lines: string[] = [];
  lines.push(`verify ${r.candidate} against ${r.reference}: ${r.runs} run(s), ${r.samples} sample(s) from ${r.inputs.source}`);
  if (r.emulation) lines.push(`  candidate run as ${r.emulation} (no GPU here)`);
  const row = (label: string, s: ErrorStats) =>
    `  ${label.padEnd(24)} max abs ${fmt(s.maxAbs).padStart(10)}  mean abs ${fmt(s.meanAbs).padStart(10)}  rel ${fmt(s.relErr).padStart(10)}  cos ${s.cosine.toFixed(6)}` +
    (s.top1 !== undefined ? `  top-1 ${(s.top1 * 100).toFixed(2)}%` : '') +
    (s.mismatches !== undefined ? `  mismatches ${s.mismatches}` : '') +
    (s.nonFinite ? `  non-finite ${s.nonFinite}` : '');
  for (const o of r.outputs) lines.push(row(`${o.name} ${o.dtype}[${o.shape.join(',')}]`, o));
  lines.push(row('all outputs', r.overall));
  if (r.lm) {
    lines.push(`  perplexity ${r.lm.perplexity.toFixed(4)} vs reference ${r.lm.referencePerplexity.toFixed(4)} (x${r.lm.perplexityRatio.toFixed(5)}) over ${r.lm.tokens} tokens`);
    const c = r.lm.continuations;
    if (c) {
      lines.push(
        `  greedy continuations (${c.rows} x ${c.tokens} tokens): token agreement ${(c.agreement * 100).toFixed(1)}%, identical prefix ${(c.prefix * 100).toFixed(1)}%, ROUGE-L ${c.rougeL.toFixed(4)}, BLEU ${c.bleu.toFixed(4)}`,
      );
    }
  }
  const tol = Object.entries(r.tolerance)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  lines.push(r.ok ? `ok: within tolerance (${tol})` : `FAILED: ${r.failures.join('; ')} (tolerance: ${tol})`);
  return lines.join('\n');
}

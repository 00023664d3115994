/**
 * The graph-regression gate: golden records of compiled variants, checked by recompiling.
 *
 * `recordGolden` stores a model's reference inputs and outputs (once; onnxruntime-node runs the
 * reference model) and a record per compiled variant: node count, op histogram, artifact size and
 * SHA-256 (compiles are deterministic), fidelity against the reference outputs, and the
 * tolerance the fidelity must hold. `checkGolden` recompiles every recorded variant, reruns it on
 * the stored inputs and lists every change: artifact bytes, node count, op histogram, fidelity
 * outside tolerance. `updateGolden` rewrites the records after an intentional change and says
 * what moved; it keeps each record's tolerance and refuses figures that break it unless asked.
 */
import { cpuFindings, nodePlacement, type CpuFindings, type Placement } from '../runtime/placement.js';
import type { ExecutionProvider } from '../runtime/ort.js';
import { createHash } from 'node:crypto';
import { closeSync, copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { compileModelAsync, type CompileOptions, type QuantMode, type Target } from '../compile.js';
import { PeftcError } from '../errors.js';
import type { Model } from '../ir/model.js';
import type { Tensor } from '../ir/tensor.js';
import { loadModel } from '../onnx/io.js';
import { parseLoraArg } from '../peft/adapter.js';
import type { Fidelity } from '../report/results.js';
import { feedableInputs, matchInputData, readInputArrays, synthesizeInputs, type InputArrays } from '../runtime/input-data.js';
import { OrtSession } from '../runtime/ort.js';
import { readDataSet } from '../runtime/testdata.js';
import { ORT_VERSION, PEFTC_VERSION } from '../version.js';
import { detectCausalLm } from '../verify/causal-lm.js';
import { checkTolerance, fmt, recordedTolerance, type Tolerance } from '../verify/tolerance.js';
import { compareOutputs, openCandidate, type Comparison } from '../verify/verify.js';
import {
  GOLDEN_FORMAT,
  listModels,
  listVariants,
  modelKey,
  readReference,
  readStoredArrays,
  resolveStored,
  stack,
  storedPath,
  unstack,
  variantName,
  writeJson,
  writeReference,
  type ArtifactFacts,
  type GoldenReference,
  type GoldenVariant,
  type VariantSpec,
} from './store.js';

export interface GoldenOptions {
  /** The golden folder. */
  dir: string;
  /** Where stored model paths are relative to (default: the folder above `dir`). */
  modelsRoot?: string;
  log?: (message: string) => void;
  /** Compile options as the gate passes them, for tests that plant a change (extraPasses). */
  compileHook?: (options: CompileOptions) => CompileOptions;
  /** onnxruntime threads for the runs (default 1: the figures are reproducible). */
  threads?: number;
  /**
   * Where ONNX artifacts run (default cpu, where cuda float16 artifacts run in their CPU
   * equivalent). 'cuda' runs them as they are on onnxruntime's CUDA provider and reads the node
   * placement onnxruntime reports; the records' tolerances still apply.
   */
  ep?: ExecutionProvider;
  /** check: keep each compiled artifact in KEEP/<model>/<variant>/ (model.onnx, or an xla/tfjs folder's files). */
  keep?: string;
}

const rootOf = (o: GoldenOptions) => resolve(o.modelsRoot ?? dirname(resolve(o.dir)));

// ---------------------------------------------------------------------------------------------
// Reference: inputs and the reference model's outputs

export interface RecordOptions extends GoldenOptions {
  /** The model to compile. */
  model: string;
  target: Target;
  quant: QuantMode;
  /** Extra name part for variants that differ in more than target and quant. */
  tag?: string;
  /** The model whose outputs are golden (default: `model`); e.g. PEFT's own merged export for a --lora variant. */
  reference?: string;
  /** Folder name under `dir` (default: from the model path). */
  name?: string;
  /** Input data (.npy/.npz); default: a test_data_set_0 beside the model, else generated. */
  inputs?: string;
  /** Compile flags beyond target and quant. */
  compile?: Omit<VariantSpec, 'source' | 'target' | 'quant'>;
  /** Tolerance to record (default: from the measured figures, see recordedTolerance). */
  tolerance?: Tolerance;
  /** Re-record the reference inputs/outputs even when the folder has them. */
  rerecordReference?: boolean;
}

/** The reference's input arrays: a given file, ONNX's test_data_set_0 beside it, or generated. */
function referenceInputs(model: Model, path: string, inputs: string | undefined, log: (m: string) => void): InputArrays {
  if (inputs) return readInputArrays(inputs);
  const dataSet = join(dirname(path), 'test_data_set_0');
  if (existsSync(dataSet)) {
    const { inputs: feeds } = readDataSet(dataSet, model);
    return { path: dataSet, arrays: new Map(Object.entries(feeds)) };
  }
  log(`golden: no --inputs and no test_data_set_0 beside ${path}: inputs generated from the declared shapes (seed 0, 2 samples); give real data with --inputs`);
  return synthesizeInputs(model, { seed: 0, samples: 2 });
}

async function recordReference(modelDir: string, name: string, root: string, refPath: string, inputsPath: string | undefined, options: GoldenOptions): Promise<GoldenReference> {
  const log = options.log ?? (() => {});
  const model = loadModel(refPath);
  const arrays = referenceInputs(model, refPath, inputsPath, log);
  const data = matchInputData(arrays, model);
  for (const note of data.notes) log(`golden: ${note}`);
  const session = await OrtSession.create(refPath, { intraOpThreads: options.threads ?? 1 });
  const inRuns = new Map<string, Tensor[]>();
  const outRuns = new Map<string, Tensor[]>();
  try {
    for (let run = 0; run < data.runs; run++) {
      const feed = data.feed(run);
      for (const v of feedableInputs(model.graph)) (inRuns.get(v.name) ?? inRuns.set(v.name, []).get(v.name)!).push(feed[v.name]!);
      const out = await session.run(feed);
      for (const [k, t] of Object.entries(out)) (outRuns.get(k) ?? outRuns.set(k, []).get(k)!).push(t);
    }
  } finally {
    await session.release();
  }
  const lm = detectCausalLm(model);
  const stacked = (m: Map<string, Tensor[]>) => new Map([...m].map(([k, parts]) => [k, stack(k, parts)]));
  const ref = writeReference(
    modelDir,
    {
      format: GOLDEN_FORMAT,
      name,
      reference: storedPath(root, refPath),
      inputSource: data.path.startsWith('generated') ? data.path : storedPath(root, data.path),
      runs: data.runs,
      task: lm ? 'causal-lm' : 'generic',
      ...(lm ? { lm } : {}),
      recorded: { peftc: PEFTC_VERSION, onnxruntime: ORT_VERSION },
    },
    stacked(inRuns),
    stacked(outRuns),
  );
  log(`golden: ${name}: reference outputs of ${ref.reference} on ${data.runs} run(s) from ${ref.inputSource}`);
  return ref;
}

// ---------------------------------------------------------------------------------------------
// Measuring one variant: compile, hash, run on the stored inputs

export interface Measurement {
  artifact: ArtifactFacts;
  fidelity: Fidelity;
  comparison: Comparison;
  /** With a GPU provider: where onnxruntime put the nodes, the CPU ones split into shape math and the rest. */
  placement?: Placement & { cpu?: CpuFindings };
}

function compileOptionsFor(spec: VariantSpec, root: string, output: string, options: GoldenOptions): CompileOptions {
  const base: CompileOptions = {
    target: spec.target as Target,
    quant: spec.quant as QuantMode,
    output,
    lora: (spec.lora ?? []).map((l) => parseLoraArg(resolveStored(root, l))),
    ...(spec.opset !== undefined ? { opset: spec.opset } : {}),
    ...(spec.shapes ? { shapes: spec.shapes } : {}),
    weightQuant: {
      ...(spec.quantMethod !== undefined ? { method: spec.quantMethod as never } : {}),
      ...(spec.blockSize !== undefined ? { blockSize: spec.blockSize } : {}),
      ...(spec.symmetric !== undefined ? { symmetric: spec.symmetric } : {}),
      ...(spec.quantFormat !== undefined ? { format: spec.quantFormat as never } : {}),
      ...(spec.accuracyLevel !== undefined ? { accuracyLevel: spec.accuracyLevel } : {}),
      ...(spec.quantEmbeddings !== undefined ? { embeddings: spec.quantEmbeddings } : {}),
    },
  };
  return options.compileHook ? options.compileHook(base) : base;
}

function hashFiles(paths: string[]): { sha256: string; bytes: number } {
  const h = createHash('sha256');
  let bytes = 0;
  const buf = Buffer.allocUnsafe(1 << 20);
  for (const p of paths) {
    const fd = openSync(p, 'r');
    try {
      for (;;) {
        const n = readSync(fd, buf, 0, buf.length, null);
        if (n === 0) break;
        h.update(buf.subarray(0, n));
        bytes += n;
      }
    } finally {
      closeSync(fd);
    }
  }
  return { sha256: h.digest('hex'), bytes };
}

export async function measureVariant(modelDir: string, ref: GoldenReference, spec: VariantSpec, options: GoldenOptions, keepAs?: string): Promise<Measurement> {
  const root = rootOf(options);
  const source = resolveStored(root, spec.source);
  if (!existsSync(source)) throw new PeftcError(`${source}: the model of golden variant ${ref.name}/${variantName(spec.target, spec.quant)} is missing (models root ${root}; --models DIR sets it)`);
  const tmp = mkdtempSync(join(tmpdir(), 'peftc-golden-'));
  try {
    const output = join(tmp, 'model.onnx');
    const result = await compileModelAsync(source, compileOptionsFor(spec, root, output, options));
    // A folder artifact (xla) is hashed file by file in name order; an ONNX one as model + external data.
    const files = statSync(result.written.path).isDirectory()
      ? readdirSync(result.written.path).sort().map((f) => join(result.written.path, f))
      : [result.written.path, ...(result.written.externalDataPath ? [join(dirname(result.written.path), result.written.externalDataPath)] : [])];
    const { sha256, bytes } = hashFiles(files);
    const artifact: ArtifactFacts = {
      bytes,
      sha256,
      nodes: result.after.nodeCount,
      opHistogram: result.after.opHistogram,
      initializerBytes: result.after.initializerBytes,
    };
    if (options.keep && keepAs) keepArtifact(result.written, join(resolve(options.keep), keepAs));
    const ep = options.ep ?? 'cpu';
    const comparison = await runOnReference(modelDir, ref, result.written.path, options.threads ?? 1, spec.target, source, ep);
    let placement: (Placement & { cpu?: CpuFindings }) | undefined;
    if (ep !== 'cpu') {
      placement = await nodePlacement(result.written.path, ep);
      if (!statSync(result.written.path).isDirectory()) placement.cpu = cpuFindings(placement, loadModel(result.written.path).graph);
    }
    return { artifact, fidelity: fidelityOf(comparison), comparison, ...(placement ? { placement } : {}) };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** Copies a compiled artifact to the folder `dest`: a folder artifact's files, or model.onnx with its external data. */
function keepArtifact(written: { path: string; externalDataPath?: string }, dest: string): void {
  rmSync(dest, { recursive: true, force: true });
  if (statSync(written.path).isDirectory()) {
    cpSync(written.path, dest, { recursive: true });
    return;
  }
  mkdirSync(dest, { recursive: true });
  copyFileSync(written.path, join(dest, 'model.onnx'));
  // external data is named relative to the model file, so it keeps its name beside the copy
  if (written.externalDataPath) copyFileSync(join(dirname(written.path), written.externalDataPath), join(dest, written.externalDataPath));
}

/** Runs a model on the reference's stored inputs and compares with the stored outputs. */
export async function runOnReference(modelDir: string, ref: GoldenReference, modelPath: string, threads = 1, target?: string, source?: string, ep: ExecutionProvider = 'cpu'): Promise<Comparison> {
  const inputs = readStoredArrays(modelDir, ref.inputs);
  const outputs = readStoredArrays(modelDir, ref.outputs);
  // The inputs are matched against an ONNX model's declarations: the artifact's, or for a folder
  // artifact (xla) the source model's.
  const model = loadModel(statSync(modelPath).isDirectory() && source ? source : modelPath);
  const data = matchInputData({ path: join(modelDir, 'inputs'), arrays: inputs }, model);
  if (data.runs !== ref.runs) throw new PeftcError(`${modelDir}: stored inputs read as ${data.runs} run(s), the record says ${ref.runs}`);
  const { session } = await openCandidate(modelPath, target, threads, ep);
  try {
    return await compareOutputs(session, data, async (run) => Object.fromEntries([...outputs].map(([k, t]) => [k, unstack(t, run)])), ref.lm);
  } finally {
    await session.release();
  }
}

function fidelityOf(c: Comparison): Fidelity {
  const o = c.overall;
  return {
    maxAbs: o.maxAbs,
    meanAbs: o.meanAbs,
    relErr: o.relErr,
    cosine: o.cosine,
    ...(o.top1 !== undefined ? { top1: o.top1 } : {}),
    ...(c.lm ? { perplexity: c.lm.perplexity, referencePerplexity: c.lm.referencePerplexity } : {}),
  };
}

const measuredFor = (f: Fidelity, c: Comparison) => ({ overall: c.overall, ...(f.perplexity !== undefined ? { perplexityRatio: f.perplexity / f.referencePerplexity! } : {}) });

// ---------------------------------------------------------------------------------------------
// record / check / update

export interface RecordResult {
  file: string;
  record: GoldenVariant;
  reference: GoldenReference;
}

export async function recordGolden(options: RecordOptions): Promise<RecordResult> {
  const root = rootOf(options);
  const dir = resolve(options.dir);
  if (!existsSync(options.model)) throw new PeftcError(`${options.model}: no such model`);
  const refPath = options.reference ?? options.model;
  if (!existsSync(refPath)) throw new PeftcError(`${refPath}: no such reference model`);
  const name = options.name ?? modelKey(root, refPath);
  const modelDir = join(dir, name);
  let ref: GoldenReference;
  if (existsSync(join(modelDir, 'reference.json')) && !options.rerecordReference) {
    ref = readReference(modelDir);
    if (resolveStored(root, ref.reference) !== resolve(refPath)) {
      throw new PeftcError(`${modelDir}: holds the reference outputs of ${ref.reference}, not ${storedPath(root, refPath)}; give another --name, or --rerecord-reference`);
    }
  } else {
    ref = await recordReference(modelDir, name, root, refPath, options.inputs, options);
  }
  const spec: VariantSpec = { source: storedPath(root, options.model), target: options.target, quant: options.quant, ...options.compile };
  if (spec.lora) spec.lora = spec.lora.map((l) => storedPath(root, l));
  const m = await measureVariant(modelDir, ref, spec, options);
  const variant = variantName(options.target, options.quant, options.tag);
  const ratio = m.fidelity.perplexity !== undefined ? m.fidelity.perplexity / m.fidelity.referencePerplexity! : undefined;
  const tolerance = options.tolerance ?? recordedTolerance(options.quant, m.comparison.overall, ratio);
  const broken = checkTolerance(measuredFor(m.fidelity, m.comparison), tolerance);
  if (broken.length) throw new PeftcError(`${name}/${variant}: the compiled model does not hold the tolerance it would be recorded with: ${broken.join('; ')}`, 1);
  const record: GoldenVariant = { format: GOLDEN_FORMAT, variant, compile: spec, artifact: m.artifact, fidelity: m.fidelity, tolerance, recorded: { peftc: PEFTC_VERSION, onnxruntime: ORT_VERSION } };
  const file = join(modelDir, `${variant}.json`);
  writeJson(file, record);
  options.log?.(`golden: recorded ${name}/${variant}: ${m.artifact.nodes} nodes, ${m.artifact.bytes} bytes, rel err ${fmt(m.fidelity.relErr)}, cosine ${m.fidelity.cosine.toFixed(6)}`);
  return { file, record, reference: ref };
}

export interface VariantCheck {
  model: string;
  variant: string;
  file: string;
  ok: boolean;
  /** What changed, one line each (empty when nothing did). */
  changes: string[];
  /** Which of the changes break the gate: every change does, except fidelity moving within tolerance. */
  failures: string[];
  record: GoldenVariant;
  measured?: { artifact: ArtifactFacts; fidelity: Fidelity };
  /** With --ep cuda: onnxruntime's node placement (nodes left on the CPU are listed as changes). */
  placement?: Placement & { cpu?: CpuFindings };
  ms: number;
}

export interface GoldenCheckResult {
  ok: boolean;
  variants: VariantCheck[];
  ms: number;
}

export interface CheckOptions extends GoldenOptions {
  /** Model folders or model/variant names to check (default all). */
  only?: string[];
  onVariant?: (done: number, total: number, name: string) => void;
}

/** What differs between a record and a fresh measurement. */
function compareRecord(rec: GoldenVariant, m: Measurement): { changes: string[]; failures: string[] } {
  const changes: string[] = [];
  const failures: string[] = [];
  const a = rec.artifact;
  const b = m.artifact;
  if (a.nodes !== b.nodes) failures.push(`node count ${a.nodes} -> ${b.nodes}`);
  const ops = new Set([...Object.keys(a.opHistogram), ...Object.keys(b.opHistogram)]);
  const moved = [...ops].sort().filter((op) => (a.opHistogram[op] ?? 0) !== (b.opHistogram[op] ?? 0));
  if (moved.length) failures.push(`op histogram: ${moved.map((op) => `${op} ${a.opHistogram[op] ?? 0} -> ${b.opHistogram[op] ?? 0}`).join(', ')}`);
  if (a.sha256 !== b.sha256) failures.push(`artifact bytes changed: sha256 ${a.sha256.slice(0, 12)}… -> ${b.sha256.slice(0, 12)}…, ${a.bytes} -> ${b.bytes} bytes`);
  const broken = checkTolerance(measuredFor(m.fidelity, m.comparison), rec.tolerance);
  for (const f of broken) failures.push(`fidelity outside tolerance: ${f}`);
  changes.push(...failures);
  // Fidelity figures that moved but hold the tolerance are reported, not failed.
  const keys: Array<keyof Fidelity> = ['relErr', 'maxAbs', 'cosine', 'top1', 'perplexity'];
  for (const k of keys) {
    const x = rec.fidelity[k];
    const y = m.fidelity[k];
    if (x === undefined && y === undefined) continue;
    if (x === undefined || y === undefined || Math.abs(x - y) > 1e-9 * Math.max(1, Math.abs(x))) {
      if (!broken.length) changes.push(`fidelity ${k} ${x === undefined ? '-' : fmt(x)} -> ${y === undefined ? '-' : fmt(y)} (within tolerance)`);
    }
  }
  return { changes, failures };
}

/** `--only` items: a model folder, MODEL/VARIANT, or either with * wildcards (e.g. any model's cuda-fp16). */
function selected(model: string, variant: string, only: string[] | undefined): boolean {
  const glob = (pattern: string) => new RegExp(`^${pattern.split('*').map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
  return !only?.length || only.some((o) => glob(o).test(model) || glob(o).test(`${model}/${variant}`));
}

export async function checkGolden(options: CheckOptions): Promise<GoldenCheckResult> {
  const t0 = performance.now();
  const dir = resolve(options.dir);
  const jobs: Array<{ model: string; file: string; record: GoldenVariant }> = [];
  for (const model of listModels(dir)) {
    for (const { file, record } of listVariants(join(dir, model))) if (selected(model, record.variant, options.only)) jobs.push({ model, file, record });
  }
  if (options.only?.length && !jobs.length) throw new PeftcError(`${dir}: no golden variant matches ${options.only.join(', ')}`);
  const variants: VariantCheck[] = [];
  const refs = new Map<string, GoldenReference>();
  for (const [i, job] of jobs.entries()) {
    options.onVariant?.(i, jobs.length, `${job.model}/${job.record.variant}`);
    const t1 = performance.now();
    const modelDir = join(dir, job.model);
    const ref = refs.get(job.model) ?? refs.set(job.model, readReference(modelDir)).get(job.model)!;
    let m: Measurement;
    try {
      m = await measureVariant(modelDir, ref, job.record.compile, options, `${job.model}/${job.record.variant}`);
    } catch (err) {
      if (!(err instanceof PeftcError)) throw err;
      const why = `cannot compile or run: ${err.message}`;
      variants.push({ model: job.model, variant: job.record.variant, file: job.file, ok: false, changes: [why], failures: [why], record: job.record, ms: performance.now() - t1 });
      continue;
    }
    const { changes, failures } = compareRecord(job.record, m);
    if (m.placement?.onCpu.length) {
      const { compute, shape, runtimeMade } = m.placement.cpu ?? { compute: m.placement.onCpu, shape: [], runtimeMade: [] };
      if (compute.length) changes.push(`onnxruntime placed ${compute.length} compute node(s) of the artifact on the CPU provider: ${compute.join(', ')}`);
      if (shape.length + runtimeMade.length) changes.push(`on the CPU provider as onnxruntime chooses: ${shape.length} shape-computation node(s), ${runtimeMade.length} node(s) its own optimizations made`);
    }
    variants.push({
      model: job.model,
      variant: job.record.variant,
      file: job.file,
      ok: failures.length === 0,
      changes,
      failures,
      record: job.record,
      measured: { artifact: m.artifact, fidelity: m.fidelity },
      ...(m.placement ? { placement: m.placement } : {}),
      ms: performance.now() - t1,
    });
  }
  options.onVariant?.(jobs.length, jobs.length, 'done');
  return { ok: variants.every((v) => v.ok), variants, ms: performance.now() - t0 };
}

export interface UpdateOptions extends CheckOptions {
  /** Recompute each record's tolerance from the new figures instead of keeping it. */
  retolerance?: boolean;
}

/**
 * Rewrites the records whose figures changed (nothing else is touched) and returns what moved.
 * A record whose new fidelity breaks its kept tolerance is not rewritten and fails the update.
 */
export async function updateGolden(options: UpdateOptions): Promise<GoldenCheckResult> {
  // records hold CPU-provider figures (reproducible on any machine); a GPU run is a check only
  if (options.ep && options.ep !== 'cpu') throw new PeftcError(`golden update records figures measured on the CPU provider; --ep ${options.ep} goes with golden check`);
  const result = await checkGolden(options);
  for (const v of result.variants) {
    if (!v.measured || v.changes.length === 0) {
      v.ok = !!v.measured;
      continue;
    }
    const m = v.measured;
    const ratio = m.fidelity.perplexity !== undefined ? m.fidelity.perplexity / m.fidelity.referencePerplexity! : undefined;
    const overall = { elements: 0, maxAbs: m.fidelity.maxAbs, meanAbs: m.fidelity.meanAbs, relErr: m.fidelity.relErr, cosine: m.fidelity.cosine, nonFinite: 0, ...(m.fidelity.top1 !== undefined ? { top1: m.fidelity.top1 } : {}) };
    const tolerance = options.retolerance ? recordedTolerance(v.record.compile.quant, overall, ratio) : v.record.tolerance;
    const broken = checkTolerance({ overall, ...(ratio !== undefined ? { perplexityRatio: ratio } : {}) }, tolerance);
    if (broken.length) {
      v.ok = false;
      v.failures = broken.map((b) => `not updated: ${b} breaks the recorded tolerance (--retolerance recomputes it)`);
      continue;
    }
    const record: GoldenVariant = { ...v.record, artifact: m.artifact, fidelity: m.fidelity, tolerance, recorded: { peftc: PEFTC_VERSION, onnxruntime: ORT_VERSION } };
    writeJson(v.file, record);
    v.ok = true;
    v.failures = [];
  }
  result.ok = result.variants.every((v) => v.ok);
  return result;
}

/** A check or update as text: one line per variant, its changes indented under it. */
export function renderGoldenResult(r: GoldenCheckResult, verb: 'check' | 'update'): string {
  const lines: string[] = [];
  for (const v of r.variants) {
    const status = !v.ok ? 'FAIL' : v.changes.length ? (verb === 'update' ? 'updated' : 'ok*') : 'ok';
    const f = v.measured?.fidelity;
    const figs = f ? `  rel err ${fmt(f.relErr)}  cos ${f.cosine.toFixed(6)}${f.top1 !== undefined ? `  top-1 ${(f.top1 * 100).toFixed(1)}%` : ''}${f.perplexity !== undefined ? `  ppl ${f.perplexity.toFixed(4)}` : ''}` : '';
    lines.push(`${status.padEnd(7)} ${`${v.model}/${v.variant}`.padEnd(40)} ${(v.ms / 1000).toFixed(1).padStart(5)} s${figs}`);
    if (v.placement) lines.push(`          placement: ${Object.entries(v.placement.providers).map(([p, n]) => `${n.count} on ${p}`).join(', ')}`);
    for (const c of v.ok ? v.changes : v.failures) lines.push(`          ${c}`);
  }
  const failed = r.variants.filter((v) => !v.ok).length;
  const changed = r.variants.filter((v) => v.ok && v.changes.length).length;
  lines.push(
    verb === 'check'
      ? `golden check: ${r.variants.length} variant(s), ${failed} failed${changed ? `, ${changed} moved within tolerance` : ''} (${(r.ms / 1000).toFixed(1)} s)`
      : `golden update: ${r.variants.length} variant(s), ${changed} rewritten, ${failed} not updated (${(r.ms / 1000).toFixed(1)} s)`,
  );
  return lines.join('\n');
}

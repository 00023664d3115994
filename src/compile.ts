/**
 * `peftc compile`: decode, run the pipeline for the target, write the model atomically.
 * Later stages (adapter merge, quantization, target lowering) plug in here.
 */
import { existsSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { PeftcError } from './errors.js';
import { summarizeModel, type ModelSummary } from './inspect.js';
import type { ExternalPolicy } from './onnx/encode.js';
import { loadModel, saveModel, type SaveResult } from './onnx/io.js';
import { runPipeline, type PassReport } from '../passes/pass.js';
import { cleanupPipeline } from '../passes/pipelines.js';
import { mergeAdapters } from '../passes/lora-adapter-merge.js';
import { loadAdapter, type Adapter } from './peft/adapter.js';

export const TARGETS = ['cpu', 'cuda', 'xla'] as const;
export type Target = (typeof TARGETS)[number];
export const QUANT_MODES = ['none', 'fp16', 'int8', 'int8-weight', 'int4', 'nf4'] as const;
export type QuantMode = (typeof QUANT_MODES)[number];

/** What this build can do; the rest is refused up front with a clear message. */
const IMPLEMENTED_TARGETS: readonly Target[] = ['cpu'];
const IMPLEMENTED_QUANT: readonly QuantMode[] = ['none'];

export interface CompileOptions {
  target: Target;
  quant: QuantMode;
  /** Output file, or a folder (existing, or ending in '/') to write <input name> into. */
  output: string;
  /** Run the IR invariant checker after every pass. */
  check?: boolean;
  foldMaxBytes?: number;
  /** Leave unmerged LoRA branches in the graph (default: merge them). */
  keepLora?: boolean;
  /** PEFT adapter folders to merge, each with the weight of its delta. */
  lora?: Array<{ dir: string; weight: number }>;
  externalData?: ExternalPolicy;
  log?: (message: string) => void;
  onReport?: (report: PassReport) => void;
}

export interface CompileResult {
  input: string;
  output: string;
  target: Target;
  quant: QuantMode;
  before: ModelSummary;
  after: ModelSummary;
  passes: PassReport[];
  written: SaveResult;
  ms: { load: number; passes: number; save: number; total: number };
}

export function resolveOutputPath(input: string, output: string): string {
  const isDir = output.endsWith('/') || (existsSync(output) && statSync(output).isDirectory());
  const path = isDir ? join(output, basename(input)) : output;
  if (!existsSync(dirname(resolve(path)))) throw new PeftcError(`${output}: the output folder ${dirname(resolve(path))} does not exist`);
  return path;
}

export function compileModel(input: string, options: CompileOptions): CompileResult {
  if (!IMPLEMENTED_TARGETS.includes(options.target)) {
    throw new PeftcError(`--target ${options.target} is not available in this build yet (available: ${IMPLEMENTED_TARGETS.join(', ')})`);
  }
  if (!IMPLEMENTED_QUANT.includes(options.quant)) {
    throw new PeftcError(`--quant ${options.quant} is not available in this build yet (available: ${IMPLEMENTED_QUANT.join(', ')})`);
  }
  const output = resolveOutputPath(input, options.output);
  const t0 = performance.now();
  // Adapters are read (headers only) before the model, so a bad adapter fails fast.
  const adapters: Adapter[] = (options.lora ?? []).map(({ dir, weight }) => loadAdapter(dir, weight));
  const model = loadModel(input);
  const before = summarizeModel(model);
  const t1 = performance.now();
  const merge = adapters.length
    ? runPipeline(model, [mergeAdapters(adapters)], { check: options.check, log: options.log, onReport: options.onReport })
    : [];
  const cleanup = runPipeline(model, cleanupPipeline({ fold: { maxBytes: options.foldMaxBytes }, mergeLora: !options.keepLora }), {
    fixpoint: true,
    check: options.check,
    log: options.log,
    onReport: options.onReport,
  });
  const passes = [...merge, ...cleanup];
  const after = summarizeModel(model);
  const t2 = performance.now();
  const written = saveModel(model, output, { externalData: options.externalData });
  const t3 = performance.now();
  return {
    input,
    output: written.path,
    target: options.target,
    quant: options.quant,
    before,
    after,
    passes,
    written,
    ms: { load: t1 - t0, passes: t2 - t1, save: t3 - t2, total: t3 - t0 },
  };
}

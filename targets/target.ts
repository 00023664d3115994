/**
 * The target contract. A target is one folder under targets/: the runtime it deploys to, the
 * quantization modes it accepts, the passes it runs after cleanup (before and after weight
 * quantization), its legality check (the nodes its runtime cannot run), and how its artifacts are
 * verified on this machine. compile (src/compile.ts) runs the same skeleton for every target:
 *
 *   load -> [adapter merge] -> cleanup -> target.beforeQuant -> weight quantization
 *        -> target.afterQuant -> legality check -> write
 *
 * Adding a target = one folder and one line in targets/index.ts.
 */
import type { Pass } from '../passes/pass.js';
import type { Model } from '../src/ir/model.js';
import type { Tensor } from '../src/ir/tensor.js';
import type { SaveResult } from '../src/onnx/io.js';

export type QuantModeName = 'none' | 'fp16' | 'bf16' | 'int8' | 'int8-weight' | 'int4' | 'nf4' | 'uint8' | 'uint16' | 'int8-dynamic';

/** Options a target's passes receive (from compile's flags). */
export interface LoweringOptions {
  quant: QuantModeName;
  /** Activations' precision for weight-only modes where the target has a choice (cuda int4: fp16 by default). */
  activations?: 'fp16' | 'fp32';
  /** Graph input/output element type for fp16/bf16 artifacts (default fp32: callers keep feeding float32). */
  ioTypes?: 'fp32' | 'fp16';
  /** Fusions to run: undefined = the target's default set, [] = none. */
  fuse?: readonly string[];
  /** Values observed to overflow float16 on calibration data (kept in float32 by the precision pass). */
  overflowing?: ReadonlySet<string>;
  log?: (message: string) => void;
}

/** A node the target's runtime has no kernel for, as the legality check reports it. */
export interface Fallback {
  node: string;
  op: string;
  domain: string;
  /** Why: no kernel at this opset, or which input's type no kernel takes. */
  reason: string;
}

export interface LegalityReport {
  /** What the table describes, e.g. "onnxruntime 1.24 CUDAExecutionProvider kernels". */
  table: string;
  nodes: number;
  fallbacks: Fallback[];
  /** Values crossing between fallback nodes and the rest: device <-> host copies per run. */
  copies: number;
}

export interface Target {
  readonly name: string;
  /** The runtime its artifacts run on, in words. */
  readonly runtime: string;
  readonly quantModes: readonly QuantModeName[];
  /** Weight-only quantization's default form on this target. */
  readonly weightFormat: 'matmulnbits' | 'qdq';
  /** Passes after cleanup, before weight quantization (fusion, shape fixing). */
  beforeQuant(options: LoweringOptions): Pass[];
  /** Passes after weight quantization (precision conversion). */
  afterQuant(options: LoweringOptions): Pass[];
  /** false when nodes the legality check rejects have nowhere else to run (tfjs, xla): compile refuses them. */
  readonly fallsBack?: boolean;
  /** The nodes this target's runtime cannot run; undefined when the target has no table. */
  legality?(model: Model): LegalityReport;
  /**
   * A model that computes what the artifact computes and runs on onnxruntime's CPU provider (the
   * artifact itself when it does): how this machine verifies the artifact. Says in `how` what
   * was done (e.g. "float16 emulated: float32 compute, every float16 value rounded after each op").
   */
  cpuEquivalent?(model: Model): { model: Model; how: string } | undefined;
  /**
   * Targets whose artifact is not an ONNX model (xla) write it themselves: `output` is the path
   * compile resolved (a folder for such targets). Default: the ONNX model, written atomically.
   */
  write?(model: Model, output: string, context: WriteContext): SaveResult;
  /** Where `output` is a folder (the artifact is several files). */
  readonly writesFolder?: boolean;
  /**
   * Opens an artifact of this target for running on this machine, when onnxruntime cannot run it
   * (xla: the StableHLO reference interpreter). verify, golden and sweeps use it.
   */
  openArtifact?(path: string): Promise<ModelRunner>;
}

export interface WriteContext {
  /** The source model's path (for manifests: its SHA-256, its name). */
  source: string;
  /** The compile options that matter to the artifact, for its manifest. */
  options: Record<string, unknown>;
  log?: (message: string) => void;
}

/** What verification needs of something that runs a model (OrtSession is one). */
export interface ModelRunner {
  readonly label: string;
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  run(feeds: Record<string, Tensor>, fetch?: readonly string[]): Promise<Record<string, Tensor>>;
  release(): Promise<void>;
}

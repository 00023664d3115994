/**
 * The results file that `peftc bench --sweep ... --json` writes and `peftc report` reads: one
 * row per compiled variant (target x quant) of one source model, with the figures the trade-off
 * study needs (fidelity, latency, size, memory). Kept as plain data so any tool can read it.
 */

/** Fidelity of a variant's outputs against the source model's (golden) outputs. */
export interface Fidelity {
  /** Largest |candidate - reference| over every float output element. */
  maxAbs: number;
  /** Mean |candidate - reference|. */
  meanAbs: number;
  /** ||candidate - reference||_2 / ||reference||_2 over all float outputs. */
  relErr: number;
  /** Cosine similarity of the flattened outputs (1 = same direction). */
  cosine: number;
  /** Share of positions whose argmax over the last axis agrees (classifier-like or LM outputs). */
  top1?: number;
  /** Causal LMs: perplexity of the candidate on the input windows (next-token NLL). */
  perplexity?: number;
  /** Causal LMs: the reference model's perplexity on the same windows. */
  referencePerplexity?: number;
}

export interface LatencyStats {
  /** Per-run latency after warm-up, milliseconds (median round's percentiles). */
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  /** Spread of the per-round p50 over rounds: min and max. */
  p50MinMs: number;
  p50MaxMs: number;
  /** Runs per second at p50 (batch as fed). */
  throughput: number;
}

export interface SweepVariant {
  /** e.g. "cpu-int4". */
  label: string;
  target: string;
  quant: string;
  /** Path of the compiled artifact. */
  artifact: string;
  /** Artifact size on disk (model + external data), bytes. */
  bytes: number;
  nodes: number;
  /** Set when the variant could not be compiled, verified or timed; figures are then absent. */
  error?: string;
  /** A remark that is not an error (e.g. why a variant was not timed here). */
  note?: string;
  fidelity?: Fidelity;
  latency?: LatencyStats;
  /** Session creation, median over rounds, ms. */
  sessionMs?: number;
  /** Peak RSS of the child process that opened and ran the model, MiB (max over rounds). */
  peakRssMiB?: number;
  /** Latency p50 of this variant / p50 of the first variant (the baseline), same run. */
  latencyRatio?: number;
  /** bytes / bytes of the first variant. */
  sizeRatio?: number;
}

export interface SweepResults {
  kind: 'peftc-sweep';
  /** The source model. */
  model: string;
  /** ISO time the sweep finished. */
  date: string;
  machine: { cpus: number; cpuModel: string; memGiB: number; node: string; onnxruntime: string };
  settings: { rounds: number; runs: number; threads: number };
  variants: SweepVariant[];
}

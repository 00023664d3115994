/**
 * The pass contract and the pass manager.
 *
 * A pass is a named transformation of a Model in place that reports whether it changed anything
 * and any counts worth showing. The manager runs a pipeline (optionally repeated until nothing
 * changes), times each pass, counts nodes before/after, runs the IR invariant checker after each
 * pass when asked, and wraps any failure with the pass's name and the passes that ran before it,
 * so an error says where in the pipeline it happened.
 */
import { PeftcError } from '../src/errors.js';
import { checkModel } from '../src/ir/invariants.js';
import type { Model } from '../src/ir/model.js';
import type { Graph } from '../src/ir/graph.js';

export interface PassResult {
  changed: boolean;
  /** Pass-specific counts (e.g. folded: 12, bytesSaved: 4096). */
  details?: Record<string, number | string>;
}

export interface PassContext {
  /** Progress/diagnostic messages for the user (stderr in the CLI). */
  log(message: string): void;
}

export interface Pass {
  readonly name: string;
  /** One line: what the pass rewrites. */
  readonly description: string;
  run(model: Model, ctx: PassContext): PassResult;
}

export interface PassReport {
  pass: string;
  iteration: number;
  changed: boolean;
  nodesBefore: number;
  nodesAfter: number;
  ms: number;
  details: Record<string, number | string>;
}

export interface PipelineOptions {
  /** Repeat the whole pipeline until no pass changes anything (at most maxIterations rounds). */
  fixpoint?: boolean;
  maxIterations?: number;
  /** Run the IR invariant checker after every pass (tests and --check). */
  check?: boolean;
  log?: (message: string) => void;
  /** Called after each pass (for progress output). */
  onReport?: (report: PassReport) => void;
}

/** Nodes in the main graph, its subgraphs and local functions. */
export function countNodes(model: Model): number {
  const inGraph = (g: Graph): number => {
    let n = g.nodes.length;
    for (const s of g.subgraphs()) n += s.nodes.length;
    return n;
  };
  return inGraph(model.graph) + model.functions.reduce((s, f) => s + inGraph(f.body), 0);
}

export function runPipeline(model: Model, passes: readonly Pass[], options: PipelineOptions = {}): PassReport[] {
  const reports: PassReport[] = [];
  const ctx: PassContext = { log: options.log ?? (() => {}) };
  const rounds = options.fixpoint ? (options.maxIterations ?? 8) : 1;
  const ran: string[] = [];
  for (let iteration = 1; iteration <= rounds; iteration++) {
    let anyChange = false;
    for (const pass of passes) {
      const nodesBefore = countNodes(model);
      const t0 = performance.now();
      let result: PassResult;
      try {
        result = pass.run(model, ctx);
      } catch (err) {
        const after = ran.length ? ` (after ${ran.join(', ')})` : '';
        const msg = err instanceof Error ? err.message : String(err);
        throw new PeftcError(`pass '${pass.name}' failed${after}: ${msg}`, err instanceof PeftcError ? err.exitCode : 2, { cause: err });
      }
      const ms = performance.now() - t0;
      ran.push(pass.name);
      if (options.check) {
        const problems = checkModel(model);
        if (problems.length) {
          throw new PeftcError(`pass '${pass.name}' left the IR invalid:\n${problems.slice(0, 10).map((p) => `  - ${p}`).join('\n')}`);
        }
      }
      const report: PassReport = {
        pass: pass.name,
        iteration,
        changed: result.changed,
        nodesBefore,
        nodesAfter: countNodes(model),
        ms,
        details: result.details ?? {},
      };
      reports.push(report);
      options.onReport?.(report);
      anyChange ||= result.changed;
    }
    if (!anyChange) break;
  }
  return reports;
}

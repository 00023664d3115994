/**
 * The standard pipelines. `cleanup` is what every compile runs before target-specific work:
 * merge unmerged LoRA branches, infer shapes, fold constants, drop no-ops and duplicates, sweep dead code,
 * repeated until nothing changes (folding exposes no-ops and LoRA branches whose transposes were
 * left to the runtime; removing no-ops exposes more folding).
 */
import { commonSubexpressionElimination } from './common-subexpression.js';
import { constantFolding, type ConstantFoldOptions } from './constant-fold.js';
import { deadCodeElimination } from './dead-code.js';
import { dedupeInitializers } from './dedupe-initializers.js';
import { noopElimination } from './noop-elimination.js';
import { mergeLoraBranches } from './lora-branch-merge.js';
import type { Pass } from './pass.js';
import { shapeInference } from './shape-inference.js';

export interface CleanupOptions {
  fold?: ConstantFoldOptions;
  /** Fold unmerged LoRA branches into base weights (default true; --keep-lora turns it off). */
  mergeLora?: boolean;
}

export function cleanupPipeline(options: CleanupOptions = {}): Pass[] {
  return [
    ...(options.mergeLora === false ? [] : [mergeLoraBranches()]),
    shapeInference,
    constantFolding(options.fold),
    noopElimination,
    commonSubexpressionElimination,
    dedupeInitializers,
    deadCodeElimination,
  ];
}

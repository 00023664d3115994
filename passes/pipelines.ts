/**
 * The standard pipelines. `cleanup` is what every compile runs before target-specific work:
 * infer shapes, fold constants, drop no-ops and duplicates, sweep dead code, repeated until
 * nothing changes (folding exposes no-ops, removing no-ops exposes more folding).
 */
import { commonSubexpressionElimination } from './common-subexpression.js';
import { constantFolding, type ConstantFoldOptions } from './constant-fold.js';
import { deadCodeElimination } from './dead-code.js';
import { dedupeInitializers } from './dedupe-initializers.js';
import { noopElimination } from './noop-elimination.js';
import type { Pass } from './pass.js';

export interface CleanupOptions {
  fold?: ConstantFoldOptions;
}

export function cleanupPipeline(options: CleanupOptions = {}): Pass[] {
  return [
    constantFolding(options.fold),
    noopElimination,
    commonSubexpressionElimination,
    dedupeInitializers,
    deadCodeElimination,
  ];
}

/**
 * The path of a built script that runs in a child process (bench children, the placement probe).
 * From the built modules (dist/) it is beside them; from the TypeScript sources (vitest) it is the
 * built copy under dist/, which `npm test` builds first.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PeftcError } from './errors.js';

const here = dirname(fileURLToPath(import.meta.url));
const built = here.split(/[\\/]/).includes('dist');

/** `relative` is from the repository root, e.g. 'src/bench/child.js'. */
export function builtScript(relative: string): string {
  const path = join(here, '..', ...(built ? [] : ['dist']), relative);
  if (!existsSync(path)) throw new PeftcError(`${path} is missing; run npm run build`);
  return path;
}

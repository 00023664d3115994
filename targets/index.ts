/** The targets compile knows, by name. Adding a target = its folder plus one line here. */
import { PeftcError } from '../src/errors.js';
import { cpuTarget } from './cpu/index.js';
import { cudaTarget } from './cuda/index.js';
import { xlaTarget } from './xla/index.js';
import { tfjsTarget } from './tfjs/index.js';
import type { Target } from './target.js';

export const TARGET_LIST: readonly Target[] = [cpuTarget, cudaTarget, tfjsTarget, xlaTarget];

export function getTarget(name: string): Target {
  const t = TARGET_LIST.find((x) => x.name === name);
  if (!t) throw new PeftcError(`--target ${name} is not a target of this build (targets: ${TARGET_LIST.map((x) => x.name).join(', ')})`);
  return t;
}

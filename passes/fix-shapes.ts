/**
 * Fixes symbolic input dimensions (`--shape input_ids=1x128`): the named graph inputs get the
 * given static shape, so shape inference and folding downstream see static shapes everywhere
 * (the form XLA needs, and a help to any runtime). A dimension that is already fixed must match;
 * an unknown input name, or a rank that differs, is refused naming the input. Values inside the
 * graph keep whatever types they had; cleanup's shape inference then refines them.
 */
import { PeftcError } from '../src/errors.js';
import type { Model } from '../src/ir/model.js';
import { shapeOf } from '../src/ir/types.js';
import type { Pass, PassResult } from './pass.js';

/** Parses `name=1x128` items into { name: [1, 128] }. */
export function parseShapes(items: readonly string[]): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const item of items) {
    const m = /^(.+)=(\d+(?:x\d+)*)$/.exec(item);
    if (!m) throw new PeftcError(`--shape '${item}': give INPUT=D1xD2x... (e.g. input_ids=1x128)`);
    out[m[1]!] = m[2]!.split('x').map(Number);
  }
  return out;
}

export function fixShapes(shapes: Readonly<Record<string, readonly number[]>>): Pass {
  return {
    name: 'fix-shapes',
    description: 'give named graph inputs static shapes (--shape)',
    run(model: Model): PassResult {
      const g = model.graph;
      const inputs = g.inputs.filter((v) => !v.initializer);
      let fixed = 0;
      for (const [name, dims] of Object.entries(shapes)) {
        const v = inputs.find((x) => x.name === name);
        if (!v) throw new PeftcError(`--shape ${name}=${dims.join('x')}: the model has no input '${name}' (inputs: ${inputs.map((x) => `'${x.name}'`).join(', ')})`);
        if (v.type?.kind !== 'tensor') throw new PeftcError(`--shape ${name}: input '${name}' is not a tensor`);
        const want = shapeOf(v.type);
        if (want && want.length !== dims.length) throw new PeftcError(`--shape ${name}=${dims.join('x')}: input '${name}' has rank ${want.length} ([${want.map((d) => d ?? '?').join(', ')}])`);
        want?.forEach((d, i) => {
          if (typeof d === 'number' && d !== dims[i]) throw new PeftcError(`--shape ${name}=${dims.join('x')}: dimension ${i} of input '${name}' is fixed at ${d}`);
        });
        v.type = { ...v.type, shape: dims.map((d) => ({ value: d })) };
        fixed++;
      }
      return { changed: fixed > 0, details: { inputs: fixed } };
    },
  };
}

/**
 * ONNX's own operator schemas (type constraints per op version, default domain) as data:
 * targets/onnx/schemas.json, generated from the onnx package by gen-schema-table.py. Used to keep
 * rewrites valid ONNX at the model's opset (ConstantOfShape takes bfloat16 only from opset 20, Range
 * never takes float16...). The table covers opsets up to its `max_opset` (17 with Debian's
 * python3-onnx 1.12); beyond that, and for other domains, nothing is claimed.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Node, Value } from '../../src/ir/graph.js';
import type { Model } from '../../src/ir/model.js';
import { KernelIndex, type KernelTable } from '../legality.js';

const here = dirname(fileURLToPath(import.meta.url));
let schemas: { index: KernelIndex; maxOpset: number } | undefined;

function load(): { index: KernelIndex; maxOpset: number } {
  if (!schemas) {
    const candidates = [join(here, 'schemas.json'), join(here, '..', '..', '..', 'targets', 'onnx', 'schemas.json')];
    for (const f of candidates) {
      try {
        const table = JSON.parse(readFileSync(f, 'utf8')) as KernelTable & { source: { max_opset?: number } };
        schemas = { index: new KernelIndex(table), maxOpset: table.source.max_opset ?? 0 };
        break;
      } catch {
        // next candidate
      }
    }
    if (!schemas) throw new Error(`targets/onnx/schemas.json is missing (looked in ${candidates.join(', ')})`);
  }
  return schemas;
}

/**
 * Why ONNX's schema rejects `node` with the element types `typeOf` gives (undefined when it
 * accepts it, or when the table says nothing: another domain, an opset past the table's, an op
 * it does not know).
 */
export function schemaWhyNot(model: Model, node: Node, typeOf?: (v: Value) => number | undefined): string | undefined {
  if (node.domain !== '') return undefined;
  const { index, maxOpset } = load();
  const version = model.opsetVersion('') ?? 1;
  if (version > maxOpset || !index.kernel('', node.opType, version)) return undefined;
  return index.whyNot(model, node, typeOf);
}

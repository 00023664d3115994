/**
 * Structural comparison of two IR models, for round-trip checks: returns a description of the
 * first difference, or null when the models are identical. Tensors compare by dtype, dims and
 * data bytes, whatever their storage (inline, external, typed array), so "decode -> encode ->
 * decode" is identical even when the encoder moved data to a side file.
 */
import { attributeGraphs, type Attribute } from './attribute.js';
import type { Graph, Value } from './graph.js';
import type { IrFunction, Model } from './model.js';
import type { MetadataProps, SparseTensor, Tensor } from './tensor.js';
import type { TypeInfo } from './types.js';

type Diff = string | null;

const same = (a: unknown, b: unknown, path: string): Diff =>
  Object.is(a, b) ? null : `${path}: ${JSON.stringify(String(a))} != ${JSON.stringify(String(b))}`;

function first(...diffs: Array<() => Diff>): Diff {
  for (const d of diffs) {
    const r = d();
    if (r) return r;
  }
  return null;
}

function list<T>(a: readonly T[], b: readonly T[], path: string, cmp: (x: T, y: T, p: string) => Diff): Diff {
  if (a.length !== b.length) return `${path}: length ${a.length} != ${b.length}`;
  for (let i = 0; i < a.length; i++) {
    const d = cmp(a[i]!, b[i]!, `${path}[${i}]`);
    if (d) return d;
  }
  return null;
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

const metadata = (a: MetadataProps, b: MetadataProps, p: string): Diff =>
  list(a, b, p, (x, y, q) => first(() => same(x[0], y[0], `${q}.key`), () => same(x[1], y[1], `${q}.value`)));

export function diffTensors(a: Tensor, b: Tensor, path: string): Diff {
  return first(
    () => same(a.name, b.name, `${path}.name`),
    () => same(a.dtype, b.dtype, `${path}.dtype`),
    () => list(a.dims, b.dims, `${path}.dims`, same),
    () => same(a.docString, b.docString, `${path}.docString`),
    () => metadata(a.metadataProps, b.metadataProps, `${path}.metadataProps`),
    () => {
      if (a.source.kind === 'strings' || b.source.kind === 'strings') {
        return list(a.strings(), b.strings(), `${path}.strings`, (x, y, q) => (bytesEqual(x, y) ? null : `${q}: string bytes differ`));
      }
      if (a.byteLength !== b.byteLength) return `${path}: byte length ${a.byteLength} != ${b.byteLength}`;
      const ca = a.chunks();
      const cb = b.chunks();
      // Compare chunk streams without holding either tensor whole (external data may be large).
      // Chunks stay valid after the next one is read (Tensor.chunks), so no copies are needed.
      // The generators are closed when the comparison stops early, so their files are closed.
      try {
        let bufA: Uint8Array = new Uint8Array(0);
        let bufB: Uint8Array = new Uint8Array(0);
        for (;;) {
          if (bufA.byteLength === 0) {
            const n = ca.next();
            bufA = n.done ? new Uint8Array(0) : n.value;
          }
          if (bufB.byteLength === 0) {
            const n = cb.next();
            bufB = n.done ? new Uint8Array(0) : n.value;
          }
          if (bufA.byteLength === 0 || bufB.byteLength === 0) {
            return bufA.byteLength === bufB.byteLength ? null : `${path}: data lengths differ`;
          }
          const k = Math.min(bufA.byteLength, bufB.byteLength);
          if (!bytesEqual(bufA.subarray(0, k), bufB.subarray(0, k))) return `${path}: data bytes differ`;
          bufA = bufA.subarray(k);
          bufB = bufB.subarray(k);
        }
      } finally {
        ca.return(undefined);
        cb.return(undefined);
      }
    },
  );
}

function diffSparse(a: SparseTensor, b: SparseTensor, path: string): Diff {
  return first(
    () => diffTensors(a.values, b.values, `${path}.values`),
    () => diffTensors(a.indices, b.indices, `${path}.indices`),
    () => list(a.dims, b.dims, `${path}.dims`, same),
  );
}

/**
 * A type in canonical form (fixed field order, absent and empty denotations alike), so that two
 * TypeInfo objects built with their keys in different orders compare equal.
 */
function canonicalType(t: TypeInfo | undefined): unknown {
  if (t === undefined) return null;
  const den = t.denotation || null;
  switch (t.kind) {
    case 'tensor':
    case 'sparse_tensor':
      return [t.kind, t.elemType, t.shape?.map((d) => [d.value ?? null, d.param ?? null, d.denotation || null]) ?? null, den];
    case 'sequence':
    case 'optional':
      return [t.kind, canonicalType(t.elem), den];
    case 'map':
      return [t.kind, t.keyType, canonicalType(t.value), den];
    case 'opaque':
      return [t.kind, t.domain, t.name, den];
    case 'none':
      return [t.kind, den];
    default:
      return [(t as { kind: unknown }).kind, JSON.stringify(t)];
  }
}

export function diffTypes(a: TypeInfo | undefined, b: TypeInfo | undefined, path: string): Diff {
  const ca = JSON.stringify(canonicalType(a));
  const cb = JSON.stringify(canonicalType(b));
  return ca === cb ? null : `${path}: type ${ca} != ${cb}`;
}

const opsets = (a: Array<{ domain: string; version: number }>, b: Array<{ domain: string; version: number }>, path: string): Diff =>
  list(a, b, path, (x, y, q) => first(() => same(x.domain, y.domain, `${q}.domain`), () => same(x.version, y.version, `${q}.version`)));

function diffAttribute(a: Attribute, b: Attribute, path: string): Diff {
  const base = first(
    () => same(a.name, b.name, `${path}.name`),
    () => same(a.type, b.type, `${path}.type`),
    () => same(a.docString ?? '', b.docString ?? '', `${path}.docString`),
  );
  if (base) return base;
  const p = `${path}(${a.name})`;
  switch (a.type) {
    case 'ref':
      return first(
        () => same(a.refAttrName, (b as typeof a).refAttrName, `${p}.refAttrName`),
        () => same(a.declaredType, (b as typeof a).declaredType, `${p}.declaredType`),
      );
    case 'float':
    case 'int':
      return same(a.value, (b as typeof a).value, p);
    case 'floats':
    case 'ints':
      return list<number | bigint>(a.value, (b as typeof a).value, p, same);
    case 'string':
      return bytesEqual(a.value, (b as typeof a).value) ? null : `${p}: string differs`;
    case 'strings':
      return list(a.value, (b as typeof a).value, p, (x, y, q) => (bytesEqual(x, y) ? null : `${q}: string differs`));
    case 'tensor':
      return diffTensors(a.value, (b as typeof a).value, p);
    case 'tensors':
      return list(a.value, (b as typeof a).value, p, diffTensors);
    case 'sparse_tensor':
      return diffSparse(a.value, (b as typeof a).value, p);
    case 'sparse_tensors':
      return list(a.value, (b as typeof a).value, p, diffSparse);
    case 'type_proto':
      return diffTypes(a.value, (b as typeof a).value, p);
    case 'type_protos':
      return list(a.value, (b as typeof a).value, p, diffTypes);
    case 'graph':
    case 'graphs':
      return list(attributeGraphs(a), attributeGraphs(b), p, diffGraphs);
  }
}

const valueName = (v: Value | null): string => (v ? v.name : '');

function diffValueInfo(a: Value, b: Value, path: string): Diff {
  return first(
    () => same(a.name, b.name, `${path}.name`),
    () => diffTypes(a.type, b.type, `${path}(${a.name}).type`),
    () => same(a.docString, b.docString, `${path}(${a.name}).docString`),
    () => metadata(a.metadataProps, b.metadataProps, `${path}(${a.name}).metadataProps`),
  );
}

export function diffGraphs(a: Graph, b: Graph, path = 'graph'): Diff {
  return first(
    () => same(a.name, b.name, `${path}.name`),
    () => same(a.docString, b.docString, `${path}.docString`),
    () => metadata(a.metadataProps, b.metadataProps, `${path}.metadataProps`),
    () => list(a.inputs, b.inputs, `${path}.inputs`, diffValueInfo),
    () => list(a.outputs, b.outputs, `${path}.outputs`, diffValueInfo),
    () => list(a.valueInfos, b.valueInfos, `${path}.valueInfo`, diffValueInfo),
    () => list(a.initializers, b.initializers, `${path}.initializers`, (x, y, q) => diffTensors(x.initializer!, y.initializer!, `${q}(${x.name})`)),
    () => list(a.sparseInitializers, b.sparseInitializers, `${path}.sparseInitializers`, (x, y, q) => diffSparse(x.sparseInitializer!, y.sparseInitializer!, q)),
    () =>
      list(a.quantizationAnnotations, b.quantizationAnnotations, `${path}.quantizationAnnotations`, (x, y, q) =>
        first(() => same(x.tensorName, y.tensorName, `${q}.tensorName`), () => metadata(x.params, y.params, `${q}.params`)),
      ),
    () =>
      list(a.nodes, b.nodes, `${path}.nodes`, (x, y, q) => {
        const label = `${q}(${x.name || x.opType})`;
        return first(
          () => same(x.name, y.name, `${label}.name`),
          () => same(x.opType, y.opType, `${label}.opType`),
          () => same(x.domain, y.domain, `${label}.domain`),
          () => same(x.overload, y.overload, `${label}.overload`),
          () => same(x.docString, y.docString, `${label}.docString`),
          () => metadata(x.metadataProps, y.metadataProps, `${label}.metadataProps`),
          () => list(x.deviceConfigurations, y.deviceConfigurations, `${label}.deviceConfigurations`, (s, t, r) => (bytesEqual(s, t) ? null : `${r}: differs`)),
          () => list(x.inputs.map(valueName), y.inputs.map(valueName), `${label}.inputs`, same),
          () => list(x.outputs.map(valueName), y.outputs.map(valueName), `${label}.outputs`, same),
          () => list(x.attributes, y.attributes, `${label}.attributes`, diffAttribute),
        );
      }),
  );
}

function diffFunctions(a: IrFunction, b: IrFunction, path: string): Diff {
  return first(
    () => same(a.key, b.key, `${path}.key`),
    () => same(a.docString, b.docString, `${path}.docString`),
    () => metadata(a.metadataProps, b.metadataProps, `${path}.metadataProps`),
    () => opsets(a.opsetImports, b.opsetImports, `${path}.opsetImports`),
    () => list(a.attributeNames, b.attributeNames, `${path}.attributeNames`, same),
    () => list(a.attributeDefaults, b.attributeDefaults, `${path}.attributeDefaults`, diffAttribute),
    () => diffGraphs(a.body, b.body, `${path}.body`),
  );
}

export function diffModels(a: Model, b: Model): Diff {
  return first(
    () => same(a.irVersion, b.irVersion, 'irVersion'),
    () => opsets(a.opsetImports, b.opsetImports, 'opsetImports'),
    () => same(a.producerName, b.producerName, 'producerName'),
    () => same(a.producerVersion, b.producerVersion, 'producerVersion'),
    () => same(a.domain, b.domain, 'domain'),
    () => same(a.modelVersion, b.modelVersion, 'modelVersion'),
    () => same(a.docString, b.docString, 'docString'),
    () => metadata(a.metadataProps, b.metadataProps, 'metadataProps'),
    () => list(a.trainingInfo, b.trainingInfo, 'trainingInfo', (x, y, p) => (bytesEqual(x, y) ? null : `${p}: differs`)),
    () => list(a.configuration, b.configuration, 'configuration', (x, y, p) => (bytesEqual(x, y) ? null : `${p}: differs`)),
    () => list(a.functions, b.functions, 'functions', diffFunctions),
    () => diffGraphs(a.graph, b.graph),
  );
}

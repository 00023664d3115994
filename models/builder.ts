/**
 * A small builder for IR models, used by tests, benchmarks and the embedded default model:
 *
 *   const b = new ModelBuilder({ opset: 17 });
 *   const x = b.input('x', DataType.FLOAT, [2, 4]);
 *   const w = b.initializer('w', DataType.FLOAT, [4, 3], Float32Array.from(...));
 *   b.output(b.op('MatMul', [x, w]));
 *   const model = b.build();
 *
 * Names are generated when not given; attributes take plain numbers, arrays, strings or tensors.
 */
import { textBytes, type Attribute, type AttrValue } from '../src/ir/attribute.js';
import { DataType, type TypedArray } from '../src/ir/dtype.js';
import type { Graph, Value } from '../src/ir/graph.js';
import { Model } from '../src/ir/model.js';
import { Tensor } from '../src/ir/tensor.js';
import { tensorType } from '../src/ir/types.js';

export type AttrInput = number | bigint | string | number[] | bigint[] | string[] | Tensor | Graph | { float: number } | { floats: number[] };

export function toAttribute(name: string, v: AttrInput): Attribute {
  let value: AttrValue;
  if (v instanceof Tensor) value = { type: 'tensor', value: v };
  else if (typeof v === 'bigint') value = { type: 'int', value: v };
  else if (typeof v === 'number') value = Number.isInteger(v) ? { type: 'int', value: BigInt(v) } : { type: 'float', value: Math.fround(v) };
  else if (typeof v === 'string') value = { type: 'string', value: textBytes(v) };
  else if (Array.isArray(v)) {
    if (v.length > 0 && typeof v[0] === 'string') value = { type: 'strings', value: (v as string[]).map(textBytes) };
    else if (v.every((x) => typeof x === 'bigint' || Number.isInteger(x))) value = { type: 'ints', value: (v as Array<number | bigint>).map((x) => BigInt(x)) };
    else value = { type: 'floats', value: (v as number[]).map(Math.fround) };
  } else if ('float' in v) value = { type: 'float', value: Math.fround(v.float) };
  else if ('floats' in v) value = { type: 'floats', value: v.floats.map(Math.fround) };
  else value = { type: 'graph', value: v };
  return { ...value, name } as Attribute;
}

export class ModelBuilder {
  readonly model = new Model();
  readonly graph: Graph;
  private counter = 0;

  constructor(options: { opset?: number; irVersion?: number; extraOpsets?: Record<string, number> } = {}) {
    this.model.irVersion = options.irVersion ?? 8;
    this.model.opsetImports = [{ domain: '', version: options.opset ?? 17 }];
    for (const [domain, version] of Object.entries(options.extraOpsets ?? {})) this.model.opsetImports.push({ domain, version });
    this.model.producerName = 'peftc-builder';
    this.graph = this.model.graph;
    this.graph.name = 'main';
  }

  private fresh(prefix: string): string {
    return this.graph.uniqueName(`${prefix}_${this.counter++}`);
  }

  input(name: string, dtype: DataType, shape: Array<number | string | null>): Value {
    const v = this.graph.createValue(name, tensorType(dtype, shape));
    this.graph.inputs.push(v);
    return v;
  }

  initializer(name: string | undefined, dtype: DataType, dims: number[], data: TypedArray): Value {
    const n = name ?? this.fresh('const');
    return this.graph.addInitializer(Tensor.fromTypedArray(n, dtype, dims, data));
  }

  /** Adds a node with one output (or `outputs` outputs) and returns its first output. */
  op(opType: string, inputs: Array<Value | null>, attributes: Record<string, AttrInput> = {}, options: { domain?: string; name?: string; outputs?: number } = {}): Value {
    return this.opMulti(opType, inputs, attributes, options)[0]!;
  }

  opMulti(opType: string, inputs: Array<Value | null>, attributes: Record<string, AttrInput> = {}, options: { domain?: string; name?: string; outputs?: number } = {}): Value[] {
    const name = options.name ?? this.fresh(opType);
    const outs = Array.from({ length: options.outputs ?? 1 }, (_, i) => this.graph.uniqueName(`${name}_out${i}`));
    const node = this.graph.addNode(opType, inputs, outs, {
      domain: options.domain ?? '',
      name,
      attributes: Object.entries(attributes).map(([k, v]) => toAttribute(k, v)),
    });
    return node.outputs as Value[];
  }

  output(v: Value, type?: { dtype: DataType; shape: Array<number | string | null> }): void {
    if (type) v.type = tensorType(type.dtype, type.shape);
    this.graph.outputs.push(v);
  }

  build(): Model {
    return this.model;
  }
}

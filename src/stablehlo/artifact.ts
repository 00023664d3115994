/**
 * Runs an xla artifact folder (model.mlir + weights.safetensors + manifest.json, the format
 * targets/xla/README.md describes) in the reference interpreter, as a ModelRunner that verify and
 * golden use like an onnxruntime session.
 *
 * The folder is read as data: manifest.json says which @main argument is which model input or
 * which safetensors tensor (and how sub-byte tensors are packed); model.mlir is parsed and checked
 * (well-formedness, the spec's result types) before anything runs; every argument's type is checked
 * against @main's signature. Nothing here knows how the module was produced.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ModelRunner } from '../../targets/target.js';
import { PeftcError } from '../errors.js';
import { bfloat16BitsToFloat32, DataType, dtypeFromName, dtypeName, float16BitsToFloat32, float32ToBfloat16Bits, float32ToFloat16Bits } from '../ir/dtype.js';
import { Tensor } from '../ir/tensor.js';
import { readSafetensors } from '../peft/safetensors.js';
import { Program } from './evaluate.js';
import { parseModule } from './parser.js';
import { allocate, checkExactInteger, formatType, numElements, parseElementType, sameType, tensorOf, type ElementType, type HloTensor, type TensorType } from './types.js';

export interface ManifestArgument {
  name: string;
  kind: 'input' | 'weight';
  /** The MLIR type of the @main argument, e.g. tensor<256x256xi4>. */
  type: string;
  /** For weights: the safetensors tensor holding it, its stored dtype, and sub-byte packing. */
  tensor?: string;
  storage?: string;
  packing?: string;
}

export interface ManifestOutput {
  name: string;
  type: string;
  /** The ONNX element type name of the output (float32, int64, bool, ...). */
  dtype: string;
}

export interface XlaManifest {
  format: string;
  module: string;
  weights: string;
  entry: string;
  arguments: ManifestArgument[];
  outputs: ManifestOutput[];
}

/** `tensor<2x3xf32>` -> its type (the interpreter's own reading of the manifest's strings). */
export function parseTensorType(text: string): TensorType {
  const m = /^tensor<((?:\d+x)*)([a-z0-9]+)>$/.exec(text.trim());
  const element = m ? parseElementType(m[2]!) : undefined;
  if (!m || !element) throw new PeftcError(`'${text}' is not a static tensor type`);
  return { shape: m[1] ? m[1].slice(0, -1).split('x').map(Number) : [], element };
}

/** MLIR element type of an ONNX dtype, for inputs and outputs. */
const ONNX_ELEMENTS: Partial<Record<DataType, ElementType>> = {
  [DataType.FLOAT]: 'f32',
  [DataType.DOUBLE]: 'f64',
  [DataType.FLOAT16]: 'f16',
  [DataType.BFLOAT16]: 'bf16',
  [DataType.INT64]: 'i64',
  [DataType.INT32]: 'i32',
  [DataType.INT16]: 'i16',
  [DataType.INT8]: 'i8',
  [DataType.UINT8]: 'ui8',
  [DataType.UINT16]: 'ui16',
  [DataType.UINT32]: 'ui32',
  [DataType.UINT64]: 'ui64',
  [DataType.BOOL]: 'i1',
};

/** An IR tensor's elements as interpreter storage of `type` (which must be its own type). */
export function fromIrTensor(t: Tensor, type: TensorType, what: string): HloTensor {
  const element = ONNX_ELEMENTS[t.dtype as DataType];
  if (element !== type.element) throw new PeftcError(`${what} is ${dtypeName(t.dtype)}, the module takes ${type.element}`);
  if (t.dims.length !== type.shape.length || t.dims.some((d, i) => d !== type.shape[i])) {
    throw new PeftcError(`${what} has shape [${t.dims.join(', ')}], the module takes [${type.shape.join(', ')}] (the artifact was compiled for static shapes: recompile with --shape)`);
  }
  const out = allocate(type);
  const src = t.toTypedArray() as ArrayLike<number | bigint>;
  if (element === 'f16') for (let i = 0; i < out.length; i++) out[i] = float16BitsToFloat32(Number(src[i]));
  else if (element === 'bf16') for (let i = 0; i < out.length; i++) out[i] = bfloat16BitsToFloat32(Number(src[i]));
  else if (element === 'i64' || element === 'ui64') for (let i = 0; i < out.length; i++) out[i] = checkExactInteger(element, Number(src[i]));
  else for (let i = 0; i < out.length; i++) out[i] = Number(src[i]);
  return tensorOf(type, out);
}

/** Interpreter storage as an IR tensor of ONNX dtype `dtype`. */
export function toIrTensor(name: string, v: HloTensor, dtype: DataType): Tensor {
  if (ONNX_ELEMENTS[dtype] !== v.type.element) throw new PeftcError(`output '${name}' is ${v.type.element}, the manifest says ${dtypeName(dtype)}`);
  const dims = [...v.type.shape];
  const n = v.data.length;
  switch (dtype) {
    case DataType.FLOAT:
      return Tensor.fromTypedArray(name, dtype, dims, Float32Array.from(v.data));
    case DataType.DOUBLE:
      return Tensor.fromTypedArray(name, dtype, dims, Float64Array.from(v.data));
    case DataType.FLOAT16:
      return Tensor.fromTypedArray(name, dtype, dims, Uint16Array.from(v.data, (x) => float32ToFloat16Bits(x)));
    case DataType.BFLOAT16:
      return Tensor.fromTypedArray(name, dtype, dims, Uint16Array.from(v.data, (x) => float32ToBfloat16Bits(x)));
    case DataType.INT64: {
      const out = new BigInt64Array(n);
      for (let i = 0; i < n; i++) out[i] = BigInt(v.data[i]!);
      return Tensor.fromTypedArray(name, dtype, dims, out);
    }
    case DataType.UINT64: {
      const out = new BigUint64Array(n);
      for (let i = 0; i < n; i++) out[i] = BigInt(v.data[i]!);
      return Tensor.fromTypedArray(name, dtype, dims, out);
    }
    case DataType.INT32:
      return Tensor.fromTypedArray(name, dtype, dims, Int32Array.from(v.data));
    case DataType.INT16:
      return Tensor.fromTypedArray(name, dtype, dims, Int16Array.from(v.data));
    case DataType.INT8:
      return Tensor.fromTypedArray(name, dtype, dims, Int8Array.from(v.data));
    case DataType.UINT8:
    case DataType.BOOL:
      return Tensor.fromTypedArray(name, dtype, dims, Uint8Array.from(v.data));
    case DataType.UINT16:
      return Tensor.fromTypedArray(name, dtype, dims, Uint16Array.from(v.data));
    case DataType.UINT32:
      return Tensor.fromTypedArray(name, dtype, dims, Uint32Array.from(v.data));
    default:
      throw new PeftcError(`output '${name}': ${dtypeName(dtype)} outputs are not supported`);
  }
}

/** A weight's stored bytes as interpreter storage of the argument's type. */
function weightFromBytes(bytes: Uint8Array, storage: string, type: TensorType, packing: string | undefined, what: string): HloTensor {
  const n = numElements(type.shape);
  const out = allocate(type);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const need = (width: number) => {
    if (bytes.byteLength !== n * width) throw new PeftcError(`${what}: ${bytes.byteLength} bytes stored, ${formatType(type)} as ${storage} needs ${n * width}`);
  };
  const e = type.element;
  if (e === 'i4' || e === 'ui4') {
    if (storage !== 'U8' || packing !== 'int4-low-nibble-first') throw new PeftcError(`${what}: ${e} weights must be stored as U8 with packing 'int4-low-nibble-first' (got ${storage}, ${packing ?? 'no packing'})`);
    if (bytes.byteLength !== Math.ceil(n / 2)) throw new PeftcError(`${what}: ${bytes.byteLength} bytes stored, ${n} 4-bit elements need ${Math.ceil(n / 2)}`);
    for (let i = 0; i < n; i++) {
      const v = (bytes[i >> 1]! >> ((i & 1) * 4)) & 15;
      out[i] = e === 'i4' && v >= 8 ? v - 16 : v;
    }
    return tensorOf(type, out);
  }
  const expected: Record<string, ElementType> = { F32: 'f32', F64: 'f64', F16: 'f16', BF16: 'bf16', I64: 'i64', I32: 'i32', I16: 'i16', I8: 'i8', U8: 'ui8', U16: 'ui16', U32: 'ui32', BOOL: 'i1' };
  if (expected[storage] !== e) throw new PeftcError(`${what}: stored as ${storage}, the module takes ${e}`);
  switch (storage) {
    case 'F32':
      need(4);
      for (let i = 0; i < n; i++) out[i] = view.getFloat32(4 * i, true);
      break;
    case 'F64':
      need(8);
      for (let i = 0; i < n; i++) out[i] = view.getFloat64(8 * i, true);
      break;
    case 'F16':
      need(2);
      for (let i = 0; i < n; i++) out[i] = float16BitsToFloat32(view.getUint16(2 * i, true));
      break;
    case 'BF16':
      need(2);
      for (let i = 0; i < n; i++) out[i] = bfloat16BitsToFloat32(view.getUint16(2 * i, true));
      break;
    case 'I64':
      need(8);
      for (let i = 0; i < n; i++) out[i] = checkExactInteger('i64', Number(view.getBigInt64(8 * i, true)));
      break;
    case 'I32':
      need(4);
      for (let i = 0; i < n; i++) out[i] = view.getInt32(4 * i, true);
      break;
    case 'I16':
      need(2);
      for (let i = 0; i < n; i++) out[i] = view.getInt16(2 * i, true);
      break;
    case 'U16':
      need(2);
      for (let i = 0; i < n; i++) out[i] = view.getUint16(2 * i, true);
      break;
    case 'U32':
      need(4);
      for (let i = 0; i < n; i++) out[i] = view.getUint32(4 * i, true);
      break;
    case 'I8':
      need(1);
      for (let i = 0; i < n; i++) out[i] = view.getInt8(i);
      break;
    default: // U8, BOOL
      need(1);
      for (let i = 0; i < n; i++) out[i] = e === 'i1' ? (bytes[i] ? 1 : 0) : bytes[i]!;
  }
  return tensorOf(type, out);
}

export function readManifest(dir: string): XlaManifest {
  const path = join(dir, 'manifest.json');
  let m: XlaManifest;
  try {
    m = JSON.parse(readFileSync(path, 'utf8')) as XlaManifest;
  } catch (err) {
    throw new PeftcError(`${path}: cannot read the manifest: ${(err as Error).message}`);
  }
  if (typeof m.format !== 'string' || !m.format.startsWith('peftc-xla/') || !Array.isArray(m.arguments) || !Array.isArray(m.outputs)) {
    throw new PeftcError(`${path}: not a peftc xla manifest (format ${JSON.stringify(m.format)})`);
  }
  return m;
}

/** Opens an artifact folder for running here: parses and checks the module, loads the weights. */
export function openStablehloArtifact(dir: string): ModelRunner {
  const manifest = readManifest(dir);
  const modulePath = join(dir, manifest.module);
  let program: Program;
  try {
    program = Program.fromModule(parseModule(readFileSync(modulePath, 'utf8')));
  } catch (err) {
    throw new PeftcError(`${modulePath}: ${(err as Error).message}`, 2, { cause: err });
  }
  const entry = program.func(manifest.entry);
  if (entry.args.length !== manifest.arguments.length) throw new PeftcError(`${modulePath}: @${manifest.entry} takes ${entry.args.length} arguments, the manifest lists ${manifest.arguments.length}`);
  if (entry.resultTypes.length !== manifest.outputs.length) throw new PeftcError(`${modulePath}: @${manifest.entry} returns ${entry.resultTypes.length} values, the manifest lists ${manifest.outputs.length} outputs`);
  const types = manifest.arguments.map((a, i) => {
    const t = parseTensorType(a.type);
    if (!sameType(t, entry.args[i]!.type)) throw new PeftcError(`${modulePath}: argument ${i} ('${a.name}') is ${formatType(entry.args[i]!.type)} in @${manifest.entry}, ${a.type} in the manifest`);
    return t;
  });
  manifest.outputs.forEach((o, i) => {
    if (!sameType(parseTensorType(o.type), entry.resultTypes[i]!)) throw new PeftcError(`${modulePath}: result ${i} ('${o.name}') is ${formatType(entry.resultTypes[i]!)}, the manifest says ${o.type}`);
  });
  const weightsPath = join(dir, manifest.weights);
  const hasWeights = manifest.arguments.some((a) => a.kind === 'weight');
  const file = hasWeights ? readSafetensors(weightsPath) : undefined;
  const bound: Array<HloTensor | undefined> = manifest.arguments.map((a, i) => {
    if (a.kind !== 'weight') return undefined;
    const stored = file!.tensors.get(a.tensor ?? a.name);
    if (!stored) throw new PeftcError(`${weightsPath}: has no tensor '${a.tensor ?? a.name}' (argument ${i})`);
    const storage = ({ [DataType.FLOAT]: 'F32', [DataType.DOUBLE]: 'F64', [DataType.FLOAT16]: 'F16', [DataType.BFLOAT16]: 'BF16', [DataType.INT64]: 'I64', [DataType.INT32]: 'I32', [DataType.INT16]: 'I16', [DataType.INT8]: 'I8', [DataType.UINT8]: 'U8', [DataType.UINT16]: 'U16', [DataType.UINT32]: 'U32', [DataType.BOOL]: 'BOOL' } as Record<number, string>)[stored.dtype];
    if (!storage || (a.storage !== undefined && a.storage !== storage)) throw new PeftcError(`${weightsPath}: tensor '${stored.name}' is stored as ${storage ?? dtypeName(stored.dtype)}, the manifest says ${a.storage}`);
    return weightFromBytes(stored.bytes(), storage, types[i]!, a.packing, `${weightsPath}: tensor '${stored.name}'`);
  });
  const inputNames = manifest.arguments.filter((a) => a.kind === 'input').map((a) => a.name);
  const outputNames = manifest.outputs.map((o) => o.name);
  const outputTypes = manifest.outputs.map((o) => {
    const d = dtypeFromName(o.dtype);
    if (d === undefined) throw new PeftcError(`${dir}/manifest.json: output '${o.name}' has unknown dtype '${o.dtype}'`);
    return d;
  });
  return {
    label: `${dir} (StableHLO reference interpreter)`,
    inputNames,
    outputNames,
    async run(feeds, fetch) {
      const args = manifest.arguments.map((a, i) => {
        if (a.kind === 'weight') return bound[i]!;
        const t = feeds[a.name];
        if (!t) throw new PeftcError(`${dir}: input '${a.name}' was not fed`);
        return fromIrTensor(t, types[i]!, `input '${a.name}'`);
      });
      let results: HloTensor[];
      try {
        results = program.run(manifest.entry, args);
      } catch (err) {
        throw new PeftcError(`${modulePath}: ${(err as Error).message}`, 2, { cause: err });
      }
      const out: Record<string, Tensor> = {};
      const want = new Set(fetch ?? outputNames);
      outputNames.forEach((name, i) => {
        if (want.has(name)) out[name] = toIrTensor(name, results[i]!, outputTypes[i]!);
      });
      return out;
    },
    async release() {},
  };
}

/**
 * Runs a TF.js graph-model artifact here: tfjs-converter's loadGraphModel through an IOHandler
 * that reads model.json and its shards from files (no network, no fetch), on tfjs-core's CPU
 * backend (pure JavaScript) or its WebAssembly backend. Feeds and results are peftc Tensors in
 * the ONNX model's types: int64 inputs are narrowed to int32 on the way in (refused when a value
 * does not fit) and int64 outputs widened on the way out.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { loadGraphModel, type GraphModel } from '@tensorflow/tfjs-converter';
import { PeftcError } from '../../src/errors.js';
import { DataType, dtypeFromName, dtypeName } from '../../src/ir/dtype.js';
import { Tensor } from '../../src/ir/tensor.js';
import type { ModelRunner } from '../target.js';
import type { TfjsArtifactInfo } from './artifact.js';
import { modelJsonPath, readModelJson } from './model-json.js';

export { modelJsonPath, readModelJson };

export type TfjsBackend = 'cpu' | 'wasm';

/** An IOHandler that loads model.json and every shard its manifest names from the file system. */
export function fileIOHandler(path: string): tf.io.IOHandler {
  const file = modelJsonPath(path);
  return {
    load: async () => {
      const json = readModelJson(file);
      const weightSpecs: tf.io.WeightsManifestEntry[] = [];
      const weightData: ArrayBuffer[] = [];
      for (const group of json.weightsManifest ?? []) {
        weightSpecs.push(...group.weights);
        for (const p of group.paths) {
          const bytes = readFileSync(join(dirname(file), p));
          weightData.push(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer);
        }
      }
      return {
        modelTopology: json.modelTopology,
        format: json.format,
        generatedBy: json.generatedBy,
        convertedBy: json.convertedBy,
        signature: json.signature,
        userDefinedMetadata: json.userDefinedMetadata as unknown as Record<string, {}>,
        weightSpecs,
        weightData,
      };
    },
  };
}

let wasmLoaded: Promise<unknown> | undefined;

/** Makes `backend` tfjs-core's current backend (the wasm backend is imported on first use). */
export async function useBackend(backend: TfjsBackend): Promise<void> {
  // Production mode only silences TF.js's console notes (the tfjs-node hint: the CPU backend is chosen on purpose).
  tf.enableProdMode();
  if (backend === 'wasm') wasmLoaded ??= import('@tensorflow/tfjs-backend-wasm');
  await wasmLoaded;
  if (tf.getBackend() !== backend && !(await tf.setBackend(backend))) throw new PeftcError(`TF.js backend '${backend}' could not be initialized`);
  await tf.ready();
}

function toTf(name: string, t: Tensor, want: { onnxType: string; shape: number[] }): tf.Tensor {
  const dims = [...t.dims];
  if (dims.length !== want.shape.length || dims.some((d, i) => d !== want.shape[i])) {
    throw new PeftcError(`input '${name}' is [${dims.join(', ')}]; the TF.js artifact was compiled for [${want.shape.join(', ')}] (compile with --shape ${name}=${dims.join('x')} for this size)`);
  }
  const expected = dtypeFromName(want.onnxType);
  if (expected !== undefined && t.dtype !== expected) throw new PeftcError(`input '${name}' is ${dtypeName(t.dtype)}; the model takes ${want.onnxType}`);
  switch (t.dtype) {
    case DataType.FLOAT:
      return tf.tensor(t.toTypedArray() as Float32Array, dims, 'float32');
    case DataType.INT32:
      return tf.tensor(t.toTypedArray() as Int32Array, dims, 'int32');
    case DataType.INT64: {
      const src = t.toTypedArray() as BigInt64Array;
      const out = new Int32Array(src.length);
      for (let i = 0; i < src.length; i++) {
        const x = src[i]!;
        if (x > 2147483647n || x < -2147483648n) throw new PeftcError(`input '${name}' holds ${x}, outside int32: TF.js has no int64`);
        out[i] = Number(x);
      }
      return tf.tensor(out, dims, 'int32');
    }
    case DataType.BOOL:
      return tf.tensor(t.toTypedArray() as Uint8Array, dims, 'bool');
    default:
      throw new PeftcError(`input '${name}' is ${dtypeName(t.dtype)}: TF.js takes float32, int32/int64 and bool`);
  }
}

function fromTf(name: string, data: Float32Array | Int32Array | Uint8Array, shape: number[], onnxType: string): Tensor {
  const type = dtypeFromName(onnxType) ?? DataType.FLOAT;
  if (type === DataType.INT64) return Tensor.fromTypedArray(name, DataType.INT64, shape, BigInt64Array.from(data as Int32Array, (x) => BigInt(x)));
  if (type === DataType.BOOL) return Tensor.fromTypedArray(name, DataType.BOOL, shape, Uint8Array.from(data as Uint8Array));
  if (type === DataType.INT32) return Tensor.fromTypedArray(name, DataType.INT32, shape, Int32Array.from(data as Int32Array));
  return Tensor.fromTypedArray(name, DataType.FLOAT, shape, Float32Array.from(data as Float32Array));
}

/** A loaded TF.js artifact as a ModelRunner (verify, golden, sweeps and bench use it). */
export class TfjsRunner implements ModelRunner {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];

  private constructor(
    readonly label: string,
    private readonly model: GraphModel,
    readonly info: TfjsArtifactInfo,
    readonly backend: TfjsBackend,
  ) {
    this.inputNames = info.inputs.map((i) => i.name);
    this.outputNames = info.outputs.map((o) => o.name);
  }

  static async open(path: string, backend: TfjsBackend = 'cpu'): Promise<TfjsRunner> {
    const file = modelJsonPath(path);
    const json = readModelJson(file);
    const info = json.userDefinedMetadata?.peftc;
    if (!info) throw new PeftcError(`${file}: not written by peftc --target tfjs (no userDefinedMetadata.peftc: the ONNX names and types of the inputs and outputs)`);
    await useBackend(backend);
    let model: GraphModel;
    try {
      model = await loadGraphModel(fileIOHandler(file));
    } catch (err) {
      throw new PeftcError(`${file}: tfjs-converter cannot load it: ${(err as Error).message}`);
    }
    return new TfjsRunner(`${file} (TF.js ${tf.version_core} ${backend} backend, tfjs-converter loadGraphModel)`, model, info, backend);
  }

  async run(feeds: Record<string, Tensor>, fetch?: readonly string[]): Promise<Record<string, Tensor>> {
    await useBackend(this.backend);
    const inputs: tf.NamedTensorMap = {};
    const wanted = fetch ?? this.outputNames;
    try {
      for (const i of this.info.inputs) {
        const t = feeds[i.name];
        if (!t) throw new PeftcError(`no feed for input '${i.name}' (the TF.js artifact takes ${this.inputNames.join(', ')})`);
        inputs[i.name] = toTf(i.name, t, i);
      }
      for (const name of wanted) if (!this.outputNames.includes(name)) throw new PeftcError(`the TF.js artifact has no output '${name}' (outputs: ${this.outputNames.join(', ')})`);
      const result = this.model.execute(inputs, [...wanted]);
      const list = Array.isArray(result) ? result : [result];
      const out: Record<string, Tensor> = {};
      for (let k = 0; k < wanted.length; k++) {
        const name = wanted[k]!;
        const t = list[k]!;
        const meta = this.info.outputs.find((o) => o.name === name)!;
        out[name] = fromTf(name, (await t.data()) as Float32Array | Int32Array | Uint8Array, t.shape, meta.onnxType);
        t.dispose();
      }
      return out;
    } finally {
      for (const t of Object.values(inputs)) t.dispose();
    }
  }

  async release(): Promise<void> {
    this.model.dispose();
  }
}

/** The target's openArtifact: the artifact on tfjs-core's CPU backend. */
export const openTfjsArtifact = (path: string, backend: TfjsBackend = 'cpu'): Promise<TfjsRunner> => TfjsRunner.open(path, backend);

/**
 * The onnxruntime-node bridge: run a model (IR, bytes or file) on IR tensors.
 *
 * IR tensors and ort tensors share memory where the layouts agree (typed-array views over the
 * same bytes; float16 as Uint16Array bit patterns; bool as Uint8Array). Sessions default to one
 * thread each for intra- and inter-op work, so results are reproducible run to run.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { PeftcError } from '../errors.js';
import { bytesText, textBytes } from '../ir/attribute.js';
import { DataType, dtypeName, type TypedArray } from '../ir/dtype.js';
import type { Model } from '../ir/model.js';
import { Tensor } from '../ir/tensor.js';
import { encodeModel } from '../onnx/encode.js';
import { saveModel } from '../onnx/io.js';

const ORT_TYPES: Partial<Record<DataType, ort.Tensor.Type>> = {
  [DataType.FLOAT]: 'float32',
  [DataType.UINT8]: 'uint8',
  [DataType.INT8]: 'int8',
  [DataType.UINT16]: 'uint16',
  [DataType.INT16]: 'int16',
  [DataType.INT32]: 'int32',
  [DataType.INT64]: 'int64',
  [DataType.STRING]: 'string',
  [DataType.BOOL]: 'bool',
  [DataType.FLOAT16]: 'float16',
  [DataType.DOUBLE]: 'float64',
  [DataType.UINT32]: 'uint32',
  [DataType.UINT64]: 'uint64',
};

const FROM_ORT = new Map<string, DataType>(Object.entries(ORT_TYPES).map(([k, v]) => [v!, Number(k) as DataType]));

export function toOrtTensor(t: Tensor): ort.Tensor {
  const type = ORT_TYPES[t.dtype];
  if (!type) throw new PeftcError(`tensor '${t.name}': onnxruntime-node cannot take ${dtypeName(t.dtype)} inputs`);
  const dims = [...t.dims];
  if (type === 'string') return new ort.Tensor('string', t.strings().map(bytesText), dims);
  return new ort.Tensor(type, t.toTypedArray() as never, dims);
}

export function fromOrtTensor(name: string, t: ort.Tensor): Tensor {
  const dtype = FROM_ORT.get(t.type);
  if (dtype === undefined) throw new PeftcError(`output '${name}': onnxruntime returned a ${t.type} tensor, which peftc does not read`);
  if (dtype === DataType.STRING) return Tensor.fromStrings(name, t.dims, (t.data as string[]).map(textBytes));
  return Tensor.fromTypedArray(name, dtype, t.dims, t.data as TypedArray);
}

export interface SessionOptions {
  /** Default 1 (reproducible). */
  intraOpThreads?: number;
  /** onnxruntime graph optimization level; default 'all' (what deployers get). */
  graphOptimization?: 'disabled' | 'basic' | 'extended' | 'all';
  /** Label used in error messages (a file name). */
  label?: string;
}

export class OrtSession {
  private constructor(
    private readonly session: ort.InferenceSession,
    readonly label: string,
    private readonly cleanup: () => void,
  ) {}

  /** Opens a session on a file path, encoded bytes, or an IR model (encoded inline, or via a temp folder when it has external data). */
  static async create(model: Model | Uint8Array | string, options: SessionOptions = {}): Promise<OrtSession> {
    const label = options.label ?? (typeof model === 'string' ? model : 'model');
    const opts: ort.InferenceSession.SessionOptions = {
      intraOpNumThreads: options.intraOpThreads ?? 1,
      interOpNumThreads: 1,
      graphOptimizationLevel: options.graphOptimization ?? 'all',
      logSeverityLevel: 4, // failures arrive as exceptions; keep onnxruntime's own log quiet
    };
    let cleanup = () => {};
    try {
      let session: ort.InferenceSession;
      if (typeof model === 'string') session = await ort.InferenceSession.create(model, opts);
      else if (model instanceof Uint8Array) session = await ort.InferenceSession.create(model, opts);
      else if (model.graph.initializers.some((v) => v.initializer!.prefersExternal)) {
        const dir = mkdtempSync(join(tmpdir(), 'peftc-ort-'));
        cleanup = () => rmSync(dir, { recursive: true, force: true });
        const path = join(dir, 'model.onnx');
        saveModel(model, path);
        session = await ort.InferenceSession.create(path, opts);
      } else session = await ort.InferenceSession.create(encodeModel(model), opts);
      return new OrtSession(session, label, cleanup);
    } catch (err) {
      cleanup();
      if (err instanceof PeftcError) throw err;
      throw new PeftcError(`${label}: onnxruntime cannot load the model: ${(err as Error).message}`, 2, { cause: err });
    }
  }

  get inputNames(): readonly string[] {
    return this.session.inputNames;
  }

  get outputNames(): readonly string[] {
    return this.session.outputNames;
  }

  async run(feeds: Record<string, Tensor>): Promise<Record<string, Tensor>> {
    // onnxruntime-node 1.30 aborts the whole process when it converts an int4/uint4 output to
    // JavaScript; refuse before running instead.
    for (const m of this.session.outputMetadata) {
      if (m.isTensor && (m.type === 'int4' || m.type === 'uint4')) {
        throw new PeftcError(`${this.label}: output '${m.name}' is ${m.type}, which onnxruntime-node cannot return (cast it to int8/uint8 in the model)`);
      }
    }
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const [k, v] of Object.entries(feeds)) ortFeeds[k] = toOrtTensor(v);
    let results: ort.InferenceSession.ReturnType;
    try {
      results = await this.session.run(ortFeeds);
    } catch (err) {
      throw new PeftcError(`${this.label}: onnxruntime failed to run the model: ${(err as Error).message}`, 2, { cause: err });
    }
    const out: Record<string, Tensor> = {};
    for (const name of this.session.outputNames) out[name] = fromOrtTensor(name, results[name]!);
    return out;
  }

  async release(): Promise<void> {
    try {
      await this.session.release();
    } finally {
      this.cleanup();
    }
  }
}

/** Opens a session, runs once, releases. */
export async function runModel(model: Model | Uint8Array | string, feeds: Record<string, Tensor>, options: SessionOptions = {}): Promise<Record<string, Tensor>> {
  const s = await OrtSession.create(model, options);
  try {
    return await s.run(feeds);
  } finally {
    await s.release();
  }
}

/**
 * The onnxruntime-node bridge: run a model (IR, bytes or file) on IR tensors.
 *
 * IR tensors and ort tensors share memory where the layouts agree (typed-array views over the
 * same bytes, copied only when an IR tensor's bytes are misaligned for their element size;
 * float16 as Uint16Array bit patterns; bool as Uint8Array 0/1). Strings go through JS strings and
 * must be valid UTF-8. onnxruntime-node 1.30 has no JavaScript form for bfloat16, float8, int4,
 * uint4, int2/uint2, float4 or complex tensors: feeding one is refused with a PeftcError naming
 * the input, and a model with an int4/uint4 output is refused before running (converting such an
 * output aborts the node process). Sessions default to one thread each for intra- and inter-op
 * work and sequential execution, so results are reproducible run to run.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { PeftcError } from '../errors.js';
import { textBytes } from '../ir/attribute.js';
import { DataType, dtypeName, type TypedArray } from '../ir/dtype.js';
import type { Graph } from '../ir/graph.js';
import type { Model } from '../ir/model.js';
import { Tensor } from '../ir/tensor.js';
import { encodeModel, PROTOBUF_LIMIT } from '../onnx/encode.js';
import { saveModel } from '../onnx/io.js';

/** IR dtype -> onnxruntime-node tensor type, for every type onnxruntime-node can move. */
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

/** The IR dtypes onnxruntime-node can take as inputs and return as outputs. */
export const ORT_DTYPES: readonly DataType[] = Object.keys(ORT_TYPES).map((k) => Number(k) as DataType);

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** An IR tensor as an ort.Tensor over the same memory (strings are decoded as UTF-8). */
export function toOrtTensor(t: Tensor, name = t.name): ort.Tensor {
  const type = ORT_TYPES[t.dtype];
  if (!type) {
    const hint = t.dtype === DataType.INT4 || t.dtype === DataType.UINT4 ? ' (feed it as int8/uint8 and Cast inside the model)' : '';
    throw new PeftcError(`tensor '${name}': onnxruntime-node cannot take ${dtypeName(t.dtype)} tensors${hint}`);
  }
  const dims = [...t.dims];
  if (type === 'string') {
    const strings = t.strings().map((s, i) => {
      try {
        return strictUtf8.decode(s);
      } catch {
        throw new PeftcError(`tensor '${name}': string element ${i} is not valid UTF-8, which onnxruntime-node cannot take`);
      }
    });
    return new ort.Tensor('string', strings, dims);
  }
  return new ort.Tensor(type, t.toTypedArray() as never, dims);
}

/** An ort.Tensor as an IR tensor over the same memory. */
export function fromOrtTensor(name: string, t: ort.Tensor): Tensor {
  const dtype = FROM_ORT.get(t.type);
  if (dtype === undefined) throw new PeftcError(`output '${name}': onnxruntime returned a ${t.type} tensor, which peftc does not read`);
  if (dtype === DataType.STRING) return Tensor.fromStrings(name, t.dims, (t.data as string[]).map(textBytes));
  return Tensor.fromTypedArray(name, dtype, t.dims, t.data as TypedArray);
}

export interface SessionOptions {
  /** Threads for one operator (default 1: reproducible). */
  intraOpThreads?: number;
  /** Threads across operators (default 1; more than 1 also turns on parallel execution). */
  interOpThreads?: number;
  /** onnxruntime graph optimization level; default 'all' (what deployers get). */
  graphOptimization?: 'disabled' | 'basic' | 'extended' | 'all';
  /** Name used in error messages (default: the path, or the graph's name). */
  label?: string;
  /**
   * Where onnxruntime runs the nodes (default 'cpu'). 'cuda' asks for the CUDA execution provider
   * first, the CPU provider taking what it cannot: that needs onnxruntime's CUDA provider libraries
   * beside onnxruntime-node's binding, which npm does not install (bench/gpu/README.md).
   */
  executionProvider?: ExecutionProvider;
  /** onnxruntime's own log level (default 4, fatal only); 0 prints node placement (placement.ts). */
  logSeverityLevel?: 0 | 1 | 2 | 3 | 4;
}

export const EXECUTION_PROVIDERS = ['cpu', 'cuda'] as const;
export type ExecutionProvider = (typeof EXECUTION_PROVIDERS)[number];

/** The tensor inputs/outputs a session declares (onnxruntime's view, after its optimizations). */
export interface IoInfo {
  name: string;
  /** Element type as onnxruntime names it (float32, int4, bfloat16...), or undefined for non-tensors. */
  type: string | undefined;
  isTensor: boolean;
  /** Dims; symbolic dims as strings, unknown as -1. */
  shape: ReadonlyArray<number | string> | undefined;
}

export class OrtSession {
  private constructor(
    private readonly session: ort.InferenceSession,
    readonly label: string,
    private readonly cleanup: () => void,
  ) {}

  /**
   * Opens a session on a file path, encoded bytes, or an IR model. An IR model is encoded inline,
   * or written to a temporary folder (removed on release) when it has external data or would not
   * fit in one protobuf message.
   */
  static async create(model: Model | Uint8Array | string, options: SessionOptions = {}): Promise<OrtSession> {
    const label = options.label ?? describe(model);
    const inter = options.interOpThreads ?? 1;
    const opts: ort.InferenceSession.SessionOptions = {
      intraOpNumThreads: options.intraOpThreads ?? 1,
      interOpNumThreads: inter,
      executionMode: inter > 1 ? 'parallel' : 'sequential',
      graphOptimizationLevel: options.graphOptimization ?? 'all',
      // failures arrive as exceptions; keep onnxruntime's own log quiet unless asked
      logSeverityLevel: options.logSeverityLevel ?? 4,
      // the CPU provider is always there and takes the nodes CUDA has no kernel for
      ...(options.executionProvider === 'cuda' ? { executionProviders: [{ name: 'cuda', deviceId: 0 }] } : {}),
    };
    let cleanup = () => {};
    try {
      let session: ort.InferenceSession;
      if (typeof model === 'string') {
        session = await ort.InferenceSession.create(model, opts);
      } else if (model instanceof Uint8Array) {
        session = await ort.InferenceSession.create(model, opts);
      } else if (needsFile(model)) {
        const dir = mkdtempSync(join(tmpdir(), 'peftc-ort-'));
        cleanup = () => rmSync(dir, { recursive: true, force: true });
        const path = join(dir, 'model.onnx');
        saveModel(model, path, { durable: false });
        session = await ort.InferenceSession.create(path, opts);
      } else {
        session = await ort.InferenceSession.create(encodeModel(model), opts);
      }
      return new OrtSession(session, label, cleanup);
    } catch (err) {
      cleanup();
      if (err instanceof PeftcError) throw err;
      if (options.executionProvider === 'cuda' && /cuda|provider/i.test(String((err as Error)?.message ?? err))) {
        throw ortError(`${label}: onnxruntime could not start its CUDA execution provider (onnxruntime-node ships without it; bench/gpu/README.md says how to put it beside the binding)`, err);
      }
      throw ortError(`${label}: onnxruntime cannot load the model`, err);
    }
  }

  get inputNames(): readonly string[] {
    return this.session.inputNames;
  }

  get outputNames(): readonly string[] {
    return this.session.outputNames;
  }

  get inputs(): IoInfo[] {
    return this.session.inputMetadata.map(ioInfo);
  }

  get outputs(): IoInfo[] {
    return this.session.outputMetadata.map(ioInfo);
  }

  /**
   * Runs the model. `fetch` limits the outputs computed and returned (default: all graph
   * outputs). Returned tensors own fresh memory (onnxruntime's output buffers).
   */
  async run(feeds: Record<string, Tensor>, fetch?: readonly string[]): Promise<Record<string, Tensor>> {
    const names = fetch ?? this.session.outputNames;
    // onnxruntime-node 1.30 aborts the whole process when it converts an int4/uint4 output to
    // JavaScript; refuse before running instead.
    for (const m of this.session.outputMetadata) {
      if (names.includes(m.name) && m.isTensor && (m.type === 'int4' || m.type === 'uint4')) {
        throw new PeftcError(`${this.label}: output '${m.name}' is ${m.type}, which onnxruntime-node cannot return (cast it to int8/uint8 in the model)`);
      }
    }
    for (const n of names) {
      if (!this.session.outputNames.includes(n)) throw new PeftcError(`${this.label}: no output named '${n}' (outputs: ${this.session.outputNames.join(', ')})`);
    }
    const missing = this.session.inputNames.filter((n) => !(n in feeds));
    if (missing.length) throw new PeftcError(`${this.label}: no value fed for input(s) ${missing.map((n) => `'${n}'`).join(', ')}`);
    const ortFeeds: Record<string, ort.Tensor> = {};
    // Names onnxruntime does not list (overridable initializers, typos) are left to it to judge.
    for (const [k, v] of Object.entries(feeds)) ortFeeds[k] = toOrtTensor(v, k);
    let results: ort.InferenceSession.ReturnType;
    try {
      results = await this.session.run(ortFeeds, [...names]);
    } catch (err) {
      throw ortError(`${this.label}: onnxruntime failed to run the model`, err);
    }
    const out: Record<string, Tensor> = {};
    for (const name of names) out[name] = fromOrtTensor(name, results[name]!);
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

/** Same as OrtSession.create. */
export function createSession(model: Model | Uint8Array | string, options: SessionOptions = {}): Promise<OrtSession> {
  return OrtSession.create(model, options);
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

function describe(model: Model | Uint8Array | string): string {
  if (typeof model === 'string') return model;
  if (model instanceof Uint8Array) return 'model';
  return model.graph.name ? `model '${model.graph.name}'` : 'model';
}

function ioInfo(m: ort.InferenceSession.ValueMetadata): IoInfo {
  return m.isTensor
    ? { name: m.name, type: m.type, isTensor: true, shape: m.shape.map((d) => (typeof d === 'string' ? d : Number(d))) }
    : { name: m.name, type: undefined, isTensor: false, shape: undefined };
}

/** Whether an IR model must go through a file: external data anywhere, or over protobuf's limit. */
function needsFile(model: Model): boolean {
  let bytes = 0;
  const walk = (g: Graph): boolean => {
    for (const v of g.initializers) {
      const t = v.initializer!;
      if (t.prefersExternal) return true;
      bytes += t.byteLength;
    }
    for (const n of g.nodes) for (const sub of n.subgraphs()) if (walk(sub)) return true;
    return false;
  };
  // Leave room for the graph itself; saveModel's 'auto' policy moves weights out past the limit.
  return walk(model.graph) || bytes > PROTOBUF_LIMIT - (64 << 20);
}

/**
 * An onnxruntime exception as a PeftcError: the first line of its message, with the node it
 * names (onnxruntime says "... running Conv node. Name:'conv1' ..." or "... node with name 'x'").
 */
function ortError(prefix: string, err: unknown): PeftcError {
  const msg = err instanceof Error ? err.message : String(err);
  const node = /running (\S+) node\. Name:'([^']*)'/.exec(msg) ?? /for (\S+?)\(\d+\) node with name '([^']*)'/.exec(msg);
  const where = node ? ` at node '${node[2]}' (${node[1]})` : '';
  return new PeftcError(`${prefix}${where}: ${msg.trim()}`, 2, { cause: err });
}

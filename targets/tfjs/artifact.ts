/**
 * Writes a TF.js graph model: `model.json` (format "graph-model": the GraphDef in JSON, the
 * signature keyed by the ONNX input/output names, the weights manifest) and the weight shards,
 * into a folder. The legality check runs first; a graph it refuses writes nothing. Files go to a
 * temporary folder inside the output folder and are renamed into place (model.json last), and
 * shard files of an earlier compile in that folder are removed, so the folder holds exactly one
 * artifact. Same model, same options: same bytes.
 */
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { PeftcError } from '../../src/errors.js';
import { dtypeName } from '../../src/ir/dtype.js';
import type { Model } from '../../src/ir/model.js';
import { STREAM_CHUNK_BYTES } from '../../src/ir/tensor.js';
import { PEFTC_VERSION } from '../../src/version.js';
import type { SaveResult } from '../../src/onnx/io.js';
import type { LegalityReport } from '../target.js';
import { TF_DT, tensorShape, type TfNodeDef } from './graphdef.js';
import { checkTfjs, refuseIllegal } from './legality.js';
import { lowerModel, type LoweredIo } from './lower.js';
import { TFJS_OPS } from './ops.js';
import { writeWeightShards, type QuantizedWeight, type TfjsWeightQuant, type WeightsManifestGroup } from './weights.js';

export const MODEL_JSON = 'model.json';

/** What peftc records about the artifact in model.json's userDefinedMetadata (TF.js ignores it). */
export interface TfjsArtifactInfo {
  producer: string;
  source: { name: string; sha256?: string };
  quant: TfjsWeightQuant;
  /** Graph inputs/outputs: ONNX name, TF node, ONNX element type name, static shape. */
  inputs: Array<{ name: string; node: string; onnxType: string; shape: number[] }>;
  outputs: Array<{ name: string; node: string; onnxType: string; shape: number[] }>;
  onnxNodes: number;
  tfNodes: number;
  tfOps: Record<string, number>;
  /** NCHW <-> NHWC conversions in the graph. */
  layoutConversions: number;
  weights: { tensors: number; bytes: number; unquantizedBytes: number; quantizedTensors: number; shards: number; clampedToFloat16: number };
}

export interface TfjsModelJson {
  format: 'graph-model';
  generatedBy: string;
  convertedBy: string;
  signature: { inputs: Record<string, TensorInfo>; outputs: Record<string, TensorInfo> };
  modelTopology: { node: TfNodeDef[]; library: Record<string, never>; versions: { producer: number; minConsumer: number } };
  weightsManifest: WeightsManifestGroup[];
  userDefinedMetadata: { peftc: TfjsArtifactInfo };
}

interface TensorInfo {
  name: string;
  dtype: string;
  tensorShape: ReturnType<typeof tensorShape>;
}

export interface TfjsWriteOptions {
  quant?: TfjsWeightQuant;
  /** float32 constants with fewer elements stay float32 when quantizing (default 1024). */
  minElements?: number;
  shardBytes?: number;
  /** The source model's path (its name and SHA-256 go into the metadata). */
  source?: string;
  log?: (message: string) => void;
}

export interface TfjsWriteResult extends SaveResult {
  legality: LegalityReport;
  info: TfjsArtifactInfo;
  quantized: QuantizedWeight[];
  files: string[];
}

/** SHA-256 of a file, read in chunks (undefined when it cannot be read). */
function sha256File(path: string): string | undefined {
  let fd: number | undefined;
  try {
    const h = createHash('sha256');
    fd = openSync(path, 'r');
    const buf = Buffer.allocUnsafe(STREAM_CHUNK_BYTES);
    for (let at = 0; ; ) {
      const n = readSync(fd, buf, 0, buf.byteLength, at);
      if (n <= 0) break;
      h.update(buf.subarray(0, n));
      at += n;
    }
    return h.digest('hex');
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

const ioInfo = (io: LoweredIo): TensorInfo => ({ name: `${io.node}:0`, dtype: TF_DT[io.dtype], tensorShape: tensorShape(io.shape) });

/** Lowers `model` and writes the artifact into the folder `outDir` (created if missing). */
export function writeTfjsArtifact(model: Model, outDir: string, options: TfjsWriteOptions = {}): TfjsWriteResult {
  const quant = options.quant ?? 'none';
  const source = options.source ?? '(in memory)';
  const legality = checkTfjs(model);
  refuseIllegal(legality, source);
  const lowered = lowerModel(model, TFJS_OPS);
  const dir = resolve(outDir);
  if (existsSync(dir) && !statSync(dir).isDirectory()) throw new PeftcError(`${outDir}: exists and is not a folder (the tfjs target writes a folder: model.json and weight shards)`);
  mkdirSync(dir, { recursive: true });
  const tmp = join(dir, `.peftc-tfjs-${process.pid}-${Date.now().toString(36)}`);
  mkdirSync(tmp);
  try {
    const weights = writeWeightShards(tmp, lowered.graph.consts, { quant, ...(options.minElements !== undefined ? { minElements: options.minElements } : {}), ...(options.shardBytes !== undefined ? { shardBytes: options.shardBytes } : {}) });
    const io = (x: LoweredIo) => ({ name: x.name, node: x.node, onnxType: dtypeName(x.onnxType), shape: x.shape });
    const info: TfjsArtifactInfo = {
      producer: `peftc ${PEFTC_VERSION}`,
      source: { name: basename(source), ...(options.source ? { sha256: sha256File(options.source) } : {}) },
      quant,
      inputs: lowered.inputs.map(io),
      outputs: lowered.outputs.map(io),
      onnxNodes: model.graph.nodes.length,
      tfNodes: lowered.graph.nodes.length,
      tfOps: Object.fromEntries([...lowered.graph.opCounts].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))),
      layoutConversions: lowered.layoutConversions,
      weights: {
        tensors: lowered.graph.consts.length,
        bytes: weights.bytes,
        unquantizedBytes: weights.unquantizedBytes,
        quantizedTensors: weights.quantized.length,
        shards: weights.files.length,
        clampedToFloat16: weights.clamped,
      },
    };
    const json: TfjsModelJson = {
      format: 'graph-model',
      generatedBy: `peftc ${PEFTC_VERSION}`,
      convertedBy: `peftc ${PEFTC_VERSION} (--target tfjs --quant ${quant})`,
      signature: {
        inputs: Object.fromEntries(lowered.inputs.map((x) => [x.name, ioInfo(x)])),
        outputs: Object.fromEntries(lowered.outputs.map((x) => [x.name, ioInfo(x)])),
      },
      modelTopology: lowered.graph.toJson(),
      weightsManifest: weights.manifest,
      userDefinedMetadata: { peftc: info },
    };
    const text = JSON.stringify(json);
    writeFileSync(join(tmp, MODEL_JSON), text);
    // Replace the folder's previous artifact: stale shards first, then the new files, model.json last.
    for (const f of readdirSync(dir)) if (/^group\d+-shard\d+of\d+\.bin$/.test(f) && !weights.files.includes(f)) rmSync(join(dir, f), { force: true });
    for (const f of weights.files) renameSync(join(tmp, f), join(dir, f));
    renameSync(join(tmp, MODEL_JSON), join(dir, MODEL_JSON));
    options.log?.(
      `tfjs: ${info.onnxNodes} ONNX nodes -> ${info.tfNodes} TF nodes (${lowered.layoutConversions} layout conversion(s)), ${weights.files.length} shard(s), ${weights.bytes} weight bytes` +
        (weights.quantized.length ? `, ${weights.quantized.length} tensor(s) stored as ${quant} (max relative error ${Math.max(...weights.quantized.map((q) => q.relError)).toExponential(2)})` : ''),
    );
    return {
      path: dir,
      modelBytes: Buffer.byteLength(text),
      externalDataPath: undefined,
      externalBytes: weights.bytes,
      externalTensors: lowered.graph.consts.length,
      workers: 0,
      precomputedTensors: 0,
      legality,
      info,
      quantized: weights.quantized,
      files: [MODEL_JSON, ...weights.files],
    };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

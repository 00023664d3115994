/**
 * The golden folder on disk:
 *
 *   <dir>/<model>/reference.json       which model's outputs are golden, input/output files, task
 *   <dir>/<model>/inputs/<k>-<name>.npy  reference inputs, stacked by run: [runs, ...feed shape]
 *   <dir>/<model>/outputs/<k>-<name>.npy the reference model's outputs on them (onnxruntime-node)
 *   <dir>/<model>/<target>-<quant>[-<tag>].json   one record per compiled variant
 *
 * Paths of models inside records are relative to the models root (the folder above <dir>, or
 * `--models DIR`), with '/' separators, so records read the same on every machine.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { writeFileAtomic } from '../atomic-write.js';
import { PeftcError } from '../errors.js';
import { Tensor } from '../ir/tensor.js';
import type { Fidelity } from '../report/results.js';
import { encodeNpy, readArrays } from '../runtime/npy.js';
import type { Tolerance } from '../verify/tolerance.js';

export const GOLDEN_FORMAT = 1;

export interface GoldenReference {
  format: number;
  /** Folder name under the golden dir. */
  name: string;
  /** The model whose outputs are golden, relative to the models root. */
  reference: string;
  /** Where the inputs came from (a data file, a test_data_set, or generated with a seed). */
  inputSource: string;
  runs: number;
  /** Input / output name -> file under the model's folder. */
  inputs: Record<string, string>;
  outputs: Record<string, string>;
  task: 'causal-lm' | 'generic';
  lm?: { ids: string; logits: string; vocab: number };
  recorded: { peftc: string; onnxruntime: string };
}

/** How a variant is compiled: the compile flags that matter, paths relative to the models root. */
export interface VariantSpec {
  source: string;
  target: string;
  quant: string;
  lora?: string[];
  quantMethod?: string;
  blockSize?: number;
  symmetric?: boolean;
  quantFormat?: string;
  accuracyLevel?: number;
  quantEmbeddings?: boolean;
  opset?: number;
  /** Static input shapes (--shape), for targets that need them. */
  shapes?: Record<string, number[]>;
}

export interface ArtifactFacts {
  /** Model file plus external data, bytes. */
  bytes: number;
  /** SHA-256 of the model file followed by its external data file, if any. */
  sha256: string;
  nodes: number;
  opHistogram: Record<string, number>;
  initializerBytes: number;
}

export interface GoldenVariant {
  format: number;
  variant: string;
  compile: VariantSpec;
  artifact: ArtifactFacts;
  fidelity: Fidelity;
  tolerance: Tolerance;
  recorded: { peftc: string; onnxruntime: string };
}

export const variantName = (target: string, quant: string, tag?: string) => `${target}-${quant}${tag ? `-${tag}` : ''}`;

/** A stable folder name for a model: its path under the models root, '/' -> '-', without 'models/' and '/model.onnx'. */
export function modelKey(root: string, model: string): string {
  let rel = toPosix(relative(root, resolve(model)));
  rel = rel.replace(/^(\.\.\/)+/, '').replace(/^models\//, '').replace(/\.onnx$/, '').replace(/\/model$/, '');
  return rel.replace(/[^A-Za-z0-9._-]+/g, '-') || 'model';
}

export const toPosix = (p: string) => p.split(sep).join('/');

/** A path relative to the root, as stored in records. */
export function storedPath(root: string, path: string): string {
  return toPosix(relative(root, resolve(path)));
}

/** A stored path back to a real one. */
export function resolveStored(root: string, stored: string): string {
  return isAbsolute(stored) ? stored : join(root, ...stored.split('/'));
}

function readJson<T>(path: string): T {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as T;
  } catch (err) {
    throw new PeftcError(`${path}: cannot read the golden record: ${(err as Error).message}`);
  }
}

export const writeJson = (path: string, data: unknown) => writeFileAtomic(path, `${JSON.stringify(data, null, 2)}\n`);

export function readReference(modelDir: string): GoldenReference {
  const r = readJson<GoldenReference>(join(modelDir, 'reference.json'));
  if (r.format !== GOLDEN_FORMAT) throw new PeftcError(`${join(modelDir, 'reference.json')}: format ${r.format}, this peftc reads format ${GOLDEN_FORMAT}`);
  return r;
}

/** Every model folder under the golden dir (those with a reference.json), sorted. */
export function listModels(dir: string): string[] {
  if (!existsSync(dir)) throw new PeftcError(`${dir}: no such golden folder (make one with peftc golden record MODEL --dir ${dir})`);
  return readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory() && existsSync(join(dir, e.name, 'reference.json')))
    .map((e) => e.name)
    .sort();
}

/** The variant records of a model folder, sorted by name. */
export function listVariants(modelDir: string): Array<{ file: string; record: GoldenVariant }> {
  return readdirSync(modelDir)
    .filter((f) => f.endsWith('.json') && f !== 'reference.json')
    .sort()
    .map((f) => {
      const file = join(modelDir, f);
      const record = readJson<GoldenVariant>(file);
      if (record.format !== GOLDEN_FORMAT) throw new PeftcError(`${file}: format ${record.format}, this peftc reads format ${GOLDEN_FORMAT}`);
      return { file, record };
    });
}

const fileName = (k: number, name: string) => `${k}-${name.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 80)}.npy`;

/**
 * Writes a reference folder: the json and the stacked arrays. Written into a temporary folder
 * beside it and renamed into place, so a failed record leaves nothing half-written.
 */
export function writeReference(modelDir: string, ref: Omit<GoldenReference, 'inputs' | 'outputs'>, inputs: Map<string, Tensor>, outputs: Map<string, Tensor>): GoldenReference {
  const tmp = `${modelDir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(join(tmp, 'inputs'), { recursive: true });
  mkdirSync(join(tmp, 'outputs'), { recursive: true });
  const files = (what: 'inputs' | 'outputs', arrays: Map<string, Tensor>) => {
    const out: Record<string, string> = {};
    [...arrays].forEach(([name, t], k) => {
      const f = `${what}/${fileName(k, name)}`;
      writeFileAtomic(join(tmp, f), encodeNpy(t));
      out[name] = f;
    });
    return out;
  };
  const full: GoldenReference = { ...ref, inputs: files('inputs', inputs), outputs: files('outputs', outputs) };
  writeJson(join(tmp, 'reference.json'), full);
  // Variant records of an existing folder stay; only the reference part is replaced.
  if (existsSync(modelDir)) {
    for (const { file } of listVariants(modelDir)) renameSync(file, join(tmp, file.slice(modelDir.length + 1)));
    rmSync(modelDir, { recursive: true, force: true });
  }
  mkdirSync(dirname(modelDir), { recursive: true });
  renameSync(tmp, modelDir);
  return full;
}

/** The stored arrays of a reference, by name. */
export function readStoredArrays(modelDir: string, files: Record<string, string>): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  for (const [name, f] of Object.entries(files)) {
    const t = [...readArrays(join(modelDir, ...f.split('/')), name).values()][0]!;
    out.set(name, Tensor.fromBytes(name, t.dtype, t.dims, t.bytes()));
  }
  return out;
}

/** Tensors of equal shape stacked along a new leading axis (one per run). */
export function stack(name: string, parts: readonly Tensor[]): Tensor {
  const first = parts[0]!;
  for (const p of parts) {
    if (p.dtype !== first.dtype || p.dims.join() !== first.dims.join()) {
      throw new PeftcError(`'${name}': runs have different shapes ([${first.dims.join(', ')}] and [${p.dims.join(', ')}]); golden inputs need one shape per input`);
    }
  }
  const per = first.byteLength;
  const bytes = new Uint8Array(per * parts.length);
  parts.forEach((p, i) => bytes.set(p.bytes(), i * per));
  return Tensor.fromBytes(name, first.dtype, [parts.length, ...first.dims], bytes);
}

/** Run `run` of a stacked array. */
export function unstack(t: Tensor, run: number): Tensor {
  const per = t.byteLength / t.dims[0]!;
  return Tensor.fromBytes(t.name, t.dtype, t.dims.slice(1), t.bytes().subarray(run * per, (run + 1) * per));
}

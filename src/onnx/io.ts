/**
 * Model files: load (read the protobuf once, decode with zero-copy views) and save (stream to a
 * temporary file beside the target, then rename, so a reader never sees a half-written model and
 * a failed write leaves nothing behind). Input files are never written to.
 */
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, realpathSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { PeftcError } from '../errors.js';
import type { Model } from '../ir/model.js';
import { decodeModel } from './decode.js';
import { planEncoding, type EncodeOptions, type EncodePlan } from './encode.js';
import { resolveInside } from './external-data.js';

const loadedFrom = new WeakMap<Model, string>();

export function loadModel(path: string): Model {
  let bytes: Buffer;
  try {
    const st = statSync(path);
    if (!st.isFile()) throw new PeftcError(`${path}: not a file`);
    bytes = readFileSync(path);
  } catch (err) {
    if (err instanceof PeftcError) throw err;
    throw new PeftcError(`${path}: cannot read the model: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const model = decodeModel(bytes, { source: path, baseDir: dirname(resolve(path)) });
  loadedFrom.set(model, realpathSync(path));
  return model;
}

export interface SaveResult {
  path: string;
  modelBytes: number;
  externalDataPath: string | undefined;
  externalBytes: number;
  externalTensors: number;
}

/**
 * Writes `model` to `path`. External data (when the policy puts any tensor there) goes to
 * `options.location` in the same folder, default `<file name>.data`.
 */
export interface SaveOptions extends EncodeOptions {
  /** fsync the files before renaming them into place (default true): the model survives a crash. */
  durable?: boolean;
}

export function saveModel(model: Model, path: string, options: SaveOptions = {}): SaveResult {
  const target = resolve(path);
  const dir = dirname(target);
  const location = options.location ?? `${basename(target)}.data`;
  let realDir: string;
  try {
    realDir = realpathSync(dir);
  } catch {
    throw new PeftcError(`${path}: the output folder ${dir} does not exist`);
  }
  const dataPath = resolveInside(dir, realDir, location, `external data location '${location}'`);
  const plan = planEncoding(model, { ...options, location });

  // Never overwrite a file the model is still reading from (its own source or its external data).
  const sources = new Set<string>();
  const from = loadedFrom.get(model);
  if (from) sources.add(from);
  for (const v of model.graph.initializers) if (v.initializer!.source.kind === 'external') sources.add((v.initializer!.source as { ref: { path: string } }).ref.path);
  const realTarget = resolveInside(dir, realDir, basename(target), `output '${path}'`);
  for (const p of [realTarget, ...(plan.external.length ? [dataPath] : [])]) {
    if (sources.has(p)) throw new PeftcError(`${path}: refusing to overwrite ${p}, which the model was read from; write to another path`);
  }

  if (plan.external.length && dataPath === realTarget) throw new PeftcError(`${path}: the external data location '${location}' is the model file itself`);
  if (isDirectory(realTarget)) throw new PeftcError(`${path}: is a directory`);
  if (plan.external.length && isDirectory(dataPath)) throw new PeftcError(`${path}: the external data location '${location}' is a directory`);

  const tmpModel = tempName(realTarget);
  const tmpData = plan.external.length ? tempName(dataPath) : undefined;
  // If the model cannot be renamed into place after its data was, the data file is put back as
  // it was (restored from this backup, or removed), so a failed save leaves nothing changed.
  let dataBackup: string | undefined;
  let dataPlaced = false;
  try {
    if (tmpData) writeExternal(plan, tmpData, options.durable ?? true);
    writeParts(plan, tmpModel, options.durable ?? true);
    if (tmpData) {
      if (existsSync(dataPath)) renameSync(dataPath, (dataBackup = tempName(dataPath)));
      renameSync(tmpData, dataPath);
      dataPlaced = true;
    }
    renameSync(tmpModel, realTarget);
  } catch (err) {
    rmSync(tmpModel, { force: true });
    if (tmpData) rmSync(tmpData, { force: true });
    if (dataPlaced) rmSync(dataPath, { force: true });
    if (dataBackup) renameSync(dataBackup, dataPath);
    if (err instanceof PeftcError) throw err;
    throw new PeftcError(`${path}: writing failed: ${(err as Error).message}`, 2, { cause: err });
  }
  if (dataBackup) rmSync(dataBackup, { force: true });
  return {
    path: realTarget,
    modelBytes: plan.modelBytes,
    externalDataPath: tmpData ? dataPath : undefined,
    externalBytes: plan.externalBytes,
    externalTensors: plan.external.length,
  };
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

function tempName(path: string): string {
  return `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
}

function writeAll(fd: number, chunk: Uint8Array, position: number): void {
  let done = 0;
  while (done < chunk.byteLength) done += writeSync(fd, chunk, done, chunk.byteLength - done, position + done);
}

function writeParts(plan: EncodePlan, file: string, durable: boolean): void {
  const fd = openSync(file, 'wx');
  try {
    let at = 0;
    for (const part of plan.parts) {
      const chunks = part instanceof Uint8Array ? [part] : part.tensor.chunks(undefined, true);
      for (const c of chunks) {
        writeAll(fd, c, at);
        at += c.byteLength;
      }
    }
    if (at !== plan.modelBytes) throw new Error(`internal: wrote ${at} bytes, planned ${plan.modelBytes}`);
    if (durable) fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function writeExternal(plan: EncodePlan, file: string, durable: boolean): void {
  const fd = openSync(file, 'wx');
  try {
    for (const { tensor, offset } of plan.external) {
      let at = offset;
      for (const c of tensor.chunks(undefined, true)) {
        writeAll(fd, c, at);
        at += c.byteLength;
      }
    }
    if (durable) fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

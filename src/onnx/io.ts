/**
 * Model files: load (read the protobuf once, decode with zero-copy views) and save (stream to a
 * temporary file beside the target, then rename, so a reader never sees a half-written model and
 * a failed write leaves nothing behind). Input files are never written to.
 */
import { chmodSync, closeSync, constants, copyFileSync, existsSync, fstatSync, fsyncSync, ftruncateSync, openSync, readFileSync, realpathSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { PeftcError } from '../errors.js';
import type { Model } from '../ir/model.js';
import { decodeModel } from './decode.js';
import { planEncoding, type EncodeOptions, type EncodePlan } from './encode.js';
import { resolveInside } from './external-data.js';
import { Precompute } from '../workers/precompute.js';
import type { Tensor } from '../ir/tensor.js';

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
  /** Worker threads that computed deferred tensors ahead of the writer (0: none did). */
  workers: number;
  /** Deferred tensors written from a worker's result. */
  precomputedTensors: number;
}

/**
 * Writes `model` to `path`. External data (when the policy puts any tensor there) goes to
 * `options.location` in the same folder, default `<file name>.data`.
 */
export interface SaveOptions extends EncodeOptions {
  /**
   * fsync the files before renaming them into place, and the folder after (default true): the
   * saved model survives a crash. Off only for scratch outputs (tests, benchmarks).
   */
  durable?: boolean;
  /**
   * Worker threads that compute deferred tensors (merged LoRA weights) ahead of the writer; 0
   * computes each in this thread when it is written. Default: one per core when such tensors
   * total at least 64 MiB. The written bytes are the same either way.
   */
  workers?: number;
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
  // In the order the writers below reach them: the side file's tensors, then the model file's.
  const writeOrder = [...plan.external.map((e) => e.tensor), ...plan.parts.flatMap((p) => (p instanceof Uint8Array ? [] : [p.tensor]))];
  let precompute: Precompute | undefined;
  try {
    precompute = Precompute.start(writeOrder, { workers: options.workers });
    if (tmpData) writeExternal(plan, tmpData, options.durable ?? true, precompute);
    writeParts(plan, tmpModel, options.durable ?? true, precompute);
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
  } finally {
    precompute?.close();
  }
  if (dataBackup) rmSync(dataBackup, { force: true });
  if (options.durable ?? true) syncFolder(dir);
  return {
    path: realTarget,
    modelBytes: plan.modelBytes,
    externalDataPath: tmpData ? dataPath : undefined,
    externalBytes: plan.externalBytes,
    externalTensors: plan.external.length,
    workers: precompute?.workers ?? 0,
    precomputedTensors: precompute?.taken ?? 0,
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

/** A tensor's bytes for writing: precomputed on a worker, or streamed from wherever they live. */
function tensorChunks(tensor: Tensor, precompute: Precompute | undefined): Iterable<Uint8Array> {
  const ready = precompute?.take(tensor);
  return ready ? [ready] : tensor.chunks(undefined, true);
}

function writeParts(plan: EncodePlan, file: string, durable: boolean, precompute: Precompute | undefined): void {
  const fd = openSync(file, 'wx');
  try {
    let at = 0;
    for (const part of plan.parts) {
      const chunks = part instanceof Uint8Array ? [part] : tensorChunks(part.tensor, precompute);
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

/**
 * Writes the side file. Streams every tensor from wherever it lives — unless most of the bytes
 * are unchanged tensors of one existing data file at the very offsets they get in the new one
 * (the usual case after passes that leave weights alone, or change a few of the same size):
 * then that file is copied by the kernel (copy_file_range, or a reflink where the file system
 * has them), which skips the trip through user memory and is several times faster, and only
 * what differs is written over the copy: the other tensors, and zeros in the gaps between
 * tensors (so no byte the model does not reference is carried over). The result is byte for
 * byte what streaming writes.
 */
function writeExternal(plan: EncodePlan, file: string, durable: boolean, precompute: Precompute | undefined): void {
  let base = copyBase(plan);
  let fd = base ? copyOf(base, file) : undefined;
  if (fd === undefined) {
    base = undefined;
    fd = openSync(file, 'wx');
  }
  try {
    let toWrite = plan.external;
    if (base) {
      const size = fstatSync(fd).size;
      ftruncateSync(fd, plan.externalBytes);
      let at = 0;
      for (const { tensor, offset } of plan.external) {
        if (offset > at) writeZeros(fd, at, Math.min(offset, size) - at);
        at = Math.max(at, offset + tensor.byteLength);
      }
      if (at < Math.min(size, plan.externalBytes)) writeZeros(fd, at, Math.min(size, plan.externalBytes) - at);
      toWrite = plan.external.filter((e) => !base.reused.has(e));
    }
    for (const { tensor, offset } of toWrite) {
      let at = offset;
      for (const c of tensorChunks(tensor, precompute)) {
        writeAll(fd, c, at);
        at += c.byteLength;
      }
    }
    if (durable) fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * The existing data file worth copying whole for this plan, if any: the one holding the most
 * bytes of tensors that are its unchanged (unchecksummed) external data at the offsets the plan
 * gives them, when that is at least half of the side file.
 */
function copyBase(plan: EncodePlan): { path: string; reused: Set<ExternalEntry>; end: number } | undefined {
  const byFile = new Map<string, { bytes: number; reused: Set<ExternalEntry>; end: number }>();
  for (const entry of plan.external) {
    const { tensor, offset } = entry;
    const s = tensor.source;
    if (s.kind !== 'external' || s.ref.offset !== offset || s.ref.checksum !== undefined) continue;
    if (s.ref.length !== undefined && s.ref.length !== tensor.byteLength) continue;
    let f = byFile.get(s.ref.path);
    if (!f) byFile.set(s.ref.path, (f = { bytes: 0, reused: new Set(), end: 0 }));
    f.bytes += tensor.byteLength;
    f.reused.add(entry);
    f.end = Math.max(f.end, offset + tensor.byteLength);
  }
  let best: { path: string; reused: Set<ExternalEntry>; end: number; bytes: number } | undefined;
  for (const [path, f] of byFile) if (!best || f.bytes > best.bytes) best = { path, ...f };
  if (!best || best.bytes * 2 < plan.externalBytes) return undefined;
  // Copying bytes that are then overwritten or cut off must not cost more than it saves.
  const size = fileSize(best.path);
  return size !== undefined && size - best.bytes <= best.bytes ? best : undefined;
}

/**
 * Copies the base file to `file` and opens the copy, or returns undefined (leaving no file) when
 * that fails or the file no longer holds its tensors: streaming then reports what is wrong.
 */
function copyOf(base: { path: string; end: number }, file: string): number | undefined {
  let fd: number | undefined;
  let created = false;
  try {
    // Created here first, so it is ours alone ('wx') and gets a new file's mode, not the source's.
    fd = openSync(file, 'wx');
    created = true;
    const mode = fstatSync(fd).mode & 0o7777;
    closeSync(fd);
    fd = undefined;
    copyFileSync(base.path, file, constants.COPYFILE_FICLONE);
    chmodSync(file, mode);
    fd = openSync(file, 'r+');
    if (fstatSync(fd).size >= base.end) return fd;
  } catch {
    // fall through
  }
  if (fd !== undefined) closeSync(fd);
  if (created) rmSync(file, { force: true });
  return undefined;
}

type ExternalEntry = EncodePlan['external'][number];

function fileSize(path: string): number | undefined {
  try {
    return statSync(path).size;
  } catch {
    return undefined;
  }
}

const ZEROS = new Uint8Array(1 << 16);

function writeZeros(fd: number, position: number, length: number): void {
  for (let done = 0; done < length; ) {
    const n = Math.min(ZEROS.byteLength, length - done);
    writeAll(fd, ZEROS.subarray(0, n), position + done);
    done += n;
  }
}

/** fsync a folder so that renames in it survive a crash (best effort: not every platform can). */
function syncFolder(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch {
    // Opening or syncing a folder is not supported here (e.g. Windows); the files themselves are synced.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

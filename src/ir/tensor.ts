/**
 * Tensor: dtype, dims and lazily-held data. The data is one of
 *  - `bytes`: raw little-endian bytes, usually a view into the decoded model buffer (no copy) or
 *    the bytes of a typed array a pass computed;
 *  - `external`: a reference into an external-data file, read only when asked;
 *  - `strings`: the elements of a STRING tensor.
 * Nothing here copies weight bytes unless a caller asks for a copy.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { PeftcError } from '../errors.js';
import { byteSize, DataType, dtypeInfo, dtypeName, elementCount, viewAs, type TypedArray } from './dtype.js';

export type MetadataProps = Array<[string, string]>;

export interface ExternalRef {
  /** Absolute path of the data file, already checked to lie inside the model's folder. */
  readonly path: string;
  /** The location exactly as written in the model (relative to the model's folder). */
  readonly location: string;
  readonly offset: number;
  /** Byte length; when absent the data runs to the end of the file. */
  readonly length: number | undefined;
  /** SHA-1 hex digest of the tensor's bytes, when the model carries one. */
  readonly checksum: string | undefined;
}

export type TensorSource =
  | { readonly kind: 'bytes'; readonly bytes: Uint8Array }
  | { readonly kind: 'external'; readonly ref: ExternalRef }
  | { readonly kind: 'strings'; readonly strings: readonly Uint8Array[] }
  /**
   * Data a pass computes only when it is read (e.g. a merged LoRA weight), so writing a model
   * holds one such tensor at a time instead of all of them. `compute` runs on every read; the
   * result is not kept. `external` says the data should go to external data, like its source.
   */
  | { readonly kind: 'deferred'; readonly compute: () => Uint8Array; readonly external: boolean; readonly job?: () => DeferredJob };

/**
 * A deferred tensor's computation as plain data, so that a worker thread can run it ahead of the
 * writer (src/workers/precompute.ts): the worker imports `module` (a file URL) and calls its
 * export `fn` with `input`, which must return exactly the bytes `compute` returns. `transfer`
 * lists buffers of `input` that the job owns, moved to the worker instead of copied.
 */
export interface DeferredJob {
  readonly module: string;
  readonly fn: string;
  readonly input: unknown;
  readonly transfer: readonly ArrayBuffer[];
}

/** Chunk size for streaming external data (copying to an output, hashing). */
export const STREAM_CHUNK_BYTES = 16 << 20;

export class Tensor {
  docString = '';
  metadataProps: MetadataProps = [];

  constructor(
    public name: string,
    readonly dtype: DataType,
    readonly dims: readonly number[],
    readonly source: TensorSource,
  ) {}

  static fromBytes(name: string, dtype: DataType, dims: readonly number[], bytes: Uint8Array): Tensor {
    return new Tensor(name, dtype, dims, { kind: 'bytes', bytes });
  }

  /** Wraps a typed array's memory (no copy). */
  static fromTypedArray(name: string, dtype: DataType, dims: readonly number[], data: TypedArray): Tensor {
    return Tensor.fromBytes(name, dtype, dims, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  }

  static fromStrings(name: string, dims: readonly number[], strings: readonly Uint8Array[]): Tensor {
    return new Tensor(name, DataType.STRING, dims, { kind: 'strings', strings });
  }

  get elementCount(): number {
    return elementCount(this.dims);
  }

  get isExternal(): boolean {
    return this.source.kind === 'external';
  }

  /** Whether a writer should keep this tensor in external data (it is, or derives from, external data). */
  get prefersExternal(): boolean {
    return this.source.kind === 'external' || (this.source.kind === 'deferred' && this.source.external);
  }

  /** `job`, when given, describes the same computation for a worker thread (see DeferredJob). */
  static deferred(name: string, dtype: DataType, dims: readonly number[], compute: () => Uint8Array, external = false, job?: () => DeferredJob): Tensor {
    return new Tensor(name, dtype, dims, job ? { kind: 'deferred', compute, external, job } : { kind: 'deferred', compute, external });
  }

  /** Bytes the data occupies in raw_data form (0 for strings). */
  get byteLength(): number {
    return this.dtype === DataType.STRING ? 0 : byteSize(this.dtype, this.elementCount);
  }

  /**
   * The raw little-endian bytes. In-memory data is returned as is (a view, not a copy); external
   * data is read from its file now, checked against the expected length and checksum.
   */
  bytes(): Uint8Array {
    const s = this.source;
    if (s.kind === 'bytes') return s.bytes;
    if (s.kind === 'strings') throw new PeftcError(`tensor '${this.name}': a string tensor has no raw bytes`);
    if (s.kind === 'deferred') {
      const out = s.compute();
      if (out.byteLength !== this.byteLength) {
        throw new PeftcError(`tensor '${this.name}': computed ${out.byteLength} bytes, ${dtypeName(this.dtype)}[${this.dims.join(',')}] needs ${this.byteLength}`);
      }
      return out;
    }
    const length = this.checkedExternalLength();
    const out = Buffer.allocUnsafe(length);
    readRange(s.ref.path, s.ref.offset, out, `tensor '${this.name}'`);
    if (s.ref.checksum !== undefined) {
      const digest = createHash('sha1').update(out).digest('hex');
      if (digest !== s.ref.checksum.toLowerCase()) {
        throw new PeftcError(
          `tensor '${this.name}': external data in ${s.ref.path} fails its checksum (expected ${s.ref.checksum}, got ${digest})`,
        );
      }
    }
    return out;
  }

  /**
   * Yields the raw bytes in chunks of at most `chunkBytes` without holding the whole tensor,
   * for streaming to an output. In-memory data yields subarray views; external data a fresh
   * buffer per chunk, so a caller may keep chunks (`[...t.chunks()]` is the data) — unless
   * `reuse` is set: then one buffer is refilled for every chunk, which streaming consumers that
   * finish with a chunk before asking for the next (writers, hashers) should use; it avoids
   * faulting in fresh memory for every chunk.
   */
  *chunks(chunkBytes = STREAM_CHUNK_BYTES, reuse = false): Generator<Uint8Array> {
    if (!(chunkBytes >= 1)) throw new RangeError(`chunk size must be at least 1 byte (got ${chunkBytes})`);
    const s = this.source;
    if (s.kind !== 'external') {
      const all = this.bytes();
      for (let at = 0; at < all.byteLength; at += chunkBytes) yield all.subarray(at, Math.min(all.byteLength, at + chunkBytes));
      return;
    }
    const length = this.checkedExternalLength();
    const what = `tensor '${this.name}'`;
    const fd = openExternal(s.ref.path, what);
    try {
      const hash = s.ref.checksum !== undefined ? createHash('sha1') : null;
      const shared = reuse ? Buffer.allocUnsafe(Math.min(chunkBytes, Math.max(length, 1))) : null;
      for (let done = 0; done < length; ) {
        const want = Math.min(chunkBytes, length - done);
        const chunk = shared ? shared.subarray(0, want) : Buffer.allocUnsafe(want);
        const got = readFully(fd, chunk, want, s.ref.offset + done, s.ref.path, what);
        if (got < want) throw new PeftcError(`${what}: external data file ${s.ref.path} ends early (wanted ${length} bytes at offset ${s.ref.offset})`);
        hash?.update(chunk);
        done += want;
        yield chunk;
      }
      if (hash && hash.digest('hex') !== s.ref.checksum!.toLowerCase()) {
        throw new PeftcError(`tensor '${this.name}': external data in ${s.ref.path} fails its checksum`);
      }
    } finally {
      closeSync(fd);
    }
  }

  /** A typed-array view of the data (copying only when misaligned or external). */
  toTypedArray<T extends TypedArray = TypedArray>(): T {
    const storage = dtypeInfo(this.dtype).storage;
    if (!storage) throw new PeftcError(`tensor '${this.name}': ${dtypeName(this.dtype)} has no typed-array view`);
    return viewAs<T>(storage, this.bytes());
  }

  strings(): readonly Uint8Array[] {
    if (this.source.kind !== 'strings') throw new PeftcError(`tensor '${this.name}' is ${dtypeName(this.dtype)}, not string`);
    return this.source.strings;
  }

  /** Same tensor under another name, sharing the data. */
  renamed(name: string): Tensor {
    const t = new Tensor(name, this.dtype, this.dims, this.source);
    t.docString = this.docString;
    t.metadataProps = this.metadataProps;
    return t;
  }

  private checkedExternalLength(): number {
    const s = this.source as { kind: 'external'; ref: ExternalRef };
    const expected = this.byteLength;
    if (s.ref.length !== undefined && s.ref.length !== expected) {
      throw new PeftcError(
        `tensor '${this.name}': external data length ${s.ref.length} does not match ${dtypeName(this.dtype)}[${this.dims.join(',')}] (${expected} bytes)`,
      );
    }
    return expected;
  }
}

function openExternal(path: string, what: string): number {
  try {
    return openSync(path, 'r');
  } catch (err) {
    throw new PeftcError(`${what}: cannot open external data file ${path}: ${(err as Error).message}`);
  }
}

/** Reads up to `want` bytes at `position` (fewer only at the end of the file). */
function readFully(fd: number, buf: Uint8Array, want: number, position: number, path: string, what: string): number {
  let got = 0;
  try {
    while (got < want) {
      // readSync takes at most 2 GiB per call; read in pieces.
      const n = readSync(fd, buf, got, Math.min(want - got, 1 << 30), position + got);
      if (n === 0) break;
      got += n;
    }
  } catch (err) {
    throw new PeftcError(`${what}: cannot read external data file ${path}: ${(err as Error).message}`);
  }
  return got;
}

function readRange(path: string, offset: number, out: Uint8Array, what: string): void {
  const fd = openExternal(path, what);
  try {
    const got = readFully(fd, out, out.byteLength, offset, path, what);
    if (got < out.byteLength) throw new PeftcError(`${what}: external data file ${path} ends early (wanted ${out.byteLength} bytes at offset ${offset})`);
  } finally {
    closeSync(fd);
  }
}

export interface SparseTensor {
  values: Tensor;
  indices: Tensor;
  dims: number[];
}

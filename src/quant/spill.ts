/**
 * A temporary file that quantized tensors are appended to as they are made, so the weights of a
 * large model do not pile up in memory between quantization and writing: each tensor becomes an
 * external-data reference into the file, which the writer copies from in chunks like any external
 * data (and onnxruntime sessions of the model in memory read the same way).
 *
 * The file is removed when the process exits (not earlier: any copy of a tensor, renamed or
 * shared by another model, may still read it).
 */
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { PeftcError } from '../errors.js';
import type { DataType } from '../ir/dtype.js';
import { Tensor } from '../ir/tensor.js';

interface SpillState {
  path: string;
  closed: boolean;
}

const open = new Set<string>();
let exitHook = false;

export class SpillFile {
  private fd: number | undefined;
  private size = 0;
  private readonly state: SpillState;

  constructor(dir = tmpdir()) {
    this.state = { path: join(dir, `peftc-quantized-${process.pid}-${randomBytes(6).toString('hex')}.bin`), closed: false };
  }

  get path(): string {
    return this.state.path;
  }

  /** Bytes written so far. */
  get bytes(): number {
    return this.size;
  }

  /** Appends `bytes` and returns a tensor reading them back from the file. */
  tensor(name: string, dtype: DataType, dims: readonly number[], bytes: Uint8Array): Tensor {
    if (this.state.closed) throw new Error('internal: spill file is closed');
    if (this.fd === undefined) {
      try {
        this.fd = openSync(this.state.path, 'w+');
      } catch (err) {
        throw new PeftcError(`cannot create the temporary file ${this.state.path} for quantized weights: ${(err as Error).message}`);
      }
      open.add(this.state.path);
      if (!exitHook) {
        exitHook = true;
        process.once('exit', () => {
          for (const p of open) rmSync(p, { force: true });
        });
      }
    }
    const offset = this.size;
    try {
      for (let done = 0; done < bytes.byteLength; ) done += writeSync(this.fd, bytes, done, bytes.byteLength - done, offset + done);
    } catch (err) {
      throw new PeftcError(`cannot write quantized weights to the temporary file ${this.state.path}: ${(err as Error).message}`);
    }
    this.size += bytes.byteLength;
    const t = new Tensor(name, dtype, dims, {
      kind: 'external',
      ref: { path: this.state.path, location: basename(this.state.path), offset, length: bytes.byteLength, checksum: undefined },
    });
    return t;
  }

  /** No more tensors (the file stays until the process exits). */
  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
    this.state.closed = true;
  }
}

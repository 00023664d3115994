/**
 * Benchmark tasks, each run in its own process by bench/util.ts runTask so that peak RSS is the
 * task's own: `node dist/bench/tasks.js NAME 'JSON args'`. Prints one JSON line.
 */
import { closeSync, fsyncSync, openSync, readSync, rmSync, statSync, writeSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { DataType } from '../src/ir/dtype.js';
import { Tensor } from '../src/ir/tensor.js';
import { loadModel, saveModel } from '../src/onnx/io.js';
import { ModelBuilder } from '../models/builder.js';
import type { TaskResult } from './util.js';

const CHUNK = 16 << 20;

function peakRssMiB(): number {
  return process.resourceUsage().maxRSS / 1024;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Task = (args: any) => Record<string, number | string | boolean>;

/** A model whose initializers are [rows, cols] float32 matrices chained by MatMul, data generated on write. */
const generate: Task = ({ path, shapes }: { path: string; shapes: Array<[number, number]> }) => {
  const b = new ModelBuilder({ opset: 17 });
  let x = b.input('x', DataType.FLOAT, [1, shapes[0]![0]]);
  let bytes = 0;
  shapes.forEach(([rows, cols], i) => {
    const fill = (): Uint8Array => {
      const a = new Uint32Array(rows * cols);
      let s = (i + 1) * 2654435761;
      for (let k = 0; k < a.length; k++) {
        s = (s ^ (s << 13)) >>> 0;
        s = (s ^ (s >>> 17)) >>> 0;
        s = (s ^ (s << 5)) >>> 0;
        // Small finite floats: exponent fixed, random mantissa and sign.
        a[k] = (s & 0x807fffff) | 0x3c000000;
      }
      return new Uint8Array(a.buffer);
    };
    const w = b.graph.addInitializer(Tensor.deferred(`w${i}`, DataType.FLOAT, [rows, cols], fill, true));
    bytes += rows * cols * 4;
    x = b.op('MatMul', [x, w]);
  });
  b.output(x, { dtype: DataType.FLOAT, shape: [1, shapes.at(-1)![1]] });
  const r = saveModel(b.build(), path, { externalData: 'all' });
  return { bytes, externalBytes: r.externalBytes, modelBytes: r.modelBytes };
};

const read: Task = ({ file }: { file: string }) => {
  const fd = openSync(file, 'r');
  const buf = Buffer.allocUnsafe(CHUNK);
  let total = 0;
  for (;;) {
    const n = readSync(fd, buf, 0, CHUNK, total);
    if (n === 0) break;
    total += n;
  }
  closeSync(fd);
  return { bytes: total };
};

const copy: Task = ({ src, dst, durable }: { src: string; dst: string; durable: boolean }) => {
  const fin = openSync(src, 'r');
  const fout = openSync(dst, 'w');
  let total = 0;
  const buf = Buffer.allocUnsafe(CHUNK);
  for (;;) {
    const n = readSync(fin, buf, 0, CHUNK, total);
    if (n === 0) break;
    let w = 0;
    while (w < n) w += writeSync(fout, buf, w, n - w, total + w);
    total += n;
  }
  if (durable) fsyncSync(fout);
  closeSync(fin);
  closeSync(fout);
  rmSync(dst, { force: true });
  return { bytes: total };
};

/**
 * Decode = parse the model + read every tensor's data once, tensor at a time. 'stream' reads
 * through Tensor.chunks (how writers, hashers and streaming passes consume weights); 'whole'
 * materializes each tensor with Tensor.bytes (how a pass that rewrites a weight reads it).
 */
const decode: Task = ({ model, mode }: { model: string; mode: 'stream' | 'whole' }) => {
  const m = loadModel(model);
  let total = 0;
  let check = 0;
  for (const v of m.graph.initializers) {
    const t = v.initializer!;
    if (mode === 'whole') {
      const bytes = t.bytes();
      total += bytes.byteLength;
      check ^= bytes[bytes.byteLength - 1]!;
    } else {
      for (const c of t.chunks(undefined, true)) {
        total += c.byteLength;
        check ^= c[c.byteLength - 1]!;
      }
    }
  }
  return { bytes: total, tensors: m.graph.initializers.length, check };
};

const encode: Task = ({ model, out, durable }: { model: string; out: string; durable: boolean }) => {
  const m = loadModel(model);
  const r = saveModel(m, out, { durable });
  return { bytes: r.externalBytes + r.modelBytes, externalTensors: r.externalTensors };
};

/** Streams both models' initializers through SHA-1 and compares: equality without holding tensors. */
const verify: Task = ({ a, b }: { a: string; b: string }) => {
  const ma = loadModel(a);
  const mb = loadModel(b);
  const digest = (t: Tensor) => {
    const h = createHash('sha1');
    for (const c of t.chunks(undefined, true)) h.update(c);
    return h.digest('hex');
  };
  let equal = ma.graph.initializers.length === mb.graph.initializers.length;
  let total = 0;
  ma.graph.initializers.forEach((v, i) => {
    const w = mb.graph.initializers[i];
    if (!w || w.name !== v.name || digest(v.initializer!) !== digest(w.initializer!)) equal = false;
    total += v.initializer!.byteLength;
  });
  return { equal, bytes: total, outputFileBytes: statSync(b).size };
};

const TASKS: Record<string, Task> = { generate, read, copy, decode, encode, verify };

const [name, argText] = process.argv.slice(2);
const task = TASKS[name ?? ''];
if (!task) {
  console.error(`unknown task ${name}; tasks: ${Object.keys(TASKS).join(', ')}`);
  process.exit(2);
}
const t0 = performance.now();
const info = task(JSON.parse(argText ?? '{}'));
const result: TaskResult = { ms: performance.now() - t0, peakRssMiB: peakRssMiB(), info };
console.log(JSON.stringify(result));

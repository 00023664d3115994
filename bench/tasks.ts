/**
 * Benchmark tasks, each run in its own process by bench/util.ts runTask so that peak RSS is the
 * task's own: `node dist/bench/tasks.js NAME 'JSON args'`. Prints one JSON line.
 */
import { closeSync, copyFileSync, fsyncSync, mkdirSync, openSync, readSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { compileModel } from '../src/compile.js';
import { createHash } from 'node:crypto';
import { DataType } from '../src/ir/dtype.js';
import { STREAM_CHUNK_BYTES, Tensor } from '../src/ir/tensor.js';
import { loadModel, saveModel } from '../src/onnx/io.js';
import { ModelBuilder } from '../models/builder.js';
import type { TaskResult } from './util.js';

/** The chunk size of the codec's streaming reads and writes, so baselines do the same I/O. */
const CHUNK = STREAM_CHUNK_BYTES;

function peakRssMiB(): number {
  return process.resourceUsage().maxRSS / 1024;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Task = (args: any) => Record<string, number | string | boolean>;

/** Wall and CPU (user + system) time of a stretch of work. */
interface Span {
  ms: number;
  cpuMs: number;
}
const cpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};
const begin = () => ({ t: performance.now(), c: cpuMs() });
const end = (b: { t: number; c: number }): Span => ({ ms: performance.now() - b.t, cpuMs: cpuMs() - b.c });
/** A task that times only part of its work sets this; otherwise its whole run is timed. */
let timed: Span | undefined;

/** Shape of the generated transformer-ish model (see bench/codec.ts). */
export interface GenSpec {
  vocab: number;
  hidden: number;
  ffn: number;
  layers: number;
}

/** Deterministic pseudo-random float32 weights (xorshift; small finite values, random sign). */
function weights(rows: number, cols: number, seed: number): () => Uint8Array {
  return () => {
    const a = new Uint32Array(rows * cols);
    let s = (seed * 2654435761) >>> 0 || 1;
    for (let k = 0; k < a.length; k++) {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      a[k] = (s & 0x807fffff) | 0x3c000000;
    }
    return new Uint8Array(a.buffer);
  };
}

/**
 * A decoder-only transformer's weights with a real (simplified, runnable) graph over them:
 * ids -> Gather(embedding) -> per layer { x*norm -> q,k,v MatMuls summed -> MatMul(o) -> +bias,
 * residual Add; x*norm -> gate/up MatMuls, Mul, down MatMul -> +bias, residual Add } ->
 * MatMul(lm_head). Every weight is written as external data, generated one tensor at a time.
 */
const generate: Task = ({ path, spec }: { path: string; spec: GenSpec }) => {
  const { vocab, hidden: d, ffn, layers } = spec;
  const b = new ModelBuilder({ opset: 17 });
  let seed = 1;
  let bytes = 0;
  let largest = 0;
  let count = 0;
  const w = (name: string, dims: number[]) => {
    const [rows, cols] = dims.length === 2 ? (dims as [number, number]) : [1, dims[0]!];
    bytes += rows * cols * 4;
    largest = Math.max(largest, rows * cols * 4);
    count++;
    return b.graph.addInitializer(Tensor.deferred(name, DataType.FLOAT, dims, weights(rows, cols, seed++), true));
  };
  const ids = b.input('ids', DataType.INT64, [1]);
  let x = b.op('Gather', [w('embed_tokens', [vocab, d]), ids]);
  for (let l = 0; l < layers; l++) {
    const p = `layers.${l}`;
    let n = b.op('Mul', [x, w(`${p}.input_norm`, [d])]);
    const qkv = b.op('Add', [b.op('Add', [b.op('MatMul', [n, w(`${p}.q_proj`, [d, d])]), b.op('MatMul', [n, w(`${p}.k_proj`, [d, d])])]), b.op('MatMul', [n, w(`${p}.v_proj`, [d, d])])]);
    x = b.op('Add', [x, b.op('Add', [b.op('MatMul', [qkv, w(`${p}.o_proj`, [d, d])]), w(`${p}.o_bias`, [d])])]);
    n = b.op('Mul', [x, w(`${p}.post_norm`, [d])]);
    const h = b.op('Mul', [b.op('MatMul', [n, w(`${p}.gate_proj`, [d, ffn])]), b.op('MatMul', [n, w(`${p}.up_proj`, [d, ffn])])]);
    x = b.op('Add', [x, b.op('Add', [b.op('MatMul', [h, w(`${p}.down_proj`, [ffn, d])]), w(`${p}.down_bias`, [d])])]);
  }
  b.output(b.op('MatMul', [x, w('lm_head', [d, vocab])]), { dtype: DataType.FLOAT, shape: [1, vocab] });
  const r = saveModel(b.build(), path, { externalData: 'all' });
  return { bytes, largest, tensors: count, nodes: b.graph.nodes.length, externalBytes: r.externalBytes, modelBytes: r.modelBytes };
};

/**
 * Reads `file` sequentially in CHUNK pieces into one buffer; or, given `fresh` sizes, reads those
 * many bytes one after another each into a new buffer (what materializing each tensor costs).
 */
const read: Task = ({ file, fresh }: { file: string; fresh?: number[] }) => {
  const fd = openSync(file, 'r');
  let total = 0;
  const fill = (buf: Uint8Array, want: number) => {
    for (let got = 0; got < want; ) {
      const n = readSync(fd, buf, got, Math.min(want - got, 1 << 30), total);
      if (n === 0) return false;
      got += n;
      total += n;
    }
    return true;
  };
  let check = 0;
  if (fresh) {
    for (const size of fresh) {
      const buf = Buffer.allocUnsafe(size);
      if (!fill(buf, size)) break;
      check ^= buf[size - 1]!;
    }
  } else {
    const buf = Buffer.allocUnsafe(CHUNK);
    for (;;) {
      const n = readSync(fd, buf, 0, CHUNK, total);
      if (n === 0) break;
      total += n;
    }
  }
  closeSync(fd);
  return { bytes: total, check };
};

/** Copies `src` to `dst` through a user buffer (timed: the copy, not removing `dst` after). */
const copy: Task = ({ src, dst, durable }: { src: string; dst: string; durable: boolean }) => {
  const t0 = begin();
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
  timed = end(t0);
  rmSync(dst, { force: true });
  return { bytes: total };
};

/** The same copy done by the kernel (fs.copyFileSync: copy_file_range, no trip through user memory). */
const kcopy: Task = ({ src, dst, durable }: { src: string; dst: string; durable: boolean }) => {
  const t0 = begin();
  copyFileSync(src, dst);
  if (durable) {
    const fd = openSync(dst, 'r+');
    fsyncSync(fd);
    closeSync(fd);
  }
  timed = end(t0);
  const bytes = statSync(dst).size;
  rmSync(dst, { force: true });
  return { bytes };
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

/**
 * Encode = saveModel of a loaded model to a new path (timed: the save). `alignment` other than the
 * source's changes the layout, so every byte is streamed; `recompute` replaces the tensors whose
 * names contain one of these strings by deferred tensors (computed when written, as merged
 * weights are). Removes the output unless `keep`.
 */
const encode: Task = ({ model, out, durable, alignment, recompute, keep }: { model: string; out: string; durable: boolean; alignment?: number; recompute?: string[]; keep?: boolean }) => {
  const m = loadModel(model);
  let recomputed = 0;
  for (const v of m.graph.initializers) {
    const t = v.initializer!;
    if (!recompute?.some((r) => t.name.includes(r))) continue;
    v.initializer = Tensor.deferred(t.name, t.dtype, t.dims, () => Uint8Array.from(t.bytes()), true);
    recomputed += t.byteLength;
  }
  const t0 = begin();
  const r = saveModel(m, out, { durable, ...(alignment ? { alignment } : {}) });
  timed = end(t0);
  if (!keep) {
    rmSync(out, { force: true });
    if (r.externalDataPath) rmSync(r.externalDataPath, { force: true });
  }
  return { bytes: r.externalBytes + r.modelBytes, externalTensors: r.externalTensors, recomputedBytes: recomputed };
};

/**
 * Streams the initializers of `a` and of each model in `bs` through SHA-1 and compares them:
 * equality of every weight without holding any tensor whole.
 */
const verify: Task = ({ a, bs }: { a: string; bs: string[] }) => {
  const digest = (t: Tensor) => {
    const h = createHash('sha1');
    for (const c of t.chunks(undefined, true)) h.update(c);
    return h.digest('hex');
  };
  const ma = loadModel(a);
  const want = ma.graph.initializers.map((v) => [v.name, digest(v.initializer!)]);
  const bytes = ma.graph.initializers.reduce((n, v) => n + v.initializer!.byteLength, 0);
  const info: Record<string, number | string | boolean> = { bytes, tensors: want.length };
  let equal = true;
  bs.forEach((b, k) => {
    const mb = loadModel(b);
    const got = mb.graph.initializers.map((v) => [v.name, digest(v.initializer!)]);
    const same = got.length === want.length && got.every(([n, d], i) => n === want[i]![0] && d === want[i]![1]);
    info[`equal${k}`] = same;
    equal &&= same;
  });
  info.equal = equal;
  return info;
};

/** A Llama-shaped model (TorchScript-style node names, [in, out] MatMul weights) and a LoRA adapter folder. */
const generateLlm: Task = ({ dir, layers, hidden, intermediate, vocab, rank }: { dir: string; layers: number; hidden: number; intermediate: number; vocab: number; rank: number }) => {
  const b = new ModelBuilder({ opset: 17 });
  const ids = b.input('input_ids', DataType.INT64, [1, 8]);
  let params = 0;
  let largest = 0;
  const weight = (name: string, rows: number, cols: number, seed: number) => {
    params += rows * cols;
    largest = Math.max(largest, rows * cols * 4);
    const fill = (): Uint8Array => {
      const a = new Float32Array(rows * cols);
      let s = seed * 2654435761;
      for (let k = 0; k < a.length; k++) {
        s = (s ^ (s << 13)) >>> 0;
        s = (s ^ (s >>> 17)) >>> 0;
        s = (s ^ (s << 5)) >>> 0;
        a[k] = (s / 4294967296 - 0.5) * 0.04;
      }
      return new Uint8Array(a.buffer);
    };
    return b.graph.addInitializer(Tensor.deferred(name, DataType.FLOAT, [rows, cols], fill, true));
  };
  let h = b.op('Gather', [weight('model.embed_tokens.weight', vocab, hidden, 1), ids], {}, { name: '/model/embed_tokens/Gather' });
  const tensors: Record<string, { dtype: string; shape: number[]; data: Uint8Array }> = {};
  let seed = 2;
  const linear = (x: typeof h, scope: string, inF: number, outF: number) => {
    const y = b.op('MatMul', [x, weight(`onnx::MatMul_${seed}`, inF, outF, seed)], {}, { name: `/${scope.replaceAll(/\.(?!\d)/g, '/')}/MatMul` });
    const a = new Float32Array(rank * inF).map((_, k) => Math.sin(k + seed) * 0.01);
    const bm = new Float32Array(outF * rank).map((_, k) => Math.cos(k + seed) * 0.01);
    tensors[`base_model.model.${scope}.lora_A.weight`] = { dtype: 'F32', shape: [rank, inF], data: new Uint8Array(a.buffer) };
    tensors[`base_model.model.${scope}.lora_B.weight`] = { dtype: 'F32', shape: [outF, rank], data: new Uint8Array(bm.buffer) };
    seed++;
    return y;
  };
  for (let l = 0; l < layers; l++) {
    const p = `model.layers.${l}`;
    const q = linear(h, `${p}.self_attn.q_proj`, hidden, hidden);
    const k = linear(h, `${p}.self_attn.k_proj`, hidden, hidden);
    const v = linear(h, `${p}.self_attn.v_proj`, hidden, hidden);
    const attn = linear(b.op('Add', [b.op('Add', [q, k]), v]), `${p}.self_attn.o_proj`, hidden, hidden);
    h = b.op('Add', [h, attn]);
    const gate = linear(h, `${p}.mlp.gate_proj`, hidden, intermediate);
    const up = linear(h, `${p}.mlp.up_proj`, hidden, intermediate);
    h = b.op('Add', [h, linear(b.op('Mul', [b.op('Sigmoid', [gate]), up]), `${p}.mlp.down_proj`, intermediate, hidden)]);
  }
  b.output(b.op('MatMul', [h, weight('lm_head.weight.T', hidden, vocab, 999)], {}, { name: '/lm_head/MatMul' }), { dtype: DataType.FLOAT, shape: [1, 8, vocab] });
  saveModel(b.build(), `${dir}/base.onnx`, { externalData: 'all', durable: false });
  mkdirSync(`${dir}/adapter`, { recursive: true });
  writeFileSync(`${dir}/adapter/adapter_config.json`, JSON.stringify({ peft_type: 'LORA', r: rank, lora_alpha: 2 * rank, bias: 'none', target_modules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] }));
  writeSafetensorsFile(`${dir}/adapter/adapter_model.safetensors`, tensors);
  return { params, modules: Object.keys(tensors).length / 2, largestTensorBytes: largest };
};

function writeSafetensorsFile(path: string, tensors: Record<string, { dtype: string; shape: number[]; data: Uint8Array }>): void {
  const header: Record<string, unknown> = {};
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(path, Buffer.concat([len, json, ...Object.values(tensors).map((t) => t.data)]));
}

/** What a user runs: peftc compile base.onnx --lora adapter/ -o merged.onnx. */
const merge: Task = ({ model, adapter, out }: { model: string; adapter: string; out: string }) => {
  const r = compileModel(model, { target: 'cpu', quant: 'none', output: out, lora: [{ dir: adapter, weight: 1 }] });
  return { merged: Number(r.passes[0]?.details.merged ?? 0), bytes: r.written.externalBytes + r.written.modelBytes, workers: r.written.workers, precomputed: r.written.precomputedTensors };
};

/** What a user runs: peftc compile model.onnx --quant int4 --quant-method M --block-size B -o out.onnx. */
const quantize: Task = ({ model, out, method, blockSize, symmetric, accuracyLevel, workers }: { model: string; out: string; method: 'rtn' | 'mse'; blockSize: number; symmetric?: boolean; accuracyLevel?: number; workers?: number }) => {
  const r = compileModel(model, { target: 'cpu', quant: 'int4', output: out, ...(workers !== undefined ? { workers } : {}), weightQuant: { method, blockSize, symmetric: symmetric ?? false, ...(accuracyLevel ? { accuracyLevel } : {}) } });
  return { layers: r.quantization?.length ?? 0, bytes: r.written.externalBytes + r.written.modelBytes };
};

const TASKS: Record<string, Task> = { generate, read, copy, kcopy, decode, encode, verify, 'generate-llm': generateLlm, merge, quantize };

const [name, argText] = process.argv.slice(2);
const task = TASKS[name ?? ''];
if (!task) {
  console.error(`unknown task ${name}; tasks: ${Object.keys(TASKS).join(', ')}`);
  process.exit(2);
}
const whole = begin();
const info = task(JSON.parse(argText ?? '{}'));
const span = timed ?? end(whole);
const result: TaskResult = { ms: span.ms, cpuMs: span.cpuMs, peakRssMiB: peakRssMiB(), info };
console.log(JSON.stringify(result));

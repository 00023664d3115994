/**
 * Codec benchmark (issue #2). A generated transformer-shaped model (~2.2 GiB of float32 weights
 * in external data, 101 initializers from 8 KiB to 250 MiB, a Gather/MatMul/Mul/Add graph over
 * them) is decoded and re-encoded; every figure is set against baselines measured in the same
 * run on the same bytes: a plain sequential read of the data file (same chunk size as the codec),
 * and plain copies of it (read+write, and the kernel's copy), with and without fsync.
 *
 * Method: every operation runs in a fresh Node process (so peak RSS is its own), `repeat` rounds
 * with the operations interleaved (so load from other work on the machine falls on all of them
 * alike); the median is reported, with the range. Before each run: `sync` (no writeback left over
 * from the last run) and an untimed read of the source data file, because this machine's memory
 * reclaim (DAMON) pages out file cache left idle for a few seconds: the cache is warm for every
 * run by construction, and fincore's count of resident bytes is recorded to show it.
 * The round trip (the model is over 2 GiB) is checked by streamed SHA-1 of every weight.
 */
import { existsSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { fmt, load1, MiB, printTable, residentBytes, runTask, summarize, syncDisks, warmUp, type Summary, type TaskResult } from './util.js';

export interface CodecOptions {
  dir: string;
  keep: boolean;
  repeat: number;
}

/** Llama-like shapes: 32000 x 2048 embedding and head (250 MiB each), 9 layers of 16 and 44 MiB projections. */
const SPEC = { vocab: 32000, hidden: 2048, ffn: 5632, layers: 9 };

/** Byte sizes of the generated initializers, in file order (as bench/tasks.ts `generate` makes them). */
function tensorBytes(spec: typeof SPEC): number[] {
  const { vocab, hidden: d, ffn } = spec;
  const layer = [d, d * d, d * d, d * d, d * d, d, d, d * ffn, d * ffn, ffn * d, d];
  return [vocab * d, ...Array.from({ length: spec.layers }, () => layer).flat(), d * vocab].map((n) => n * 4);
}

interface Op {
  key: string;
  label: string;
  task: string;
  args: Record<string, unknown>;
  /** The baseline this operation is fairly compared with (same work on the same bytes). */
  vs?: string;
}

export function benchCodec(opts: CodecOptions): unknown {
  const dir = join(opts.dir, 'codec');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const source = join(dir, 'model.onnx');
  const data = `${source}.data`;
  console.log(`codec: generating a ${SPEC.layers}-layer transformer-shaped model into ${source} ...`);
  syncDisks();
  const gen = runTask('generate', { path: source, spec: SPEC });
  const dataBytes = statSync(data).size;
  const largest = Number(gen.info.largest);
  const rssGoal = 300 + largest / MiB;
  console.log(
    `codec: ${gen.info.tensors} initializers, ${gen.info.nodes} nodes, ${fmt(dataBytes / MiB, 0)} MiB of external data ` +
      `(largest tensor ${fmt(largest / MiB, 0)} MiB), written in ${fmt(gen.ms / 1000, 1)} s`,
  );

  const out = (name: string) => join(dir, name);
  const ops: Op[] = [
    { key: 'read', label: 'plain read of the data file (baseline)', task: 'read', args: { file: data } },
    { key: 'readFresh', label: 'plain read, a new buffer per tensor', task: 'read', args: { file: data, fresh: tensorBytes(SPEC) } },
    { key: 'copy', label: 'plain copy: read + write', task: 'copy', args: { src: data, dst: out('copy.bin'), durable: false } },
    { key: 'copyDurable', label: 'plain copy: read + write + fsync', task: 'copy', args: { src: data, dst: out('copy.bin'), durable: true } },
    { key: 'kcopy', label: 'kernel copy (fs.copyFileSync)', task: 'kcopy', args: { src: data, dst: out('copy.bin'), durable: false } },
    { key: 'kcopyDurable', label: 'kernel copy + fsync', task: 'kcopy', args: { src: data, dst: out('copy.bin'), durable: true } },
    { key: 'decode', label: 'decode: load + Tensor.chunks, each tensor', task: 'decode', args: { model: source, mode: 'stream' }, vs: 'read' },
    { key: 'decodeWhole', label: 'decode: load + Tensor.bytes, each tensor', task: 'decode', args: { model: source, mode: 'whole' }, vs: 'readFresh' },
    { key: 'encode', label: 'encode: saveModel (default, durable)', task: 'encode', args: { model: source, out: out('out.onnx'), durable: true }, vs: 'copyDurable' },
    { key: 'encodeNoSync', label: 'encode: saveModel, durable: false', task: 'encode', args: { model: source, out: out('out.onnx'), durable: false }, vs: 'copy' },
    { key: 'encodePartial', label: 'encode, q/v weights recomputed, durable', task: 'encode', args: { model: source, out: out('out.onnx'), durable: true, recompute: ['q_proj', 'v_proj'] }, vs: 'copyDurable' },
    { key: 'encodeStreamed', label: 'encode, new layout (all streamed), durable', task: 'encode', args: { model: source, out: out('out.onnx'), durable: true, alignment: 4096 }, vs: 'copyDurable' },
    { key: 'encodeStreamedNoSync', label: 'encode, new layout (all streamed), no fsync', task: 'encode', args: { model: source, out: out('out.onnx'), durable: false, alignment: 4096 }, vs: 'copy' },
  ];

  const runs = new Map<string, TaskResult[]>(ops.map((o) => [o.key, []]));
  let minResident = Infinity;
  const loads: number[] = [load1()];
  const prepare = () => {
    syncDisks();
    warmUp(data);
    const res = residentBytes(data);
    if (res !== undefined) minResident = Math.min(minResident, res);
  };
  for (let round = 0; round < opts.repeat; round++) {
    process.stdout.write(`codec: round ${round + 1}/${opts.repeat}:`);
    for (const op of ops) {
      prepare();
      runs.get(op.key)!.push(runTask(op.task, op.args));
      process.stdout.write(` ${op.key}`);
    }
    loads.push(load1());
    process.stdout.write('\n');
  }
  const s = new Map<string, Summary>(ops.map((o) => [o.key, summarize(runs.get(o.key)!)]));

  // Round trip (the weights are over 2 GiB): save with each write path, load back, compare
  // every weight by streamed SHA-1 against the source.
  const trips = [
    { key: 'encode', path: out('trip-copy.onnx'), args: { durable: true } },
    { key: 'encodePartial', path: out('trip-partial.onnx'), args: { durable: true, recompute: ['q_proj', 'v_proj'] } },
    { key: 'encodeStreamed', path: out('trip-streamed.onnx'), args: { durable: true, alignment: 4096 } },
  ];
  const saves = trips.map((t) => {
    prepare();
    return runTask('encode', { model: source, out: t.path, keep: true, ...t.args });
  });
  prepare();
  const verify = runTask('verify', { a: source, bs: trips.map((t) => t.path) });
  const residentShare = minResident === Infinity ? undefined : minResident / dataBytes;

  const mbps = (ms: number) => dataBytes / MiB / (ms / 1000);
  // Ratios are paired: baseline and operation of the same round, then the median over rounds,
  // so that load which comes and goes between rounds cancels out.
  const paired = (key: string, base: string) => {
    const a = runs.get(key)!;
    const b = runs.get(base)!;
    const r = a.map((x, i) => b[i]!.ms / x.ms).sort((p, q) => p - q);
    return r[Math.floor(r.length / 2)]!;
  };
  const rows = ops.map((op) => {
    const r = s.get(op.key)!;
    const base = op.vs && op.vs !== 'read' ? op.vs : undefined;
    return [
      op.label,
      fmt(r.ms / 1000, 2),
      `${fmt(r.minMs / 1000, 2)}-${fmt(r.maxMs / 1000, 2)}`,
      fmt(mbps(r.ms), 0),
      fmt(paired(op.key, 'read'), 2),
      base ? `${fmt(paired(op.key, base), 2)} (${base})` : '',
      fmt((r.cpuMs ?? NaN) / 1000, 2),
      fmt(r.peakRssMiB, 0),
      r.peakRssMiB <= rssGoal ? 'yes' : 'NO',
    ];
  });
  printTable(
    `codec: ${fmt(dataBytes / MiB, 0)} MiB external weights, ${gen.info.tensors} tensors, largest ${fmt(largest / MiB, 0)} MiB; median of ${opts.repeat} (fresh process each); RSS goal <= 300 + largest = ${fmt(rssGoal, 0)} MiB`,
    ['operation', 's', 'range s', 'MiB/s', 'x read', 'x baseline', 'CPU s', 'peak RSS MiB', 'RSS ok'],
    rows,
  );
  console.log(
    `(s, MiB/s: median run; x read, x baseline: throughput against the plain read / the named baseline (same durability), ` +
      `paired within each round, median over rounds; CPU s: user + system time of the timed part, less affected by other load than wall time)`,
  );
  const ratio = (k: string) => paired(k, 'read');
  const goal = (k: string) => `${k} ${fmt(ratio(k), 2)} (${ratio(k) >= 0.5 ? 'met' : 'NOT met'})`;
  console.log(`goal: throughput >= 0.50 x plain read: ${['decode', 'decodeWhole', 'encode', 'encodeNoSync', 'encodePartial', 'encodeStreamed', 'encodeStreamedNoSync'].map(goal).join(', ')}`);
  console.log(
    `page cache: warm for every run (re-read before each); at least ${residentShare === undefined ? '? (fincore missing)' : `${fmt(residentShare * 100, 1)}%`} of the data file was resident when a run started; ` +
      `nothing was dropped. Writes land in the page cache; only the durable rows wait for the disk.`,
  );
  console.log(`machine load (1-min average) during the rounds: ${loads.map((l) => fmt(l, 1)).join(' -> ')} on ${cpus().length} cores; timings share the CPUs with it`);
  console.log(
    `round trip of the ${fmt(dataBytes / 2 ** 30, 2)} GiB model: saveModel ${saves.map((r, i) => `${fmt(r.ms / 1000, 2)} s (${trips[i]!.key})`).join(', ')}; ` +
      `loadModel + streamed SHA-1 of source and all three outputs ${fmt(verify.ms / 1000, 2)} s; every weight identical: ${verify.info.equal ? 'yes' : 'NO'}`,
  );

  const result = {
    model: { spec: SPEC, dataBytes, tensors: gen.info.tensors, nodes: gen.info.nodes, largestTensorBytes: largest, generateMs: gen.ms },
    repeat: opts.repeat,
    method: 'fresh process per run; rounds interleave the operations; sync + untimed read of the source data before each run; median, min, max',
    pageCache: { warm: true, minResidentBytesAtStart: residentShare === undefined ? null : minResident, minResidentShare: residentShare ?? null, dropped: false },
    load1: loads,
    operations: Object.fromEntries(
      ops.map((o) => [o.key, { label: o.label, baseline: o.vs ?? null, ...s.get(o.key)!, mibPerS: mbps(s.get(o.key)!.ms), vsRead: ratio(o.key), vsBaseline: o.vs ? paired(o.key, o.vs) : null }]),
    ),
    roundTrip: { saves: saves.map((r, i) => ({ path: trips[i]!.key, ms: r.ms, peakRssMiB: r.peakRssMiB })), verify },
    rssGoalMiB: rssGoal,
    goalsMet: {
      decode: ratio('decode') >= 0.5,
      decodeWhole: ratio('decodeWhole') >= 0.5,
      encode: ratio('encode') >= 0.5,
      encodeNoSync: ratio('encodeNoSync') >= 0.5,
      encodeStreamed: ratio('encodeStreamed') >= 0.5,
      encodeStreamedNoSync: ratio('encodeStreamedNoSync') >= 0.5,
      rss: [...s.values()].every((r) => r.peakRssMiB <= rssGoal),
      roundTrip: verify.info.equal === true,
    },
  };
  if (!opts.keep && existsSync(dir)) rmSync(dir, { recursive: true, force: true });
  return result;
}

/**
 * Merge benchmark (issue #4): a generated Llama-shaped model of ~1B parameters (external data)
 * and a rank-16 LoRA adapter on every linear layer; `peftc compile --lora` time and peak RSS
 * against reading and writing the weights once (a plain copy of the data file, with and without
 * fsync), measured in the same run.
 */
import { mkdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fmt, MiB, printTable, runTask } from './util.js';

export function benchMerge(opts: { dir: string; keep: boolean; layers: number; hidden: number; intermediate: number; vocab: number; rank: number }): unknown {
  const dir = join(opts.dir, 'merge');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const gen = runTask('generate-llm', { dir, layers: opts.layers, hidden: opts.hidden, intermediate: opts.intermediate, vocab: opts.vocab, rank: opts.rank });
  const data = join(dir, 'base.onnx.data');
  const bytes = statSync(data).size;
  console.log(`merge: generated ${fmt(Number(gen.info.params) / 1e9, 2)}B parameters (${fmt(bytes / MiB, 0)} MiB) and a rank-${opts.rank} adapter on ${gen.info.modules} modules in ${fmt(gen.ms / 1000, 1)} s`);
  const copy = runTask('copy', { src: data, dst: join(dir, 'copy.bin'), durable: false });
  const copyDurable = runTask('copy', { src: data, dst: join(dir, 'copy.bin'), durable: true });
  const merge = runTask('merge', { model: join(dir, 'base.onnx'), adapter: join(dir, 'adapter'), out: join(dir, 'merged.onnx') });
  const largest = Number(gen.info.largestTensorBytes) / MiB;
  printTable(
    `merge: ${fmt(Number(gen.info.params) / 1e9, 2)}B-parameter model, rank ${opts.rank} on all ${gen.info.modules} linear layers (one process each)`,
    ['operation', 's', 'x copy', 'x copy+fsync', 'peak RSS MiB'],
    [
      ['plain copy of the weights (read+write)', fmt(copy.ms / 1000, 2), '1.00', fmt(copy.ms / copyDurable.ms, 2), fmt(copy.peakRssMiB, 0)],
      ['plain copy + fsync', fmt(copyDurable.ms / 1000, 2), fmt(copyDurable.ms / copy.ms, 2), '1.00', fmt(copyDurable.peakRssMiB, 0)],
      ['peftc compile --lora (merge + cleanup + save)', fmt(merge.ms / 1000, 2), fmt(merge.ms / copy.ms, 2), fmt(merge.ms / copyDurable.ms, 2), fmt(merge.peakRssMiB, 0)],
    ],
  );
  console.log(`goal: within 1.5x of the I/O time: ${fmt(merge.ms / copyDurable.ms, 2)}x of copy+fsync (${merge.ms / copyDurable.ms <= 1.5 ? 'met' : 'NOT met'}); peak RSS ${fmt(merge.peakRssMiB, 0)} MiB for a ${fmt(bytes / MiB, 0)} MiB model (largest tensor ${fmt(largest, 0)} MiB)`);
  if (!opts.keep) rmSync(dir, { recursive: true, force: true });
  return { params: gen.info.params, bytes, copy, copyDurable, merge, ratio: merge.ms / copyDurable.ms };
}

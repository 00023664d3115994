/**
 * Merge benchmark (issue #4): a generated Llama-shaped model of ~1B parameters (external data)
 * and a rank-16 LoRA adapter on every linear layer; `peftc compile --lora` time and peak RSS
 * against reading and writing the weights once (a plain copy of the data file, with and without
 * fsync), measured in the same run.
 *
 * Method: `repeat` interleaved rounds of (copy, copy + fsync, merge), each operation in a fresh
 * process, with dirty pages flushed (`sync`, untimed) before each so one run's writeback does not
 * slow the next; medians reported, with the spread, CPU time and the load average (other work on
 * the machine skews these timings).
 */
import { mkdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fmt, load1, MiB, printTable, runTask, summarize, syncDisks, type TaskResult } from './util.js';

export function benchMerge(opts: { dir: string; keep: boolean; layers: number; hidden: number; intermediate: number; vocab: number; rank: number; repeat: number }): unknown {
  const dir = join(opts.dir, 'merge');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const gen = runTask('generate-llm', { dir, layers: opts.layers, hidden: opts.hidden, intermediate: opts.intermediate, vocab: opts.vocab, rank: opts.rank });
  const data = join(dir, 'base.onnx.data');
  const bytes = statSync(data).size;
  console.log(`merge: generated ${fmt(Number(gen.info.params) / 1e9, 2)}B parameters (${fmt(bytes / MiB, 0)} MiB) and a rank-${opts.rank} adapter on ${gen.info.modules} modules in ${fmt(gen.ms / 1000, 1)} s`);
  const runs: Record<'copy' | 'copyDurable' | 'merge', TaskResult[]> = { copy: [], copyDurable: [], merge: [] };
  const loads: number[] = [];
  const out = join(dir, 'merged.onnx');
  for (let round = 0; round < Math.max(1, opts.repeat); round++) {
    loads.push(load1());
    syncDisks();
    runs.copy.push(runTask('copy', { src: data, dst: join(dir, 'copy.bin'), durable: false }));
    syncDisks();
    runs.copyDurable.push(runTask('copy', { src: data, dst: join(dir, 'copy.bin'), durable: true }));
    // A fresh output each round: replacing the previous one would add unlinking 3.6 GiB to the time.
    rmSync(out, { force: true });
    rmSync(`${out}.data`, { force: true });
    syncDisks();
    runs.merge.push(runTask('merge', { model: join(dir, 'base.onnx'), adapter: join(dir, 'adapter'), out }));
    console.log(`  round ${round + 1}: copy ${fmt(runs.copy.at(-1)!.ms / 1000, 2)} s, copy+fsync ${fmt(runs.copyDurable.at(-1)!.ms / 1000, 2)} s, merge ${fmt(runs.merge.at(-1)!.ms / 1000, 2)} s (load ${fmt(loads.at(-1)!, 1)})`);
  }
  const copy = summarize(runs.copy);
  const copyDurable = summarize(runs.copyDurable);
  const merge = summarize(runs.merge);
  // Ratios of each round's merge to the same round's copy, then their median (paired: a round
  // slowed by other work slows both).
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const pairedRatio = median(runs.merge.map((m, i) => m.ms / runs.copyDurable[i]!.ms));
  const largest = Number(gen.info.largestTensorBytes) / MiB;
  const spread = (s: typeof copy) => `${fmt(s.minMs / 1000, 1)}-${fmt(s.maxMs / 1000, 1)}`;
  printTable(
    `merge: ${fmt(Number(gen.info.params) / 1e9, 2)}B-parameter model, rank ${opts.rank} on all ${gen.info.modules} linear layers (one process each; median of ${runs.merge.length})`,
    ['operation', 's', 'range s', 'CPU s', 'x copy', 'x copy+fsync', 'peak RSS MiB'],
    [
      ['plain copy of the weights (read+write)', fmt(copy.ms / 1000, 2), spread(copy), fmt(copy.cpuMs! / 1000, 1), '1.00', fmt(copy.ms / copyDurable.ms, 2), fmt(copy.peakRssMiB, 0)],
      ['plain copy + fsync', fmt(copyDurable.ms / 1000, 2), spread(copyDurable), fmt(copyDurable.cpuMs! / 1000, 1), fmt(copyDurable.ms / copy.ms, 2), '1.00', fmt(copyDurable.peakRssMiB, 0)],
      ['peftc compile --lora (merge + cleanup + save)', fmt(merge.ms / 1000, 2), spread(merge), fmt(merge.cpuMs! / 1000, 1), fmt(merge.ms / copy.ms, 2), fmt(merge.ms / copyDurable.ms, 2), fmt(merge.peakRssMiB, 0)],
    ],
  );
  const ratio = merge.ms / copyDurable.ms;
  console.log(
    `goal: within 1.5x of the I/O time: ${fmt(ratio, 2)}x of copy+fsync by medians, ${fmt(pairedRatio, 2)}x paired per round (${Math.max(ratio, pairedRatio) <= 1.5 ? 'met' : 'NOT met'}); ` +
      `peak RSS ${fmt(merge.peakRssMiB, 0)} MiB for a ${fmt(bytes / MiB, 0)} MiB model (largest tensor ${fmt(largest, 0)} MiB); load average ${loads.map((l) => fmt(l, 1)).join(', ')}`,
  );
  if (!opts.keep) rmSync(dir, { recursive: true, force: true });
  return { params: gen.info.params, bytes, copy, copyDurable, merge, ratio, pairedRatio, loadAverages: loads };
}

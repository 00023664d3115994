/** `peftc bench MODEL...` and `peftc bench --sweep MODEL`: argument parsing and printing (src/bench/). */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CommandModule } from 'yargs';
import { EXECUTION_PROVIDERS, type ExecutionProvider } from '../runtime/ort.js';
import { writeFileAtomic } from '../atomic-write.js';
import { benchModels, renderBench } from '../bench/bench.js';
import { renderSweep, sweep } from '../bench/sweep.js';
import { QUANT_MODES, TARGETS, type QuantMode, type Target } from '../compile.js';
import { PeftcError } from '../errors.js';
import { progress, type Progress } from '../progress.js';
import { parseDims } from './verify-command.js';

function list<T extends string>(text: string, allowed: readonly T[], flag: string): T[] {
  const items = text.split(',').map((s) => s.trim()).filter(Boolean);
  const bad = items.filter((i) => !allowed.includes(i as T));
  if (bad.length || !items.length) throw new PeftcError(`--${flag}: ${bad.length ? `${bad.join(', ')} not among` : 'give one or more of'} ${allowed.join(', ')}`);
  return items as T[];
}

export const benchCommand: CommandModule = {
  command: 'bench <models..>',
  describe: 'Time models on onnxruntime-node side by side (interleaved rounds, each in its own process); --sweep compiles, verifies and times a target x quant matrix',
  builder: (y) =>
    y
      .positional('models', { type: 'string', array: true, demandOption: true, describe: '.onnx files (with --sweep: the one source model)' })
      .option('runs', { type: 'number', default: 50, describe: 'timed calls per round' })
      .option('warmup', { type: 'number', default: 5, describe: 'untimed calls before timing' })
      .option('rounds', { type: 'number', default: 3, describe: 'interleaved rounds (each model once per round, in a fresh process)' })
      .option('threads', { type: 'number', default: 1, describe: 'onnxruntime intra-op threads' })
      .option('inputs', { type: 'string', describe: 'input data (.npy/.npz); the first sample is fed; default: generated' })
      .option('seed', { type: 'number', default: 0, describe: 'seed of generated inputs' })
      .option('dim', { type: 'string', array: true, describe: 'size of a symbolic dimension for generated inputs: NAME=N' })
      .option('ep', { choices: EXECUTION_PROVIDERS, default: 'cpu' as const, describe: "onnxruntime execution provider (cuda needs onnxruntime's CUDA provider libraries: bench/gpu/README.md)" })
      .option('tfjs-backend', { choices: ['wasm', 'cpu'] as const, default: 'wasm' as const, describe: 'TF.js backend for TF.js artifacts (folders with model.json) among the models' })
      .option('sweep', { type: 'boolean', default: false, describe: 'compile MODEL for every --targets x --quant, verify and time each' })
      .option('targets', { type: 'string', default: 'cpu', describe: 'with --sweep: comma-separated targets' })
      .option('quant', { type: 'string', default: 'none,int8-weight,int4,nf4', describe: 'with --sweep: comma-separated quant modes (the first is the baseline)' })
      .option('output', { alias: 'o', type: 'string', describe: 'with --sweep: folder for the compiled variants (default: a temporary folder)' })
      .option('results', { type: 'string', describe: 'write the results JSON here (peftc report reads sweep results)' })
      .option('json', { type: 'boolean', default: false, describe: 'print the results as JSON' }),
  handler: async (args) => {
    const json = args.json as boolean;
    const log = json ? () => {} : (m: string) => process.stderr.write(`${m}\n`);
    const models = args.models as string[];
    let bar: Progress | undefined;
    const common = {
      runs: args.runs as number,
      warmup: args.warmup as number,
      rounds: args.rounds as number,
      threads: args.threads as number,
      seed: args.seed as number,
      tfjsBackend: args['tfjs-backend'] as 'wasm' | 'cpu',
      ep: args.ep as ExecutionProvider,
      ...(args.inputs ? { inputs: args.inputs as string } : {}),
      ...(parseDims(args.dim as string[] | undefined) ? { dims: parseDims(args.dim as string[])! } : {}),
      onProgress: (done: number, total: number, what: string) => (bar ??= progress('bench', total, { enabled: !json })).update(done, what),
    };
    if (args.sweep) {
      if (models.length !== 1) throw new PeftcError(`bench --sweep takes one source model (got ${models.length})`);
      const targets = list(args.targets as string, TARGETS, 'targets') as Target[];
      const quants = list(args.quant as string, QUANT_MODES, 'quant') as QuantMode[];
      const outDir = (args.output as string | undefined) ?? mkdtempSync(join(tmpdir(), 'peftc-sweep-'));
      const r = await sweep(models[0]!, { ...common, targets, quants, outDir, log });
      bar?.done();
      if (args.results) writeFileAtomic(args.results as string, `${JSON.stringify(r, null, 2)}\n`);
      process.stdout.write(json ? `${JSON.stringify(r, null, 2)}\n` : `${renderSweep(r)}\nvariants in ${outDir}${args.results ? `; results in ${args.results}` : ''}\n`);
      return;
    }
    if (args.output) throw new PeftcError('-o goes with --sweep (where the compiled variants go)');
    const r = await benchModels(models, common);
    bar?.done();
    if (args.results) writeFileAtomic(args.results as string, `${JSON.stringify(r, null, 2)}\n`);
    process.stdout.write(json ? `${JSON.stringify(r, null, 2)}\n` : `${renderBench(r)}\n`);
  },
};

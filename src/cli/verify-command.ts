/** `peftc verify REFERENCE CANDIDATE`: argument parsing and printing; the work is src/verify/verify.ts. */
import type { Argv, CommandModule } from 'yargs';
import { EXECUTION_PROVIDERS, type ExecutionProvider } from '../runtime/ort.js';
import { PeftcError } from '../errors.js';
import { progress, type Progress } from '../progress.js';
import { parseTolerance } from '../verify/tolerance.js';
import { renderVerifyReport, verifyModels, type Task } from '../verify/verify.js';

/** `--shape name=128` / `--shape batch=1` values for symbolic dimensions of generated inputs. */
export function parseDims(list: readonly string[] | undefined): Record<string, number> | undefined {
  if (!list?.length) return undefined;
  const out: Record<string, number> = {};
  for (const item of list) {
    const m = /^([^=]+)=(\d+)$/.exec(item);
    if (!m || Number(m[2]) < 1) throw new PeftcError(`--dim '${item}': give NAME=N, a symbolic dimension's name and a size of 1 or more`);
    out[m[1]!] = Number(m[2]);
  }
  return out;
}

export const inputOptions = <T>(y: Argv<T>) =>
  y
    .option('inputs', { type: 'string', describe: 'input data: .npy (single-input model) or .npz keyed by input name; default: generated from the declared shapes' })
    .option('seed', { type: 'number', default: 0, describe: 'seed of generated inputs' })
    .option('samples', { type: 'number', default: 2, describe: 'generated samples' })
    .option('dim', { type: 'string', array: true, describe: 'size of a symbolic dimension for generated inputs: NAME=N (repeatable)' });

export const verifyCommand: CommandModule = {
  command: 'verify <reference> <candidate>',
  describe: 'Run two models on the same inputs and report how far the candidate\'s outputs are from the reference\'s (exit 1 over tolerance)',
  builder: (y) =>
    inputOptions(
      y
        .positional('reference', { type: 'string', demandOption: true, describe: 'the model whose outputs are taken as right' })
        .positional('candidate', { type: 'string', demandOption: true, describe: 'the model to check' }),
    )
      .option('tolerance', { type: 'string', describe: 'bounds: rel=1e-4,abs=N,cos=N,top1=N,ppl=N (perplexity ratio),greedy=N; default rel=1e-4' })
      .option('task', { choices: ['auto', 'causal-lm', 'generic'] as const, default: 'auto' as const, describe: 'causal-lm adds perplexity and greedy-continuation metrics (auto: detected)' })
      .option('continuation', { type: 'number', default: 32, describe: 'causal LMs: greedy continuation length in tokens (0: none)' })
      .option('threads', { type: 'number', default: 1, describe: 'onnxruntime intra-op threads' })
      .option('target', { type: 'string', describe: 'the target CANDIDATE was compiled for: cuda float16 runs emulated, xla in the StableHLO interpreter, tfjs in tfjs-converter (default: an ONNX model run as it is)' })
      .option('ep', { choices: EXECUTION_PROVIDERS, default: 'cpu' as const, describe: "onnxruntime execution provider for CANDIDATE (cuda needs onnxruntime's CUDA provider libraries: bench/gpu/README.md); the reference runs on cpu" })
      .option('json', { type: 'boolean', default: false, describe: 'print the report as JSON' }),
  handler: async (args) => {
    const json = args.json as boolean;
    const log = json ? () => {} : (m: string) => process.stderr.write(`${m}\n`);
    let bar: Progress | undefined;
    const report = await verifyModels(args.reference as string, args.candidate as string, {
      ...(args.inputs !== undefined ? { inputs: args.inputs as string } : {}),
      seed: args.seed as number,
      samples: args.samples as number,
      ...(parseDims(args.dim as string[] | undefined) ? { dims: parseDims(args.dim as string[])! } : {}),
      ...(args.tolerance !== undefined ? { tolerance: parseTolerance(args.tolerance as string) } : {}),
      task: args.task as Task,
      continuationTokens: args.continuation as number,
      threads: args.threads as number,
      ...(args.target !== undefined ? { target: args.target as string } : {}),
      ep: args.ep as ExecutionProvider,
      log,
      onRun: (done, total) => (bar ??= progress('verify', total, { enabled: !json })).update(done),
    });
    bar?.done();
    process.stdout.write(json ? `${JSON.stringify(report, null, 2)}\n` : `${renderVerifyReport(report)}\n`);
    if (!report.ok) process.exitCode = 1;
  },
};

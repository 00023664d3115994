/**
 * `peftc diff A B [--json]`: prints what changed between two models (see src/diff.ts). The exit
 * code is 0 whether or not they differ — it is a report, not a check; an unreadable or malformed
 * model is a PeftcError naming the file (exit 2 through the CLI's error handler).
 */
import type { Argv, CommandModule } from 'yargs';
import { diffModelFiles, renderModelDiff } from '../diff.js';

interface DiffArgs {
  a: string;
  b: string;
  json: boolean;
}

export const diffCommand: CommandModule<object, DiffArgs> = {
  command: 'diff <a> <b>',
  describe: 'Compare two models: op histogram, node count, initializers (added, removed, changed), inputs/outputs, opsets, weight bytes',
  builder: (y: Argv<object>) =>
    y
      .positional('a', { type: 'string', demandOption: true, describe: 'first model (.onnx)' })
      .positional('b', { type: 'string', demandOption: true, describe: 'second model (.onnx)' })
      .option('json', { type: 'boolean', default: false, describe: 'print machine-readable JSON' }) as unknown as Argv<DiffArgs>,
  handler: (args) => {
    const d = diffModelFiles(args.a, args.b);
    process.stdout.write(args.json ? `${JSON.stringify(d, null, 2)}\n` : `${renderModelDiff(d)}\n`);
  },
};

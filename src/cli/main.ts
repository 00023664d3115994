#!/usr/bin/env node
/**
 * The `peftc` command line: argument parsing and printing only; the work lives in the library.
 * Exit codes: 0 ok, 1 verification/regression failure, 2 bad input or usage.
 */
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { PeftcError } from '../errors.js';
import { loadModel } from '../onnx/io.js';
import { renderSummary, summarizeModel } from '../inspect.js';

function fail(err: unknown): never {
  if (err instanceof PeftcError) {
    process.stderr.write(`peftc: error: ${err.message}\n`);
    process.exit(err.exitCode);
  }
  process.stderr.write(`peftc: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(70);
}

async function main(): Promise<void> {
  await yargs(hideBin(process.argv))
    .scriptName('peftc')
    .usage('$0 <command> [options]')
    .command(
      'inspect <model>',
      'Summarize an ONNX model: opsets, op histogram, parameters, inputs and outputs',
      (y) =>
        y
          .positional('model', { type: 'string', demandOption: true, describe: 'path to a .onnx file' })
          .option('json', { type: 'boolean', default: false, describe: 'print machine-readable JSON' }),
      (args) => {
        const model = loadModel(args.model);
        const summary = summarizeModel(model);
        process.stdout.write(args.json ? `${JSON.stringify(summary, null, 2)}\n` : `${renderSummary(args.model, summary)}\n`);
      },
    )
    .demandCommand(1, 'name a command (peftc --help lists them)')
    .strict()
    .fail((msg, err) => {
      if (err) fail(err);
      process.stderr.write(`peftc: usage error: ${msg}\n(run peftc --help)\n`);
      process.exit(2);
    })
    .help()
    .parseAsync();
}

main().catch(fail);

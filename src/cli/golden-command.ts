/** `peftc golden check|update|record`: argument parsing and printing; the work is src/golden/golden.ts. */
import type { CommandModule } from 'yargs';
import { EXECUTION_PROVIDERS, type ExecutionProvider } from '../runtime/ort.js';
import { QUANT_MODES, TARGETS, type QuantMode, type Target } from '../compile.js';
import { checkGolden, recordGolden, renderGoldenResult, updateGolden, type GoldenCheckResult } from '../golden/golden.js';
import { progress, type Progress } from '../progress.js';
import { PeftcError } from '../errors.js';
import { parseTolerance } from '../verify/tolerance.js';
import { parseShapes } from '../../passes/fix-shapes.js';

const common = {
  dir: { type: 'string', default: 'golden', describe: 'the golden folder' },
  models: { type: 'string', describe: 'where the recorded model paths are relative to (default: the folder above --dir)' },
  json: { type: 'boolean', default: false, describe: 'print the result as JSON' },
  threads: { type: 'number', default: 1, describe: 'onnxruntime intra-op threads' },
} as const;

function print(result: GoldenCheckResult, verb: 'check' | 'update', json: boolean): void {
  process.stdout.write(json ? `${JSON.stringify(result, null, 2)}\n` : `${renderGoldenResult(result, verb)}\n`);
  if (!result.ok) process.exitCode = 1;
}

export const goldenCommand: CommandModule = {
  command: 'golden <action> [model]',
  describe: 'Graph-regression gate: record compiled variants, check them (exit 1 on any change), update after an intentional change',
  builder: (y) =>
    y
      .positional('action', { choices: ['check', 'update', 'record'] as const, demandOption: true })
      .options(common)
      .option('ep', { choices: EXECUTION_PROVIDERS, default: 'cpu' as const, describe: "check: run ONNX artifacts on this onnxruntime provider (cuda: as they are, with onnxruntime's node placement; bench/gpu/README.md)" })
      .option('keep', { type: 'string', describe: 'check: keep every compiled artifact in DIR/<model>/<variant>/ (to run or inspect elsewhere)' })
      .option('only', { type: 'string', array: true, describe: "check/update: model folders or MODEL/VARIANT names, * matching any text ('*/cuda-*'; repeatable)" })
      .option('retolerance', { type: 'boolean', default: false, describe: 'update: recompute tolerances from the new figures instead of keeping them' })
      .positional('model', { type: 'string', describe: 'record: the model to compile' })
      .option('target', { choices: TARGETS, default: 'cpu' as const, describe: 'record: target' })
      .option('quant', { choices: QUANT_MODES, default: 'none' as const, describe: 'record: quantization mode' })
      .option('tag', { type: 'string', describe: 'record: extra part of the variant name (<target>-<quant>-<tag>)' })
      .option('reference', { type: 'string', describe: "record: the model whose outputs are golden (default: the model itself)" })
      .option('name', { type: 'string', describe: 'record: folder name under --dir (default: from the model path)' })
      .option('inputs', { type: 'string', describe: 'record: input data (.npy/.npz); default: test_data_set_0 beside the model, else generated' })
      .option('lora', { type: 'string', array: true, describe: 'record: PEFT adapter folder(s) to merge, DIR[:WEIGHT]' })
      .option('shape', { type: 'string', array: true, describe: 'record: static input shape NAME=D1xD2... (targets that need static shapes)' })
      .option('quant-method', { type: 'string', describe: 'record: weight-only method (rtn, mse)' })
      .option('block-size', { type: 'number', describe: 'record: weight-only block size' })
      .option('symmetric', { type: 'boolean', describe: 'record: weight-only without zero points' })
      .option('quant-format', { type: 'string', describe: 'record: matmulnbits or qdq' })
      .option('tolerance', { type: 'string', describe: 'record: bounds to keep (rel=..,cos=..,top1=..,ppl=..); default from the measured figures' })
      .option('rerecord-reference', { type: 'boolean', default: false, describe: 'record: re-run the reference model and replace the stored inputs/outputs' }),
  handler: async (args) => {
    const json = args.json as boolean;
    const log = json ? () => {} : (m: string) => process.stderr.write(`${m}\n`);
    const base = { dir: args.dir as string, ...(args.models ? { modelsRoot: args.models as string } : {}), threads: args.threads as number, ep: args.ep as ExecutionProvider, ...(args.keep ? { keep: args.keep as string } : {}), log };
    const action = args.action as 'check' | 'update' | 'record';
    if (action !== 'record' && args.model) throw new PeftcError(`golden ${action} takes no model argument (it checks every record under --dir; --only narrows it)`);
    if (action === 'record') {
      const model = args.model as string | undefined;
      if (!model) throw new PeftcError('golden record needs a model: peftc golden record MODEL --target T --quant Q --dir DIR');
      const r = await recordGolden({
        ...base,
        model,
        target: args.target as Target,
        quant: args.quant as QuantMode,
        ...(args.tag ? { tag: args.tag as string } : {}),
        ...(args.reference ? { reference: args.reference as string } : {}),
        ...(args.name ? { name: args.name as string } : {}),
        ...(args.inputs ? { inputs: args.inputs as string } : {}),
        ...(args.tolerance ? { tolerance: parseTolerance(args.tolerance as string) } : {}),
        rerecordReference: args['rerecord-reference'] as boolean,
        compile: {
          ...(args.lora ? { lora: args.lora as string[] } : {}),
          ...(args.shape ? { shapes: parseShapes(args.shape as string[]) } : {}),
          ...(args['quant-method'] ? { quantMethod: args['quant-method'] as string } : {}),
          ...(args['block-size'] !== undefined ? { blockSize: args['block-size'] as number } : {}),
          ...(args.symmetric !== undefined ? { symmetric: args.symmetric as boolean } : {}),
          ...(args['quant-format'] ? { quantFormat: args['quant-format'] as string } : {}),
        },
      });
      process.stdout.write(json ? `${JSON.stringify(r, null, 2)}\n` : `recorded ${r.file}\n`);
      return;
    }
    let bar: Progress | undefined;
    const opts = {
      ...base,
      ...(args.only ? { only: args.only as string[] } : {}),
      onVariant: (done: number, total: number, name: string) => (bar ??= progress(`golden ${action}`, total, { enabled: !json })).update(done, name),
    };
    const result = action === 'check' ? await checkGolden(opts) : await updateGolden({ ...opts, retolerance: args.retolerance as boolean });
    bar?.done();
    print(result, action, json);
  },
};

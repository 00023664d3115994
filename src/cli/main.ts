#!/usr/bin/env node
/**
 * The `peftc` command line: argument parsing and printing only; the work lives in the library.
 * Exit codes: 0 ok, 1 verification/regression failure, 2 bad input or usage.
 */
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { PeftcError } from '../errors.js';
import { loadModel } from '../onnx/io.js';
import { formatBytes, renderSummary, summarizeModel } from '../inspect.js';
import { compileModelAsync, QUANT_FORMATS, QUANT_METHODS, QUANT_MODES, resolveOutputPath, TARGETS, type CompileResult } from '../compile.js';
import { writeFileAtomic } from '../atomic-write.js';
import { parseLoraArg } from '../peft/adapter.js';
import type { PassReport } from '../../passes/pass.js';
import { verifyCommand } from './verify-command.js';
import { goldenCommand } from './golden-command.js';
import { benchCommand } from './bench-command.js';
import { diffCommand } from './diff-command.js';
import { reportCommand } from './report-command.js';
import { verifyCompiled } from '../verify/compiled.js';
import { parseTolerance } from '../verify/tolerance.js';
import { parseShapes } from '../../passes/fix-shapes.js';
import { parseOverrideArg } from '../../passes/tensor-override.js';
import { renderInt8Report } from '../quant/int8.js';
import { renderVerifyReport, type VerifyReport } from '../verify/verify.js';

function formatPassLine(r: PassReport): string {
  const details = Object.entries(r.details)
    .filter(([, v]) => v !== 0)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
  return `  [${r.iteration}] ${r.pass.padEnd(20)} ${r.ms.toFixed(1).padStart(8)} ms  nodes ${r.nodesBefore} -> ${r.nodesAfter}${details ? `  ${details}` : ''}`;
}

function formatCompileSummary(r: CompileResult): string {
  const ext = r.written.externalDataPath ? ` + ${formatBytes(r.written.externalBytes)} external data in ${r.written.externalDataPath}` : '';
  return [
    `wrote ${r.output} (${formatBytes(r.written.modelBytes)}${ext})`,
    `  nodes ${r.before.nodeCount} -> ${r.after.nodeCount}, initializers ${r.before.initializerCount} -> ${r.after.initializerCount} (${formatBytes(r.before.initializerBytes)} -> ${formatBytes(r.after.initializerBytes)})`,
    `  time: load ${r.ms.load.toFixed(0)} ms, passes ${r.ms.passes.toFixed(0)} ms, save ${r.ms.save.toFixed(0)} ms`,
  ].join('\n');
}

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
    .command(
      'compile <model>',
      'Optimize a model for a target: fold constants, remove no-ops, duplicates and dead code, write it atomically',
      (y) =>
        y
          .positional('model', { type: 'string', demandOption: true, describe: 'path to a .onnx file' })
          .option('target', { choices: TARGETS, default: 'cpu' as const, describe: 'deployment target' })
          .option('quant', { choices: QUANT_MODES, default: 'none' as const, describe: 'quantization mode' })
          .option('quant-method', {
            choices: QUANT_METHODS,
            describe:
              'weight-only (int4, int8-weight, nf4): rtn rounds to nearest; mse searches clipped scales per block (default without --calib); gptq corrects rounding errors against calibration data (default with --calib); awq scales input channels by activation-aware factors searched on the calibration data (folded into the op before, or a Mul), then mse; awq+gptq: awq, then gptq',
          })
          .option('layerwise', { type: 'boolean', describe: 'weight-only with --calib: capture and quantize one layer input at a time, each from the model with the layers before it already quantized (default: only when the Hessians exceed --hessian-memory)' })
          .option('hessian-memory', { type: 'number', describe: "weight-only with --calib: MiB the calibration Hessians may hold at once (default: a quarter of the machine's memory); above it calibration goes layer by layer" })
          .option('calib', { type: 'string', describe: 'calibration data (.npy for a single-input model, .npz keyed by input name): GPTQ and AWQ for weight-only quantization; activation ranges for float16 conversion' })
          .option('block-size', { type: 'number', default: 32, describe: 'weight-only: values per quantization block along the reduction axis (16..256, power of two)' })
          .option('symmetric', { type: 'boolean', describe: 'weight-only: no zero points' })
          .option('asymmetric', { type: 'boolean', describe: 'weight-only: zero points per block (the default)' })
          .option('quant-format', { choices: QUANT_FORMATS, describe: 'weight-only: matmulnbits (onnxruntime contrib ops; default for cpu/cuda) or qdq (standard DequantizeLinear, opset 21; older models are raised to 21)' })
          .option('opset', { type: 'number', describe: 'raise the default-domain opset to N (up to 21, from 11 or newer), rewriting operators whose form changed' })
          .option('scale-dtype', { choices: ['auto', 'float32', 'float16'] as const, describe: "weight-only: type of the stored scales (auto: the weight's own, which MatMulNBits requires; float32/float16 with --quant-format qdq)" })
          .option('quant-embeddings', { type: 'boolean', describe: 'weight-only: also quantize Gather tables (embeddings) along their last axis (GatherBlockQuantized, or DequantizeLinear with qdq)' })
          .option('accuracy-level', { type: 'number', describe: 'weight-only: MatMulNBits accuracy_level 0..4 (compute type onnxruntime may use for A; 0 leaves it out)' })
          .option('exclude', { type: 'string', array: true, describe: 'weight-only: node or weight name (substring, or * ? glob) to keep in full precision (repeatable)' })
          .option('output', { alias: 'o', type: 'string', demandOption: true, describe: 'output .onnx file, or a folder' })
          .option('lora', { type: 'string', array: true, describe: 'PEFT adapter folder to merge, optionally with a weight: DIR[:WEIGHT] (repeatable)' })
          .option('override', { type: 'string', array: true, describe: 'safetensors file whose named tensors (PyTorch names: BitFit biases, a re-trained head) replace the model\'s, or are added with FILE:add (repeatable)' })
          .option('keep-lora', { type: 'boolean', default: false, describe: 'leave unmerged LoRA branches in the graph instead of folding them into the base weights' })
          .option('report', { type: 'string', describe: 'write the compile report (JSON) to this file' })
          .option('json', { type: 'boolean', default: false, describe: 'print the report as JSON on stdout instead of text' })
          .option('check', { type: 'boolean', default: false, describe: 'run the IR invariant checker after every pass' })
          .option('fold-size-limit', { type: 'number', default: 1 << 20, describe: 'largest constant (bytes) folding may create beyond what it frees' })
          .option('workers', { type: 'number', describe: 'worker threads for quantization and LoRA merge (0: none; default one per core); the output does not depend on it' })
          .option('activations', { choices: ['fp16', 'fp32'] as const, describe: 'cuda weight-only (int4, nf4, int8-weight): activation precision (default fp16, the form the CUDA kernels are fastest in)' })
          .option('io-types', { choices: ['fp32', 'fp16'] as const, describe: 'cuda fp16/bf16: graph inputs/outputs in float32 (default; callers feed float32) or in the low type' })
          .option('fuse', { type: 'string', describe: 'fusions to run, comma-separated (default: the target\'s set; --no-fuse: none); see passes/fusion.ts' })
          .option('shape', { type: 'string', array: true, describe: 'static shape for a graph input: NAME=D1xD2... (e.g. input_ids=1x128; repeatable)' })
          .option('strict', { type: 'boolean', default: false, describe: 'refuse (exit 2, nothing written) when nodes have no kernel on the target and would fall back to the CPU' })
          .option('calib-method', { choices: ['minmax', 'percentile', 'entropy', 'mse'] as const, describe: 'int8: how activation ranges are chosen from the calibration data (default minmax)' })
          .option('percentile', { type: 'number', describe: 'int8 --calib-method percentile: the percentile kept (default 99.999)' })
          .option('smoothquant', { type: 'string', describe: "int8: SmoothQuant alpha in [0, 1], or 'search' (alone: search)" })
          .option('max-error', { type: 'number', describe: 'int8: keep the most sensitive nodes float until the relative output error on the calibration data is at most this' })
          .option('per-channel', { type: 'boolean', describe: 'int8: one weight scale per output channel (default; --no-per-channel: per tensor)' })
          .option('activation-type', { choices: ['uint8', 'int8'] as const, describe: 'int8: activations uint8 asymmetric (default) or int8 symmetric' })
          .option('verify', { type: 'boolean', default: false, describe: 'run the written model against the source on onnxruntime and check its outputs (exit 1 over tolerance); figures go in the report' })
          .option('inputs', { type: 'string', describe: 'with --verify: input data (.npy/.npz); default: generated from the declared shapes' })
          .option('tolerance', { type: 'string', describe: 'with --verify: rel=..,abs=..,cos=..,top1=..,ppl=..; default by --quant (none: rel=1e-4)' })
          .option('external-data', { choices: ['auto', 'all', 'none'] as const, default: 'auto' as const, describe: 'where weights go: auto keeps external weights external and moves all out past 2 GiB' }),
      async (args) => {
        const log = (m: string) => process.stderr.write(`${m}\n`);
        if (args.report) resolveOutputPath(args.report, args.report); // fail before writing anything
        if (args.workers !== undefined && !(Number.isInteger(args.workers) && args.workers >= 0)) throw new PeftcError(`--workers takes a whole number of threads, 0 or more (got ${args.workers})`);
        // Weight-only options do nothing without weight-only quantization: say so rather than ignore them.
        const weightOnly = ['int4', 'int8-weight', 'nf4'].includes(args.quant);
        const int8 = args.quant === 'int8' || args.quant === 'int8-dynamic';
        const given = (['scale-dtype', 'quant-embeddings', 'accuracy-level', 'quant-method', 'symmetric', 'asymmetric', 'quant-format', 'exclude', 'layerwise', 'hessian-memory'] as const).filter((k) => args[k] !== undefined && !(int8 && (k === 'quant-format' || k === 'exclude')));
        if (!weightOnly && given.length) throw new PeftcError(`--${given.join(', --')} apply to weight-only quantization (--quant int4, int8-weight or nf4), not --quant ${args.quant}`);
        const int8Given = (['calib-method', 'percentile', 'smoothquant', 'max-error', 'per-channel', 'activation-type'] as const).filter((k) => args[k] !== undefined);
        if (!int8 && int8Given.length) throw new PeftcError(`--${int8Given.join(', --')} apply to --quant int8 / int8-dynamic, not --quant ${args.quant}`);
        if (int8 && args['quant-format'] === 'matmulnbits') throw new PeftcError('--quant-format matmulnbits is a weight-only form; int8 takes qdq (default) or qoperator');
        if (!int8 && args['quant-format'] === 'qoperator') throw new PeftcError('--quant-format qoperator is an int8 form (--quant int8 or int8-dynamic)');
        if (args['accuracy-level'] !== undefined && (args['quant-format'] === 'qdq' || args.quant === 'nf4')) {
          throw new PeftcError('--accuracy-level is an attribute of MatMulNBits (--quant int4 or int8-weight with --quant-format matmulnbits)');
        }
        if (args.symmetric && args.asymmetric) throw new PeftcError('--symmetric and --asymmetric contradict each other; give one');
        if (!args.verify && (args.inputs !== undefined || args.tolerance !== undefined)) throw new PeftcError('--inputs and --tolerance go with --verify');
        const tolerance = args.tolerance !== undefined ? parseTolerance(args.tolerance) : undefined; // a bad one fails before any work
        if (!args.json) log(`peftc compile ${args.model} --target ${args.target} --quant ${args.quant}`);
        const result = await compileModelAsync(args.model, {
          target: args.target,
          quant: args.quant,
          output: args.output,
          check: args.check,
          foldMaxBytes: args['fold-size-limit'],
          externalData: args['external-data'],
          lora: (args.lora ?? []).map(parseLoraArg),
          overrides: (args.override ?? []).map(parseOverrideArg),
          keepLora: args['keep-lora'],
          ...(args.calib !== undefined ? { calib: args.calib } : {}),
          ...(args.opset !== undefined ? { opset: args.opset } : {}),
          ...(args.workers !== undefined ? { workers: args.workers } : {}),
          ...(args.activations !== undefined ? { activations: args.activations } : {}),
          ...(args['io-types'] !== undefined ? { ioTypes: args['io-types'] } : {}),
          strict: args.strict,
          ...(int8
            ? {
                int8: {
                  ...(args['calib-method'] !== undefined ? { calibMethod: args['calib-method'] } : {}),
                  ...(args.percentile !== undefined ? { percentile: args.percentile } : {}),
                  ...(args.smoothquant !== undefined ? { smoothQuant: args.smoothquant === '' || args.smoothquant === 'search' ? ('search' as const) : Number(args.smoothquant) } : {}),
                  ...(args['max-error'] !== undefined ? { maxError: args['max-error'] } : {}),
                  ...(args['per-channel'] !== undefined ? { perChannel: args['per-channel'] } : {}),
                  ...(args['activation-type'] !== undefined ? { activationType: args['activation-type'] } : {}),
                  ...(args['quant-format'] !== undefined ? { format: args['quant-format'] as 'qdq' | 'qoperator' } : {}),
                  ...(args.exclude !== undefined ? { exclude: args.exclude } : {}),
                },
              }
            : {}),
          ...(args.fuse !== undefined ? { fuse: (args.fuse as unknown) === false ? [] : String(args.fuse).split(',').map((x) => x.trim()).filter(Boolean) } : {}),
          ...(args.shape ? { shapes: parseShapes(args.shape) } : {}),
          weightQuant: {
            method: args['quant-method'],
            blockSize: args['block-size'],
            symmetric: args.symmetric === true,
            format: args['quant-format'] === 'qoperator' ? undefined : args['quant-format'],
            exclude: args.exclude,
            ...(args['scale-dtype'] !== undefined ? { scaleDtype: args['scale-dtype'] } : {}),
            ...(args['quant-embeddings'] !== undefined ? { embeddings: args['quant-embeddings'] } : {}),
            ...(args['accuracy-level'] !== undefined ? { accuracyLevel: args['accuracy-level'] } : {}),
            ...(args.layerwise !== undefined ? { layerwise: args.layerwise } : {}),
            ...(args['hessian-memory'] !== undefined ? { hessianMemory: args['hessian-memory'] * 2 ** 20 } : {}),
          },
          log,
          onReport: args.json ? undefined : (r) => log(formatPassLine(r)),
        });
        let verified: VerifyReport | undefined;
        if (args.verify) {
          verified = await verifyCompiled(result, (args.lora ?? []).map(parseLoraArg), {
            ...(args.inputs !== undefined ? { inputs: args.inputs } : {}),
            ...(tolerance ? { tolerance } : {}),
            log: args.json ? undefined : log,
          });
          if (!args.json) log(renderVerifyReport(verified));
          if (!verified.ok) process.exitCode = 1;
        }
        const report = JSON.stringify(verified ? { ...result, verify: verified } : result, null, 2);
        if (args.report) writeFileAtomic(args.report, `${report}\n`);
        if (args.json) process.stdout.write(`${report}\n`);
        else {
          if (result.int8) for (const line of renderInt8Report(result.int8)) log(line);
          log(formatCompileSummary(result));
        }
      },
    )
    .command(verifyCommand)
    .command(goldenCommand)
    .command(benchCommand)
    .command(diffCommand)
    .command(reportCommand)
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

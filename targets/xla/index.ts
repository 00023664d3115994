/**
 * xla: StableHLO for XLA (CPU, GPU, TPU through PJRT; JAX, TensorFlow, PyTorch/XLA and IREE all
 * consume it). The artifact is a folder:
 *
 *   model.mlir           one `func.func public @main(inputs..., weights...)`, static shapes,
 *                        generic MLIR op syntax, StableHLO 1.0 ops only
 *   weights.safetensors  the initializers above the inline threshold, streamed tensor by tensor
 *                        (bf16/fp16: matmul weights rounded while writing; int4: packed nibbles)
 *   manifest.json        argument order (names, types, where each weight is), outputs, source
 *                        SHA-256, peftc version, lowering options, the StableHLO version targeted
 *   run_xla.py           a short JAX runner: parse, compile on the PJRT backend there, run .npy
 *
 * Lowering: targets/xla/lowerings.ts (one table entry per ONNX op), driven by lower.ts; legality is
 * the same table (a node with no entry, or one its entry refuses, is named). Verification here:
 * the artifact runs in the StableHLO reference interpreter (src/stablehlo/), written from the spec
 * and sharing no code with the lowering.
 */
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, realpathSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Pass } from '../../passes/pass.js';
import { writeFileAtomic } from '../../src/atomic-write.js';
import { PeftcError } from '../../src/errors.js';
import { dtypeName, float32ToFloat16Bits } from '../../src/ir/dtype.js';
import type { Model } from '../../src/ir/model.js';
import { STREAM_CHUNK_BYTES, type Tensor } from '../../src/ir/tensor.js';
import type { SaveResult } from '../../src/onnx/io.js';
import { writeSafetensors, type SafetensorsEntry } from '../../src/safetensors-writer.js';
import { openStablehloArtifact } from '../../src/stablehlo/artifact.js';
import { PEFTC_VERSION } from '../../src/version.js';
import type { LegalityReport, LoweringOptions, QuantModeName, Target, WriteContext } from '../target.js';
import { typeText } from './emitter.js';
import { checkStaticInputs, DEFAULT_INLINE_MAX_BYTES, GraphLowering, lowTypeOf, type LoweredModule, type WeightArgument } from './lower.js';
import { LOWERINGS } from './lowerings.js';

/** The StableHLO version whose ops, attributes and types the module is limited to. */
export const STABLEHLO_VERSION = '1.0.0';

const here = dirname(fileURLToPath(import.meta.url));

/** Lowers the model (no weight bytes are read). */
export function lowerToStablehlo(model: Model, quant: QuantModeName, inlineMaxBytes = DEFAULT_INLINE_MAX_BYTES): LoweredModule {
  return new GraphLowering(model, { quant, inlineMaxBytes }).lower();
}

function legalityOf(model: Model): LegalityReport {
  checkStaticInputs(model);
  const lowered = lowerToStablehlo(model, 'none');
  return {
    table: `peftc's StableHLO lowering table (targets/xla/lowerings.ts, ${Object.keys(LOWERINGS).length} ops)`,
    nodes: lowered.nodes,
    fallbacks: lowered.fallbacks,
    copies: 0,
  };
}

/** A pass that refuses symbolic input dimensions before any work (XLA compiles static shapes). */
function staticShapes(): Pass {
  return {
    name: 'xla-static-shapes',
    description: 'refuse graph inputs whose shapes are not fixed (--shape NAME=D1xD2...)',
    run(model) {
      checkStaticInputs(model);
      return { changed: false };
    },
  };
}

/** The runner script beside this module (sources), or in the sources' folder when running from dist/. */
function runnerScript(): string {
  const candidates = [join(here, 'run_xla.py'), join(here, '..', '..', '..', 'targets', 'xla', 'run_xla.py')];
  const file = candidates.find((f) => existsSync(f));
  if (!file) throw new PeftcError(`targets/xla/run_xla.py is missing (looked in ${candidates.join(', ')})`);
  return readFileSync(file, 'utf8');
}

function sha256File(path: string): string {
  const hash = createHash('sha256');
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.allocUnsafe(STREAM_CHUNK_BYTES);
    for (;;) {
      const n = readSync(fd, buf, 0, buf.byteLength, null);
      if (n === 0) break;
      hash.update(buf.subarray(0, n));
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}

/** float32 bytes rounded to bfloat16/float16 bytes, one chunk at a time (round to nearest even). */
function* convertedChunks(t: Tensor, to: 'bf16' | 'f16'): Generator<Uint8Array> {
  let out = new Uint16Array(0);
  let aligned = new Uint32Array(0);
  for (const chunk of t.chunks(STREAM_CHUNK_BYTES, true)) {
    const n = chunk.byteLength >> 2;
    if (out.length < n) {
      out = new Uint16Array(n);
      aligned = new Uint32Array(n);
    }
    let bits: Uint32Array;
    if (chunk.byteOffset % 4 === 0) bits = new Uint32Array(chunk.buffer, chunk.byteOffset, n);
    else {
      new Uint8Array(aligned.buffer).set(chunk);
      bits = aligned;
    }
    if (to === 'bf16') {
      for (let i = 0; i < n; i++) {
        const x = bits[i]!;
        out[i] = (x & 0x7f800000) === 0x7f800000 && x & 0x7fffff ? ((x >>> 16) | 0x40) & 0xffff : ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
      }
    } else {
      // Beyond float16's range a weight saturates at +-65504 rather than becoming infinite.
      const values = new Float32Array(bits.buffer, bits.byteOffset, n);
      for (let i = 0; i < n; i++) {
        const h = float32ToFloat16Bits(values[i]!);
        out[i] = (h & 0x7fff) === 0x7c00 && Number.isFinite(values[i]!) ? (h & 0x8000) | 0x7bff : h;
      }
    }
    yield new Uint8Array(out.buffer, 0, n * 2);
  }
}

function weightEntries(args: readonly WeightArgument[]): { entries: SafetensorsEntry[]; tensorNames: Map<WeightArgument, string> } {
  const tensorNames = new Map<WeightArgument, string>();
  const used = new Set<string>();
  const entries: SafetensorsEntry[] = [];
  for (const a of args) {
    let name = a.name;
    for (let k = 1; used.has(name); k++) name = `${a.name}#${k}`;
    used.add(name);
    tensorNames.set(a, name);
    entries.push({
      name,
      dtype: a.storage,
      shape: a.packing ? [a.bytes] : [...a.ssa.type.shape],
      byteLength: a.bytes,
      chunks: () => (a.convert ? convertedChunks(a.tensor, a.convert) : a.tensor.chunks(STREAM_CHUNK_BYTES, true)),
    });
  }
  return { entries, tensorNames };
}

function writeArtifact(model: Model, output: string, context: WriteContext): SaveResult {
  checkStaticInputs(model);
  const quant = (context.options.quant as QuantModeName | undefined) ?? 'none';
  const inlineMaxBytes = typeof context.options.inlineMaxBytes === 'number' ? context.options.inlineMaxBytes : DEFAULT_INLINE_MAX_BYTES;
  const lowered = lowerToStablehlo(model, quant, inlineMaxBytes);
  if (lowered.fallbacks.length) {
    const list = lowered.fallbacks.map((f) => `  ${f.node || '(unnamed)'} (${f.domain ? `${f.domain}::` : ''}${f.op}): ${f.reason}`).join('\n');
    throw new PeftcError(`${context.source}: ${lowered.fallbacks.length} node(s) have no StableHLO lowering:\n${list}\nnothing written`);
  }
  const dir = resolve(output);
  mkdirSync(dir, { recursive: true });
  const weights = lowered.arguments.filter((a): a is WeightArgument => a.kind === 'weight');
  const { entries, tensorNames } = weightEntries(weights);
  const sourceHash = sha256File(context.source);
  const sourceReal = realpathSync(context.source);
  for (const w of weights) {
    const s = w.tensor.source;
    if (s.kind === 'external' && resolve(s.ref.path) === join(dir, 'weights.safetensors')) throw new PeftcError(`${output}: refusing to overwrite weights.safetensors, which the model reads its weights from`);
  }
  if (sourceReal === join(dir, 'model.mlir')) throw new PeftcError(`${output}: refusing to overwrite the source model`);
  const stored = writeSafetensors(join(dir, 'weights.safetensors'), entries, {
    metadata: { format: 'peftc-xla', note: 'int4/uint4 tensors are stored as U8 bytes, two elements per byte, low nibble first; manifest.json gives their types' },
  });
  const options = {
    ...context.options,
    target: 'xla',
    quant,
    inlineMaxBytes,
    lowPrecision: lowTypeOf(quant) ?? null,
    matmulPrecision: lowTypeOf(quant) ? 'DEFAULT (bf16/fp16 operands, f32 accumulation)' : 'HIGHEST (f32 stays f32 on GPU/TPU)',
  };
  const header = [
    `// StableHLO written by peftc ${PEFTC_VERSION} (--target xla --quant ${quant}) from ${basename(context.source)} (sha256 ${sourceHash})`,
    '// Generic MLIR operation syntax, StableHLO 1.0 ops only, static shapes. @main takes the model inputs, then the',
    '// weights in weights.safetensors, in the order manifest.json lists; run_xla.py runs it on XLA through JAX.',
  ];
  const text = `${header.join('\n')}\nmodule @peftc_model {\n${lowered.text}\n}\n`;
  writeFileAtomic(join(dir, 'model.mlir'), text);
  const runner = join(dir, 'run_xla.py');
  writeFileAtomic(runner, runnerScript());
  chmodSync(runner, 0o755);
  const manifest = {
    format: 'peftc-xla/1',
    module: 'model.mlir',
    weights: 'weights.safetensors',
    runner: 'run_xla.py',
    entry: 'main',
    stablehlo: {
      version: STABLEHLO_VERSION,
      syntax: 'MLIR generic operation form; dialects func and stablehlo',
      checkedAgainst: 'the StableHLO specification (openxla/stablehlo docs/spec.md at VHLO 1.20.0) by peftc\'s reference interpreter',
    },
    peftc: PEFTC_VERSION,
    source: { file: basename(context.source), sha256: sourceHash, hashed: 'the model file as given (external data files not included)' },
    options,
    arguments: lowered.arguments.map((a) =>
      a.kind === 'input'
        ? { name: a.name, kind: 'input', type: typeText(a.ssa.type), dtype: dtypeName(a.dtype), shape: a.ssa.type.shape }
        : {
            name: a.name,
            kind: 'weight',
            type: typeText(a.ssa.type),
            shape: a.ssa.type.shape,
            tensor: tensorNames.get(a),
            storage: a.storage,
            ...(a.packing ? { packing: a.packing } : {}),
            ...(a.convert ? { convertedFrom: 'float32' } : {}),
            bytes: a.bytes,
          },
    ),
    outputs: lowered.outputs.map((o) => ({ name: o.name, type: typeText(o.ssa.type), dtype: dtypeName(o.dtype), shape: o.ssa.type.shape })),
    stats: { onnxNodes: lowered.nodes, stablehloOps: lowered.ops, histogram: lowered.histogram, weightTensors: weights.length, weightBytes: stored.bytes },
  };
  writeFileAtomic(join(dir, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  context.log?.(`xla: ${lowered.nodes} ONNX nodes -> ${lowered.ops} StableHLO ops; ${weights.length} weight argument(s), ${(stored.bytes / 2 ** 20).toFixed(1)} MiB in weights.safetensors`);
  return {
    path: dir,
    modelBytes: Buffer.byteLength(text),
    externalDataPath: stored.path,
    externalBytes: stored.bytes,
    externalTensors: weights.length,
    workers: 0,
    precomputedTensors: 0,
  };
}

export const xlaTarget: Target = {
  name: 'xla',
  runtime: 'XLA (StableHLO through PJRT: CPU, GPU, TPU)',
  quantModes: ['none', 'bf16', 'fp16', 'int8-weight', 'int4'],
  weightFormat: 'qdq',
  writesFolder: true,
  /** Nodes without a lowering cannot run anywhere else: compile refuses them. */
  fallsBack: false,
  beforeQuant: (_o: LoweringOptions) => [staticShapes()],
  afterQuant: () => [],
  legality: legalityOf,
  write: writeArtifact,
  openArtifact: async (path: string) => openStablehloArtifact(path),
};

/**
 * What onnxruntime actually runs: the model is loaded with graph optimizations on (level 'all',
 * what deployers get) and onnxruntime writes its optimized graph out (SessionOptions
 * optimizedModelFilePath); the op histogram of that graph shows whether the QDQ pairs became
 * integer kernels (QLinearConv, QLinearMatMul, MatMulIntegerToFloat, QGemm, QLinearAdd,
 * DynamicQuantizeMatMul...) or were left as float ops between QuantizeLinear/DequantizeLinear.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { PeftcError } from '../errors.js';
import type { Model } from '../ir/model.js';
import { encodeModel } from '../onnx/encode.js';
import { loadModel, saveModel } from '../onnx/io.js';

/** Ops that are integer kernels on onnxruntime's CPU provider. */
export const INTEGER_KERNELS = new Set([
  'QLinearConv',
  'QLinearMatMul',
  'MatMulIntegerToFloat',
  'QGemm',
  'QLinearAdd',
  'QLinearMul',
  'QLinearConcat',
  'QLinearAveragePool',
  'QLinearGlobalAveragePool',
  'QLinearSigmoid',
  'QLinearLeakyRelu',
  'QLinearSoftmax',
  'QLinearWhere',
  'MatMulInteger',
  'ConvInteger',
  'DynamicQuantizeMatMul',
  'QAttention',
  'NhwcQLinearConv',
]);

export interface OrtGraphSummary {
  /** Op histogram of the optimized graph ("domain::Op" for non-default domains). */
  ops: Record<string, number>;
  /** Integer kernels among them. */
  integerKernels: number;
  /** Float Conv/MatMul/Gemm left (not fused into integer kernels). */
  floatMatmuls: number;
  quantizeLinear: number;
  dequantizeLinear: number;
  nodes: number;
}

/** Loads the model in onnxruntime with optimizations 'all' and summarizes the graph it runs. */
export async function ortOptimizedGraph(model: Model | string): Promise<OrtGraphSummary> {
  const dir = mkdtempSync(join(tmpdir(), 'peftc-ortopt-'));
  try {
    const out = join(dir, 'optimized.onnx');
    let source: string | Uint8Array;
    if (typeof model === 'string') source = model;
    else {
      try {
        source = encodeModel(model);
      } catch {
        source = join(dir, 'model.onnx');
        saveModel(model, source, { durable: false });
      }
    }
    let session: ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(source as string, { graphOptimizationLevel: 'all', optimizedModelFilePath: out, logSeverityLevel: 4, intraOpNumThreads: 1 });
    } catch (err) {
      throw new PeftcError(`onnxruntime cannot load the model to dump its optimized graph: ${err instanceof Error ? err.message : String(err)}`);
    }
    await session.release();
    const optimized = loadModel(out);
    const ops: Record<string, number> = {};
    for (const n of optimized.graph.nodes) {
      const key = n.domain === '' || n.domain === 'ai.onnx' ? n.opType : `${n.domain}::${n.opType}`;
      ops[key] = (ops[key] ?? 0) + 1;
    }
    let integerKernels = 0;
    let floatMatmuls = 0;
    for (const [k, c] of Object.entries(ops)) {
      const op = k.includes('::') ? k.slice(k.lastIndexOf('::') + 2) : k;
      if (INTEGER_KERNELS.has(op)) integerKernels += c;
      if (['Conv', 'MatMul', 'Gemm', 'FusedConv', 'FusedMatMul', 'FusedGemm', 'NchwcConv'].includes(op)) floatMatmuls += c;
    }
    return { ops, integerKernels, floatMatmuls, quantizeLinear: ops['QuantizeLinear'] ?? 0, dequantizeLinear: ops['DequantizeLinear'] ?? 0, nodes: optimized.graph.nodes.length };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

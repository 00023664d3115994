/**
 * cpu: onnxruntime's CPU execution provider. Artifacts stay float32 (weight-only quantization as
 * com.microsoft MatMulNBits with an optional accuracy_level, the form onnxruntime's CPU kernels
 * are fastest in); the fusions tagged for the CPU provider run before quantization (but the ones
 * onnxruntime 1.30's CPU kernels run slower, see passes/fusion.ts). Verified by
 * running the artifact itself on onnxruntime-node.
 */
import { defaultFusions } from '../fusion-defaults.js';
import { fusionPass } from '../../passes/fusion.js';
import type { Target } from '../target.js';

export const cpuTarget: Target = {
  name: 'cpu',
  runtime: "onnxruntime's CPU execution provider",
  quantModes: ['none', 'int8', 'int8-dynamic', 'int8-weight', 'int4', 'nf4'],
  weightFormat: 'matmulnbits',
  beforeQuant: (o) => [fusionPass({ target: 'cpu', only: defaultFusions('cpu', o) })],
  afterQuant: () => [],
};

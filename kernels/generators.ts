/**
 * Generator kernels: EyeLike (ones on the k-th diagonal of a 2-D shape; DoRA's unmerged export
 * builds B·A from an identity matrix with it).
 */
import { DataType, elementCount } from '../src/ir/dtype.js';
import { kernel, KernelUnsupported } from './registry.js';
import { fromF64, input, NUMERIC } from './util.js';

kernel('EyeLike', 9, (inputs, node) => {
  const x = input('EyeLike', inputs, 0);
  if (x.dims.length !== 2) throw new KernelUnsupported('EyeLike', `a rank-${x.dims.length} input`);
  const dtype = (node.attrInt('dtype') ?? x.dtype) as DataType;
  if (!NUMERIC.has(dtype)) throw new KernelUnsupported('EyeLike', `dtype ${dtype}`);
  const [rows, cols] = x.dims as [number, number];
  const k = node.attrInt('k', 0);
  const out = new Float64Array(elementCount(x.dims));
  for (let i = 0; i < rows; i++) {
    const j = i + k;
    if (j >= 0 && j < cols) out[i * cols + j] = 1;
  }
  return [fromF64(dtype, x.dims, out)];
});

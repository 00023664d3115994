/**
 * Softmax and LogSoftmax. Before opset 13 the input is coerced to 2-D at `axis` (default 1) and
 * normalized over the flattened trailing block; from 13 over the single `axis` (default -1).
 * Computed in float64 with the maximum subtracted, rounded to the input type. NaN and +inf inputs
 * are refused (implementations disagree on them).
 */
import { DataType, elementCount } from '../src/ir/dtype.js';
import { kernel, KernelUnsupported, type Kernel } from './registry.js';
import { checkAttributes, fromF64, input, normalizeAxis, readF64, requireDtype } from './util.js';

const FLOATS = new Set<DataType>([DataType.FLOAT, DataType.DOUBLE, DataType.FLOAT16, DataType.BFLOAT16]);

function softmax(op: string, log: boolean): Kernel {
  return (inputs, node, ctx) => {
    checkAttributes(node, ['axis']);
    const x = input(op, inputs, 0);
    requireDtype(op, x, FLOATS);
    const r = x.dims.length;
    const v = readF64(x);
    // -inf (masking) is fine; NaN and +inf give implementation-specific rows (onnxruntime does not
    // propagate NaN as numpy does).
    for (const e of v) if (Number.isNaN(e) || e === Infinity) throw new KernelUnsupported(op, 'NaN or +inf inputs (implementations differ)');
    const out = new Float64Array(v.length);
    let outer: number;
    let n: number;
    let inner: number;
    if (ctx.opsetVersion < 13) {
      const axis = normalizeAxis(node, node.attrInt('axis', 1), r);
      outer = elementCount(x.dims.slice(0, axis));
      n = elementCount(x.dims.slice(axis));
      inner = 1;
    } else {
      const axis = normalizeAxis(node, node.attrInt('axis', -1), r);
      outer = elementCount(x.dims.slice(0, axis));
      n = x.dims[axis]!;
      inner = elementCount(x.dims.slice(axis + 1));
    }
    for (let o = 0; o < outer; o++) {
      for (let j = 0; j < inner; j++) {
        const at = (k: number) => (o * n + k) * inner + j;
        let max = -Infinity;
        for (let k = 0; k < n; k++) max = Math.max(max, v[at(k)]!);
        let sum = 0;
        for (let k = 0; k < n; k++) sum += Math.exp(v[at(k)]! - max);
        for (let k = 0; k < n; k++) out[at(k)] = log ? v[at(k)]! - max - Math.log(sum) : Math.exp(v[at(k)]! - max) / sum;
      }
    }
    return [fromF64(x.dtype, x.dims, out)];
  };
}

kernel('Softmax', 1, softmax('Softmax', false));
kernel('LogSoftmax', 1, softmax('LogSoftmax', true));

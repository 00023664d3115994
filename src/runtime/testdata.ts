/**
 * ONNX's own conformance data (Debian's libonnx-testdata): test cases with model.onnx and
 * test_data_set_N/{input,output}_K.pb. Missing data is an error with the install command, never a
 * silent skip. PEFTC_ONNX_TESTDATA overrides the location.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { PeftcError } from '../errors.js';
import type { Model } from '../ir/model.js';
import { Tensor } from '../ir/tensor.js';
import { DataType } from '../ir/dtype.js';
import { decodeTensor } from '../onnx/decode.js';

export const SUITES = ['node', 'pytorch-converted', 'pytorch-operator', 'simple', 'real'] as const;
export type Suite = (typeof SUITES)[number];

export function testdataRoot(): string {
  const root = process.env.PEFTC_ONNX_TESTDATA ?? '/usr/share/libonnx-testdata/data';
  if (!existsSync(join(root, 'node'))) {
    throw new PeftcError(
      `ONNX conformance data not found at ${root}: install it with \`sudo apt-get install -y libonnx-testdata\` (or set PEFTC_ONNX_TESTDATA)`,
    );
  }
  return root;
}

export interface TestCase {
  suite: Suite;
  name: string;
  dir: string;
  /** model.onnx, or undefined when the case ships only a download stub (real/ in Debian). */
  model: string | undefined;
  /** data.json (a download stub naming where the model lives), when the case has one. */
  downloadStub?: string;
  dataSets: string[];
}

export function listCases(suite: Suite): TestCase[] {
  const dir = join(testdataRoot(), suite);
  if (!existsSync(dir)) throw new PeftcError(`ONNX conformance suite '${suite}' is missing under ${testdataRoot()}`);
  return readdirSync(dir)
    .filter((n) => statSync(join(dir, n)).isDirectory())
    .sort()
    .map((name) => {
      const d = join(dir, name);
      const model = existsSync(join(d, 'model.onnx')) ? join(d, 'model.onnx') : undefined;
      const downloadStub = existsSync(join(d, 'data.json')) ? join(d, 'data.json') : undefined;
      const dataSets = readdirSync(d)
        .filter((n) => n.startsWith('test_data_set_'))
        .sort()
        .map((n) => join(d, n));
      return { suite, name, dir: d, model, downloadStub, dataSets };
    });
}

/**
 * Reads input_K.pb / output_K.pb of a data set, named after the graph's inputs/outputs. The files
 * of cases whose inputs or outputs are sequences, optionals or maps are SequenceProto /
 * OptionalProto / MapProto, not TensorProto: those cases are refused (see nonTensorIo) rather
 * than mis-decoded.
 */
export function readDataSet(dataSet: string, model: Model): { inputs: Record<string, Tensor>; outputs: Record<string, Tensor> } {
  const nonTensor = nonTensorIo(model);
  if (nonTensor) throw new PeftcError(`${dataSet}: ${nonTensor}; its data files are not TensorProto`);
  const realInputs = model.graph.inputs.filter((v) => !v.initializer);
  const declared = new Map<string, number>();
  for (const v of [...realInputs, ...model.graph.outputs]) if (v.type?.kind === 'tensor') declared.set(v.name, v.type.elemType);
  const read = (prefix: 'input' | 'output', names: string[]) => {
    const out: Record<string, Tensor> = {};
    const files = readdirSync(dataSet).filter((f) => f.startsWith(`${prefix}_`) && f.endsWith('.pb'));
    for (const f of files) {
      const k = Number(f.slice(prefix.length + 1, -3));
      let t = decodeTensor(readFileSync(join(dataSet, f)), { source: join(dataSet, f) });
      const name = names[k] ?? (t.name || `${prefix}_${k}`);
      // ONNX 1.12's test data stores bfloat16 tensors as uint16 bit patterns (numpy has no
      // bfloat16); give them the type the model declares.
      if (t.dtype === DataType.UINT16 && declared.get(name) === DataType.BFLOAT16) t = Tensor.fromBytes(t.name, DataType.BFLOAT16, t.dims, t.bytes());
      out[name] = t;
    }
    return out;
  };
  return { inputs: read('input', realInputs.map((v) => v.name)), outputs: read('output', model.graph.outputs.map((v) => v.name)) };
}

/**
 * Why the case cannot be run with plain tensors (a graph input or output is a sequence, optional,
 * map or sparse tensor), or undefined when every input and output is a tensor.
 */
export function nonTensorIo(model: Model): string | undefined {
  for (const [what, list] of [['input', model.graph.inputs.filter((i) => !i.initializer)], ['output', model.graph.outputs]] as const) {
    for (const v of list) {
      if (v.type && v.type.kind !== 'tensor') return `${what}s are not plain tensors: ${what} '${v.name}' is ${/^[aeiou]/.test(v.type.kind) ? 'an' : 'a'} ${v.type.kind.replace('_', ' ')}`;
    }
  }
  return undefined;
}

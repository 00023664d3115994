/**
 * `peftc inspect MODEL --json`, run as users run it (the built CLI, node dist/src/cli/main.js), on
 * ONNX's conformance models, checked against facts computed independently from onnx-proto's
 * decoding of the same files; and bad input: exit code 2, stderr names the file, stdout empty.
 *
 * `npm test` builds dist/ (tsc) before vitest; run `npm run build` first when running vitest alone.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, saveModel } from '../src/onnx/io.js';
import { ModelProto, type Msg } from '../src/onnx/proto.js';

const require = createRequire(import.meta.url);
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const theirs: any = require('onnx-proto').onnx;

const ROOT = resolve(import.meta.dirname, '..');
const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js');
const DATA = '/usr/share/libonnx-testdata/data';

const tmp = mkdtempSync(join(tmpdir(), 'peftc-cli-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

beforeAll(() => {
  if (!existsSync(CLI)) {
    throw new Error(`${CLI} is missing: build the CLI first (npm run build; npm test does it before vitest)`);
  }
  // Warn (not fail) when the build is older than the sources it was built from.
  const newest = (dir: string): number =>
    readdirSync(dir, { withFileTypes: true }).reduce((t, e) => {
      const p = join(dir, e.name);
      return Math.max(t, e.isDirectory() ? newest(p) : e.name.endsWith('.ts') ? statSync(p).mtimeMs : 0);
    }, 0);
  if (newest(join(ROOT, 'src')) > statSync(CLI).mtimeMs) console.warn(`cli-inspect.test: ${CLI} is older than src/; run npm run build`);
});

function peftc(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

// --- independent facts from onnx-proto ------------------------------------------------------

/** Element sizes in bits of the data types ONNX 1.10 knows, and which of them are floats. */
const BITS: Record<number, number> = { 1: 32, 2: 8, 3: 8, 4: 16, 5: 16, 6: 32, 7: 64, 9: 8, 10: 16, 11: 64, 12: 32, 13: 64, 14: 64, 15: 128, 16: 16 };
const FLOATS = new Set([1, 10, 11, 16]);
const NAMES: Record<number, string> = { 1: 'float32', 2: 'uint8', 3: 'int8', 6: 'int32', 7: 'int64', 9: 'bool', 10: 'float16', 11: 'float64', 8: 'string' };

function expectedSummary(file: string) {
  const m = theirs.ModelProto.decode(readFileSync(file));
  const g = m.graph;
  const count = (dims: unknown[]) => dims.reduce<number>((n, d) => n * Number(d), 1);
  const inits: Msg[] = g.initializer ?? [];
  const initNames = new Set(inits.map((t) => t.name));
  const hist: Record<string, number> = {};
  for (const n of g.node) {
    const op = !n.domain || n.domain === 'ai.onnx' ? n.opType : `${n.domain}::${n.opType}`;
    hist[op] = (hist[op] ?? 0) + 1;
  }
  const io = (v: Msg) => {
    const tt = v.type?.tensorType;
    return {
      name: v.name,
      dtype: tt ? NAMES[tt.elemType] : undefined,
      shape: tt?.shape ? (tt.shape.dim ?? []).map((d: Msg) => (d.dimValue != null && d.hasOwnProperty('dimValue') ? Number(d.dimValue) : d.dimParam ? d.dimParam : null)) : null,
    };
  };
  let extBytes = 0;
  for (const t of inits) {
    if (t.dataLocation === 1) extBytes += Math.ceil((count(t.dims) * BITS[t.dataType]!) / 8);
  }
  return {
    irVersion: Number(m.irVersion),
    producer: [m.producerName, m.producerVersion].filter(Boolean).join(' '),
    opsets: Object.fromEntries((m.opsetImport ?? []).map((o: Msg) => [o.domain ? o.domain : 'ai.onnx', Number(o.version)])),
    nodeCount: g.node.length,
    opHistogram: hist,
    params: inits.filter((t) => FLOATS.has(t.dataType)).reduce((n, t) => n + count(t.dims), 0),
    initializerCount: inits.length,
    initializerBytes: inits.reduce((n, t) => n + Math.ceil((count(t.dims) * BITS[t.dataType]!) / 8), 0),
    inputs: g.input.filter((v: Msg) => !initNames.has(v.name)).map(io),
    outputs: g.output.map(io),
    externalData: extBytes > 0,
    externalBytes: extBytes,
  };
}

const MODELS = [
  'pytorch-converted/test_Conv2d',
  'pytorch-converted/test_BatchNorm2d_eval',
  'pytorch-converted/test_Linear',
  'pytorch-converted/test_Embedding',
  'pytorch-converted/test_GLU',
  'pytorch-operator/test_operator_conv',
  'node/test_if',
  'node/test_loop11',
  'node/test_scan9_sum',
  'node/test_cast_FLOAT_to_STRING',
  'node/test_gemm_default_zero_bias',
  'node/test_layer_normalization_4d_axis_negative_4_expanded',
].map((m) => join(DATA, m, 'model.onnx'));

describe('peftc inspect --json', () => {
  it(`has the conformance models under ${DATA}`, () => {
    for (const f of MODELS) expect(existsSync(f), `${f} (apt-get install libonnx-testdata)`).toBe(true);
  });

  it.each(MODELS.map((f) => [f.slice(DATA.length + 1, -'/model.onnx'.length), f]))('%s', (_name, file) => {
    const r = peftc('inspect', file, '--json');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const got = JSON.parse(r.stdout);
    const want = expectedSummary(file);
    expect(got).toMatchObject(want);
    expect(Object.keys(got.opHistogram).sort()).toEqual(Object.keys(want.opHistogram).sort());
    // The histogram is ordered by count, most frequent first.
    const counts = Object.values(got.opHistogram as Record<string, number>);
    expect(counts).toEqual([...counts].sort((a, b) => b - a));
    expect(got.inputs.every((v: { dtype: unknown }) => typeof v.dtype === 'string')).toBe(true);
  });

  it('reports external data of a model saved with its weights beside it', () => {
    const src = MODELS[1]!;
    const dir = join(tmp, 'ext');
    mkdirSync(dir);
    const file = join(dir, 'model.onnx');
    saveModel(loadModel(src), file, { externalData: 'all', threshold: 1 });
    const r = peftc('inspect', file, '--json');
    expect(r.status).toBe(0);
    const got = JSON.parse(r.stdout);
    const want = expectedSummary(file);
    expect(want.externalData).toBe(true);
    expect(got).toMatchObject(want);
    expect(got.externalBytes).toBeGreaterThan(0);
    expect(got.externalBytes).toBeLessThan(got.initializerBytes + 1);
  });

  it('prints a human summary without --json', () => {
    const r = peftc('inspect', MODELS[0]!);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(MODELS[0]!);
    expect(r.stdout).toMatch(/1 nodes: Conv 1/);
  });
});

describe('peftc inspect on bad input: exit 2, the file named on stderr, nothing on stdout', () => {
  const expectBadInput = (file: string, ...patterns: RegExp[]) => {
    const r = peftc('inspect', file, '--json');
    expect(r.stdout).toBe('');
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr).toContain(file);
    expect(r.stderr).toMatch(/^peftc: error: /);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    for (const p of patterns) expect(r.stderr).toMatch(p);
  };

  it('a missing file', () => expectBadInput(join(tmp, 'missing.onnx'), /ENOENT|cannot read/));

  it('a directory', () => {
    mkdirSync(join(tmp, 'adir.onnx'));
    expectBadInput(join(tmp, 'adir.onnx'), /not a file/);
  });

  it('garbage bytes', () => {
    const f = join(tmp, 'garbage.onnx');
    writeFileSync(f, Buffer.from('this is not a protobuf \u0000\u00ff\u00fe at all'.repeat(20)));
    expectBadInput(f, /not a valid ONNX model/);
  });

  it('a truncated model', () => {
    const f = join(tmp, 'truncated.onnx');
    const bytes = readFileSync(MODELS[0]!);
    writeFileSync(f, bytes.subarray(0, bytes.length - 7));
    expectBadInput(f);
  });

  it('an unsafe external-data path', () => {
    for (const location of ['../secret.bin', '/etc/hostname']) {
      const dir = mkdtempSync(join(tmp, 'unsafe-'));
      const f = join(dir, 'model.onnx');
      const msg: Msg = {
        irVersion: 8,
        opsetImport: [{ domain: '', version: 13 }],
        graph: {
          name: 'g',
          initializer: [{ name: 'w', dims: [4], dataType: 1, dataLocation: 1, externalData: [{ key: 'location', value: location }] }],
          output: [{ name: 'w' }],
        },
      };
      writeFileSync(f, ModelProto.encode(msg).finish());
      expectBadInput(f, /'w'/, location.startsWith('/') ? /absolute/ : /'\.\.'/);
    }
  });

  it('usage errors exit 2 too', () => {
    const r = peftc('inspect');
    expect(r.status).toBe(2);
    expect(r.stdout).toBe('');
  });
});

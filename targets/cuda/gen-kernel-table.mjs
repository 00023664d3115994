#!/usr/bin/env node
/**
 * Generates targets/cuda/kernels.json (the CUDA execution provider's kernel table, read by
 * targets/legality.ts) from onnxruntime's published operator-kernel list, docs/OperatorKernels.md
 * in microsoft/onnxruntime. See targets/cuda/README.md.
 *
 *   node targets/cuda/gen-kernel-table.mjs OperatorKernels.md > targets/cuda/kernels.json
 *
 * Options (for another release's doc, or another provider's section):
 *   --commit=SHA          the microsoft/onnxruntime commit the doc was taken from
 *   --onnxruntime=VER     the onnxruntime version that commit corresponds to
 *   --provider=NAME       the section to read (default CUDAExecutionProvider)
 *
 * Plain JavaScript (ESM) on purpose: Node 20 cannot run TypeScript directly, and this script is
 * a tool run by hand, not part of the compiler.
 *
 * The doc's tables look like this (one table per provider, rows grouped by domain):
 *
 *   |**Operator Domain:** *ai.onnx*||||
 *   |Add|*in* A:**T**<br> *in* B:**T**<br> *out* C:**T**|14+|**T** = tensor(bfloat16), tensor(double)|
 *   |||13|**T** = tensor(double), tensor(float)|                 <- same op, another version range
 *   |||[7, 12]|**T** = tensor(double), tensor(float)|
 *
 * Versions: `14+` = since 14, open-ended; `[7, 12]` = 7..12; `13` = exactly 13. A parameters cell
 * may hold several signatures separated by `<br><br>or<br><br>` (the op's schema changed over
 * versions); all are kept, and continuation rows share the op row's signatures.
 */
import { readFileSync } from 'node:fs';

// What the committed kernels.json was generated from (override with the flags above).
const DEFAULTS = {
  provider: 'CUDAExecutionProvider',
  commit: '001d12d2623fd411ce0f83d05abb5e82304a3389',
  onnxruntime: '1.25-dev',
};
const GENERATOR = 'targets/cuda/gen-kernel-table.mjs';

function usage(message) {
  if (message) process.stderr.write(`gen-kernel-table: ${message}\n`);
  process.stderr.write('usage: node targets/cuda/gen-kernel-table.mjs OperatorKernels.md [--commit=SHA] [--onnxruntime=VERSION] [--provider=NAME] > kernels.json\n');
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { ...DEFAULTS, file: undefined };
  for (const a of argv) {
    const m = /^--(commit|onnxruntime|provider)=(.+)$/.exec(a);
    if (m) opts[m[1]] = m[2];
    else if (a === '-h' || a === '--help') usage();
    else if (a.startsWith('--')) usage(`unknown option ${a}`);
    else if (opts.file === undefined) opts.file = a;
    else usage(`one input file only (got ${opts.file} and ${a})`);
  }
  if (!opts.file) usage('missing the path to OperatorKernels.md');
  return opts;
}

/** Splits `s` on `sep` where not inside parentheses. */
function splitTop(s, sep = ',') {
  const out = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '(') depth++;
    else if (c === ')') depth--;
    else if (c === sep && depth === 0) {
      out.push(s.slice(start, i));
      start = i + 1;
    }
  }
  out.push(s.slice(start));
  return out.map((x) => x.trim()).filter((x) => x !== '');
}

/** `tensor(float)` -> `float`, `seq(tensor(float))` -> `seq(float)`, `optional(seq(tensor(int8)))` -> `optional(seq(int8))`. */
function typeName(t) {
  const m = /^(\w+)\((.*)\)$/.exec(t.trim());
  if (!m) return t.trim();
  if (m[1] === 'tensor') return typeName(m[2]);
  return `${m[1]}(${splitTop(m[2]).map(typeName).join(',')})`;
}

/** `13+` | `[6, 12]` | `13` -> { since, until }. */
function parseVersion(cell) {
  const s = cell.trim();
  let m;
  if ((m = /^(\d+)\+$/.exec(s))) return { since: Number(m[1]), until: null };
  if ((m = /^\[(\d+),\s*(\d+)\]$/.exec(s))) return { since: Number(m[1]), until: Number(m[2]) };
  if ((m = /^(\d+)$/.exec(s))) return { since: Number(m[1]), until: Number(m[1]) };
  return undefined;
}

/** `*in* X:**T**<br> *out* Y:**tensor(int64)**<br><br>or<br><br>...` -> signatures. */
function parseParameters(cell, problems, where) {
  const text = cell.trim();
  if (text === '') return [];
  return text.split('<br><br>or<br><br>').map((alt) => {
    const sig = { inputs: [], outputs: [] };
    for (const item of alt.split('<br>')) {
      const p = item.trim();
      if (p === '') continue;
      const m = /^\*(in|out)\*\s+(.+?):\*\*(.+?)\*\*$/.exec(p);
      if (!m) {
        problems.push(`${where}: unparsed parameter "${p}"`);
        continue;
      }
      (m[1] === 'in' ? sig.inputs : sig.outputs).push([m[2], m[3]]);
    }
    return sig;
  });
}

/** `**T** = tensor(float), tensor(float16)<br/> **T1** = tensor(int64)` -> { T: [...], T1: [...] }. */
function parseTypes(cell, problems, where) {
  const types = {};
  const text = cell.trim();
  if (text === '') return types;
  for (const part of text.split(/<br\s*\/?>/)) {
    const p = part.trim();
    if (p === '') continue;
    const m = /^\*\*(.+?)\*\*\s*=\s*(.*)$/.exec(p);
    if (!m) {
      problems.push(`${where}: unparsed type constraint "${p}"`);
      continue;
    }
    types[m[1]] = splitTop(m[2]).map(typeName);
  }
  return types;
}

/** The rows of `provider`'s section, parsed. */
export function parseKernelSection(markdown, provider) {
  const lines = markdown.split(/\r?\n/);
  const heading = `## Operators implemented by ${provider}`;
  const start = lines.findIndex((l) => l.trim() === heading);
  if (start < 0) throw new Error(`no "${heading}" section in the file`);
  const problems = [];
  const kernels = [];
  let domain;
  let op; // { name, signatures } of the last op row
  for (let i = start + 1; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line.startsWith('## ') || line.startsWith('<a name=')) break; // the next provider's section
    if (line === '' || !line.startsWith('|')) continue;
    const where = `line ${i + 1}`;
    if (!line.endsWith('|')) {
      problems.push(`${where}: table row without a closing "|": ${line.slice(0, 80)}`);
      continue;
    }
    const cells = line.slice(1, -1).split('|');
    if (cells.length === 1 && cells[0].trim() === '') continue; // "| |" separator rows between domains
    if (/^\s*Op Name\s*$/.test(cells[0]) || /^-+$/.test(cells[0].trim())) continue; // table header
    const dm = /^\*\*Operator Domain:\*\*\s*\*([^*]+)\*$/.exec(cells[0].trim());
    if (dm) {
      domain = dm[1].trim() === 'ai.onnx' ? '' : dm[1].trim();
      op = undefined;
      continue;
    }
    if (cells.length !== 4) {
      problems.push(`${where}: expected 4 cells, got ${cells.length}: ${line.slice(0, 80)}`);
      continue;
    }
    if (domain === undefined) {
      problems.push(`${where}: kernel row before any "Operator Domain" row`);
      continue;
    }
    const [name, params, version, typesCell] = cells.map((c) => c.trim());
    if (name !== '') {
      op = { name, signatures: parseParameters(params, problems, where) };
    } else if (params !== '') {
      problems.push(`${where}: parameters without an op name`);
      continue;
    } else if (!op) {
      problems.push(`${where}: continuation row before any op row`);
      continue;
    }
    const v = parseVersion(version);
    if (!v) {
      problems.push(`${where}: unparsed version "${version}" (${op.name})`);
      continue;
    }
    kernels.push({
      domain,
      op: op.name,
      since: v.since,
      until: v.until,
      types: parseTypes(typesCell, problems, where),
      signatures: op.signatures,
    });
  }
  return { kernels, problems };
}

function main() {
  const opts = parseArgs(process.argv.slice(2));
  let parsed;
  try {
    parsed = parseKernelSection(readFileSync(opts.file, 'utf8'), opts.provider);
  } catch (e) {
    process.stderr.write(`gen-kernel-table: ${opts.file}: ${e instanceof Error ? e.message : e}\n`);
    process.exit(1);
  }
  const { kernels, problems } = parsed;
  if (problems.length) {
    process.stderr.write(`gen-kernel-table: ${problems.length} row(s) not understood:\n${problems.map((p) => `  ${p}`).join('\n')}\n`);
    process.exit(1);
  }
  if (kernels.length === 0) {
    process.stderr.write(`gen-kernel-table: the ${opts.provider} section has no kernel rows\n`);
    process.exit(1);
  }
  const source = {
    file: 'docs/OperatorKernels.md',
    repository: 'microsoft/onnxruntime',
    commit: opts.commit,
    onnxruntime: opts.onnxruntime,
    generator: GENERATOR,
  };
  // One kernel per line: diffs between releases stay readable.
  const out = [
    '{',
    `  "source": ${JSON.stringify(source)},`,
    `  "provider": ${JSON.stringify(opts.provider)},`,
    '  "kernels": [',
    kernels.map((k) => `    ${JSON.stringify(k)}`).join(',\n'),
    '  ]',
    '}',
    '',
  ].join('\n');
  process.stdout.write(out);
  const ops = new Set(kernels.map((k) => `${k.domain || 'ai.onnx'}::${k.op}`));
  const byDomain = {};
  for (const k of kernels) byDomain[k.domain || 'ai.onnx'] = (byDomain[k.domain || 'ai.onnx'] ?? 0) + 1;
  process.stderr.write(`gen-kernel-table: ${opts.provider}: ${kernels.length} kernels, ${ops.size} ops (${Object.entries(byDomain).map(([d, n]) => `${d} ${n}`).join(', ')})\n`);
}

// Run when executed directly (importable for tests).
if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith('gen-kernel-table.mjs')) main();

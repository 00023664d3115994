/**
 * `peftc report`: the HTML page from hand-made sweep results — the Pareto sets in its text, text
 * escaped, nothing fetched at view time — and the page as a real browser shows it: Debian's
 * headless Chromium dumps the DOM (the text is there) and takes a screenshot (kept as
 * test-artifacts/report-html.png), in which the plot markers are found by their colours.
 * Chromium is required: without it the test fails and says to apt-get install chromium.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import yargs from 'yargs';
import { PNG } from 'pngjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OTHER_COLOR, PARETO_COLOR, paretoFront, paretoFrontN, renderReportHtml } from '../src/report/html.js';
import type { SweepResults, SweepVariant } from '../src/report/results.js';
import { reportCommand } from '../src/cli/report-command.js';
import { PeftcError } from '../src/errors.js';

const ROOT = resolve(import.meta.dirname, '..');
const ARTIFACTS = join(ROOT, 'test-artifacts');
const CHROMIUM = '/usr/bin/chromium';
const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js');
const MiB = 2 ** 20;

const tmp = mkdtempSync(join(tmpdir(), 'peftc-report-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function variant(label: string, quant: string, bytes: number, p50: number, relErr: number | null, extra: Partial<SweepVariant> = {}): SweepVariant {
  const v: SweepVariant = { label, target: 'cpu', quant, artifact: `/tmp/out/${label}.onnx`, bytes, nodes: 120, sizeRatio: bytes / (100 * MiB), ...extra };
  if (relErr === null) return v;
  return {
    ...v,
    latency: { p50Ms: p50, p90Ms: p50 * 1.1, p99Ms: p50 * 1.3, p50MinMs: p50 * 0.97, p50MaxMs: p50 * 1.04, throughput: 1000 / p50 },
    latencyRatio: p50 / 10,
    sessionMs: 40 + bytes / MiB,
    peakRssMiB: 80 + (2 * bytes) / MiB,
    fidelity: { maxAbs: relErr * 3, meanAbs: relErr / 2, relErr, cosine: 1 - relErr ** 2, top1: 1 - relErr * 4 },
  };
}

/**
 * Four variants. Fidelity vs latency: cpu-int4 (5 ms, 5e-3) dominates cpu-nf4 (6 ms, 8e-3), so
 * the front is cpu-none and cpu-int4. Size vs latency: cpu-nf4 is the smallest and cpu-int4 the
 * fastest (and smaller than cpu-none), so the front is those two. On all three axes together
 * cpu-none (exact), cpu-int4 (fastest) and cpu-nf4 (smallest) are optimal. cpu-fp16 failed and is
 * in no plot. The model name and the error message need escaping.
 */
const MODEL = 'models/<bert> & "co".onnx';
const RESULTS: SweepResults = {
  kind: 'peftc-sweep',
  model: MODEL,
  date: '2025-06-01T12:00:00.000Z',
  machine: { cpus: 2, cpuModel: 'Test CPU @ 2.0GHz', memGiB: 24, node: 'v20.19.0', onnxruntime: '1.30.0' },
  settings: { rounds: 5, runs: 50, threads: 1 },
  variants: [
    variant('cpu-none', 'none', 100 * MiB, 10, 0),
    variant('cpu-int4', 'int4', 16 * MiB, 5, 5e-3),
    variant('cpu-nf4', 'nf4', 14 * MiB, 6, 8e-3),
    variant('cpu-fp16', 'fp16', 0, 0, null, { error: 'onnxruntime: no kernel for <MatMul> & "fp16"' }),
  ],
};

/** Text of the page as a reader sees it: tags dropped, entities decoded. */
function pageText(html: string): string {
  const noHead = html.replace(/<head>[\s\S]*?<\/head>/, '').replace(/<svg[\s\S]*?<\/svg>/g, (svg) => svg.replace(/<title>[\s\S]*?<\/title>/g, ''));
  return noHead
    .replace(/<\/?(?:td|th|tr|p|h1|h2|div|section|table|svg|text)\b[^>]*>/g, ' ') // cells and blocks apart
    .replace(/<[^>]*>/g, '')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&amp;/g, '&')
    .replace(/\s+/g, ' ');
}

/** "Pareto-optimal (<what>): a, b" lines of the page text, as { what: [labels] }. */
function paretoLists(text: string): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const m of text.matchAll(/Pareto-optimal (?:\(([^)]*)\)|on ([^:]*)): ([^.]*?)(?= Pareto-optimal| Not on| A relative|$)/g)) {
    out[(m[1] ?? m[2])!.trim()] = m[3]!.split(',').map((s) => s.trim());
  }
  return out;
}

describe('Pareto fronts', () => {
  it('keeps the points no other point beats on one axis without losing on the other', () => {
    const pts = [
      { label: 'a', x: 1, y: 5 },
      { label: 'b', x: 2, y: 2 },
      { label: 'c', x: 3, y: 3 }, // dominated by b
      { label: 'd', x: 2, y: 2 }, // equal to b: neither dominates
      { label: 'e', x: 1, y: 6 }, // dominated by a (same x, worse y)
      { label: 'f', x: 5, y: 1 },
    ];
    expect([...paretoFront(pts)].sort()).toEqual(['a', 'b', 'd', 'f']);
    expect([...paretoFrontN([{ label: 'p', values: [1, 1, 9] }, { label: 'q', values: [1, 2, 1] }, { label: 'r', values: [2, 2, 9] }])].sort()).toEqual(['p', 'q']);
  });
});

describe('renderReportHtml', () => {
  const html = renderReportHtml([RESULTS]);
  const text = pageText(html);

  it('lists the right Pareto-optimal variants per plot and overall', () => {
    const lists = paretoLists(text);
    expect(lists).toEqual({
      'relative error vs latency p50': ['cpu-int4', 'cpu-none'],
      // cpu-int4 is both faster and smaller than cpu-none: only its zero error keeps cpu-none in.
      'size vs latency p50': ['cpu-int4', 'cpu-nf4'],
      'fidelity, latency and size together': ['cpu-none', 'cpu-int4', 'cpu-nf4'],
    });
  });

  it('has the model, date, machine, every variant, the error, and plots with the front marked', () => {
    expect(text).toContain(MODEL);
    expect(text).toContain('2025-06-01T12:00:00.000Z');
    expect(text).toContain('Test CPU @ 2.0GHz');
    for (const v of RESULTS.variants) expect(text).toContain(v.label);
    expect(text).toContain('onnxruntime: no kernel for <MatMul> & "fp16"');
    expect(text).toContain('Not on the fidelity plot: cpu-fp16 (failed: in no plot).');
    expect(html.match(/<svg /g)).toHaveLength(2);
    // Filled Pareto markers: 2 + 2 points, plus one legend marker per plot; hollow: nf4, none.
    expect(html.split(`fill="${PARETO_COLOR}"`).length - 1).toBe(4 + 2);
    expect(html.split(`stroke="${OTHER_COLOR}"`).length - 1).toBe(2 + 2);
    expect(html).toContain('<polyline');
  });

  it('escapes text and fetches nothing at view time', () => {
    expect(html).not.toContain('<bert>');
    expect(html).toContain('models/&lt;bert&gt; &amp; &quot;co&quot;.onnx');
    expect(html).not.toContain('<MatMul>');
    expect(html).not.toMatch(/<script|<link|<img|<iframe|@import|url\(|\ssrc=|\shref=/i);
  });

  it('switches the fidelity plot to perplexity when every plotted variant has one', () => {
    const lm: SweepResults = {
      ...RESULTS,
      variants: RESULTS.variants.map((v, i) => (v.fidelity ? { ...v, fidelity: { ...v.fidelity, perplexity: 20 + [0, 0.5, 2][i]!, referencePerplexity: 20 } } : v)),
    };
    const t = pageText(renderReportHtml([lm, RESULTS]));
    expect(t).toContain('Pareto-optimal (perplexity vs latency p50): cpu-int4, cpu-none');
    expect(t).toContain('Pareto-optimal (relative error vs latency p50): cpu-int4, cpu-none');
    expect(t).toContain('perplexity (ref 20.000)');
    expect(t).toMatch(/\b20\.500\b/);
  });
});

// --- the report command, in-process --------------------------------------------------------------

async function runReport(args: string[]): Promise<{ stdout: string; error: unknown }> {
  let stdout = '';
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((chunk: string | Uint8Array) => {
    stdout += String(chunk);
    return true;
  }) as typeof process.stdout.write;
  let error: unknown;
  try {
    await yargs(args)
      .command(reportCommand)
      .strict()
      .fail((msg, err) => {
        throw err ?? new Error(msg);
      })
      .parseAsync();
  } catch (err) {
    error = err;
  } finally {
    process.stdout.write = write;
  }
  return { stdout, error };
}

describe('the report command', () => {
  it('writes one page with a section per results file and prints its path', async () => {
    const a = join(tmp, 'a.json');
    const b = join(tmp, 'b.json');
    writeFileSync(a, JSON.stringify(RESULTS));
    writeFileSync(b, JSON.stringify({ ...RESULTS, model: 'second-model.onnx' }));
    const out = join(tmp, 'report.html');
    const r = await runReport(['report', a, b, '--html', out]);
    expect(r.error).toBeUndefined();
    expect(r.stdout).toBe(`${out}\n`);
    const page = readFileSync(out, 'utf8');
    expect(page.match(/<section /g)).toHaveLength(2);
    expect(pageText(page)).toContain('second-model.onnx');
  });

  it('refuses a file that is not sweep results, by name, and writes nothing', async () => {
    const good = join(tmp, 'good.json');
    const bad = join(tmp, 'compile-report.json');
    writeFileSync(good, JSON.stringify(RESULTS));
    writeFileSync(bad, JSON.stringify({ input: 'model.onnx', output: 'out.onnx' }));
    const out = join(tmp, 'never.html');
    const r = await runReport(['report', good, bad, '--html', out]);
    expect(r.error).toBeInstanceOf(PeftcError);
    expect((r.error as PeftcError).exitCode).toBe(2);
    expect((r.error as Error).message).toContain('compile-report.json');
    expect((r.error as Error).message).toContain('peftc-sweep');
    expect(existsSync(out)).toBe(false);
    const missing = await runReport(['report', join(tmp, 'absent.json'), '--html', out]);
    expect((missing.error as Error).message).toContain('absent.json');
    const notJson = join(tmp, 'broken.json');
    writeFileSync(notJson, '{"kind": "peftc-sweep",');
    expect(((await runReport(['report', notJson, '--html', out])).error as Error).message).toMatch(/broken\.json: not JSON/);
    expect(existsSync(out)).toBe(false);
  });

  it('requires --html', async () => {
    const r = await runReport(['report', join(tmp, 'a.json')]);
    expect(String(r.error)).toMatch(/html/);
  });
});

// The built CLI, once src/cli/main.ts registers reportCommand (the command module is tested above
// either way). Registered but not built is a failure, not a skip.
const registered = readFileSync(join(ROOT, 'src', 'cli', 'main.ts'), 'utf8').includes('reportCommand');
describe.runIf(registered)('peftc report (built CLI)', () => {
  beforeAll(() => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: build the CLI first (npm run build; npm test does it before vitest)`);
  });
  const peftc = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60_000 });

  it('writes the page and prints its path (exit 0); other JSON is refused by name (exit 2)', () => {
    const results = join(tmp, 'cli-results.json');
    writeFileSync(results, JSON.stringify(RESULTS));
    const out = join(tmp, 'cli-report.html');
    const ok = peftc('report', results, '--html', out);
    expect(ok.status, ok.stderr).toBe(0);
    expect(ok.stdout.trim()).toBe(out);
    expect(readFileSync(out, 'utf8')).toContain('Pareto-optimal');
    const other = join(tmp, 'cli-other.json');
    writeFileSync(other, JSON.stringify({ kind: 'peftc-golden' }));
    const bad = peftc('report', other, '--html', join(tmp, 'cli-never.html'));
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('cli-other.json');
    expect(existsSync(join(tmp, 'cli-never.html'))).toBe(false);
  });
});

// --- in a real browser ---------------------------------------------------------------------------

function chromium(args: string[]): { stdout: string; stderr: string } {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: this test renders the report in headless Chromium. Install it: sudo apt-get install -y chromium`);
  }
  const profile = mkdtempSync(join(tmp, 'chromium-profile-'));
  const r = spawnSync(
    CHROMIUM,
    [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--hide-scrollbars',
      `--user-data-dir=${profile}`,
      ...args,
    ],
    { encoding: 'utf8', timeout: 60_000, killSignal: 'SIGKILL', maxBuffer: 64 << 20 },
  );
  if (r.error || r.status !== 0) throw new Error(`chromium ${args.join(' ')} failed (status ${r.status}, ${r.error?.message ?? ''}):\n${r.stderr}`);
  return { stdout: r.stdout, stderr: r.stderr };
}

function hexRgb(hex: string): [number, number, number] {
  const n = Number.parseInt(hex.slice(1), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}

/**
 * Sizes of the 4-connected blobs of pixels of this colour, within 3 per channel: Skia's stroke
 * over fill compositing leaves some interior pixels one step off (213,38,39 for 214,39,40),
 * while anti-aliased edges, blended with white, are far off and not counted.
 */
function colourBlobs(png: PNG, hex: string): number[] {
  const [r, g, b] = hexRgb(hex);
  const { width, height, data } = png;
  const hit = new Uint8Array(width * height);
  const near = (i: number, v: number) => Math.abs(data[i]! - v) <= 3;
  for (let i = 0; i < width * height; i++) hit[i] = near(4 * i, r) && near(4 * i + 1, g) && near(4 * i + 2, b) ? 1 : 0;
  const sizes: number[] = [];
  const stack: number[] = [];
  for (let start = 0; start < hit.length; start++) {
    if (!hit[start]) continue;
    let size = 0;
    hit[start] = 0;
    stack.push(start);
    while (stack.length) {
      const p = stack.pop()!;
      size++;
      const x = p % width;
      for (const q of [p - width, p + width, x > 0 ? p - 1 : -1, x < width - 1 ? p + 1 : -1]) {
        if (q >= 0 && q < hit.length && hit[q]) {
          hit[q] = 0;
          stack.push(q);
        }
      }
    }
    sizes.push(size);
  }
  return sizes.sort((x, y) => y - x);
}

describe('the page in headless Chromium', () => {
  const page = join(tmp, 'chromium-report.html');
  const url = pathToFileURL(page).href;
  beforeAll(() => writeFileSync(page, renderReportHtml([RESULTS])));

  it('shows the model, the variants and the Pareto lists (--dump-dom)', () => {
    const dom = chromium(['--dump-dom', url]).stdout;
    const text = pageText(dom);
    expect(text).toContain(MODEL);
    for (const v of RESULTS.variants) expect(text).toContain(v.label);
    expect(text).toContain('Pareto');
    expect(paretoLists(text)['relative error vs latency p50']).toEqual(['cpu-int4', 'cpu-none']);
  });

  it('draws both plots: Pareto and dominated markers visible in a screenshot', () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    const shot = join(ARTIFACTS, 'report-html.png');
    rmSync(shot, { force: true });
    chromium([`--screenshot=${shot}`, '--window-size=1280,1600', url]);
    expect(existsSync(shot), `chromium wrote no screenshot at ${shot}`).toBe(true);
    const png = PNG.sync.read(readFileSync(shot));
    expect([png.width, png.height]).toEqual([1280, 1600]);
    // Pareto markers are filled discs (radius 6 plus stroke: over 100 pixels of the colour each;
    // the front line has its own colour, so they stay separate); the legend adds one disc per
    // plot. 4 Pareto points + 2 legend discs must all be there as separate blobs.
    const pareto = colourBlobs(png, PARETO_COLOR);
    const discs = pareto.filter((n) => n >= 60);
    expect(discs.length, `Pareto-colour blobs: ${pareto.slice(0, 12).join(', ')}`).toBeGreaterThanOrEqual(6);
    expect(discs.slice(0, 4).every((n) => n >= 100), `Pareto-colour blobs: ${pareto.slice(0, 12).join(', ')}`).toBe(true);
    // Dominated markers are hollow rings: cpu-nf4 (fidelity plot), cpu-none (size plot), 2 in legends.
    const rings = colourBlobs(png, OTHER_COLOR);
    expect(rings.filter((n) => n >= 30).length, `dominated-colour blobs: ${rings.slice(0, 12).join(', ')}`).toBeGreaterThanOrEqual(4);
  });
});

/**
 * `peftc report`: one self-contained HTML page from sweep results (src/report/results.ts) — the
 * trade-off table and two inline-SVG plots per results file: fidelity vs latency and size vs
 * latency, with the Pareto-optimal variants marked and listed. Nothing is fetched at view time
 * (no scripts, fonts or images), so the page can be mailed or archived as one file.
 */
import { formatBytes } from '../inspect.js';
import type { SweepResults, SweepVariant } from './results.js';

/** Marker colours, fixed so that a screenshot test can find the plotted points by colour. */
export const PARETO_COLOR = '#d62728';
export const OTHER_COLOR = '#1f77b4';
/** The front line has its own (lighter) colour so markers stay separate blobs in a screenshot. */
export const FRONT_COLOR = '#f19c9d';

// --- text helpers -----------------------------------------------------------------------------

/** Escapes text for HTML element content and attribute values (also valid inside inline SVG). */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

const DASH = '–';

function fmtMs(v: number | undefined): string {
  if (v === undefined || !Number.isFinite(v)) return DASH;
  return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
}

function fmtRatio(v: number | undefined): string {
  return v === undefined || !Number.isFinite(v) ? DASH : `${v.toFixed(2)}×`;
}

function fmtSci(v: number | undefined): string {
  if (v === undefined || !Number.isFinite(v)) return DASH;
  return v === 0 ? '0' : v.toExponential(2);
}

function fmtFixed(v: number | undefined, digits: number): string {
  return v === undefined || !Number.isFinite(v) ? DASH : v.toFixed(digits);
}

function fmtPercent(v: number | undefined): string {
  return v === undefined || !Number.isFinite(v) ? DASH : `${(v * 100).toFixed(1)}%`;
}

// --- Pareto front -----------------------------------------------------------------------------

export interface PlotPoint {
  label: string;
  x: number;
  y: number;
}

/**
 * Labels of the points no other point dominates (lower is better on both axes): q dominates p
 * when q is at least as good on both axes and better on one. Equal points dominate neither.
 */
export function paretoFront(points: readonly PlotPoint[]): Set<string> {
  const front = new Set<string>();
  for (const p of points) {
    const dominated = points.some((q) => q !== p && q.x <= p.x && q.y <= p.y && (q.x < p.x || q.y < p.y));
    if (!dominated) front.add(p.label);
  }
  return front;
}

/** The same with any number of axes (the three of the study: error, latency, size). */
export function paretoFrontN(points: ReadonlyArray<{ label: string; values: readonly number[] }>): Set<string> {
  const front = new Set<string>();
  for (const p of points) {
    const dominated = points.some((q) => q !== p && q.values.every((v, i) => v <= p.values[i]!) && q.values.some((v, i) => v < p.values[i]!));
    if (!dominated) front.add(p.label);
  }
  return front;
}

// --- scales -----------------------------------------------------------------------------------

interface Scale {
  /** Maps a data value to 0..1 along the axis. */
  pos(v: number): number;
  ticks: Array<{ v: number; text: string }>;
}

/** 1, 2 or 5 times a power of ten, the step for about `count` intervals over `range`. */
function niceStep(range: number, count: number): number {
  const raw = range / count;
  const p = 10 ** Math.floor(Math.log10(raw));
  const m = raw / p;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
}

/** Tick text with as many decimals as the step needs (step 0.5 -> "1.5", step 2 -> "4"). */
function tickFormat(step: number): (v: number) => string {
  const decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  return (v) => v.toFixed(decimals);
}

/**
 * A linear axis over the values, padded so no point sits on the frame, with round ticks.
 * `unit` divides values for the tick text (1 MiB: ticks at 20, 40 MiB rather than 47.7 MiB).
 */
function linearScale(values: readonly number[], nonNegative: boolean, unit = 1, suffix = ''): Scale {
  let min = Math.min(...values) / unit;
  let max = Math.max(...values) / unit;
  const span = max - min || Math.abs(max) * 0.2 || 1;
  min -= span * 0.1;
  max += span * 0.1;
  if (nonNegative) min = Math.max(0, min);
  const step = niceStep(max - min, 5);
  const lo = Math.floor(min / step) * step;
  const hi = Math.ceil(max / step) * step;
  const format = tickFormat(step);
  const ticks: Scale['ticks'] = [];
  for (let i = 0; lo + i * step <= hi + step * 1e-9; i++) {
    const v = lo + i * step;
    ticks.push({ v: v * unit, text: `${format(v)}${suffix}` });
  }
  return { pos: (v) => (v / unit - lo) / (hi - lo), ticks };
}

/** Binary unit for a byte axis, chosen by the largest value. */
function byteUnit(max: number): { unit: number; suffix: string } {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (i < units.length - 1 && max >= 1024 ** (i + 1)) i++;
  return { unit: 1024 ** i, suffix: ` ${units[i]}` };
}

function decadeText(e: number): string {
  return e >= 0 && e <= 3 ? String(10 ** e) : `1e${e}`;
}

/**
 * A log axis over whole decades. Zero (a variant whose outputs equal the reference's) has no
 * place on it: zeros are drawn one decade below the smallest positive value, on a tick "0".
 */
function logScale(values: readonly number[]): Scale & { zeroAt: number | null } {
  const positive = values.filter((v) => v > 0);
  let lo = positive.length ? Math.floor(Math.log10(Math.min(...positive))) : -3;
  const hi = positive.length ? Math.max(lo + 1, Math.ceil(Math.log10(Math.max(...positive)))) : lo + 1;
  const hasZero = values.some((v) => v <= 0);
  if (hasZero) lo -= 1;
  const every = Math.max(1, Math.ceil((hi - lo) / 8));
  const ticks: Scale['ticks'] = [];
  for (let e = lo; e <= hi; e += every) ticks.push({ v: 10 ** e, text: hasZero && e === lo ? '0' : decadeText(e) });
  const zeroAt = hasZero ? 10 ** lo : null;
  const pos = (v: number) => (Math.log10(v > 0 ? v : zeroAt ?? 10 ** lo) - lo) / (hi - lo);
  return { pos, ticks, zeroAt };
}

// --- plots ------------------------------------------------------------------------------------

interface PlotSpec {
  id: string;
  title: string;
  xLabel: string;
  yLabel: string;
  points: PlotPoint[];
  x: Scale;
  y: Scale;
  front: Set<string>;
  note?: string;
}

const W = 580;
const H = 420;
const M = { left: 78, right: 24, top: 40, bottom: 58 };
const PW = W - M.left - M.right;
const PH = H - M.top - M.bottom;

const px = (s: Scale, v: number) => M.left + s.pos(v) * PW;
const py = (s: Scale, v: number) => M.top + (1 - s.pos(v)) * PH;

function axesSvg(spec: PlotSpec): string[] {
  const out = [`<rect x="${M.left}" y="${M.top}" width="${PW}" height="${PH}" fill="#fff" stroke="#444"/>`];
  for (const t of spec.x.ticks) {
    const x = px(spec.x, t.v).toFixed(1);
    out.push(`<line x1="${x}" y1="${M.top}" x2="${x}" y2="${M.top + PH}" stroke="#e4e4e4"/>`);
    out.push(`<line x1="${x}" y1="${M.top + PH}" x2="${x}" y2="${M.top + PH + 5}" stroke="#444"/>`);
    out.push(`<text x="${x}" y="${M.top + PH + 19}" text-anchor="middle" class="tick">${escapeHtml(t.text)}</text>`);
  }
  for (const t of spec.y.ticks) {
    const y = py(spec.y, t.v).toFixed(1);
    out.push(`<line x1="${M.left}" y1="${y}" x2="${M.left + PW}" y2="${y}" stroke="#e4e4e4"/>`);
    out.push(`<line x1="${M.left - 5}" y1="${y}" x2="${M.left}" y2="${y}" stroke="#444"/>`);
    out.push(`<text x="${M.left - 8}" y="${y}" dy="0.32em" text-anchor="end" class="tick">${escapeHtml(t.text)}</text>`);
  }
  out.push(`<text x="${M.left + PW / 2}" y="${H - 12}" text-anchor="middle" class="axis">${escapeHtml(spec.xLabel)}</text>`);
  out.push(`<text transform="translate(16 ${M.top + PH / 2}) rotate(-90)" text-anchor="middle" class="axis">${escapeHtml(spec.yLabel)}</text>`);
  out.push(`<text x="${W / 2}" y="22" text-anchor="middle" class="title">${escapeHtml(spec.title)}</text>`);
  return out;
}

/** Point labels placed greedily beside their markers, moved vertically until they do not overlap. */
function labelsSvg(spec: PlotSpec, coords: Array<{ p: PlotPoint; x: number; y: number }>): string[] {
  const placed: Array<{ x0: number; x1: number; y0: number; y1: number }> = [];
  const out: string[] = [];
  for (const { p, x, y } of [...coords].sort((a, b) => a.y - b.y)) {
    const width = p.label.length * 7 + 4;
    const right = x + 10 + width <= W - 4;
    const x0 = right ? x + 9 : x - 9 - width;
    let ty = y - 8;
    for (const dy of [0, 22, -14, 36, -28, 50, -42, 64]) {
      ty = y - 8 + dy;
      const box = { x0, x1: x0 + width, y0: ty - 11, y1: ty + 3 };
      if (!placed.some((b) => b.x0 < box.x1 && box.x0 < b.x1 && b.y0 < box.y1 && box.y0 < b.y1)) {
        placed.push(box);
        break;
      }
    }
    out.push(`<text x="${(right ? x + 9 : x - 9).toFixed(1)}" y="${ty.toFixed(1)}" text-anchor="${right ? 'start' : 'end'}" class="label">${escapeHtml(p.label)}</text>`);
  }
  return out;
}

function legendSvg(): string[] {
  const x = M.left + PW - 150;
  const y = M.top + 14;
  return [
    `<rect x="${x - 8}" y="${y - 12}" width="150" height="44" fill="#fff" fill-opacity="0.85" stroke="#ccc"/>`,
    `<circle cx="${x + 4}" cy="${y}" r="6" fill="${PARETO_COLOR}" stroke="${PARETO_COLOR}" stroke-width="2"/>`,
    `<text x="${x + 16}" y="${y}" dy="0.32em" class="legend">Pareto-optimal</text>`,
    `<circle cx="${x + 4}" cy="${y + 20}" r="6" fill="#fff" stroke="${OTHER_COLOR}" stroke-width="2.5"/>`,
    `<text x="${x + 16}" y="${y + 20}" dy="0.32em" class="legend">dominated</text>`,
  ];
}

function plotSvg(spec: PlotSpec): string {
  const coords = spec.points.map((p) => ({ p, x: px(spec.x, p.x), y: py(spec.y, p.y) }));
  const front = coords.filter((c) => spec.front.has(c.p.label)).sort((a, b) => a.x - b.x || a.y - b.y);
  const parts = axesSvg(spec);
  if (front.length > 1) {
    parts.push(`<polyline points="${front.map((c) => `${c.x.toFixed(1)},${c.y.toFixed(1)}`).join(' ')}" fill="none" stroke="${FRONT_COLOR}" stroke-width="2.5"/>`);
  }
  for (const c of coords) {
    const onFront = spec.front.has(c.p.label);
    const style = onFront ? `fill="${PARETO_COLOR}" stroke="${PARETO_COLOR}" stroke-width="2"` : `fill="#fff" stroke="${OTHER_COLOR}" stroke-width="2.5"`;
    parts.push(`<circle cx="${c.x.toFixed(1)}" cy="${c.y.toFixed(1)}" r="6" ${style}><title>${escapeHtml(c.p.label)}</title></circle>`);
  }
  parts.push(...labelsSvg(spec, coords), ...legendSvg());
  return `<svg id="${spec.id}" xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="${escapeHtml(spec.title)}">${parts.join('')}</svg>`;
}

// --- one results file -------------------------------------------------------------------------

/** Variants that have the figures a plot needs; the rest are listed under the plots. */
function usable(v: SweepVariant): v is SweepVariant & { latency: NonNullable<SweepVariant['latency']> } {
  return !v.error && v.latency !== undefined && Number.isFinite(v.latency.p50Ms);
}

function fidelityAxis(variants: SweepVariant[]): { key: 'perplexity' | 'relErr'; label: string } {
  const withFid = variants.filter((v) => v.fidelity);
  const allPpl = withFid.length > 0 && withFid.every((v) => v.fidelity!.perplexity !== undefined && Number.isFinite(v.fidelity!.perplexity));
  return allPpl ? { key: 'perplexity', label: 'perplexity' } : { key: 'relErr', label: 'relative error (log scale)' };
}

interface Plots {
  specs: PlotSpec[];
  /** Variants on the error/latency/size front together. */
  overall: string[];
  notPlotted: string[];
}

function buildPlots(r: SweepResults, index: number): Plots {
  const ok = r.variants.filter(usable);
  const fid = fidelityAxis(ok);
  const fidVariants = ok.filter((v) => v.fidelity && Number.isFinite(v.fidelity[fid.key]));
  const fidPoints = fidVariants.map((v) => ({ label: v.label, x: v.latency.p50Ms, y: v.fidelity![fid.key]! }));
  const sizePoints = ok.map((v) => ({ label: v.label, x: v.latency.p50Ms, y: v.bytes }));
  const latencyX = (pts: PlotPoint[]) => linearScale(pts.map((p) => p.x), true);
  const specs: PlotSpec[] = [];
  if (fidPoints.length) {
    const y = fid.key === 'relErr' ? logScale(fidPoints.map((p) => p.y)) : linearScale(fidPoints.map((p) => p.y), true);
    const title = `${fid.key === 'relErr' ? 'Relative error' : 'Perplexity'} vs latency p50`;
    const note = 'zeroAt' in y && y.zeroAt !== null ? 'A relative error of 0 (outputs equal the reference) is drawn on the "0" tick' : undefined;
    specs.push({ id: `fidelity-${index}`, title, xLabel: 'latency p50 (ms)', yLabel: fid.label, points: fidPoints, x: latencyX(fidPoints), y, front: paretoFront(fidPoints), ...(note ? { note } : {}) });
  }
  if (sizePoints.length) {
    const { unit, suffix } = byteUnit(Math.max(...sizePoints.map((p) => p.y)));
    const y = linearScale(sizePoints.map((p) => p.y), true, unit, suffix);
    specs.push({ id: `size-${index}`, title: 'Size vs latency p50', xLabel: 'latency p50 (ms)', yLabel: 'size on disk', points: sizePoints, x: latencyX(sizePoints), y, front: paretoFront(sizePoints) });
  }
  const three = fidVariants.map((v) => ({ label: v.label, values: [v.fidelity![fid.key]!, v.latency.p50Ms, v.bytes] }));
  const overallSet = paretoFrontN(three);
  const plottedFid = new Set(fidPoints.map((p) => p.label));
  const notPlotted = r.variants
    .filter((v) => !plottedFid.has(v.label))
    .map((v) => (v.error ? `${v.label} (failed: in no plot)` : !usable(v) ? `${v.label} (no latency: in no plot)` : `${v.label} (no ${fid.key === 'relErr' ? 'fidelity' : 'perplexity'}: size plot only)`));
  return { specs, overall: r.variants.map((v) => v.label).filter((l) => overallSet.has(l)), notPlotted };
}

function frontList(spec: PlotSpec): string {
  // Listed in ascending latency, the order one reads the front in.
  const names = spec.points.filter((p) => spec.front.has(p.label)).sort((a, b) => a.x - b.x).map((p) => `<strong>${escapeHtml(p.label)}</strong>`);
  return `<p class="pareto" data-plot="${spec.id}">Pareto-optimal (${escapeHtml(spec.title.toLowerCase())}): ${names.join(', ')}</p>`;
}

interface Column {
  head: string;
  cell: (v: SweepVariant) => string;
  /** Numeric columns are right-aligned. */
  num?: boolean;
}

/** A failed variant with no artifact has bytes 0: that is "not measured", not "empty". */
function unmeasured(v: SweepVariant): boolean {
  return v.error !== undefined && v.bytes === 0;
}

function columns(r: SweepResults): Column[] {
  const anyPpl = r.variants.some((v) => v.fidelity?.perplexity !== undefined);
  const anyTop1 = r.variants.some((v) => v.fidelity?.top1 !== undefined);
  const cols: Column[] = [
    { head: 'variant', cell: (v) => `<strong>${escapeHtml(v.label)}</strong>` },
    { head: 'target', cell: (v) => escapeHtml(v.target) },
    { head: 'quant', cell: (v) => escapeHtml(v.quant) },
    { head: 'size', cell: (v) => (unmeasured(v) ? DASH : escapeHtml(formatBytes(v.bytes))), num: true },
    { head: 'size ratio', cell: (v) => (unmeasured(v) ? DASH : fmtRatio(v.sizeRatio)), num: true },
    { head: 'nodes', cell: (v) => String(v.nodes), num: true },
    { head: 'p50 ms', cell: (v) => fmtMs(v.latency?.p50Ms), num: true },
    { head: 'p50 min–max', cell: (v) => (v.latency ? `${fmtMs(v.latency.p50MinMs)}–${fmtMs(v.latency.p50MaxMs)}` : DASH), num: true },
    { head: 'p90 ms', cell: (v) => fmtMs(v.latency?.p90Ms), num: true },
    { head: 'p99 ms', cell: (v) => fmtMs(v.latency?.p99Ms), num: true },
    { head: 'latency ratio', cell: (v) => fmtRatio(v.latencyRatio), num: true },
    { head: 'session ms', cell: (v) => fmtMs(v.sessionMs), num: true },
    { head: 'peak RSS', cell: (v) => (v.peakRssMiB === undefined ? DASH : `${v.peakRssMiB.toFixed(0)} MiB`), num: true },
    { head: 'rel err', cell: (v) => fmtSci(v.fidelity?.relErr), num: true },
    { head: 'max abs', cell: (v) => fmtSci(v.fidelity?.maxAbs), num: true },
    { head: 'cosine', cell: (v) => fmtFixed(v.fidelity?.cosine, 6), num: true },
  ];
  if (anyTop1) cols.push({ head: 'top-1', cell: (v) => fmtPercent(v.fidelity?.top1), num: true });
  if (anyPpl) {
    // The reference perplexity is one number per sweep as a rule: then it goes in the header once.
    const refs = new Set(r.variants.map((v) => v.fidelity?.referencePerplexity).filter((x) => x !== undefined));
    const oneRef = refs.size === 1 ? [...refs][0]! : undefined;
    cols.push({
      head: oneRef !== undefined ? `perplexity (ref ${fmtFixed(oneRef, 3)})` : 'perplexity (ref)',
      cell: (v) => {
        const f = v.fidelity;
        if (f?.perplexity === undefined) return DASH;
        return oneRef !== undefined || f.referencePerplexity === undefined ? fmtFixed(f.perplexity, 3) : `${fmtFixed(f.perplexity, 3)} (${fmtFixed(f.referencePerplexity, 3)})`;
      },
      num: true,
    });
  }
  cols.push({ head: 'error', cell: (v) => (v.error ? `<span class="error">${escapeHtml(v.error)}</span>` : '') });
  return cols;
}

function tableHtml(r: SweepResults): string {
  const cols = columns(r);
  const head = cols.map((c) => `<th${c.num ? ' class="num"' : ''}>${escapeHtml(c.head)}</th>`).join('');
  const rows = r.variants.map((v) => `<tr${v.error ? ' class="failed"' : ''}>${cols.map((c) => `<td${c.num ? ' class="num"' : ''}>${c.cell(v)}</td>`).join('')}</tr>`);
  return `<div class="table-wrap"><table><thead><tr>${head}</tr></thead><tbody>${rows.join('')}</tbody></table></div>`;
}

function machineLine(r: SweepResults): string {
  const m = r.machine;
  const s = r.settings;
  return `${m.cpus} × ${m.cpuModel}, ${m.memGiB} GiB; Node ${m.node}, onnxruntime ${m.onnxruntime}; ${s.rounds} rounds × ${s.runs} runs, ${s.threads} thread(s)`;
}

function sectionHtml(r: SweepResults, index: number): string {
  const plots = buildPlots(r, index);
  const baseline = r.variants[0];
  const parts = [
    `<section id="sweep-${index}">`,
    `<h2>${escapeHtml(r.model)} <small>${escapeHtml(r.date)} · ${escapeHtml(r.machine.cpuModel)}</small></h2>`,
    `<p class="meta">Swept <time>${escapeHtml(r.date)}</time> on ${escapeHtml(machineLine(r))}.</p>`,
    baseline ? `<p class="meta">Ratios are against the first variant, <strong>${escapeHtml(baseline.label)}</strong>. Lower is better on every plotted axis.</p>` : '<p>No variants.</p>',
    tableHtml(r),
    `<div class="plots">${plots.specs.map(plotSvg).join('')}</div>`,
    ...plots.specs.map(frontList),
  ];
  if (plots.specs.length && plots.specs.length === 2) {
    parts.push(`<p class="pareto" data-plot="all-${index}">Pareto-optimal on fidelity, latency and size together: ${plots.overall.map((l) => `<strong>${escapeHtml(l)}</strong>`).join(', ') || DASH}</p>`);
  }
  for (const s of plots.specs) if (s.note) parts.push(`<p class="note">${escapeHtml(s.note)}.</p>`);
  if (plots.notPlotted.length) parts.push(`<p class="note">Not on the fidelity plot: ${escapeHtml(plots.notPlotted.join('; '))}.</p>`);
  parts.push('</section>');
  return parts.join('\n');
}

const STYLE = `
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 24px; color: #222; background: #fafafa; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 small { font-weight: normal; color: #555; font-size: 14px; margin-left: 8px; }
h2 { font-size: 18px; margin: 28px 0 4px; border-top: 1px solid #ccc; padding-top: 16px; }
.meta { margin: 2px 0; color: #555; font-size: 14px; }
.table-wrap { overflow-x: auto; margin: 12px 0; }
table { border-collapse: collapse; font-size: 12px; background: #fff; }
th, td { border: 1px solid #ddd; padding: 3px 5px; vertical-align: top; }
th { background: #f0f0f0; font-weight: 600; }
td { white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.failed td { background: #fff4f4; }
.error { color: #8a1010; display: inline-block; min-width: 10em; max-width: 22em; white-space: normal; }
.plots { display: flex; flex-wrap: wrap; gap: 16px; }
svg { background: #fff; border: 1px solid #ddd; }
svg text { font-family: inherit; fill: #222; }
svg .tick { font-size: 11px; fill: #444; }
svg .axis { font-size: 13px; }
svg .title { font-size: 15px; font-weight: 600; }
svg .label { font-size: 12px; }
svg .legend { font-size: 12px; }
.pareto { font-size: 14px; margin: 6px 0; }
.note { font-size: 13px; color: #555; margin: 4px 0; }
`;

/** The whole page: one section per results file, in the order given. */
export function renderReportHtml(results: SweepResults[]): string {
  const title =
    results.length === 1 ? `peftc report: ${results[0]!.model} (${results[0]!.date})` : `peftc report: ${results.length} sweeps (${results.map((r) => r.model).join(', ')})`;
  return [
    '<!DOCTYPE html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>${escapeHtml(title)}</title>`,
    `<style>${STYLE}</style>`,
    '</head>',
    '<body>',
    `<h1>${escapeHtml(title)}</h1>`,
    ...results.map(sectionHtml),
    '</body>',
    '</html>',
    '',
  ].join('\n');
}

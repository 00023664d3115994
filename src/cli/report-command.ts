/**
 * `peftc report RESULTS.json... --html FILE`: renders sweep results (`peftc bench --sweep
 * --json`, schema in src/report/results.ts) into one self-contained HTML page, written
 * atomically. A file that is not sweep results is refused by name (exit 2), before anything is
 * written.
 */
import { readFileSync } from 'node:fs';
import type { Argv, CommandModule } from 'yargs';
import { writeFileAtomic } from '../atomic-write.js';
import { PeftcError } from '../errors.js';
import { renderReportHtml } from '../report/html.js';
import type { SweepResults } from '../report/results.js';

interface ReportArgs {
  results: string[];
  html: string;
}

function readJson(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new PeftcError(`${path}: cannot read the results: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new PeftcError(`${path}: not JSON: ${(err as Error).message}`);
  }
}

/**
 * Checks the shape the page needs (kind, model, variants with label and bytes) so that a wrong
 * file fails here with its name, not deep inside the renderer.
 */
export function readSweepResults(path: string): SweepResults {
  const data = readJson(path) as Partial<SweepResults> | null;
  if (data === null || typeof data !== 'object' || data.kind !== 'peftc-sweep') {
    const kind = data !== null && typeof data === 'object' && 'kind' in data ? ` (kind ${JSON.stringify(data.kind)})` : '';
    throw new PeftcError(`${path}: not peftc sweep results${kind}: expected kind "peftc-sweep", as \`peftc bench --sweep --json\` writes`);
  }
  if (typeof data.model !== 'string' || !Array.isArray(data.variants) || typeof data.machine !== 'object' || typeof data.settings !== 'object') {
    throw new PeftcError(`${path}: sweep results without model, machine, settings or variants`);
  }
  data.variants.forEach((v, i) => {
    if (typeof v?.label !== 'string' || typeof v.bytes !== 'number') throw new PeftcError(`${path}: variant ${i} has no label or byte size`);
  });
  return data as SweepResults;
}

export const reportCommand: CommandModule<object, ReportArgs> = {
  command: 'report <results..>',
  describe: 'Render sweep results (peftc bench --sweep --json) as one self-contained HTML page: trade-off table, fidelity/size vs latency plots, Pareto front',
  builder: (y: Argv<object>) =>
    y
      .positional('results', { type: 'string', array: true, demandOption: true, describe: 'results JSON files, one section each' })
      .option('html', { type: 'string', demandOption: true, describe: 'the HTML file to write' }) as unknown as Argv<ReportArgs>,
  handler: (args) => {
    // Read and check every input before writing: a bad file leaves no page behind.
    const results = args.results.map(readSweepResults);
    writeFileAtomic(args.html, renderReportHtml(results));
    process.stdout.write(`${args.html}\n`);
  },
};

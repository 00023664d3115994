/** Versions that records and reports carry, read from the installed package manifests. */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** peftc's own version (package.json at the repository root; dist/src/version.js is two levels down). */
export const PEFTC_VERSION: string = (() => {
  for (const p of ['../package.json', '../../package.json']) {
    try {
      const pkg = require(p) as { name?: string; version?: string };
      if (pkg.name === 'peftc' && pkg.version) return pkg.version;
    } catch {
      // try the next layout
    }
  }
  return 'unknown';
})();

/** The onnxruntime-node package version that runs models here. */
export const ORT_VERSION: string = (() => {
  try {
    return (require('onnxruntime-node/package.json') as { version: string }).version;
  } catch {
    return 'unknown';
  }
})();

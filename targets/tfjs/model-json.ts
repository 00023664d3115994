/**
 * Locating and reading a TF.js artifact's model.json, with no TF.js import: the CLI, bench and
 * report code ask "is this a TF.js artifact, what are its inputs" without loading tfjs-core
 * (tens of MB of JavaScript), which only running the artifact needs (runner.ts).
 */
import { readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { PeftcError } from '../../src/errors.js';
import { MODEL_JSON, type TfjsModelJson } from './artifact.js';

/** model.json inside a folder artifact, or the path itself when it names the JSON file. */
export function modelJsonPath(path: string): string {
  const p = resolve(path);
  try {
    return statSync(p).isDirectory() ? join(p, MODEL_JSON) : p;
  } catch {
    throw new PeftcError(`${path}: no such TF.js artifact (a folder holding model.json, or the model.json file)`);
  }
}

export function readModelJson(path: string): TfjsModelJson {
  const file = modelJsonPath(path);
  let json: TfjsModelJson;
  try {
    json = JSON.parse(readFileSync(file, 'utf8')) as TfjsModelJson;
  } catch (err) {
    throw new PeftcError(`${file}: cannot read a TF.js model.json: ${(err as Error).message}`);
  }
  if (json.format !== 'graph-model' || !json.modelTopology) throw new PeftcError(`${file}: not a TF.js graph model (format '${json.format}')`);
  return json;
}

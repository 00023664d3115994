/**
 * External data: resolving a tensor's `location` safely and describing where its bytes are.
 *
 * A location is relative to the model's folder. It is refused when it is absolute, when it
 * climbs out with `..`, or when it (or a folder on its way) is a symbolic link that leads out of
 * the model's folder: a model file must not be able to make peftc read arbitrary files.
 * Files are checked once per location (exists, is a regular file, is long enough); bytes are
 * read only when a pass or the encoder asks for them (Tensor.bytes / Tensor.chunks).
 */
import { realpathSync, statSync } from 'node:fs';
import { isAbsolute, join, normalize, relative, resolve, sep, win32 } from 'node:path';
import { PeftcError } from '../errors.js';
import type { ExternalRef, MetadataProps } from '../ir/tensor.js';

const KNOWN_KEYS = new Set(['location', 'offset', 'length', 'checksum', 'basepath']);

export class ExternalDataResolver {
  private readonly realBase: string;
  private readonly files = new Map<string, { path: string; size: number }>();

  constructor(
    readonly baseDir: string,
    private readonly source: string,
  ) {
    try {
      this.realBase = realpathSync(baseDir);
    } catch (err) {
      throw new PeftcError(`${source}: cannot resolve the model's folder ${baseDir}: ${(err as Error).message}`);
    }
  }

  resolve(entries: MetadataProps, expectedLength: number, where: string): ExternalRef {
    const get = (k: string) => entries.find(([key]) => key === k)?.[1];
    for (const [key] of entries) {
      if (!KNOWN_KEYS.has(key)) throw new PeftcError(`${where}: unknown external_data key '${key}'`);
    }
    const location = get('location');
    if (location === undefined || location === '') throw new PeftcError(`${where}: external data without a location`);
    const parseInt64 = (k: string): number | undefined => {
      const s = get(k);
      if (s === undefined) return undefined;
      if (!/^\d+$/.test(s) || !Number.isSafeInteger(Number(s))) throw new PeftcError(`${where}: external data ${k} '${s}' is not a valid byte count`);
      return Number(s);
    };
    const offset = parseInt64('offset') ?? 0;
    const length = parseInt64('length');
    const file = this.file(location, where);
    const need = length ?? expectedLength;
    if (length !== undefined && length !== expectedLength) {
      throw new PeftcError(`${where}: external data length ${length} does not match the tensor's ${expectedLength} bytes`);
    }
    if (offset + need > file.size) {
      throw new PeftcError(`${where}: external data file '${location}' has ${file.size} bytes, the tensor needs ${need} at offset ${offset}`);
    }
    return { path: file.path, location, offset, length, checksum: get('checksum') };
  }

  private file(location: string, where: string): { path: string; size: number } {
    const cached = this.files.get(location);
    if (cached) return cached;
    const path = resolveInside(this.baseDir, this.realBase, location, `${where}: external data location '${location}'`);
    let size: number;
    try {
      const st = statSync(path);
      if (!st.isFile()) throw new PeftcError(`${where}: external data location '${location}' is not a regular file`);
      size = st.size;
    } catch (err) {
      if (err instanceof PeftcError) throw err;
      throw new PeftcError(`${where}: external data file '${location}' (${path}) cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    const entry = { path, size };
    this.files.set(location, entry);
    return entry;
  }
}

/**
 * Resolves `location` against `baseDir` and proves the result stays inside it, following
 * symbolic links. Returns the real path. Used for reading and for choosing where to write.
 */
export function resolveInside(baseDir: string, realBase: string, location: string, what: string): string {
  if (location.includes('\0')) throw new PeftcError(`${what} contains a NUL byte`);
  if (isAbsolute(location) || win32.isAbsolute(location)) throw new PeftcError(`${what} is an absolute path; it must be relative to the model's folder`);
  const parts = location.split(/[\\/]+/);
  if (parts.includes('..')) throw new PeftcError(`${what} contains '..'; it must stay inside the model's folder`);
  const joined = resolve(baseDir, normalize(location));
  let real: string;
  try {
    real = realpathSync(joined);
  } catch {
    // Not there (yet): the nearest existing ancestor must still be inside the folder.
    real = join(realpathSync(nearestExisting(joined)), relative(nearestExisting(joined), joined));
  }
  const rel = relative(realBase, real);
  if (rel === '' || rel.startsWith('..') || isAbsolute(rel) || rel.split(sep)[0] === '..') {
    throw new PeftcError(`${what} leads outside the model's folder (to ${real}), through a symbolic link`);
  }
  return real;
}

function nearestExisting(p: string): string {
  let cur = p;
  for (;;) {
    try {
      statSync(cur);
      return cur;
    } catch {
      const up = resolve(cur, '..');
      if (up === cur) return cur;
      cur = up;
    }
  }
}

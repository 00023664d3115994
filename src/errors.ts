/**
 * The project's error type. Every failure caused by bad input (a malformed model, an unsafe
 * external-data path, a wrong flag) is a PeftcError whose message names the file, node or tensor
 * and what is wrong; the CLI prints the message and exits with `exitCode` (2 = bad input).
 */
export class PeftcError extends Error {
  override readonly name = 'PeftcError';
  constructor(
    message: string,
    readonly exitCode: 1 | 2 = 2,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Wraps any thrown value into a PeftcError with a prefix that says where it happened. */
export function wrapError(prefix: string, err: unknown): PeftcError {
  if (err instanceof PeftcError) {
    return err.message.startsWith(prefix) ? err : new PeftcError(`${prefix}: ${err.message}`, err.exitCode, { cause: err });
  }
  const detail = err instanceof Error ? err.message : String(err);
  return new PeftcError(`${prefix}: ${detail}`, 2, { cause: err });
}

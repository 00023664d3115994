/**
 * Progress on long work (calibration, big models, sweeps, golden checks): one line on stderr,
 * redrawn in place, only when stderr is a terminal and the caller is not printing JSON. Off a
 * TTY (CI logs, pipes) nothing is drawn, so logs stay clean.
 */
export interface Progress {
  /** Sets the count done so far, with an optional note (what is being worked on). */
  update(done: number, note?: string): void;
  /** Clears the line. */
  done(): void;
}

const silent: Progress = { update() {}, done() {} };

export function progress(label: string, total: number, options: { enabled?: boolean; stream?: NodeJS.WriteStream } = {}): Progress {
  const stream = options.stream ?? process.stderr;
  if (options.enabled === false || !stream.isTTY) return silent;
  const t0 = performance.now();
  let last = 0;
  const draw = (done: number, note: string) => {
    const width = 24;
    const filled = total > 0 ? Math.round((width * Math.min(done, total)) / total) : 0;
    const secs = ((performance.now() - t0) / 1000).toFixed(0);
    const line = `${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} ${secs}s ${note}`;
    const cols = stream.columns ?? 100;
    stream.write(`\r${line.slice(0, cols - 1).padEnd(Math.min(cols - 1, last))}`);
    last = Math.min(cols - 1, line.length);
  };
  return {
    update(done, note = '') {
      draw(done, note);
    },
    done() {
      stream.write(`\r${' '.repeat(last)}\r`);
    },
  };
}

/** stdout carries results only (one JSON object with --json); everything else goes to stderr. */
export function printJson(obj: unknown): void {
  process.stdout.write(`${JSON.stringify(obj, null, 2)}\n`);
}

/**
 * Notes said before the work starts (`backend: …`, `model: … (default)`) wait for the next log line, or for the
 * command's end: a command refused before any work prints its one error line alone.
 */
const pending: string[] = [];

/** Says `message` with the next log line (or at the end of a command that succeeds), never before an error. */
export function logSoon(message: string): void {
  pending.push(message);
}

/** Prints the notes held back by `logSoon` (called by every log line, and when a command succeeds). */
export function flushSoon(): void {
  for (const m of pending.splice(0)) process.stderr.write(`${m}\n`);
}

/** Drops the notes held back by `logSoon` (a command that failed before its work). */
export function dropSoon(): void {
  pending.length = 0;
}

export function log(message: string): void {
  flushSoon();
  process.stderr.write(`${message}\n`);
}

export function formatCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}K`;
  return String(n);
}

export function formatBytes(n: number): string {
  if (n >= 1024 ** 3) return `${(n / 1024 ** 3).toFixed(2)} GiB`;
  if (n >= 1024 ** 2) return `${(n / 1024 ** 2).toFixed(2)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${n} B`;
}

/** A plain text table with right-aligned numeric columns. */
export function table(header: string[], rows: (string | number)[][]): string {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, c) => Math.max(...cells.map((r) => (r[c] ?? '').length)));
  const numeric = header.map((_, c) => rows.every((r) => typeof r[c] === 'number'));
  return cells
    .map((r) =>
      r
        .map((v, c) => (numeric[c] ? v.padStart(widths[c]!) : v.padEnd(widths[c]!)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

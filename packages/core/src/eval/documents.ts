import { LineageError } from '../util/errors.js';

/**
 * Splits text into documents on lines equal to `separator` (or, if the separator never stands on a
 * line of its own, on every occurrence), trims each, and drops empty ones.
 */
export function splitDocuments(text: string, separator: string): string[] {
  if (!separator) throw new LineageError('document separator is empty');
  const lines = text.split(/\r?\n/);
  const onOwnLine = lines.some((l) => l.trim() === separator);
  const parts: string[] = [];
  if (onOwnLine) {
    let cur: string[] = [];
    for (const l of lines) {
      if (l.trim() === separator) {
        parts.push(cur.join('\n'));
        cur = [];
      } else cur.push(l);
    }
    parts.push(cur.join('\n'));
  } else parts.push(...text.split(separator));
  return parts.map((p) => p.trim()).filter((p) => p.length > 0);
}

/**
 * `--since` values (logs, events): a duration back from now (`10m`, `1h30m`, `45s`, `500ms`,
 * Go's units) or a point in time (RFC 3339 / ISO 8601 `2024-05-01T10:00:00Z`, a date
 * `2024-05-01`, or Unix seconds `1714557600[.123]`), as Unix milliseconds.
 */
import { invalid } from '../../src/errors.js';

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** `1h30m` -> ms; undefined when `v` is not a duration. */
export function parseGoDuration(v: string): number | undefined {
  if (!/^(\d+(\.\d+)?(ms|s|m|h))+$/.test(v)) return undefined;
  let ms = 0;
  for (const m of v.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) ms += Number(m[1]) * (UNIT_MS[m[2] as string] ?? 0);
  return ms;
}

/** The instant `v` names (see the module doc), in Unix ms; `flag` names the flag in errors. */
export function parseSince(v: string, flag: string, now = Date.now()): number {
  const d = parseGoDuration(v);
  if (d !== undefined) return now - d;
  if (/^\d+(\.\d+)?$/.test(v)) return Math.round(Number(v) * 1000);
  if (/^\d{4}-\d{2}-\d{2}([T ][\d:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(v)) {
    const t = Date.parse(v.replace(' ', 'T'));
    if (!Number.isNaN(t)) return t;
  }
  throw invalid(`${flag} '${v}' is neither a duration (10m, 1h30m, 45s) nor a time (2024-05-01T10:00:00Z, 2024-05-01, Unix seconds)`);
}

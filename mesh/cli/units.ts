/**
 * Docker's value syntaxes for CLI flags: Go durations (`10s`, `1m30s`, `500ms`), byte sizes
 * (`512m`, `1g`, `1024`), CPU counts (`0.5`). Each error is one sentence naming the flag.
 */
import { invalid } from '../../src/errors.js';

const DURATION_UNITS: Record<string, number> = { ns: 1e-6, us: 1e-3, 'µs': 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** A Go duration (`1h2m3.5s`, `250ms`, `0`) in whole milliseconds. */
export function parseDuration(v: string, flag: string): number {
  const bad = (): Error => invalid(`${flag} '${v}' is not a duration: use a number with a unit, like 10s, 1m30s or 500ms`);
  if (v === '0') return 0;
  if (!/^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/.test(v)) throw bad();
  let total = 0;
  for (const m of v.matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g)) total += Number(m[1]) * (DURATION_UNITS[m[2] ?? ''] ?? NaN);
  if (!Number.isFinite(total)) throw bad();
  return Math.round(total);
}

const BYTE_UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/** Docker's RAM size: a number of bytes with an optional unit b, k, m, g, t (powers of 1024). */
export function parseBytes(v: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([bkmgt]?)b?$/i.exec(v);
  if (!m) throw invalid(`${flag} '${v}' is not a size: use bytes or a number with a unit, like 512m or 1g`);
  const n = Math.floor(Number(m[1]) * (BYTE_UNITS[(m[2] ?? '').toLowerCase()] ?? NaN));
  if (!Number.isSafeInteger(n)) throw invalid(`${flag} '${v}' is too large`);
  return n;
}

/** CPUs as a decimal (`0.5`, `2`) in nano-CPUs (Docker's NanoCPUs). */
export function parseCpus(v: string, flag: string): number {
  if (!/^\d+(\.\d{1,9})?$/.test(v)) throw invalid(`${flag} '${v}' is not a number of CPUs, like 0.5 or 2`);
  return Math.round(Number(v) * 1e9);
}

/** A whole number flag. */
export function parseCount(v: string, flag: string): number {
  if (!/^\d+$/.test(v)) throw invalid(`${flag} must be a whole number, got '${v}'`);
  return Number(v);
}

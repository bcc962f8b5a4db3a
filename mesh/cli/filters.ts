/**
 * `--filter key=value` with Docker's semantics: the same key given several times matches any of
 * its values (OR), different keys must all match (AND). Each list command declares its keys and
 * how each matches a row; an unknown key is refused with the list of known ones.
 */
import { invalid } from '../../src/errors.js';

/** How one filter key tests one object against one value. */
export type FilterMatcher<T> = (obj: T, value: string) => boolean;

/** The filter keys a command accepts, with their matchers (and the values some keys allow). */
export interface FilterSpec<T> {
  keys: Record<string, FilterMatcher<T>>;
  /** Keys whose values are a fixed list: anything else is refused. */
  choices?: Record<string, readonly string[]>;
}

/** Parses `--filter` values into key -> values; refuses unknown keys and malformed pairs. */
export function parseFilters<T>(list: readonly string[], spec: FilterSpec<T>, command: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  const known = Object.keys(spec.keys);
  for (const f of list) {
    const eq = f.indexOf('=');
    if (eq <= 0) throw invalid(`--filter '${f}' must be KEY=VALUE (${command} filters: ${known.join(', ')})`);
    const key = f.slice(0, eq);
    const value = f.slice(eq + 1);
    if (!spec.keys[key]) throw invalid(`--filter '${key}' is not a filter of ${command} (known: ${known.join(', ')})`);
    const allowed = spec.choices?.[key];
    if (allowed && !allowed.includes(value)) throw invalid(`--filter ${key}='${value}' must be one of ${allowed.join(', ')}`);
    out.set(key, [...(out.get(key) ?? []), value]);
  }
  return out;
}

/** Keeps the objects matching every key (any of its values). */
export function applyFilters<T>(objs: readonly T[], filters: ReadonlyMap<string, readonly string[]>, spec: FilterSpec<T>): T[] {
  if (filters.size === 0) return [...objs];
  return objs.filter((o) => [...filters].every(([k, values]) => values.some((v) => (spec.keys[k] as FilterMatcher<T>)(o, v))));
}

/** `label=key` (has the label) or `label=key=value` (has it with that value). */
export function matchLabel(labels: Readonly<Record<string, string>> | undefined, value: string): boolean {
  const eq = value.indexOf('=');
  const key = eq < 0 ? value : value.slice(0, eq);
  if (!labels || !(key in labels)) return false;
  return eq < 0 || labels[key] === value.slice(eq + 1);
}

/** Docker's id filter: the full id or a prefix of it. */
export const matchIdPrefix = (id: string, value: string): boolean => value !== '' && id.startsWith(value);

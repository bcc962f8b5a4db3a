/**
 * Argument parsing for the CLI, Docker-style: `--flag value`, `--flag=value`, `-f value`,
 * repeatable flags, boolean flags, and everything after `--` taken verbatim (the task command).
 * Unknown flags are errors, so a typo never silently changes what a command does.
 *
 * Errors in the shape of a command line (unknown flag, missing value, flag twice, wrong number
 * of arguments) are {@link usageError}s: the CLI exits 2 for them, 1 for everything else.
 */
import { invalid, ShoalError } from '../../src/errors.js';

export interface FlagSpec {
  /** Long name without dashes, e.g. "replicas". */
  name: string;
  short?: string;
  /** Takes no value. */
  bool?: boolean;
  /** May be given several times (values collected in order). */
  repeat?: boolean;
  /** One line for `--help`. */
  help?: string;
  /** What the value looks like in `--help` (`N`, `CIDR`); default from the name. */
  value?: string;
  /** The values it accepts, when they are a fixed list (help and shell completion). */
  choices?: readonly string[];
}

/** The code of usage errors; main.ts exits 2 for them. */
export const USAGE_CODE = 'SHOAL_ERR_USAGE';

/** A command line that does not fit the command's grammar (exit status 2). */
export const usageError = (message: string): ShoalError => new ShoalError('InvalidParameter', USAGE_CODE, message);

export const isUsageError = (e: unknown): boolean => e instanceof ShoalError && e.code === USAGE_CODE;

export interface Parsed {
  flags: Map<string, string[]>;
  positional: string[];
  /** Everything after `--`. */
  rest: string[];
}

/**
 * Parses `argv` against `specs`. With `stopAtArgument`, the first argument that is not a flag
 * ends flag parsing and everything from it on is positional, verbatim (Docker's
 * `service create IMAGE [COMMAND] [ARG...]`: the command's own flags are not Shoal's).
 */
export function parseArgs(argv: string[], specs: FlagSpec[], opts: { stopAtArgument?: boolean } = {}): Parsed {
  const byLong = new Map(specs.map((s) => [s.name, s]));
  const byShort = new Map(specs.filter((s) => s.short).map((s) => [s.short as string, s]));
  const flags = new Map<string, string[]>();
  const positional: string[] = [];
  let rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === '--') { rest = argv.slice(i + 1); break; }
    let spec: FlagSpec | undefined;
    let value: string | undefined;
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = eq > 0 ? a.slice(2, eq) : a.slice(2);
      spec = byLong.get(name);
      if (!spec) throw usageError(`unknown flag --${name}`);
      if (eq > 0) value = a.slice(eq + 1);
    } else if (a.startsWith('-') && a.length > 1 && !/^-\d/.test(a)) {
      spec = byShort.get(a.slice(1, 2));
      if (!spec) throw usageError(`unknown flag ${a}`);
      if (a.length > 2) value = a[2] === '=' ? a.slice(3) : a.slice(2);
    } else {
      if (opts.stopAtArgument) { positional.push(...argv.slice(i)); break; }
      positional.push(a);
      continue;
    }
    if (spec.bool) {
      if (value !== undefined && !['true', 'false'].includes(value)) throw usageError(`flag --${spec.name} takes no value`);
      value = value ?? 'true';
    } else if (value === undefined) {
      const next = argv[i + 1];
      if (next === undefined || next === '--') throw usageError(`flag --${spec.name} needs a value`);
      value = next;
      i++;
    }
    const list = flags.get(spec.name) ?? [];
    if (list.length > 0 && !spec.repeat) throw usageError(`flag --${spec.name} given twice`);
    list.push(value);
    flags.set(spec.name, list);
  }
  return { flags, positional, rest };
}

export const one = (p: Parsed, name: string): string | undefined => p.flags.get(name)?.[0];
export const all = (p: Parsed, name: string): string[] => p.flags.get(name) ?? [];
export const isSet = (p: Parsed, name: string): boolean => one(p, name) === 'true';

/** `k=v` pairs into a map (`-o`, `--label`, `-e`). */
export function keyValues(list: string[], what: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of list) {
    const eq = kv.indexOf('=');
    if (eq <= 0) throw invalid(`${what} '${kv}' must be KEY=VALUE`);
    out[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  return out;
}

function portNumber(s: string | undefined, what: string, allowZero = false): number {
  const n = Number(s);
  if (s === undefined || s === '' || !/^\d+$/.test(s) || n > 65535 || (!allowZero && n < 1)) {
    throw invalid(`${what} '${s ?? ''}' is not a port number (1-65535)`);
  }
  return n;
}

/**
 * `-p` forms: `8080:80`, `8080:80/udp`, `80` (target only: a port is assigned from
 * 30000-32767), and the long form `mode=host,published=8081,target=80,protocol=udp,name=http`.
 */
export function parsePublish(s: string): Record<string, string | number> {
  if (s.includes('=')) {
    const kv = keyValues(s.split(','), 'port option');
    const out: Record<string, string | number> = {};
    for (const [k, v] of Object.entries(kv)) {
      if (k === 'published' || k === 'target') out[k] = portNumber(v, `-p ${k}`, k === 'published');
      else if (k === 'mode' || k === 'protocol' || k === 'name') out[k] = v;
      else throw invalid(`-p option '${k}' is unknown (use mode, published, target, protocol, name)`);
    }
    return out;
  }
  const m = /^(?:(\d+):)?(\d+)(?:\/(tcp|udp))?$/.exec(s);
  if (!m) throw invalid(`-p '${s}' is not PUBLISHED:TARGET[/PROTOCOL] or mode=...,published=...,target=...`);
  const out: Record<string, string | number> = { target: portNumber(m[2], '-p target') };
  if (m[1] !== undefined) out['published'] = portNumber(m[1], '-p published');
  if (m[3]) out['protocol'] = m[3];
  return out;
}

/**
 * What `ls`, `ps` and `inspect` print, the same way everywhere:
 *
 * - no `--format` (or `--format table`): the command's default table;
 * - `--format json`: the API objects as one JSON array (unchanged since the first CLI);
 * - `--format 'table {{.Name}}\t{{.Image}}'`: a table with a header row from the fields;
 * - `--format '{{.Name}}'` (any template): one line per row;
 * - `-q` / `--quiet` (lists): ids only, one per line; with `--format` it is a usage error.
 *
 * Rows carry Docker's field names (`ID`, `Name`, `Replicas`, ...); `{{json .}}` prints a row.
 */
import { invalid } from '../../src/errors.js';
import { isSet, one, usageError, type FlagSpec, type Parsed } from './args.js';
import { alignColumns, headerName, Template } from './template.js';

/** The `--format` flag of commands that print objects. */
export const FORMAT_FLAG: FlagSpec = {
  name: 'format', value: 'FORMAT', choices: ['json', 'table'],
  help: "json, table, or a Go template: '{{.Name}}', 'table {{.ID}}\\t{{.Name}}', '{{json .}}'",
};
/** The `-q` flag of lists. */
export const QUIET_FLAG: FlagSpec = { name: 'quiet', short: 'q', bool: true, help: 'print ids only' };
/** The `--filter` flag of lists. */
export const FILTER_FLAG: FlagSpec = { name: 'filter', short: 'f', repeat: true, value: 'KEY=VALUE', help: 'keep matching rows (same key twice = either, different keys = both)' };

/** How a list command shows its objects. */
export interface ListView<T> {
  /** Row field names (Docker's), the ones `--format` templates may use. */
  fields: readonly string[];
  row: (obj: T) => Record<string, unknown>;
  /** The default table, as a `table ...` template. */
  table: string;
  /** Column headers that are not simply the field in capitals (`{ID: 'NETWORK ID'}`). */
  headers?: Record<string, string>;
  id: (obj: T) => string;
}

const json = (v: unknown): string => JSON.stringify(v, null, 2) + '\n';

/** The parsed `--format`: json, the default table, or a template. */
export type Format = { kind: 'json' } | { kind: 'default' } | { kind: 'template'; t: Template };

export function formatOf(p: Parsed): Format {
  const f = one(p, 'format');
  if (f === undefined || f === '' || f === 'table') return { kind: 'default' };
  if (f === 'json') return { kind: 'json' };
  if (!f.includes('{{')) throw invalid(`--format must be json, table, or a template such as '{{.Name}}' (got '${f}')`);
  return { kind: 'template', t: new Template(f) };
}

function renderRows(t: Template, rows: readonly Record<string, unknown>[], headers: Record<string, string> = {}): string {
  const lines = rows.map((r) => t.render(r));
  if (!t.isTable) return lines.map((l) => `${l}\n`).join('');
  let header = t.header();
  for (const [field, h] of Object.entries(headers)) header = header.replace(new RegExp(`(^|\\t)${headerName(field)}(?=\\t|$)`), `$1${h}`);
  return alignColumns([header, ...lines]);
}

/**
 * Checks `--format`, `-q` and the template's fields before anything is asked of the manager,
 * so a typo fails at once and never after a slow call (or a change).
 */
export function checkOutput(p: Parsed, fields?: readonly string[]): void {
  const f = formatOf(p);
  if (isSet(p, 'quiet') && one(p, 'format') !== undefined) throw usageError('--quiet and --format cannot be used together');
  if (f.kind === 'template' && fields) f.t.checkFields(fields);
}

/** Prints a list the way `p`'s `--format` / `-q` ask. `raw` are the API objects (for json). */
export function renderList<T>(p: Parsed, objs: readonly T[], view: ListView<T>): string {
  const f = formatOf(p);
  if (isSet(p, 'quiet')) {
    if (one(p, 'format') !== undefined) throw usageError('--quiet and --format cannot be used together');
    return objs.map((o) => `${view.id(o)}\n`).join('');
  }
  if (f.kind === 'json') return json(objs);
  const t = f.kind === 'template' ? f.t : new Template(view.table);
  t.checkFields(view.fields);
  return renderRows(t, objs.map(view.row), view.headers);
}

/**
 * Prints objects for `inspect` (and the object a create/update returns): JSON by default,
 * or each object through a template. `fields` are the object's documented top-level fields.
 */
export function renderObjects(p: Parsed, objs: readonly object[], fields: readonly string[], single = false): string {
  const f = formatOf(p);
  if (f.kind !== 'template') return json(single ? objs[0] : objs);
  const known = new Set([...fields, ...objs.flatMap((o) => Object.keys(o))]);
  f.t.checkFields([...known]);
  return renderRows(f.t, objs as Array<Record<string, unknown>>);
}

/** Top-level fields of each kind, for `inspect --format` checks (optional ones included). */
export const OBJECT_FIELDS = {
  network: ['id', 'name', 'driver', 'scope', 'ipam', 'vni', 'ingress', 'internal', 'attachable', 'options', 'labels', 'createdAt'],
  service: ['id', 'version', 'spec', 'vips', 'createdAt', 'updatedAt'],
  task: ['id', 'serviceId', 'serviceName', 'slot', 'nodeId', 'desiredState', 'status', 'addresses', 'serviceVersion', 'specHash', 'addressesReleased', 'createdAt'],
  node: ['id', 'name', 'address', 'state', 'availability', 'lease', 'ingress', 'boundPorts', 'labels', 'createdAt', 'updatedAt', 'role'],
} as const;

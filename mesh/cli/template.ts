/**
 * `--format` templates: the subset of Go's text/template Docker users write.
 *
 *   {{.Name}}  {{.Spec.Name}}  {{json .}}  {{json .Spec.Labels}}  {{upper .Name}}  {{.Name | upper}}
 *   {{index .Labels "tier"}}  {{join .Aliases ","}}  {{len .Ports}}  {{if .Healthy}}ok{{else}}-{{end}}
 *   {{range .Ports}}{{.Published}} {{end}}  table {{.ID}}\t{{.Name}}
 *
 * Field names match object keys ignoring case (`{{.ID}}` reads `id`, `{{.Spec.Name}}` reads
 * `spec.name`). Top-level fields are checked against the row's declared fields before any row
 * is printed, so a typo fails even on an empty list; a missing nested field prints nothing (as
 * an absent optional field would). `\t` and `\n` in the format are tab and newline (Docker's
 * rule); a `table ` prefix adds a header row and aligns the tab-separated columns.
 * Not supported (refused with a sentence): variables, `with`, `define`/`template`, `printf`.
 */
import { invalid } from '../../src/errors.js';

type Value = unknown;

interface FieldArg { kind: 'field'; path: string[] }
interface LitArg { kind: 'lit'; value: string | number }
type Arg = FieldArg | LitArg;
/** One command of a pipeline: a function call or a lone operand. */
interface Cmd { fn?: string; args: Arg[] }
type Pipeline = Cmd[];

type Node =
  | { kind: 'text'; text: string }
  | { kind: 'action'; pipe: Pipeline }
  | { kind: 'if'; pipe: Pipeline; then: Node[]; else: Node[] }
  | { kind: 'range'; pipe: Pipeline; body: Node[]; else: Node[] };

const FUNCS: Record<string, { args: number | 'any'; fn: (...a: Value[]) => Value }> = {
  json: { args: 1, fn: (v) => JSON.stringify(v ?? null) },
  upper: { args: 1, fn: (v) => text(v).toUpperCase() },
  lower: { args: 1, fn: (v) => text(v).toLowerCase() },
  title: { args: 1, fn: (v) => text(v).replace(/\b\w/g, (c) => c.toUpperCase()) },
  len: { args: 1, fn: (v) => (Array.isArray(v) ? v.length : v && typeof v === 'object' ? Object.keys(v).length : text(v).length) },
  join: { args: 2, fn: (v, sep) => (Array.isArray(v) ? v.map(text).join(text(sep)) : text(v)) },
  index: { args: 2, fn: (v, k) => (v && typeof v === 'object' ? (v as Record<string, Value>)[text(k)] : undefined) },
  truncate: { args: 2, fn: (v, n) => text(v).slice(0, Number(n)) },
};

/** How a value prints: strings as they are, objects as JSON, absent as nothing. */
function text(v: Value): string {
  if (v === undefined || v === null) return '';
  if (typeof v === 'string') return v;
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

const truthy = (v: Value): boolean =>
  !(v === undefined || v === null || v === false || v === 0 || v === '' || (Array.isArray(v) && v.length === 0) || (typeof v === 'object' && Object.keys(v as object).length === 0));

const bad = (format: string, why: string): Error => invalid(`--format '${format}': ${why}`);

/** A parsed `--format` template, rendered once per row (or once for a single object). */
export class Template {
  readonly isTable: boolean;
  private readonly nodes: Node[];

  constructor(readonly source: string) {
    let body = source;
    this.isTable = /^table(\s|$)/.test(source);
    if (this.isTable) body = source.slice(5).trim();
    body = body.replace(/\\t/g, '\t').replace(/\\n/g, '\n');
    this.nodes = parse(body, source);
  }

  /** Refuses top-level fields that `fields` (the row's field names) does not have. */
  checkFields(fields: readonly string[]): void {
    const known = new Map(fields.map((f) => [f.toLowerCase(), f]));
    for (const name of topFields(this.nodes)) {
      if (!known.has(name.toLowerCase())) throw bad(this.source, `there is no field '${name}' (fields: ${fields.join(', ')})`);
    }
  }

  /** The text for one row (without a trailing newline). */
  render(row: Value): string {
    return exec(this.nodes, row, this.source);
  }

  /** The header line of a `table` template: each field's name in capitals. */
  header(): string {
    return headerOf(this.nodes);
  }
}

function parse(body: string, source: string): Node[] {
  const tokens: Array<{ text: string } | { action: string }> = [];
  let i = 0;
  while (i < body.length) {
    const open = body.indexOf('{{', i);
    if (open < 0) { tokens.push({ text: body.slice(i) }); break; }
    let textPart = body.slice(i, open);
    let start = open + 2;
    if (body[start] === '-' && body[start + 1] === ' ') { textPart = textPart.trimEnd(); start++; }
    const close = body.indexOf('}}', start);
    if (close < 0) throw bad(source, "an action '{{' is not closed with '}}'");
    let inner = body.slice(start, close);
    i = close + 2;
    if (inner.endsWith(' -')) {
      inner = inner.slice(0, -2);
      while (i < body.length && /\s/.test(body[i] as string)) i++;
    }
    if (textPart) tokens.push({ text: textPart });
    tokens.push({ action: inner.trim() });
  }
  let pos = 0;
  const block = (until: readonly string[]): { nodes: Node[]; end: string } => {
    const nodes: Node[] = [];
    while (pos < tokens.length) {
      const t = tokens[pos++] as { text: string } | { action: string };
      if ('text' in t) { nodes.push({ kind: 'text', text: t.text }); continue; }
      const word = t.action.split(/\s+/)[0] ?? '';
      if (until.includes(word)) return { nodes, end: word };
      if (word === 'end' || word === 'else') throw bad(source, `unexpected {{${word}}}`);
      if (word === 'if' || word === 'range') {
        const pipe = pipeline(t.action.slice(word.length).trim(), source);
        const first = block(['else', 'end']);
        const second = first.end === 'else' ? block(['end']) : { nodes: [], end: 'end' };
        if (second.end !== 'end') throw bad(source, `{{${word}}} is not closed with {{end}}`);
        nodes.push(word === 'if' ? { kind: 'if', pipe, then: first.nodes, else: second.nodes } : { kind: 'range', pipe, body: first.nodes, else: second.nodes });
        continue;
      }
      if (['with', 'define', 'template', 'block', 'printf'].includes(word) || t.action.startsWith('$') || t.action.includes(':=')) {
        throw bad(source, `'${word}' is not supported (fields, if, range and the functions ${Object.keys(FUNCS).join(', ')} are)`);
      }
      nodes.push({ kind: 'action', pipe: pipeline(t.action, source) });
    }
    if (until.length) throw bad(source, `a block is not closed with {{end}}`);
    return { nodes, end: '' };
  };
  return block([]).nodes;
}

function pipeline(s: string, source: string): Pipeline {
  if (!s) throw bad(source, 'an empty action {{}}');
  return splitPipes(s).map((part) => {
    const words = tokenize(part, source);
    const head = words[0];
    if (head === undefined) throw bad(source, `an empty command in '${s}'`);
    if (typeof head === 'string' && !head.startsWith('.') && !head.startsWith('"') && !/^-?\d+$/.test(head)) {
      if (!FUNCS[head]) throw bad(source, `unknown function '${head}' (functions: ${Object.keys(FUNCS).join(', ')})`);
      return { fn: head, args: words.slice(1).map((w) => arg(w, source)) };
    }
    if (words.length > 1) throw bad(source, `'${part}' is not a field or a function call`);
    return { args: [arg(head, source)] };
  });
}

function splitPipes(s: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (const c of s) {
    if (c === '"') quoted = !quoted;
    if (c === '|' && !quoted) { out.push(cur.trim()); cur = ''; continue; }
    cur += c;
  }
  out.push(cur.trim());
  return out;
}

function tokenize(s: string, source: string): Array<string | number> {
  const out: Array<string | number> = [];
  const re = /\s*("(?:[^"\\]|\\.)*"|[^\s"]+)/gy;
  let m: RegExpExecArray | null;
  while ((m = re.exec(s)) !== null) out.push(m[1] as string);
  if (out.join('').length === 0 && s.trim()) throw bad(source, `cannot read '${s}'`);
  return out;
}

function arg(w: string | number, source: string): Arg {
  const s = String(w);
  if (s.startsWith('"')) return { kind: 'lit', value: JSON.parse(s) as string };
  if (/^-?\d+$/.test(s)) return { kind: 'lit', value: Number(s) };
  if (s === '.') return { kind: 'field', path: [] };
  if (/^(\.[A-Za-z_][A-Za-z0-9_]*)+$/.test(s)) return { kind: 'field', path: s.slice(1).split('.') };
  throw bad(source, `'${s}' is not a field (.Name), a string ("x") or a number`);
}

/** Reads `path` under `v`, matching keys without regard to case. */
function lookup(v: Value, path: readonly string[]): Value {
  let cur = v;
  for (const name of path) {
    if (cur === null || typeof cur !== 'object' || Array.isArray(cur)) return undefined;
    const o = cur as Record<string, Value>;
    if (name in o) { cur = o[name]; continue; }
    const lower = name.toLowerCase();
    const key = Object.keys(o).find((k) => k.toLowerCase() === lower);
    cur = key === undefined ? undefined : o[key];
  }
  return cur;
}

function evalPipe(pipe: Pipeline, dot: Value, source: string): Value {
  let prev: Value;
  pipe.forEach((c, i) => {
    const args = c.args.map((a) => (a.kind === 'lit' ? a.value : lookup(dot, a.path)));
    if (i > 0) args.push(prev);
    if (!c.fn) { prev = args[0]; return; }
    const f = FUNCS[c.fn] as (typeof FUNCS)[string];
    if (f.args !== 'any' && args.length !== f.args) throw bad(source, `${c.fn} takes ${f.args} argument${f.args === 1 ? '' : 's'}, got ${args.length}`);
    prev = f.fn(...args);
  });
  return prev;
}

function exec(nodes: readonly Node[], dot: Value, source: string): string {
  let out = '';
  for (const n of nodes) {
    if (n.kind === 'text') out += n.text;
    else if (n.kind === 'action') out += text(evalPipe(n.pipe, dot, source));
    else if (n.kind === 'if') out += exec(truthy(evalPipe(n.pipe, dot, source)) ? n.then : n.else, dot, source);
    else {
      const v = evalPipe(n.pipe, dot, source);
      const items = Array.isArray(v) ? v : v && typeof v === 'object' ? Object.values(v) : [];
      out += items.length ? items.map((it) => exec(n.body, it, source)).join('') : exec(n.else, dot, source);
    }
  }
  return out;
}

/** Fields read from the row itself (outside `range`, where the dot is an element). */
function topFields(nodes: readonly Node[]): string[] {
  const out: string[] = [];
  const fromPipe = (p: Pipeline): void => { for (const c of p) for (const a of c.args) if (a.kind === 'field' && a.path[0]) out.push(a.path[0]); };
  for (const n of nodes) {
    if (n.kind === 'action') fromPipe(n.pipe);
    else if (n.kind === 'if') { fromPipe(n.pipe); out.push(...topFields(n.then), ...topFields(n.else)); }
    else if (n.kind === 'range') { fromPipe(n.pipe); out.push(...topFields(n.else)); }
  }
  return out;
}

/** `CurrentState` -> `CURRENT STATE`, `ID` -> `ID`. */
export function headerName(field: string): string {
  return field.replace(/([a-z0-9])([A-Z])/g, '$1 $2').toUpperCase();
}

function headerOf(nodes: readonly Node[]): string {
  let out = '';
  for (const n of nodes) {
    if (n.kind === 'text') out += n.text;
    else if (n.kind === 'action') {
      const field = n.pipe.flatMap((c) => c.args).find((a): a is FieldArg => a.kind === 'field');
      const last = field?.path[field.path.length - 1];
      out += last ? headerName(last) : n.pipe[0]?.fn?.toUpperCase() ?? '';
    }
  }
  return out;
}

/** Aligns tab-separated columns (Docker's tabwriter look: 3 spaces between columns). */
export function alignColumns(lines: readonly string[]): string {
  const rows = lines.map((l) => l.split('\t'));
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => { if (i < r.length - 1) widths[i] = Math.max(widths[i] ?? 0, c.length); });
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd((widths[i] ?? 0) + 3))).join('').trimEnd()).join('\n') + (rows.length ? '\n' : '');
}

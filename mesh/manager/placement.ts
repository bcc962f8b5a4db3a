/**
 * Placement constraints (Docker's syntax) and the nodes a service's tasks may run on.
 *
 * A constraint is `KEY==VALUE` or `KEY!=VALUE` with KEY one of `node.id`, `node.hostname`
 * (Shoal's node name), `node.labels.<label>` and `node.platform.os` (every Shoal node is
 * `linux`). Values compare case-insensitively, and a missing label counts as the empty value,
 * as swarmkit does: `node.labels.zone!=a` holds on a node without a `zone` label. A node is
 * eligible for new tasks when it is ready, active and satisfies every constraint. Pure: no I/O.
 */
import { invalid } from '../../src/errors.js';
import type { Node } from '../../src/model/types.js';

export interface Constraint {
  /** What is compared: a node field, or a node label (`label` names it). */
  key: 'node.id' | 'node.hostname' | 'node.platform.os' | 'node.labels';
  label?: string;
  op: '==' | '!=';
  value: string;
  /** The constraint as written. */
  text: string;
}

const KEY_RE = /^[a-z_][a-z0-9\-_.]*$/i;
const VALUE_RE = /^[a-z0-9:\-_\s.*()?+[\]\\^$|/]+$/i;
const SUPPORTED = 'node.id, node.hostname, node.labels.<label>, node.platform.os';

/** Parses one constraint; throws an InvalidParameter error that says what is wrong. */
export function parseConstraint(text: string): Constraint {
  const ops = ['==', '!='] as const;
  const at = ops.map((op) => ({ op, i: text.indexOf(op) })).filter((x) => x.i > 0).sort((a, b) => a.i - b.i)[0];
  if (!at) throw invalid(`constraint '${text}' needs an operator: KEY==VALUE or KEY!=VALUE (keys: ${SUPPORTED})`);
  const key = text.slice(0, at.i).trim();
  const value = text.slice(at.i + 2).trim();
  if (!KEY_RE.test(key)) throw invalid(`constraint '${text}': '${key}' is not a valid key (keys: ${SUPPORTED})`);
  if (value === '' || !VALUE_RE.test(value) || value.includes('==') || value.includes('!=')) {
    throw invalid(`constraint '${text}': the value must be non-empty letters, digits or . - _ : / and no second operator`);
  }
  const lower = key.toLowerCase();
  const base = { op: at.op, value, text };
  if (lower === 'node.id' || lower === 'node.hostname' || lower === 'node.platform.os') return { key: lower, ...base };
  if (lower.startsWith('node.labels.') && key.length > 'node.labels.'.length) return { key: 'node.labels', label: key.slice('node.labels.'.length), ...base };
  if (lower === 'node.role') throw invalid(`constraint '${text}': node.role is not supported (Shoal's managers are not nodes; label the nodes instead: shoal node update --label-add role=X NODE)`);
  if (lower.startsWith('engine.labels.')) throw invalid(`constraint '${text}': engine labels are not supported; use node labels (node.labels.<label>)`);
  throw invalid(`constraint '${text}': unknown key '${key}' (keys: ${SUPPORTED})`);
}

/** Parses a list, refusing duplicates. */
export function parseConstraints(list: readonly string[]): Constraint[] {
  const seen = new Set<string>();
  return list.map((c) => {
    const parsed = parseConstraint(c);
    if (seen.has(c)) throw invalid(`constraint '${c}' is listed twice`);
    seen.add(c);
    return parsed;
  });
}

function fieldOf(node: Node, c: Constraint): string {
  switch (c.key) {
    case 'node.id': return node.id;
    case 'node.hostname': return node.name;
    case 'node.platform.os': return 'linux';
    case 'node.labels': return node.labels[c.label ?? ''] ?? '';
  }
}

/** True when `node` satisfies every constraint. */
export function satisfies(node: Node, constraints: readonly Constraint[]): boolean {
  return constraints.every((c) => (fieldOf(node, c).toLowerCase() === c.value.toLowerCase()) === (c.op === '=='));
}

/** Parsed constraints of a stored spec; a stored constraint that no longer parses matches no node. */
export function constraintsOf(spec: { constraints?: string[] }): Constraint[] | 'invalid' {
  try {
    return parseConstraints(spec.constraints ?? []);
  } catch {
    return 'invalid';
  }
}

/** The nodes new tasks may go to, and why the others may not (for a pending task's message). */
export interface Eligibility {
  eligible: Node[];
  /** Nodes down, draining or paused. */
  unavailable: number;
  /** Available nodes that fail a constraint. */
  unsatisfied: number;
}

/** Ready, active nodes that satisfy `constraints`. */
export function eligibleNodes(nodes: readonly Node[], constraints: readonly Constraint[] | 'invalid'): Eligibility {
  const out: Eligibility = { eligible: [], unavailable: 0, unsatisfied: 0 };
  for (const n of nodes) {
    if (n.state !== 'ready' || n.availability !== 'active') out.unavailable++;
    else if (constraints === 'invalid' || !satisfies(n, constraints)) out.unsatisfied++;
    else out.eligible.push(n);
  }
  return out;
}

const nodes = (n: number): string => `${n} node${n === 1 ? '' : 's'}`;

/** Docker's wording: `no suitable node (scheduling constraints not satisfied on 2 nodes)`. */
export function pendingMessage(e: Eligibility): string {
  const why: string[] = [];
  if (e.unavailable > 0) why.push(`${nodes(e.unavailable)} not available for new tasks`);
  if (e.unsatisfied > 0) why.push(`scheduling constraints not satisfied on ${nodes(e.unsatisfied)}`);
  return `no suitable node (${why.length ? why.join('; ') : 'no nodes in the cluster'})`;
}

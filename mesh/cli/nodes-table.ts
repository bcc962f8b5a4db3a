/**
 * `shoal node ls` as a table. With several managers (on etcd) it has Docker's MANAGER STATUS
 * column: `Leader`, `Reachable` (holds a live session in the store) or `Unreachable`, on the
 * node of the same name; a manager without an agent gets a row of its own. With one manager
 * on the embedded store the table is as it always was.
 */
import type { Node } from '../../src/model/types.js';
import { table } from './format.js';

/** A manager as GET /v1/managers lists it. */
export interface ManagerStatus { name: string; url?: string; reachable: boolean; leader: boolean }

const cap = (s: string): string => (s[0]?.toUpperCase() ?? '') + s.slice(1);
const status = (m: ManagerStatus): string => (m.leader ? 'Leader' : m.reachable ? 'Reachable' : 'Unreachable');

export function nodeTable(nodes: readonly Node[], managers: readonly ManagerStatus[]): string {
  const rows = nodes.map((n) => [n.id.slice(0, 12), n.name, n.address, cap(n.state), cap(n.availability)]);
  if (managers.length === 0) return table(['ID', 'NAME', 'ADDRESS', 'STATUS', 'AVAILABILITY'], rows);
  const byName = new Map(managers.map((m) => [m.name, m]));
  const withStatus = nodes.map((n, i) => [...(rows[i] as string[]), byName.has(n.name) ? status(byName.get(n.name) as ManagerStatus) : '']);
  const nodeNames = new Set(nodes.map((n) => n.name));
  const alone = managers.filter((m) => !nodeNames.has(m.name)).map((m) => ['-', m.name, m.url ?? '-', '-', '-', status(m)]);
  return table(['ID', 'NAME', 'ADDRESS', 'STATUS', 'AVAILABILITY', 'MANAGER STATUS'], [...withStatus, ...alone]);
}

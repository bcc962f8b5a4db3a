/**
 * `shoal node ls` with several managers (on etcd): Docker's MANAGER STATUS column, `Leader`,
 * `Reachable` (holds a live session in the store) or `Unreachable`, on the node of the same
 * name; a manager without an agent gets a row of its own. With one manager on the embedded
 * store the plain node view (views.ts) is used.
 */
import type { Node } from '../../src/model/types.js';
import type { ListView } from './output.js';

/** A manager as GET /v1/managers lists it. */
export interface ManagerStatus { name: string; url?: string; reachable: boolean; leader: boolean }

/** One row of the table: a node (with its manager's status, if any) or a manager alone. */
export interface NodeRow { ID: string; Name: string; Address: string; Status: string; Availability: string; ManagerStatus: string }

const cap = (s: string): string => (s[0]?.toUpperCase() ?? '') + s.slice(1);
const status = (m: ManagerStatus): string => (m.leader ? 'Leader' : m.reachable ? 'Reachable' : 'Unreachable');

export const managerNodeView: ListView<NodeRow> = {
  fields: ['ID', 'Name', 'Address', 'Status', 'Availability', 'ManagerStatus'],
  table: 'table {{.ID}}\t{{.Name}}\t{{.Address}}\t{{.Status}}\t{{.Availability}}\t{{.ManagerStatus}}',
  headers: { ManagerStatus: 'MANAGER STATUS' },
  id: (r) => r.ID,
  row: (r) => ({ ...r }),
};

/** The rows: every node, then every manager that has no node of its name. */
export function nodeRows(nodes: readonly Node[], managers: readonly ManagerStatus[]): NodeRow[] {
  const byName = new Map(managers.map((m) => [m.name, m]));
  const rows: NodeRow[] = nodes.map((n) => {
    const m = byName.get(n.name);
    return { ID: n.id, Name: n.name, Address: n.address, Status: cap(n.state), Availability: cap(n.availability), ManagerStatus: m ? status(m) : '' };
  });
  const nodeNames = new Set(nodes.map((n) => n.name));
  for (const m of managers) {
    if (!nodeNames.has(m.name)) rows.push({ ID: '-', Name: m.name, Address: m.url ?? '-', Status: '-', Availability: '-', ManagerStatus: status(m) });
  }
  return rows;
}

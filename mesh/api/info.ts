/**
 * GET /v1/info: what `shoal info` shows — the cluster, this manager, and counts of nodes (by
 * state, availability and role), networks, services and tasks (by state). Read-only.
 */
import type { Node } from '../../src/model/types.js';
import type { Manager } from '../manager/index.js';
import { listObjects } from '../manager/objects.js';
import { VERSION } from '../version.js';

const count = <T>(list: readonly T[], key: (x: T) => string): Record<string, number> => {
  const out: Record<string, number> = {};
  for (const x of list) out[key(x)] = (out[key(x)] ?? 0) + 1;
  return out;
};

export async function clusterInfo(m: Manager, withRole: (n: Node) => Node & { role: string }): Promise<Record<string, unknown>> {
  const [nodes, networks, services, tasks, revision] = await Promise.all([
    listObjects(m.store, 'nodes'), listObjects(m.store, 'networks'), listObjects(m.store, 'services'), listObjects(m.store, 'tasks'), m.store.currentRevision(),
  ]);
  const ns = nodes.map((v) => withRole(v.obj));
  return {
    clusterId: m.cluster.id,
    createdAt: m.cluster.createdAt,
    version: VERSION,
    revision,
    manager: { version: VERSION, nodeLeaseTtlSeconds: m.nodeLeaseTtlSeconds, managersOnNodes: ns.filter((n) => n.role === 'manager').map((n) => n.name) },
    nodes: { total: ns.length, byState: count(ns, (n) => n.state), byAvailability: count(ns, (n) => n.availability), byRole: count(ns, (n) => n.role) },
    networks: { total: networks.length, byDriver: count(networks.map((v) => v.obj), (n) => n.driver) },
    services: { total: services.length },
    tasks: { total: tasks.length, byState: count(tasks.map((v) => v.obj), (t) => t.status.state), running: tasks.filter((v) => v.obj.desiredState === 'running' && v.obj.status.state === 'running').length },
  };
}

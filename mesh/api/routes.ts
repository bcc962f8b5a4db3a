/**
 * The manager's HTTP API, version 1. Every route takes and returns JSON; errors are
 * `{code, message}` with the status from the error's kind (http.ts).
 *
 *   GET    /v1/info                      (cluster id, version, nodes/services/tasks counts)
 *   GET    /v1/networks                  POST /v1/networks          POST /v1/networks/prune
 *   GET    /v1/networks/:ref             DELETE /v1/networks/:ref   POST /v1/networks/:ref/update {labels}
 *   GET    /v1/services                  POST /v1/services
 *   GET    /v1/services/:ref             DELETE /v1/services/:ref
 *   POST   /v1/services/:ref/update[?version=N]   POST /v1/services/:ref/scale {replicas}
 *   POST   /v1/services/:ref/rollback {version?}
 *   GET    /v1/tasks?service=&node=      GET /v1/tasks/:ref         POST /v1/tasks/prune
 *   GET    /v1/nodes                     GET /v1/nodes/:ref         DELETE /v1/nodes/:ref?force=1
 *   POST   /v1/nodes/:ref/update         POST /v1/nodes/prune
 *   GET    /v1/services/:ref/logs?follow=1&tail=N&since=MS&timestamps=1   (text stream, logs.ts)
 *   GET    /v1/managers                  (several managers on etcd: reachability, leader)
 *   WS     /v1/watch?revision=N          WS /v1/agent (join token)     WS /v1/events?since=MS (events.ts)
 *   GET    /ui, /ui/events, ...          the live web view (mesh/ui/server.ts)
 */
import { invalid } from '../../src/errors.js';
import type { Node, Task } from '../../src/model/types.js';
import type { Manager } from '../manager/index.js';
import { createNetwork, pruneNetworks, removeNetwork, updateNetworkLabels } from '../manager/networks.js';
import { pruneNodes, removeNode, updateNode } from '../manager/nodes.js';
import { deleteObject, listObjects, resolveObject, unchanged } from '../manager/objects.js';
import { createService, removeService, rollbackService, updateService } from '../manager/services.js';
import { TERMINAL } from '../manager/plan.js';
import { route, type Route } from './http.js';
import { clusterInfo } from './info.js';
import { parseNetworkCreate, parseNodeUpdate, parseRollback, parseScale, parseServiceCreate, parseServiceUpdate, type ServiceUpdate } from './validate.js';

function noBody(body: unknown): void {
  if (body !== undefined) throw invalid('this request takes no body');
}

function labelsOnly(body: unknown): Record<string, string> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw invalid('network update must be a JSON object');
  const o = body as Record<string, unknown>;
  for (const k of Object.keys(o)) if (k !== 'labels') throw invalid(`unknown field '${k}' in network update (allowed: labels)`, 'UNKNOWN_FIELD');
  const labels = o['labels'];
  if (typeof labels !== 'object' || labels === null || Array.isArray(labels)) throw invalid('network update needs labels (an object of strings)');
  for (const [k, v] of Object.entries(labels)) if (typeof v !== 'string') throw invalid(`network label '${k}' must be a string`);
  return labels as Record<string, string>;
}

/** Docker sends the version as `?version=N`; the body's `version` means the same (both: they must agree). */
function withQueryVersion(u: ServiceUpdate, q: URLSearchParams): ServiceUpdate {
  const v = q.get('version');
  if (v === null) return u;
  if (!/^[1-9]\d{0,15}$/.test(v)) throw invalid(`version must be a positive integer, got '${v}'`);
  if (u.version !== undefined && u.version !== Number(v)) throw invalid(`version ${v} in the query and ${u.version} in the body differ`);
  return { ...u, version: Number(v) };
}

const byName = <T>(get: (x: T) => string) => (a: T, b: T): number => get(a).localeCompare(get(b));

/** What the routes learn from the API server around them. */
export interface RouteContext {
  /** `manager` when the node's agent runs beside this manager (it came over its unix socket). */
  roleOf?: (nodeId: string) => 'manager' | 'worker';
}

export function routes(m: Manager, ctx: RouteContext = {}): Route[] {
  const s = m.store;
  const withRole = (n: Node): Node & { role: string } => ({ ...n, role: ctx.roleOf?.(n.id) ?? 'worker' });
  return [
    route('GET', '/v1/info', async () => ({ body: await clusterInfo(m, withRole) })),

    route('GET', '/v1/networks', async () => ({ body: (await listObjects(s, 'networks')).map((v) => v.obj).sort(byName((n) => n.name)) })),
    route('POST', '/v1/networks', async (r) => ({ status: 201, body: await createNetwork(s, parseNetworkCreate(r.body)) })),
    route('POST', '/v1/networks/prune', async (r) => { noBody(r.body); return { body: { removed: await pruneNetworks(s) } }; }),
    route('GET', '/v1/networks/:ref', async (r) => ({ body: (await resolveObject(s, 'networks', r.params['ref'] ?? '')).obj })),
    route('DELETE', '/v1/networks/:ref', async (r) => { noBody(r.body); return { body: await removeNetwork(s, r.params['ref'] ?? '') }; }),
    route('POST', '/v1/networks/:ref/update', async (r) => ({ body: await updateNetworkLabels(s, r.params['ref'] ?? '', labelsOnly(r.body)) })),

    route('GET', '/v1/services', async () => ({ body: (await listObjects(s, 'services')).map((v) => v.obj).sort(byName((x) => x.spec.name)) })),
    route('POST', '/v1/services', async (r) => ({ status: 201, body: await createService(s, parseServiceCreate(r.body)) })),
    route('GET', '/v1/services/:ref', async (r) => ({ body: (await resolveObject(s, 'services', r.params['ref'] ?? '')).obj })),
    route('DELETE', '/v1/services/:ref', async (r) => { noBody(r.body); return { body: await removeService(s, r.params['ref'] ?? '') }; }),
    route('POST', '/v1/services/:ref/update', async (r) => ({ body: await updateService(s, r.params['ref'] ?? '', withQueryVersion(parseServiceUpdate(r.body), r.query)) })),
    route('POST', '/v1/services/:ref/scale', async (r) => ({ body: await updateService(s, r.params['ref'] ?? '', { replicas: parseScale(r.body) }) })),
    route('POST', '/v1/services/:ref/rollback', async (r) => ({ body: await rollbackService(s, r.params['ref'] ?? '', parseRollback(r.body)) })),

    route('GET', '/v1/tasks', async (r) => {
      let tasks = (await listObjects(s, 'tasks')).map((v) => v.obj);
      const svc = r.query.get('service');
      if (svc) {
        const { obj } = await resolveObject(s, 'services', svc);
        tasks = tasks.filter((t) => t.serviceId === obj.id);
      }
      const node = r.query.get('node');
      if (node) {
        const { obj } = await resolveObject(s, 'nodes', node);
        tasks = tasks.filter((t) => t.nodeId === obj.id);
      }
      return { body: tasks.sort((a: Task, b: Task) => a.serviceName.localeCompare(b.serviceName) || a.slot - b.slot || b.createdAt.localeCompare(a.createdAt)) };
    }),
    route('GET', '/v1/tasks/:ref', async (r) => ({ body: (await resolveObject(s, 'tasks', r.params['ref'] ?? '')).obj })),
    route('POST', '/v1/tasks/prune', async (r) => {
      noBody(r.body);
      const removed: string[] = [];
      for (const v of await listObjects(s, 'tasks')) {
        if (!TERMINAL.has(v.obj.status.state) || !v.obj.addressesReleased) continue;
        const res = await s.txn({ compare: [unchanged('tasks', v.obj.id, v.modRevision)], success: [deleteObject('tasks', v.obj.id)] });
        if (res.succeeded) removed.push(v.obj.id);
      }
      return { body: { removed } };
    }),

    route('GET', '/v1/nodes', async () => ({ body: (await listObjects(s, 'nodes')).map((v) => withRole(v.obj)).sort(byName((n) => n.name)) })),
    route('GET', '/v1/nodes/:ref', async (r) => ({ body: withRole((await resolveObject(s, 'nodes', r.params['ref'] ?? '')).obj) })),
    route('POST', '/v1/nodes/:ref/update', async (r) => ({ body: await updateNode(s, r.params['ref'] ?? '', parseNodeUpdate(r.body)) })),
    route('DELETE', '/v1/nodes/:ref', async (r) => {
      noBody(r.body);
      return { body: await removeNode(s, r.params['ref'] ?? '', ['1', 'true'].includes(r.query.get('force') ?? '')) };
    }),
    route('POST', '/v1/nodes/prune', async (r) => { noBody(r.body); return { body: { removed: await pruneNodes(s) } }; }),
    route('GET', '/v1/managers', async () => ({ body: await m.managers() })),
  ];
}

/**
 * Node membership. An agent joins with its name and underlay address; the manager grants it a
 * store lease and writes `alive/<node>` under that lease. The agent's heartbeats renew the
 * lease. When the lease expires the store deletes the alive key, the liveness watcher sees the
 * delete and marks the node down; the scheduler then orphans its tasks and fills their slots
 * elsewhere. A node that re-joins under the same name keeps its id.
 */
import { conflict, invalid, notFound } from '../../src/errors.js';
import { newId } from '../../src/ids.js';
import { alivePrefix, aliveKey, nameKey } from '../../src/model/keys.js';
import type { Node } from '../../src/model/types.js';
import type { Store, Watcher } from '../../src/store/types.js';
import type { NodeJoin, NodeUpdate } from '../api/validate.js';
import { claimNodeIngress, releaseNodeIngress } from './ingress.js';
import { revokeOp } from '../security/revocation.js';
import {
  deleteName, deleteObject, getObject, listObjects, nameFree, putName, putObject, resolveObject, unchanged,
} from './objects.js';

export interface JoinResult { node: Node; leaseId: number; leaseTtlSeconds: number }

/** `certNodeId`: the id a new node gets when its agent came with a node certificate (it names the id). */
export async function joinNode(store: Store, req: NodeJoin, leaseTtlSeconds: number, certNodeId?: string): Promise<JoinResult> {
  for (let attempt = 0; attempt < 8; attempt++) {
    const idKv = await store.get(nameKey('nodes', req.name));
    const existing = idKv ? await getObject(store, 'nodes', idKv.value) : undefined;
    const lease = await store.grantLease(leaseTtlSeconds);
    const now = new Date().toISOString();
    const node: Node = existing
      ? { ...existing.obj, address: req.address, state: 'ready', lease: lease.id, updatedAt: now }
      : { id: certNodeId ?? newId(), name: req.name, address: req.address, state: 'ready', availability: 'active', lease: lease.id, labels: {}, createdAt: now, updatedAt: now };
    if (req.boundPorts) node.boundPorts = req.boundPorts;
    const ingress = await claimNodeIngress(store, node);
    if (ingress) node.ingress = ingress.ingress;
    const res = await store.txn({
      compare: [...(existing ? [unchanged('nodes', node.id, existing.modRevision)] : [nameFree('nodes', req.name)]), ...(ingress?.claim.compares ?? [])],
      success: [
        ...(ingress?.claim.ops ?? []),
        putObject('nodes', node.id, node),
        ...(existing ? [] : [putName('nodes', req.name, node.id)]),
        { type: 'put', key: aliveKey(node.id), value: req.address, lease: lease.id },
      ],
    });
    if (res.succeeded) {
      // A previous session of the same node (an agent restart) no longer holds the node alive.
      if (existing && existing.obj.lease && existing.obj.lease !== lease.id) await store.revokeLease(existing.obj.lease).catch(() => undefined);
      return { node, leaseId: lease.id, leaseTtlSeconds };
    }
    await store.revokeLease(lease.id).catch(() => undefined);
  }
  throw conflict(`node '${req.name}' is joining from two places at once; try again`);
}

/** Marks a node down unless it re-joined meanwhile (its alive key exists again). */
export async function markDown(store: Store, nodeId: string): Promise<void> {
  for (let attempt = 0; attempt < 8; attempt++) {
    const v = await getObject(store, 'nodes', nodeId);
    if (!v || v.obj.state === 'down') return;
    const res = await store.txn({
      compare: [unchanged('nodes', nodeId, v.modRevision), { key: aliveKey(nodeId), target: 'createRevision', op: '=', value: 0 }],
      success: [putObject('nodes', nodeId, { ...v.obj, state: 'down', updatedAt: new Date().toISOString() })],
    });
    if (res.succeeded) return;
    if (await store.get(aliveKey(nodeId))) return;
  }
}

/**
 * Watches node liveness: marks a node down when its alive key goes, and at start marks down
 * every "ready" node whose alive key is already gone (expired while no manager ran).
 */
export async function watchLiveness(store: Store, onError: (e: unknown) => void): Promise<Watcher> {
  const { revision } = await store.range(alivePrefix, { limit: 1 });
  const w = store.watch(alivePrefix, (b) => {
    for (const e of b.events) {
      if (e.type === 'delete') markDown(store, e.kv.key.slice(alivePrefix.length)).catch(onError);
    }
  }, { fromRevision: revision, onError });
  for (const v of await listObjects(store, 'nodes')) {
    if (v.obj.state === 'ready' && !(await store.get(aliveKey(v.obj.id)))) await markDown(store, v.obj.id);
  }
  return w;
}

/**
 * Availability and labels of a node. `labelAdd`/`labelRm` apply to the labels as they are when
 * written (compare-and-swap, retried): concurrent label changes are never lost.
 */
export async function updateNode(store: Store, ref: string, u: NodeUpdate): Promise<Node> {
  const first = await resolveObject(store, 'nodes', ref);
  for (let attempt = 0; attempt < 8; attempt++) {
    const v = attempt === 0 ? first : await resolveObject(store, 'nodes', first.obj.id);
    const missing = (u.labelRm ?? []).find((k) => !(k in v.obj.labels));
    if (missing !== undefined) throw notFound(`label '${missing}' on node '${v.obj.name}'`, 'shoal node inspect NODE shows its labels');
    const labels = u.labels ?? { ...v.obj.labels, ...u.labelAdd };
    for (const k of u.labelRm ?? []) delete labels[k];
    const next: Node = { ...v.obj, labels, updatedAt: new Date().toISOString() };
    if (u.availability !== undefined) next.availability = u.availability;
    const res = await store.txn({ compare: [unchanged('nodes', v.obj.id, v.modRevision)], success: [putObject('nodes', v.obj.id, next)] });
    if (res.succeeded) return next;
  }
  throw conflict(`node '${first.obj.name}' kept changing; try again`);
}

/** Removes a node; a ready node only with `force` (Docker's `node rm --force`). */
export async function removeNode(store: Store, ref: string, force: boolean): Promise<Node> {
  const v = await resolveObject(store, 'nodes', ref);
  if (v.obj.state === 'ready' && !force) {
    throw invalid(`node '${v.obj.name}' is ready; stop its agent first, or remove it with --force`, 'NODE_READY');
  }
  const res = await store.txn({
    compare: [unchanged('nodes', v.obj.id, v.modRevision)],
    // Its certificate is revoked in the same transaction: a removed node cannot come back with it.
    success: [deleteObject('nodes', v.obj.id), deleteName('nodes', v.obj.name), { type: 'delete', key: aliveKey(v.obj.id) }, ...releaseNodeIngress(v.obj), revokeOp(v.obj)],
  });
  if (!res.succeeded) throw conflict(`node '${v.obj.name}' changed meanwhile; try again`);
  if (v.obj.lease) await store.revokeLease(v.obj.lease).catch(() => undefined);
  return v.obj;
}

/** Records the ports a node's processes listen on (its agent reports them when they change). */
export async function reportBoundPorts(store: Store, nodeId: string, ports: string[]): Promise<void> {
  for (let attempt = 0; attempt < 8; attempt++) {
    const v = await getObject(store, 'nodes', nodeId);
    if (!v || JSON.stringify(v.obj.boundPorts ?? []) === JSON.stringify(ports)) return;
    const res = await store.txn({ compare: [unchanged('nodes', nodeId, v.modRevision)], success: [putObject('nodes', nodeId, { ...v.obj, boundPorts: ports })] });
    if (res.succeeded) return;
  }
  throw conflict(`node ${nodeId} kept changing; its bound ports were not recorded`);
}

export async function pruneNodes(store: Store): Promise<string[]> {
  const removed: string[] = [];
  for (const v of await listObjects(store, 'nodes')) {
    if (v.obj.state !== 'down') continue;
    try {
      await removeNode(store, v.obj.id, false);
      removed.push(v.obj.name);
    } catch {
      // It came back meanwhile: not pruned.
    }
  }
  return removed;
}

/**
 * Network lifecycle in the manager: create (name + subnets + gateway + VNI claimed in ONE store
 * transaction, so two managers never hand out the same thing), inspect, update labels, remove
 * (refused while a service uses it), prune.
 */
import { conflict, invalid } from '../../src/errors.js';
import { newId } from '../../src/ids.js';
import { nameKey } from '../../src/model/keys.js';
import type { IpamConfig, Network, NetworkScope } from '../../src/model/types.js';
import type { Store, TxnOp } from '../../src/store/types.js';
import type { NetworkCreate } from '../api/validate.js';
import { alloc } from './alloc.js';
import {
  deleteName, deleteObject, listObjects, nameFree, putName, putObject, resolveObject, unchanged, type Versioned,
} from './objects.js';

/**
 * Options of {@link createNetwork} for system networks: `ingress` marks the cluster's ingress
 * network; `prefix` sizes a subnet taken from the pools (default: the pool's own size).
 */
export interface CreateNetworkOptions { ingress?: boolean; prefix?: number }

export async function createNetwork(store: Store, req: NetworkCreate, opts: CreateNetworkOptions = {}): Promise<Network> {
  const id = newId();
  const scope: NetworkScope = req.driver === 'overlay' ? 'swarm' : 'local';
  const nameInUse = `network name '${req.name}' is already in use (shoal network ls lists networks)`;
  if (await store.get(nameKey('networks', req.name))) throw conflict(nameInUse, 'NAME_IN_USE');
  let created: Network | undefined;
  await alloc.commit(store, async () => {
    const v4 = await alloc.subnet(store, { driver: req.driver, family: 4, requested: req.subnet, owner: req.name, networkId: id, ...(opts.prefix ? { prefix: opts.prefix } : {}) });
    const gw4 = await alloc.gateway(store, id, v4.value, req.gateway);
    const claims = [v4, gw4];
    const ipam: Network['ipam'] = { v4: { subnet: v4.value, gateway: gw4.value } };
    if (req.ipv6) {
      const v6 = await alloc.subnet(store, { driver: req.driver, family: 6, requested: req.subnetV6, owner: req.name, networkId: id });
      const gw6 = await alloc.gateway(store, id, v6.value, req.gatewayV6);
      claims.push(v6, gw6);
      ipam.v6 = { subnet: v6.value, gateway: gw6.value } satisfies IpamConfig;
    }
    const net: Network = {
      id, name: req.name, driver: req.driver, scope, ipam, options: req.options, labels: req.labels,
      createdAt: new Date().toISOString(),
    };
    const compares = [nameFree('networks', req.name), ...claims.flatMap((c) => c.compares)];
    const success: TxnOp[] = [...claims.flatMap((c) => c.ops)];
    if (req.driver === 'overlay') {
      const vni = await alloc.vni(store, `network:${id}`);
      compares.push(...vni.compares);
      success.push(...vni.ops);
      net.vni = vni.value;
    }
    if (opts.ingress) net.ingress = true;
    if (req.internal) net.internal = true;
    if (req.attachable) net.attachable = true;
    success.push(putName('networks', req.name, id), putObject('networks', id, net));
    created = net;
    return { compares, success };
  }, nameInUse);
  if (!created) throw conflict(`network '${req.name}' could not be created`);
  return created;
}

/** Which services use a network (by id). */
async function usersOf(store: Store, networkId: string): Promise<string[]> {
  const services = await listObjects(store, 'services');
  return services.filter((s) => s.obj.spec.networks.some((n) => n.network === networkId)).map((s) => s.obj.spec.name);
}

function releaseOps(net: Network): TxnOp[] {
  const ops = [...alloc.releaseSubnet(net.ipam.v4.subnet), ...alloc.releaseNetworkAddresses(net.id)];
  if (net.ipam.v6) ops.push(...alloc.releaseSubnet(net.ipam.v6.subnet));
  if (net.vni !== undefined) ops.push(...alloc.releaseVni(net.vni));
  return ops;
}

async function removeResolved(store: Store, v: Versioned<Network>): Promise<void> {
  const users = await usersOf(store, v.obj.id);
  if (users.length > 0) {
    throw conflict(`network '${v.obj.name}' is in use by service${users.length > 1 ? 's' : ''} ${users.map((u) => `'${u}'`).join(', ')}; remove or update them first`, 'NETWORK_IN_USE');
  }
  const res = await store.txn({
    compare: [unchanged('networks', v.obj.id, v.modRevision)],
    success: [deleteObject('networks', v.obj.id), deleteName('networks', v.obj.name), ...releaseOps(v.obj)],
  });
  if (!res.succeeded) throw conflict(`network '${v.obj.name}' changed while it was being removed; try again`);
}

export async function removeNetwork(store: Store, ref: string): Promise<Network> {
  const v = await resolveObject(store, 'networks', ref);
  if (v.obj.ingress) throw invalid(`network '${v.obj.name}' is the cluster's ingress network and cannot be removed`);
  await removeResolved(store, v);
  return v.obj;
}

/** Removes every user network no service uses; returns the names removed. */
export async function pruneNetworks(store: Store): Promise<string[]> {
  const removed: string[] = [];
  for (const v of await listObjects(store, 'networks')) {
    if (v.obj.ingress) continue;
    if ((await usersOf(store, v.obj.id)).length > 0) continue;
    try {
      await removeResolved(store, v);
      removed.push(v.obj.name);
    } catch {
      // Taken into use (or changed) meanwhile: not unused any more, so not pruned.
    }
  }
  return removed;
}

export async function updateNetworkLabels(store: Store, ref: string, labels: Record<string, string>): Promise<Network> {
  const v = await resolveObject(store, 'networks', ref);
  const next: Network = { ...v.obj, labels };
  const res = await store.txn({ compare: [unchanged('networks', v.obj.id, v.modRevision)], success: [putObject('networks', v.obj.id, next)] });
  if (!res.succeeded) throw conflict(`network '${v.obj.name}' changed meanwhile; try again`);
  return next;
}

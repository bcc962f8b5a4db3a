/**
 * The cluster's ingress network (Docker swarm's `ingress`): an overlay network the first manager
 * creates on a fresh store, with a subnet from the overlay pools. Every node's ingress sandbox
 * gets an address on it when the node joins ({@link claimNodeIngress}); every task of a service
 * with published ports gets one when it is created (the scheduler), so a node's ingress sandbox
 * reaches every replica over VXLAN. Users cannot attach services to it, create one, or remove it.
 */
import { invalid, ShoalError } from '../../src/errors.js';
import { formatCidr, parseCidr } from '../../src/ipam/cidr.js';
import { nameKey } from '../../src/model/keys.js';
import type { Network, Node, Service } from '../../src/model/types.js';
import type { Store, TxnOp } from '../../src/store/types.js';
import { alloc, type Claim } from './alloc.js';
import { createNetwork } from './networks.js';
import { getObject } from './objects.js';

export const INGRESS_NETWORK = 'ingress';

/** The ingress network, when the cluster has one. */
export async function ingressNetwork(store: Store): Promise<Network | undefined> {
  const id = await store.get(nameKey('networks', INGRESS_NETWORK));
  if (!id) return undefined;
  const v = await getObject(store, 'networks', id.value);
  return v?.obj.ingress ? v.obj : undefined;
}

/** Prefix length of the ingress subnet taken from the overlay pool: room for 65,533 nodes and publishing tasks. */
export const INGRESS_PREFIX = 16;

/**
 * Creates the ingress network unless it exists (several managers may race: one wins, all
 * agree). `subnet` (`--ingress-subnet`) is used at cluster init only: on an existing cluster
 * whose ingress network has another subnet it is refused (nothing changes), and an overlapping
 * one is refused by IPAM. Without it, a /16 from the overlay pool.
 */
export async function ensureIngressNetwork(store: Store, subnet?: string): Promise<Network> {
  for (let attempt = 0; attempt < 4; attempt++) {
    const had = await ingressNetwork(store);
    if (had) {
      if (subnet !== undefined && !sameSubnet(had.ipam.v4.subnet, subnet)) {
        throw invalid(`--ingress-subnet ${subnet}: this cluster's ingress network already has subnet ${had.ipam.v4.subnet}; the ingress subnet is chosen once, when the cluster is created`);
      }
      return had;
    }
    try {
      return await createNetwork(store, { name: INGRESS_NETWORK, driver: 'overlay', ipv6: false, options: {}, labels: {}, ...(subnet !== undefined ? { subnet } : {}) }, { ingress: true, prefix: INGRESS_PREFIX });
    } catch (e) {
      if (!(e instanceof ShoalError && e.code === 'SHOAL_ERR_NAME_IN_USE')) {
        if (subnet !== undefined && e instanceof ShoalError) throw new ShoalError(e.kind, e.code, `--ingress-subnet: ${e.message}`, { cause: e });
        throw e;
      }
      // another manager made it: read it
    }
  }
  throw new Error('the ingress network could not be created or read');
}

/** Whether two CIDR texts name the same subnet (canonical forms compared). */
function sameSubnet(a: string, b: string): boolean {
  try {
    return formatCidr(parseCidr(a)) === formatCidr(parseCidr(b));
  } catch {
    return false;
  }
}

/** Whether tasks of `svc` get an endpoint on the ingress network: it publishes a port. */
export const publishes = (svc: Service): boolean => svc.spec.ports.length > 0;

/**
 * The claim of an ingress sandbox address for `node` (absent when it has a current one or the
 * cluster has no ingress network); the caller commits it with the node.
 */
export async function claimNodeIngress(store: Store, node: Pick<Node, 'id' | 'name' | 'ingress'>): Promise<{ claim: Claim<string>; ingress: NonNullable<Node['ingress']> } | undefined> {
  const net = await ingressNetwork(store);
  if (!net || node.ingress?.network === net.id) return undefined;
  const claim = await alloc.address(store, { networkId: net.id, subnet: net.ipam.v4.subnet, gateway: net.ipam.v4.gateway, owner: `node:${node.id}`, networkName: net.name });
  return { claim, ingress: { network: net.id, v4: claim.value } };
}

/** Ops that give a removed node's ingress address back. */
export function releaseNodeIngress(node: Node): TxnOp[] {
  return node.ingress ? alloc.releaseAddress(node.ingress.network, node.ingress.v4) : [];
}

/**
 * Service lifecycle in the manager. A create claims the name, one VIP per network (vip mode) and
 * the published ports in one store transaction; an update is compare-and-swapped on the version
 * the caller read; a remove deletes the service and releases what it held, and leaves its tasks
 * to the scheduler, which shuts them down and releases their addresses.
 */
import { conflict, invalid } from '../../src/errors.js';
import { newId } from '../../src/ids.js';
import { nameKey } from '../../src/model/keys.js';
import type { Network, PortConfig, Service, ServiceLbFields, ServiceNetwork, ServiceSpec, UpdateStatus } from '../../src/model/types.js';
import type { Compare, Store, TxnOp } from '../../src/store/types.js';
import type { ServiceCreate, ServiceNetworkRef, ServiceUpdate } from '../api/validate.js';
import { alloc, type Claim } from './alloc.js';
import { specHash } from './plan.js';
import { applySwarmCreate, mergeSwarmUpdate } from './service-spec.js';
import {
  deleteName, deleteObject, listObjects, nameFree, putName, putObject, resolveObject, unchanged,
} from './objects.js';

async function resolveNetworks(store: Store, refs: ServiceNetworkRef[]): Promise<Array<{ net: Network; aliases: string[] }>> {
  const out: Array<{ net: Network; aliases: string[] }> = [];
  for (const r of refs) {
    const { obj } = await resolveObject(store, 'networks', r.network);
    if (obj.ingress) throw invalid(`service cannot attach to the ingress network '${obj.name}' directly; publish a port instead (-p)`);
    if (out.some((o) => o.net.id === obj.id)) throw invalid(`network '${r.network}' is listed twice`);
    out.push({ net: obj, aliases: r.aliases });
  }
  return out;
}

const portKey = (p: PortConfig): string => `${p.published}/${p.protocol}`;

/** Ports that processes listen on, by `PORT/proto`, with the ready nodes they are bound on. */
async function boundOnNodes(store: Store): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  for (const { obj: n } of await listObjects(store, 'nodes')) {
    if (n.state !== 'ready') continue;
    for (const p of n.boundPorts ?? []) out.set(p, [...(out.get(p) ?? []), n.name]);
  }
  return out;
}

/**
 * Claims published ports not already held by this service (`held`: ports it keeps). A port a
 * process listens on at some node cannot be published (the node would take its traffic away,
 * or the process would shadow a host-mode port); an auto-assigned port skips those.
 */
async function claimPorts(store: Store, serviceId: string, name: string, ports: PortConfig[], held: Set<string>): Promise<{ ports: PortConfig[]; claims: Array<Claim<number>> }> {
  const claims: Array<Claim<number>> = [];
  const out: PortConfig[] = [];
  const bound = await boundOnNodes(store);
  for (const p of ports) {
    if (p.published !== 0 && held.has(portKey(p))) {
      out.push(p);
      continue;
    }
    const busy = p.published !== 0 ? bound.get(portKey(p)) : undefined;
    if (busy) {
      throw conflict(`port ${portKey(p)} is already in use on node${busy.length > 1 ? 's' : ''} ${busy.join(', ')} (a process there listens on it); choose another published port`, 'PORT_IN_USE');
    }
    const c = await alloc.port(store, {
      protocol: p.protocol, requested: p.published === 0 ? undefined : p.published, owner: `service:${serviceId}`, label: `service '${name}'`, pending: claims,
      avoid: (port) => bound.has(`${port}/${p.protocol}`),
    });
    claims.push(c);
    out.push({ ...p, published: c.value });
  }
  return { ports: out, claims };
}

async function claimVips(store: Store, serviceId: string, nets: Network[], keep: Service['vips']): Promise<{ vips: Service['vips']; claims: Array<Claim<string>> }> {
  const vips: Service['vips'] = {};
  const claims: Array<Claim<string>> = [];
  for (const net of nets) {
    const kept = keep[net.id];
    if (kept) {
      vips[net.id] = kept;
      continue;
    }
    const v4 = await alloc.address(store, { networkId: net.id, subnet: net.ipam.v4.subnet, gateway: net.ipam.v4.gateway, owner: `vip:${serviceId}`, networkName: net.name });
    claims.push(v4);
    vips[net.id] = { v4: v4.value };
    if (net.ipam.v6) {
      const v6 = await alloc.address(store, { networkId: net.id, subnet: net.ipam.v6.subnet, gateway: net.ipam.v6.gateway, owner: `vip:${serviceId}`, networkName: net.name });
      claims.push(v6);
      vips[net.id] = { v4: v4.value, v6: v6.value };
    }
  }
  return { vips, claims };
}

function releaseVips(vips: Service['vips'], except: Set<string> = new Set()): TxnOp[] {
  return Object.entries(vips).filter(([net]) => !except.has(net)).flatMap(([net, a]) => [
    ...alloc.releaseAddress(net, a.v4),
    ...(a.v6 ? alloc.releaseAddress(net, a.v6) : []),
  ]);
}

function releasePorts(ports: PortConfig[], except: Set<string> = new Set()): TxnOp[] {
  return ports.filter((p) => !except.has(portKey(p))).flatMap((p) => alloc.releasePort(p.protocol, p.published));
}

export async function createService(store: Store, req: ServiceCreate): Promise<Service> {
  const nameInUse = `service name '${req.name}' is already in use (shoal service ls lists services)`;
  if (await store.get(nameKey('services', req.name))) throw conflict(nameInUse, 'NAME_IN_USE');
  const nets = await resolveNetworks(store, req.networks);
  const id = newId();
  let created: Service | undefined;
  await alloc.commit(store, async () => {
    const now = new Date().toISOString();
    const { ports, claims: portClaims } = await claimPorts(store, id, req.name, req.ports, new Set());
    const { vips, claims: vipClaims } = req.endpointMode === 'vip'
      ? await claimVips(store, id, nets.map((n) => n.net), {})
      : { vips: {}, claims: [] };
    const spec: ServiceSpec = {
      name: req.name, endpointMode: req.endpointMode, replicas: req.replicas, ports,
      networks: nets.map((n): ServiceNetwork => ({ network: n.net.id, aliases: n.aliases })),
      command: req.command, env: req.env, labels: req.labels,
    };
    if (req.healthCheck) spec.healthCheck = req.healthCheck;
    copyLbFields(spec, req);
    applySwarmCreate(spec, req);
    const svc: Service = { id, version: 1, spec, vips, createdAt: now, updatedAt: now };
    const claims = [...portClaims, ...vipClaims];
    created = svc;
    return {
      compares: [nameFree('services', req.name), ...claims.flatMap((c) => c.compares)],
      success: [...claims.flatMap((c) => c.ops), putName('services', req.name, id), putObject('services', id, svc)],
    };
  }, nameInUse);
  if (!created) throw conflict(`service '${req.name}' could not be created`);
  return created;
}

/** The optional DNS/load-balancing fields given in `from` (create or update) onto `spec`. */
function copyLbFields(spec: ServiceSpec, from: ServiceLbFields): void {
  if (from.dnsOptions !== undefined) spec.dnsOptions = from.dnsOptions;
  if (from.scheduler !== undefined) spec.scheduler = from.scheduler;
  if (from.affinityTimeoutSeconds !== undefined) spec.affinityTimeoutSeconds = from.affinityTimeoutSeconds;
  if (from.drainTimeoutMs !== undefined) spec.drainTimeoutMs = from.drainTimeoutMs;
  if (from.trafficPolicy !== undefined) spec.trafficPolicy = from.trafficPolicy;
}

/**
 * Applies an update. With `u.version` the update is refused if the service changed since the
 * caller read that version (Docker's `--version` / swarmkit's optimistic concurrency). The spec
 * it replaces is kept as `previousSpec` (for `service rollback`); when the change replaces tasks,
 * `updateStatus` says a rolling update started (the scheduler carries it out).
 */
export async function updateService(store: Store, ref: string, u: ServiceUpdate): Promise<Service> {
  const current = await resolveObject(store, 'services', ref);
  checkVersion(current.obj, u.version);
  const nets = u.networks ? await resolveNetworks(store, u.networks) : undefined;
  return commitSpec(store, current.obj.id, u.version, (old) => {
    const spec: ServiceSpec = { ...old.spec };
    if (u.replicas !== undefined) spec.replicas = u.replicas;
    if (u.endpointMode !== undefined) spec.endpointMode = u.endpointMode;
    if (u.command !== undefined) spec.command = u.command;
    if (u.env !== undefined) spec.env = u.env;
    if (u.labels !== undefined) spec.labels = u.labels;
    if (u.healthCheck !== undefined) spec.healthCheck = u.healthCheck;
    copyLbFields(spec, u);
    mergeSwarmUpdate(spec, u);
    if (nets) spec.networks = nets.map((n) => ({ network: n.net.id, aliases: n.aliases }));
    return { spec, nets: nets?.map((n) => n.net), portsGiven: u.ports !== undefined, ports: u.ports ?? spec.ports, status: 'updating', message: 'update in progress' };
  });
}

/** Options of {@link rollbackService}. */
export interface RollbackOptions {
  /** Why (an automatic rollback's failure); default: asked for by the user. */
  reason?: string;
  /** Refused unless the service is at this version (optimistic concurrency). */
  expectVersion?: number;
}

/**
 * Puts the previous spec back (Docker's `service rollback`): the current spec becomes the
 * previous one, and the scheduler replaces the tasks with the rollback config.
 */
export async function rollbackService(store: Store, ref: string, o: RollbackOptions = {}): Promise<Service> {
  const current = await resolveObject(store, 'services', ref);
  checkVersion(current.obj, o.expectVersion);
  if (!current.obj.previousSpec) throw invalid(`service '${current.obj.spec.name}' has no previous spec to roll back to (it was never updated)`, 'NO_PREVIOUS_SPEC');
  return commitSpec(store, current.obj.id, o.expectVersion, (old) => {
    const prev = old.previousSpec;
    if (!prev) throw invalid(`service '${old.spec.name}' has no previous spec to roll back to`, 'NO_PREVIOUS_SPEC');
    return { spec: { ...prev, name: old.spec.name }, portsGiven: true, ports: prev.ports, status: 'rollback_started', message: o.reason ?? 'manually requested rollback' };
  });
}

function checkVersion(svc: Service, version: number | undefined): void {
  if (version !== undefined && version !== svc.version) {
    throw conflict(`service '${svc.spec.name}' is at version ${svc.version}, not ${version}: it changed since you read it; inspect it again`, 'VERSION_MISMATCH');
  }
}

interface NextSpec {
  spec: ServiceSpec;
  /** Networks already resolved (by the caller), by id. */
  nets?: Network[] | undefined;
  /** Ports to claim (kept ones stay held), when `portsGiven`. */
  portsGiven: boolean;
  ports: PortConfig[];
  /** The update status to record when the tasks must be replaced. */
  status: UpdateStatus['state'];
  message: string;
}

/** Claims what the next spec needs (ports, VIPs), releases what it no longer holds, writes it. */
async function commitSpec(store: Store, id: string, version: number | undefined, next: (old: Service) => NextSpec): Promise<Service> {
  let updated: Service | undefined;
  await alloc.commit(store, async () => {
    const v = await resolveObject(store, 'services', id);
    if (version !== undefined && v.obj.version !== version) {
      throw conflict(`service '${v.obj.spec.name}' changed while being updated; inspect it again`, 'VERSION_MISMATCH');
    }
    const old = v.obj;
    const n = next(old);
    const spec = n.spec;
    if (spec.endpointMode === 'dnsrr' && n.ports.some((p) => p.mode === 'ingress')) {
      throw invalid(`dnsrr services cannot publish ingress ports (there is no VIP to balance them)`);
    }
    // Ports: keep the ones that stay (same published/protocol), claim new ones, release the rest.
    const oldPorts = new Set(old.spec.ports.map(portKey));
    let portClaims: Array<Claim<number>> = [];
    let releasedPorts: TxnOp[] = [];
    if (n.portsGiven) {
      const r = await claimPorts(store, old.id, old.spec.name, n.ports, oldPorts);
      spec.ports = r.ports;
      portClaims = r.claims;
      releasedPorts = releasePorts(old.spec.ports, new Set(spec.ports.map(portKey)));
    }
    // VIPs: one per network in vip mode; released for networks left or when switching to dnsrr.
    const netIds = spec.networks.map((x) => x.network);
    const wanted = spec.endpointMode === 'vip' ? netIds : [];
    const keep: Service['vips'] = Object.fromEntries(Object.entries(old.vips).filter(([x]) => wanted.includes(x)));
    const netObjs: Network[] = [];
    for (const nid of wanted) netObjs.push(n.nets?.find((x) => x.id === nid) ?? (await resolveObject(store, 'networks', nid)).obj);
    const { vips, claims: vipClaims } = await claimVips(store, old.id, netObjs, keep);
    const now = new Date().toISOString();
    const nextSvc: Service = { ...old, spec, previousSpec: old.spec, vips, version: old.version + 1, updatedAt: now };
    // Tasks are replaced only when what they run changed: then a rolling update starts.
    if (specHash(nextSvc) !== specHash(old)) nextSvc.updateStatus = { state: n.status, startedAt: now, message: n.message };
    const claims = [...portClaims, ...vipClaims];
    updated = nextSvc;
    const compares: Compare[] = [unchanged('services', old.id, v.modRevision), ...claims.flatMap((c) => c.compares)];
    return {
      compares,
      success: [...claims.flatMap((c) => c.ops), ...releasedPorts, ...releaseVips(old.vips, new Set(Object.keys(keep))), putObject('services', old.id, nextSvc)],
    };
  });
  if (!updated) throw conflict(`service '${id}' could not be updated`);
  return updated;
}

/** Removes the service and releases its VIPs and ports; its tasks are shut down by the scheduler. */
export async function removeService(store: Store, ref: string): Promise<Service> {
  for (let attempt = 0; attempt < 8; attempt++) {
    const v = await resolveObject(store, 'services', ref);
    const res = await store.txn({
      compare: [unchanged('services', v.obj.id, v.modRevision)],
      success: [deleteObject('services', v.obj.id), deleteName('services', v.obj.spec.name), ...releaseVips(v.obj.vips), ...releasePorts(v.obj.spec.ports)],
    });
    if (res.succeeded) return v.obj;
  }
  throw conflict(`service '${ref}' kept changing while being removed; try again`);
}

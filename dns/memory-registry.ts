/**
 * The in-memory {@link Registry} the agent feeds from its watch index.
 *
 * Ownership: only the upsert/remove methods write; {@link MemoryRegistry.lookup} only reads.
 * Every update costs O(size of the changed object) (its names, aliases, ports, addresses);
 * every lookup is a few map gets per network plus the size of the answer. Records may arrive
 * in any order (a task before its service, a service before its network).
 */
import type {
  NetworkRecord,
  Registry,
  RegistryAnswer,
  ServicePortRecord,
  ServiceRecord,
  TaskRecord,
} from './registry.js';
import { RRType } from './wire/constants.js';
import { addressKey, reverseNameKey } from './wire/ip.js';
import { nameKey } from './wire/name.js';
import type { ResourceRecord } from './wire/records.js';

/** Options of {@link MemoryRegistry}. */
export interface MemoryRegistryOptions {
  /** TTL (s) for networks that do not set one. Low on purpose: answers must not outlive tasks. Default 5. */
  defaultTtl?: number;
}

interface ServiceState {
  rec: ServiceRecord;
  json: string;
  nets: Map<string, { aliases: readonly string[]; vip4?: string; vip6?: string }>;
  unbind: Array<() => void>;
}

interface TaskState {
  rec: TaskRecord;
  json: string;
  nets: Map<string, { v4?: string; v6?: string }>;
  unbind: Array<() => void>;
}

/** Why a name exists in a network. */
type Binding =
  | { kind: 'service'; svc: ServiceState; network: string }
  | { kind: 'tasks'; svc: ServiceState; network: string }
  | { kind: 'task'; task: TaskState; network: string };

interface SrvBinding {
  svc: ServiceState;
  port: ServicePortRecord;
  network: string;
}

/** One network's names. Keys are name keys (lowercase); values are sets so owners can overlap. */
interface NetIndex {
  names: Map<string, Set<Binding>>;
  srv: Map<string, Set<SrvBinding>>;
  /** Address key -> owners of that address. */
  ptr: Map<string, Set<Binding>>;
}

const keyOrUndefined = (name: string): string | undefined => {
  try {
    const k = nameKey(name);
    return k === '' ? undefined : k;
  } catch {
    // An invalid name can never be queried; skipping it beats throwing into the agent's watch loop.
    return undefined;
  }
};

/**
 * In-memory registry of networks, services and tasks.
 *
 * Upserts are idempotent (an identical record is a no-op and does not bump {@link version});
 * removes of unknown ids are no-ops.
 */
export class MemoryRegistry implements Registry {
  private ver = 0;
  private readonly defaultTtl: number;
  private readonly networks = new Map<string, NetworkRecord>();
  private readonly networkByName = new Map<string, string>();
  private readonly index = new Map<string, NetIndex>();
  private readonly services = new Map<string, ServiceState>();
  private readonly tasks = new Map<string, TaskState>();
  /** Service id -> its tasks, kept even before the service itself is known. */
  private readonly tasksByService = new Map<string, Map<string, TaskState>>();

  constructor(options: MemoryRegistryOptions = {}) {
    this.defaultTtl = options.defaultTtl ?? 5;
  }

  /** @inheritdoc */
  get version(): number {
    return this.ver;
  }

  /** Adds or replaces a network (its name and TTL). */
  upsertNetwork(rec: NetworkRecord): void {
    const old = this.networks.get(rec.id);
    if (old && old.name === rec.name && old.ttl === rec.ttl) return;
    if (old) this.dropNetworkName(old);
    this.networks.set(rec.id, { ...rec });
    const k = keyOrUndefined(rec.name);
    if (k !== undefined) this.networkByName.set(k, rec.id);
    this.ver++;
  }

  /**
   * Forgets a network's name and TTL. Services and tasks attached to it keep their records
   * until they are removed or updated (the agent removes them first in practice).
   */
  removeNetwork(id: string): void {
    const old = this.networks.get(id);
    if (!old) return;
    this.dropNetworkName(old);
    this.networks.delete(id);
    this.ver++;
  }

  /** Adds or replaces a service: its names, aliases, VIPs and SRV ports on each network. */
  upsertService(rec: ServiceRecord): void {
    const json = JSON.stringify(rec);
    const old = this.services.get(rec.id);
    if (old?.json === json) return;
    if (old) for (const u of old.unbind) u();
    const st: ServiceState = old ?? { rec, json, nets: new Map(), unbind: [] };
    st.rec = rec;
    st.json = json;
    st.nets.clear();
    st.unbind = [];
    this.services.set(rec.id, st);
    const name = keyOrUndefined(rec.name);
    for (const n of rec.networks) {
      const aliases = (n.aliases ?? []).map(keyOrUndefined).filter((a): a is string => a !== undefined);
      st.nets.set(n.network, { aliases, ...(n.vip?.v4 ? { vip4: n.vip.v4 } : {}), ...(n.vip?.v6 ? { vip6: n.vip.v6 } : {}) });
      const ix = this.netIndex(n.network);
      const svcBinding: Binding = { kind: 'service', svc: st, network: n.network };
      const tasksBinding: Binding = { kind: 'tasks', svc: st, network: n.network };
      const names = name === undefined ? aliases : [name, ...aliases];
      for (const nm of names) {
        bind(ix.names, nm, svcBinding, st.unbind);
        bind(ix.names, `tasks.${nm}`, tasksBinding, st.unbind);
        for (const port of rec.ports ?? []) {
          const pk = keyOrUndefined(`_${port.name}._${port.protocol}`);
          if (pk !== undefined) bind(ix.srv, `${pk}.${nm}`, { svc: st, port, network: n.network }, st.unbind);
        }
      }
      for (const vip of [n.vip?.v4, n.vip?.v6]) {
        const ak = vip === undefined ? undefined : addressKey(vip);
        if (ak !== undefined) bind(ix.ptr, ak, svcBinding, st.unbind);
      }
    }
    this.ver++;
  }

  /** Removes a service's names. Its tasks stay known (they usually leave right after). */
  removeService(id: string): void {
    const st = this.services.get(id);
    if (!st) return;
    for (const u of st.unbind) u();
    this.services.delete(id);
    this.ver++;
  }

  /** Adds or replaces a task: its names, aliases, addresses and health. */
  upsertTask(rec: TaskRecord): void {
    const json = JSON.stringify(rec);
    const old = this.tasks.get(rec.id);
    if (old?.json === json) return;
    if (old) {
      for (const u of old.unbind) u();
      if (old.rec.serviceId !== rec.serviceId) this.detachTask(old);
    }
    const st: TaskState = old ?? { rec, json, nets: new Map(), unbind: [] };
    st.rec = rec;
    st.json = json;
    st.nets.clear();
    st.unbind = [];
    this.tasks.set(rec.id, st);
    let siblings = this.tasksByService.get(rec.serviceId);
    if (!siblings) this.tasksByService.set(rec.serviceId, (siblings = new Map()));
    siblings.set(rec.id, st);
    const long = keyOrUndefined(`${rec.serviceName}.${rec.slot}.${rec.id}`);
    const short = keyOrUndefined(`${rec.serviceName}.${rec.slot}`);
    for (const n of rec.networks) {
      st.nets.set(n.network, { ...(n.v4 ? { v4: n.v4 } : {}), ...(n.v6 ? { v6: n.v6 } : {}) });
      const ix = this.netIndex(n.network);
      const b: Binding = { kind: 'task', task: st, network: n.network };
      for (const nm of [long, short, ...(n.aliases ?? []).map(keyOrUndefined)]) {
        if (nm !== undefined) bind(ix.names, nm, b, st.unbind);
      }
      for (const a of [n.v4, n.v6]) {
        const ak = a === undefined ? undefined : addressKey(a);
        if (ak !== undefined) bind(ix.ptr, ak, b, st.unbind);
      }
    }
    this.ver++;
  }

  /** Removes a task (it leaves the service's answers at once). */
  removeTask(id: string): void {
    const st = this.tasks.get(id);
    if (!st) return;
    for (const u of st.unbind) u();
    this.detachTask(st);
    this.tasks.delete(id);
    this.ver++;
  }

  /** @inheritdoc */
  lookup(networks: readonly string[], name: string, qtype: number): RegistryAnswer | undefined {
    if (name.endsWith('.arpa')) {
      const ak = reverseNameKey(name);
      if (ak !== undefined) {
        for (const net of networks) {
          const owners = this.index.get(net)?.ptr.get(ak);
          if (owners && owners.size > 0) return this.ptrAnswer(net, name, owners, qtype);
        }
        return undefined;
      }
    }
    // `<name>.<network>`: only that network, and only if it is in scope.
    const dot = name.lastIndexOf('.');
    if (dot > 0) {
      const net = this.networkByName.get(name.slice(dot + 1));
      if (net !== undefined && networks.includes(net)) {
        const a = this.lookupIn(net, name.slice(0, dot), name, qtype);
        if (a) return a;
      }
    }
    for (const net of networks) {
      const a = this.lookupIn(net, name, name, qtype);
      if (a) return a;
    }
    return undefined;
  }

  private lookupIn(net: string, key: string, owner: string, qtype: number): RegistryAnswer | undefined {
    const ix = this.index.get(net);
    if (!ix) return undefined;
    if (key.charCodeAt(0) === 0x5f /* _ */) {
      const srv = ix.srv.get(key);
      if (srv && srv.size > 0) return this.srvAnswer(net, owner, srv, qtype);
    }
    const owners = ix.names.get(key);
    if (!owners || owners.size === 0) return undefined;
    const ttl = this.ttlOf(net);
    const v4 = new Set<string>();
    const v6 = new Set<string>();
    let shuffle = false;
    for (const b of owners) {
      if (b.kind === 'task') {
        const a = b.task.nets.get(net);
        if (a?.v4) v4.add(a.v4);
        if (a?.v6) v6.add(a.v6);
      } else if (b.kind === 'service' && b.svc.rec.endpointMode === 'vip') {
        const n = b.svc.nets.get(net);
        if (n?.vip4) v4.add(n.vip4);
        if (n?.vip6) v6.add(n.vip6);
      } else {
        shuffle = true;
        this.healthyAddresses(b.svc.rec.id, net, v4, v6);
      }
    }
    const answer: ResourceRecord[] = [];
    if (qtype === RRType.A || qtype === RRType.ANY) for (const address of v4) answer.push({ name: owner, ttl, type: 'A', address });
    if (qtype === RRType.AAAA || qtype === RRType.ANY) for (const address of v6) answer.push({ name: owner, ttl, type: 'AAAA', address });
    return { network: net, ttl, answer, additional: [], shuffle };
  }

  private srvAnswer(net: string, owner: string, bindings: Set<SrvBinding>, qtype: number): RegistryAnswer {
    const ttl = this.ttlOf(net);
    const answer: ResourceRecord[] = [];
    const additional: ResourceRecord[] = [];
    if (qtype !== RRType.SRV && qtype !== RRType.ANY) return { network: net, ttl, answer, additional, shuffle: false };
    const glue = (target: string, v4?: string, v6?: string): void => {
      if (v4) additional.push({ name: target, ttl, type: 'A', address: v4 });
      if (v6) additional.push({ name: target, ttl, type: 'AAAA', address: v6 });
    };
    for (const b of bindings) {
      const rec = b.svc.rec;
      if (rec.endpointMode === 'vip') {
        const n = b.svc.nets.get(net);
        const target = this.fqdn(rec.name, net);
        answer.push({ name: owner, ttl, type: 'SRV', priority: 0, weight: 0, port: b.port.port, target });
        glue(target, n?.vip4, n?.vip6);
        continue;
      }
      for (const t of this.tasksByService.get(rec.id)?.values() ?? []) {
        const a = t.nets.get(net);
        if (!t.rec.healthy || !a) continue;
        const target = this.fqdn(`${t.rec.serviceName}.${t.rec.slot}.${t.rec.id}`, net);
        answer.push({ name: owner, ttl, type: 'SRV', priority: 0, weight: 0, port: b.port.port, target });
        glue(target, a.v4, a.v6);
      }
    }
    return { network: net, ttl, answer, additional, shuffle: false };
  }

  private ptrAnswer(net: string, owner: string, owners: Set<Binding>, qtype: number): RegistryAnswer {
    const ttl = this.ttlOf(net);
    const answer: ResourceRecord[] = [];
    if (qtype === RRType.PTR || qtype === RRType.ANY) {
      const seen = new Set<string>();
      for (const b of owners) {
        const short = b.kind === 'task' ? `${b.task.rec.serviceName}.${b.task.rec.slot}.${b.task.rec.id}` : b.svc.rec.name;
        const target = this.fqdn(short, net);
        if (seen.has(target)) continue;
        seen.add(target);
        answer.push({ name: owner, ttl, type: 'PTR', target });
      }
    }
    return { network: net, ttl, answer, additional: [], shuffle: false };
  }

  private healthyAddresses(serviceId: string, net: string, v4: Set<string>, v6: Set<string>): void {
    for (const t of this.tasksByService.get(serviceId)?.values() ?? []) {
      if (!t.rec.healthy) continue;
      const a = t.nets.get(net);
      if (a?.v4) v4.add(a.v4);
      if (a?.v6) v6.add(a.v6);
    }
  }

  /** `<short>.<network>.`, which this registry resolves back; `<short>.` if the network is unnamed. */
  private fqdn(short: string, net: string): string {
    const n = this.networks.get(net);
    return n ? `${short}.${n.name}.` : `${short}.`;
  }

  private ttlOf(net: string): number {
    return this.networks.get(net)?.ttl ?? this.defaultTtl;
  }

  private netIndex(id: string): NetIndex {
    let ix = this.index.get(id);
    if (!ix) this.index.set(id, (ix = { names: new Map(), srv: new Map(), ptr: new Map() }));
    return ix;
  }

  private dropNetworkName(rec: NetworkRecord): void {
    const k = keyOrUndefined(rec.name);
    if (k !== undefined && this.networkByName.get(k) === rec.id) this.networkByName.delete(k);
  }

  private detachTask(st: TaskState): void {
    const siblings = this.tasksByService.get(st.rec.serviceId);
    siblings?.delete(st.rec.id);
    if (siblings?.size === 0) this.tasksByService.delete(st.rec.serviceId);
  }
}

function bind<T>(map: Map<string, Set<T>>, key: string, value: T, unbind: Array<() => void>): void {
  let set = map.get(key);
  if (!set) map.set(key, (set = new Set()));
  set.add(value);
  unbind.push(() => {
    const s = map.get(key);
    if (!s) return;
    s.delete(value);
    if (s.size === 0) map.delete(key);
  });
}

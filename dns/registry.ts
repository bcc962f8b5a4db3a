/**
 * The contract between the resolver and whatever knows the cluster: the {@link Registry}
 * answers names for a scope (the querying task's networks, in search order), and the input
 * records the agent feeds into {@link MemoryRegistry} (`memory-registry.ts`).
 *
 * Names are keys as produced by `wire/name.ts`: lowercased, no trailing dot.
 */
import type { ResourceRecord } from './wire/records.js';

/** What the registry knows about a name in one network. */
export interface RegistryAnswer {
  /** Id of the network whose records answered (answers are never merged across networks). */
  network: string;
  /** TTL of every record, from that network's configuration. */
  ttl: number;
  /**
   * Answer records, owned by the question name. Empty means the name exists but has no data of
   * the asked type: NOERROR with an empty answer (NODATA), never forwarded upstream.
   */
  answer: readonly ResourceRecord[];
  /** Glue for SRV targets (their A/AAAA records). */
  additional: readonly ResourceRecord[];
  /** True when the order means nothing and responses should shuffle it (dnsrr services, tasks.svc). */
  shuffle: boolean;
}

/**
 * Name lookups over the cluster's services and tasks, scoped to networks.
 *
 * Contract: {@link lookup} is synchronous, O(1) in the number of services (map lookups per
 * network) and side-effect free; it returns undefined when no network of the scope knows the
 * name (the chain then forwards it). {@link version} changes whenever any answer may have
 * changed, so callers may cache answers keyed by it.
 */
export interface Registry {
  /** Bumped on every change that can alter an answer. */
  readonly version: number;
  /**
   * @param networks network ids in search order; the first one that knows the name answers.
   * @param name question name key (`web`, `tasks.web`, `web.app`, `_http._tcp.web`, a reverse name).
   * @param qtype the question type (A, AAAA, PTR, SRV, ANY...).
   */
  lookup(networks: readonly string[], name: string, qtype: number): RegistryAnswer | undefined;
}

/** A network as the resolver needs it. */
export interface NetworkRecord {
  id: string;
  /** Network name: `<svc>.<name>` resolves in this network only. */
  name: string;
  /** TTL (seconds) of answers from this network; the registry default (5 s) when absent. */
  ttl?: number;
}

/** A service port that has a name, published as SRV `_<name>._<protocol>.<service>`. */
export interface ServicePortRecord {
  name: string;
  protocol: 'tcp' | 'udp';
  /** Port inside the tasks (a VIP forwards the same port). */
  port: number;
}

/** A service as the resolver needs it. */
export interface ServiceRecord {
  id: string;
  name: string;
  /** `vip`: the name resolves to the VIP; `dnsrr`: to the healthy tasks' addresses, shuffled. */
  endpointMode: 'vip' | 'dnsrr';
  networks: ReadonlyArray<{
    network: string;
    /** Extra names of the service on this network (network aliases). */
    aliases?: readonly string[];
    /** The service's VIP on this network (vip mode). */
    vip?: { v4?: string; v6?: string };
  }>;
  ports?: readonly ServicePortRecord[];
}

/** A task (replica) as the resolver needs it. */
export interface TaskRecord {
  id: string;
  serviceId: string;
  serviceName: string;
  /** Replica slot (a global service's task: its node id): the task is `<service>.<slot>.<id>` and `<service>.<slot>`. */
  slot: number | string;
  /** Only healthy tasks are returned for the service name (dnsrr) and `tasks.<service>`. */
  healthy: boolean;
  networks: ReadonlyArray<{
    network: string;
    v4?: string;
    v6?: string;
    /** Extra names of this task on this network. */
    aliases?: readonly string[];
  }>;
}

/**
 * The node's embedded DNS: one resolver (registry + chain) fed from the agent's watch index,
 * and one listener (UDP + TCP :53) on the gateway of every local bridge/overlay network.
 *
 * Scoping: a query is answered for the networks of the task that sent it (found by its source
 * address), in the order its service lists them; a query from an unknown address sees only the
 * network it arrived on. Network B's names are never answered on network A's listener unless
 * the asking task is on B too.
 *
 * Only the agent calls this: `apply()` from index changes (O(change)), `ensureListeners()`
 * from its sync.
 */
import {
  cachePlugin, DnsCache, DnsServer, Forwarder, forwardPlugin, MemoryRegistry, networkRecordOf, noopMetrics,
  scopeOf, serviceRecordOf, standardChain, taskRecordOf, type DnsMetrics, type Scope, type UpstreamAddress,
} from '../../dns/index.js';
import { parseObjectKey } from '../../src/model/keys.js';
import { DNS_TTL_OPTION } from '../api/validate.js';
import type { Network, Service, Task } from '../../src/model/types.js';
import type { IndexChange } from './local-index.js';

/** The network's `dns.ttl` option (validated by the API: 0-3600), if set. */
export function dnsTtlOf(n: Network): number | undefined {
  const v = n.options[DNS_TTL_OPTION];
  return v === undefined ? undefined : Number(v);
}

export interface NodeDnsOptions {
  /** Upstream resolvers for names Shoal does not know; default: the host's /etc/resolv.conf. */
  upstreams?: UpstreamAddress[];
  /** Port of the listeners (53; tests may pick another). */
  port?: number;
  metrics?: DnsMetrics;
  log?: (msg: string) => void;
}

export class NodeDns {
  readonly registry = new MemoryRegistry();
  private readonly servers = new Map<string, { server: DnsServer; gateway: string }>();
  private forwarder: Forwarder | undefined;
  private handler: ReturnType<typeof standardChain> | undefined;
  /** Task address -> task id, and what scoping needs, kept from the index changes. */
  private readonly taskByAddress = new Map<string, string>();
  private readonly tasks = new Map<string, Task>();
  private readonly services = new Map<string, Service>();
  private readonly networkNames = new Map<string, string>();

  constructor(private readonly opts: NodeDnsOptions = {}) {}

  private async chain(): Promise<ReturnType<typeof standardChain>> {
    if (this.handler) return this.handler;
    const metrics = this.opts.metrics ?? noopMetrics;
    this.forwarder = this.opts.upstreams
      ? new Forwarder({ upstreams: this.opts.upstreams, metrics })
      : await Forwarder.fromResolvConf('/etc/resolv.conf', { metrics, exclude: ['127.0.0.11'] });
    this.handler = standardChain({ registry: this.registry, metrics, cache: cachePlugin(new DnsCache({ metrics })), forward: forwardPlugin(this.forwarder) });
    return this.handler;
  }

  /** Applies watch-index changes to the registry: each change costs O(that object) (the index parsed it already). */
  apply(changes: IndexChange[]): void {
    for (const c of changes) {
      const o = parseObjectKey(c.key);
      if (!o) continue;
      if (o.kind === 'networks') {
        if (c.next) {
          const n = (c.after ?? JSON.parse(c.next)) as Network;
          this.networkNames.set(n.id, n.name);
          this.registry.upsertNetwork(networkRecordOf(n, dnsTtlOf(n)));
        } else {
          this.networkNames.delete(o.id);
          this.registry.removeNetwork(o.id);
        }
      } else if (o.kind === 'services') {
        if (c.next) {
          const s = (c.after ?? JSON.parse(c.next)) as Service;
          this.services.set(s.id, s);
          this.registry.upsertService(serviceRecordOf(s));
        } else {
          this.services.delete(o.id);
          this.registry.removeService(o.id);
        }
      } else if (o.kind === 'tasks') {
        const prev = this.tasks.get(o.id);
        if (prev) for (const a of Object.values(prev.addresses)) if (this.taskByAddress.get(a.v4) === o.id) this.taskByAddress.delete(a.v4);
        if (c.next) {
          const t = (c.after ?? JSON.parse(c.next)) as Task;
          this.tasks.set(t.id, t);
          this.registry.upsertTask(taskRecordOf(t));
          if (t.desiredState === 'running') for (const a of Object.values(t.addresses)) this.taskByAddress.set(a.v4, t.id);
        } else {
          this.tasks.delete(o.id);
          this.registry.removeTask(o.id);
        }
      }
    }
  }

  /** The networks a client at `address` may see, in its service's order. */
  scopeOfClient(address: string): Scope | undefined {
    const t = this.tasks.get(this.taskByAddress.get(address.replace(/^::ffff:/, '')) ?? '');
    const svc = t ? this.services.get(t.serviceId) : undefined;
    if (!svc) return undefined;
    const ids = svc.spec.networks.map((n) => n.network);
    return scopeOf(ids, this.networkNames.get(ids[0] ?? '') ?? ids[0]);
  }

  /**
   * Listens on the gateway of each of `nets` (bridge and overlay), stops listening on the
   * others. Each listener on its own: one that cannot start (its address not there yet) does
   * not keep the others from starting; the first error is thrown after all were tried.
   */
  async ensureListeners(nets: Network[]): Promise<void> {
    const wanted = new Map(nets.filter((n) => n.driver !== 'macvlan').map((n) => [n.id, n]));
    const errors: unknown[] = [];
    for (const [id, s] of this.servers) {
      const n = wanted.get(id);
      if (n && n.ipam.v4.gateway === s.gateway) continue;
      this.servers.delete(id);
      await s.server.close().catch((e: unknown) => errors.push(e));
    }
    for (const [id, n] of wanted) {
      if (this.servers.has(id)) continue;
      try {
        const server = new DnsServer({
          address: n.ipam.v4.gateway, port: this.opts.port ?? 53, handler: await this.chain(),
          scope: scopeOf([n.id], n.name), scopeOfClient: (a) => this.scopeOfClient(a),
          ...(this.opts.metrics ? { metrics: this.opts.metrics } : {}),
        });
        await server.start();
        this.servers.set(id, { server, gateway: n.ipam.v4.gateway });
        this.opts.log?.(`dns: listening on ${n.ipam.v4.gateway}:${this.opts.port ?? 53} for network ${n.name}`);
      } catch (e) {
        errors.push(e);
      }
    }
    if (errors.length) throw errors[0];
  }

  async close(): Promise<void> {
    for (const s of this.servers.values()) await s.server.close();
    this.servers.clear();
    this.forwarder?.close();
  }
}

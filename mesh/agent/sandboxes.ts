/**
 * Task sandboxes: one network namespace per task, named `<nsPrefix><task id>`, with one
 * endpoint per network of the task's service (eth0, eth1, ... in the service's order; the
 * default route via the first network) and `/etc/netns/<name>/resolv.conf`, which
 * `ip netns exec` shows the task as its /etc/resolv.conf.
 *
 * Only the agent's task sync calls this (one call per task at a time). `ensure` is idempotent
 * and cheap once done: a sandbox whose endpoints match is not touched again.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { NetworkDriver } from '../../src/drivers/types.js';
import { deleteNetns, ExecNft, execTool, listNetns, sharedNetnsRoamer, type LinkOps, type Nft, type Sysctl } from '../../src/kernel/index.js';
import { isNotFound, notFound } from '../../src/errors.js';
import type { Network, NetworkDriver as DriverName, Task } from '../../src/model/types.js';
import { ensureSandboxDns, LOOPBACK_RESOLVER, resolvConf, SANDBOX_DNS_TABLE } from './sandbox-dns.js';

export interface SandboxOptions {
  drivers: ReadonlyMap<DriverName, NetworkDriver>;
  /** Prefix of the netns names this agent owns, e.g. `shoal-node1-`. */
  nsPrefix: string;
  /** Where `ip netns exec` looks for per-namespace files; default /etc/netns. */
  etcNetnsDir?: string;
  /**
   * How a sandbox is reached while it is set up: create the netns, bring `lo` up, return link
   * operations acting inside it and what to do when done. Default: the shared NetnsRoamer
   * (benchmarks plug in other ways to compare).
   */
  open?: (netns: string) => Promise<SandboxAccess>;
  /**
   * Docker's `127.0.0.11` resolver inside each sandbox (default true): resolv.conf names it and
   * the sandbox's nftables send it to the node's listener on the DNS gateway. False: resolv.conf
   * names the gateway itself (benchmarks comparing with plain `ip` set-up).
   */
  loopbackResolver?: boolean;
}

/** Link operations (and sysctls, nftables) inside a sandbox during its set-up. */
export interface SandboxAccess { links: LinkOps; sysctl?: Sysctl; nft?: Nft; done(): Promise<void> }

/** The resolver of a sandbox: the gateway whose listener serves it, and resolv.conf options. */
export interface SandboxDnsConfig {
  /** Gateway of the task's first bridge/overlay network; absent = no embedded resolver. */
  gateway?: string;
  /** resolv.conf `options` set by the service (`ndots:0` is added unless it sets ndots). */
  options?: string[];
}

/** One shared thread visits the sandbox per request (well under 1 ms), instead of a thread
 * started per sandbox (80-500 ms): namespace + loopback in one request. */
async function openWithRoamer(ns: string): Promise<SandboxAccess> {
  const roamer = await sharedNetnsRoamer();
  await roamer.ensureNetns(ns, [['setUp', 'lo']]);
  return { links: roamer.links(ns), sysctl: roamer.sysctl(ns), done: async () => undefined };
}

/** Whose sandbox: a task, or the node's ingress sandbox (an id and its addresses per network). */
export type SandboxOwner = Pick<Task, 'id' | 'addresses'>;

/** What a sandbox is made of; equal plans need no kernel work. */
function planKey(task: SandboxOwner, nets: Network[], dns: SandboxDnsConfig): string {
  return JSON.stringify([nets.map((n) => [n.id, task.addresses[n.id]]), dns.gateway, dns.options]);
}

export class Sandboxes {
  private readonly done = new Map<string, string>();
  private readonly etc: string;

  constructor(private readonly opts: SandboxOptions) {
    this.etc = opts.etcNetnsDir ?? '/etc/netns';
  }

  netnsOf(taskId: string): string { return `${this.opts.nsPrefix}${taskId}`; }

  private driver(net: Network): NetworkDriver {
    const d = this.opts.drivers.get(net.driver);
    if (!d) throw notFound(`network driver '${net.driver}' on this node`);
    return d;
  }

  /**
   * Makes the task's sandbox: namespace, loopback up, one endpoint per network, resolv.conf.
   * `nets` in the service's order; `dns` says which gateway's resolver serves the task.
   */
  async ensure(task: SandboxOwner, nets: Network[], dns: SandboxDnsConfig): Promise<string> {
    const ns = this.netnsOf(task.id);
    const key = planKey(task, nets, dns);
    const loopback = (this.opts.loopbackResolver ?? true) && dns.gateway !== undefined;
    if (this.done.get(task.id) === key) return ns;
    const access = await (this.opts.open ?? openWithRoamer)(ns);
    try {
      for (const [i, net] of nets.entries()) {
        const addr = task.addresses[net.id];
        if (!addr) throw notFound(`address of task ${task.id} on network ${net.name}`);
        const ep = { id: task.id, networkId: net.id, v4: addr.v4, ...(addr.v6 ? { v6: addr.v6 } : {}) };
        await this.driver(net).join(net, ep, { netns: ns, ifname: `eth${i}`, links: access.links }, { defaultRoute: i === 0 });
      }
      if (loopback && dns.gateway) {
        if (!access.sysctl) throw new Error('sandbox access without sysctls cannot set up the 127.0.0.11 resolver');
        await ensureSandboxDns(access.nft ?? new ExecNft({ netns: ns }), access.sysctl, dns.gateway);
      }
    } finally {
      await access.done();
    }
    mkdirSync(join(this.etc, ns), { recursive: true });
    const servers = loopback ? [LOOPBACK_RESOLVER] : dns.gateway ? [dns.gateway] : [];
    writeFileSync(join(this.etc, ns, 'resolv.conf'), resolvConf(servers, dns.options ?? []));
    this.done.set(task.id, key);
    return ns;
  }

  /** Whether `ensure` completed for `taskId` (and nothing invalidated it since). */
  isMade(taskId: string): boolean { return this.done.has(taskId); }

  /** Forget that the sandbox was made: the next `ensure` checks and converges everything again. */
  invalidate(taskId: string): void { this.done.delete(taskId); }

  /**
   * Drift of a made sandbox (empty: none): its netns exists (`present`: the names `ip netns`
   * lists), each endpoint interface is there, up, with its address, the default route goes
   * via the first network's gateway, `extraSysctls` hold, and the 127.0.0.11 redirect (table
   * and sysctl) is in place. Reads only; the caller invalidates and re-ensures.
   */
  async drift(task: SandboxOwner, nets: Network[], dns: SandboxDnsConfig, present: ReadonlySet<string>, extraSysctls?: Readonly<Record<string, number>>): Promise<string[]> {
    const ns = this.netnsOf(task.id);
    if (!present.has(ns)) return ['netns'];
    const out: string[] = [];
    const roamer = await sharedNetnsRoamer();
    const links = roamer.links(ns);
    for (const [i, net] of nets.entries()) {
      const addr = task.addresses[net.id];
      if (!addr) continue;
      const ifname = `eth${i}`;
      const link = await links.getLink(ifname);
      if (!link || !link.up) {
        out.push(`endpoint ${ifname}`);
        continue;
      }
      const have = await links.listAddresses(ifname);
      if (!have.some((c) => c.split('/')[0] === addr.v4)) out.push(`address ${ifname}`);
    }
    // The default route via the first network's gateway (LinkOps lists no routes: ask `ip`).
    const first = nets[0];
    if (first && task.addresses[first.id] && !out.some((p) => p.endsWith(' eth0'))) {
      const r = await execTool('sandbox.routes', 'ip', ['-n', ns, '-j', 'route', 'show', 'default'], { timeoutMs: 5000 });
      const routes = JSON.parse(r.stdout || '[]') as Array<{ gateway?: string }>;
      if (!routes.some((x) => x.gateway === first.ipam.v4.gateway)) out.push('default route');
    }
    if (extraSysctls) {
      for (const [k, v] of Object.entries(extraSysctls)) if ((await roamer.sysctl(ns).get(k)) !== String(v)) out.push(k);
    }
    if ((this.opts.loopbackResolver ?? true) && dns.gateway !== undefined) {
      try {
        await new ExecNft({ netns: ns }).list(SANDBOX_DNS_TABLE, 'ip');
      } catch (e) {
        if (!isNotFound(e)) throw e;
        out.push('dns-table');
      }
      if ((await roamer.sysctl(ns).get('net.ipv4.conf.all.route_localnet')) !== '1') out.push('route_localnet');
    }
    return out;
  }

  /** Removes the task's endpoints and namespace. Idempotent. */
  async remove(task: SandboxOwner, nets: Network[]): Promise<void> {
    const ns = this.netnsOf(task.id);
    for (const net of nets) {
      const addr = task.addresses[net.id];
      if (!addr) continue;
      await this.driver(net).leave(net, { id: task.id, networkId: net.id, v4: addr.v4 }, { netns: ns, ifname: '' });
    }
    await this.removeNamespace(task.id);
  }

  /** Deletes the task's namespace (its veth pairs and macvlans go with it). Idempotent. */
  async removeNamespace(taskId: string): Promise<void> {
    const ns = this.netnsOf(taskId);
    await deleteNetns(ns);
    rmSync(join(this.etc, ns), { recursive: true, force: true });
    this.done.delete(taskId);
  }

  /** Deletes namespaces with this agent's prefix whose task is not in `keep` (after a crash). */
  async cleanupLeftovers(keep: ReadonlySet<string>): Promise<string[]> {
    const removed: string[] = [];
    for (const ns of await listNetns()) {
      if (!ns.startsWith(this.opts.nsPrefix)) continue;
      const taskId = ns.slice(this.opts.nsPrefix.length);
      if (keep.has(taskId)) continue;
      await deleteNetns(ns);
      rmSync(join(this.etc, ns), { recursive: true, force: true });
      removed.push(ns);
    }
    return removed;
  }
}

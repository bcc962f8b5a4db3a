/**
 * Which VIP dataplane an agent runs in its task sandboxes. `auto`: IPVS when the kernel has the
 * `IPVS` generic-netlink family (asking for it autoloads ip_vs), else nftables. `none`: no VIP
 * balancing (names still resolve; connections to a VIP are not balanced). The userspace
 * dataplane serves hosts without root, where there are no sandboxes to program
 * (ingress/userspace; not chosen by the agent).
 */
import { IpvsLoadBalancer } from '../../ingress/ipvs/index.js';
import { NftLoadBalancer } from '../../ingress/nft/index.js';
import { ExecConntrack } from '../../src/kernel/conntrack.js';
import { LocalnetGuard } from '../../ingress/localnet.js';
import { ExecNft, hasIpvs, ipvsIn, netnsSysctl, type Sysctl, ProcSysctl } from '../../src/kernel/index.js';
import type { NodeLbOptions } from '../agent/lb.js';

export const DATAPLANE_CHOICES = ['auto', 'ipvs', 'nftables', 'none'] as const;
export type DataplaneChoice = (typeof DATAPLANE_CHOICES)[number];

/** The nftables table every sandbox's nftables dataplane owns. */
export const SANDBOX_LB_TABLE = 'shoal_lb';

export async function chooseDataplane(choice: DataplaneChoice, log: (m: string) => void): Promise<Pick<NodeLbOptions, 'kind' | 'make'> | undefined> {
  if (choice === 'none') return undefined;
  const ipvs = choice === 'ipvs' || (choice === 'auto' && await hasIpvs());
  if (choice === 'ipvs' && !await hasIpvs()) throw new Error('--lb-dataplane ipvs: this kernel has no IPVS (the IPVS generic-netlink family does not resolve; modprobe ip_vs, or use nftables)');
  if (ipvs) {
    return { kind: 'ipvs', make: (ns) => new IpvsLoadBalancer({ ipvs: ipvsIn(ns), sysctl: netnsSysctl(ns), nft: new ExecNft({ netns: ns }) }) };
  }
  if (choice === 'auto') log('load balancing: no IPVS in this kernel, using nftables');
  return {
    kind: 'nftables',
    make: (ns) => new NftLoadBalancer({ nft: new ExecNft({ netns: ns }), table: SANDBOX_LB_TABLE, conntrack: new ExecConntrack({ netns: ns }) }),
  };
}

/**
 * The host hop of published ports (the node's own namespace): always nftables, table
 * `<prefix>_publish`, frontends on every local address of the node (`fib daddr type local`;
 * 127.0.0.1 from the node itself too). A node publishes few ports, so what a removed port
 * leaves behind is deleted with every change (collectAt 0) rather than in bulk later: an
 * unpublished port leaves nothing in the node's ruleset.
 */
export function hostPublishDataplane(prefix: string): NftLoadBalancer {
  return new NftLoadBalancer({ nft: new ExecNft(), table: `${prefix}_publish`, conntrack: new ExecConntrack(), collectAt: () => 0, everyLocal: true });
}

/**
 * route_localnet and its guard table `<prefix>_localnet` in the node's namespace (published
 * ports on 127.0.0.1); `sysctl` is the node's (the agent's records what it changes for `shoal down`).
 */
export function hostLocalnetGuard(prefix: string, sysctl: Sysctl = new ProcSysctl()): LocalnetGuard {
  return new LocalnetGuard(new ExecNft(), sysctl, `${prefix}_localnet`);
}

/**
 * A warning when the node's address is a loopback address (given, or the default when
 * `--address` was left out): other nodes cannot reach it (overlay tunnels, their published
 * ports through this node, the ingress mesh), which used to fail silently with timeouts.
 */
export function loopbackWarning(address: string, defaulted: boolean): string | undefined {
  if (!/^127\./.test(address) && address !== '::1') return undefined;
  return `warning: the node address is ${address}${defaulted ? ' (no --address given)' : ''}, a loopback address: other nodes cannot reach this one `
    + '(overlay networks, the routing mesh); published ports answer only on this host. Pass --address with an address other nodes reach.';
}

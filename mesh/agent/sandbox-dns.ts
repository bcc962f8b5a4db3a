/**
 * Docker-compatible `127.0.0.11:53` inside a task sandbox: the sandbox's own nftables send
 * UDP and TCP port 53 for 127.0.0.11 to the node's resolver on a network gateway, and
 * masquerade them to the sandbox's address on that network, so the resolver sees which task
 * asks (its scope) and answers come back through conntrack. `route_localnet` lets a packet
 * that started out with a loopback destination be routed out of eth0 after the DNAT.
 *
 * No listener runs inside the sandbox (no thread per sandbox): one listener per network and
 * node serves every task, and `dig @127.0.0.11` from the task works the same.
 */
import type { Nft, Sysctl } from '../../src/kernel/index.js';

/** The sandbox table (the sandbox is the agent's alone; one fixed name). */
export const SANDBOX_DNS_TABLE = 'shoal_dns';
export const LOOPBACK_RESOLVER = '127.0.0.11';

/** One transaction that replaces the table: DNAT 127.0.0.11:53 -> gateway:53, then masquerade. */
export function sandboxDnsScript(gateway: string): string {
  return [
    `add table ip ${SANDBOX_DNS_TABLE}`,
    `delete table ip ${SANDBOX_DNS_TABLE}`,
    `table ip ${SANDBOX_DNS_TABLE} {`,
    '  chain out {',
    '    type nat hook output priority -100; policy accept;',
    `    ip daddr ${LOOPBACK_RESOLVER} udp dport 53 dnat to ${gateway}:53`,
    `    ip daddr ${LOOPBACK_RESOLVER} tcp dport 53 dnat to ${gateway}:53`,
    '  }',
    '  chain post {',
    '    type nat hook postrouting priority 100; policy accept;',
    `    ip saddr 127.0.0.0/8 ip daddr ${gateway} th dport 53 masquerade`,
    '  }',
    '}',
    '',
  ].join('\n');
}

/** Program the redirect in a sandbox (idempotent: the table is replaced as a whole). */
export async function ensureSandboxDns(nft: Nft, sysctl: Sysctl, gateway: string): Promise<void> {
  await sysctl.set('net.ipv4.conf.all.route_localnet', 1);
  await nft.apply(sandboxDnsScript(gateway));
}

/**
 * resolv.conf text: `options ndots:0` unless the service set its own ndots (Docker's default
 * for its embedded resolver, so short names are tried as given first).
 */
export function resolvConf(nameservers: readonly string[], options: readonly string[]): string {
  const opts = options.some((o) => o.startsWith('ndots:')) ? [...options] : ['ndots:0', ...options];
  return [...nameservers.map((s) => `nameserver ${s}`), `options ${opts.join(' ')}`, ''].join('\n');
}

/**
 * What a node needs for its published ports to answer on 127.0.0.1 (kube-proxy's localhost
 * nodeports): a flow the node opens to `127.0.0.1:P` is DNATed to a remote backend, so
 *
 * - `net.ipv4.conf.all.route_localnet=1`: a packet with a loopback source may be routed out
 *   (before the masquerade gives it the outgoing address), and the replies, whose destination
 *   becomes 127.0.0.1 again, may come in on a non-loopback interface;
 * - the price of route_localnet (CVE-2020-8558): a neighbour could then reach services bound to
 *   127.0.0.1 on the node. The guard table `<prefix>_localnet` drops, on input, what comes to
 *   127.0.0.0/8 from another interface and is neither a reply of a known flow nor DNATed by us.
 *
 * {@link LocalnetGuard.ensure} is idempotent and cheap: the agent calls it before programming
 * published ports and on every resync (drift: a sysctl reset, the table deleted), counting what
 * it had to put back.
 */
import { isNotFound } from '../src/errors.js';
import type { Nft } from '../src/kernel/nft.js';
import type { Sysctl } from '../src/kernel/sysctl.js';

export const ROUTE_LOCALNET = 'net.ipv4.conf.all.route_localnet';

/** The guard table's script: replaced whole (one transaction). */
export function localnetScript(table: string): string {
  return [
    `add table inet ${table}`,
    `delete table inet ${table}`,
    `table inet ${table} {`,
    '\tchain input {',
    '\t\ttype filter hook input priority 0; policy accept;',
    // A neighbour's packet to 127.0.0.0/8: dropped unless it answers a flow we know or was DNATed by us.
    '\t\tiifname != "lo" ip daddr 127.0.0.0/8 ct state != { established, related } ct status & dnat == 0 drop',
    '\t}',
    '}',
    '',
  ].join('\n');
}

/** route_localnet on, and the guard table that makes it safe (see the module doc). */
export class LocalnetGuard {
  constructor(private readonly nft: Nft, private readonly sysctl: Sysctl, readonly table: string) {}

  /** Puts both in place; resolves with how many of them were missing (0 = nothing changed). */
  async ensure(): Promise<number> {
    let repaired = 0;
    let listed: { nftables: Array<Record<string, unknown>> } | undefined;
    try {
      listed = await this.nft.list(this.table, 'inet');
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
    const rules = listed?.nftables.filter((o) => o['rule'] !== undefined).length ?? 0;
    if (rules !== 1) {
      await this.nft.apply(localnetScript(this.table));
      repaired++;
    }
    if ((await this.sysctl.get(ROUTE_LOCALNET)) !== '1') {
      await this.sysctl.set(ROUTE_LOCALNET, 1);
      repaired++;
    }
    return repaired;
  }
}

/** Removal of what the drivers left in the node namespace for networks that no longer exist. */
import { bridgeName, ownedKind, vxlanName } from './names.js';
import { syncNat } from './nat.js';
import type { DriverContext } from './types.js';

const KIND_OF: Record<string, string> = { bridge: 'bridge', vxlan: 'vxlan', veth: 'veth', peer: 'veth', macvlan: 'macvlan' };

/**
 * Delete the owned links (by `ctx.prefix`) of networks not in `keepNetworkIds`, then regenerate
 * the NAT table from the bridges that remain. Deleted: bridges and VXLANs of other networks;
 * endpoint veths not enslaved to a kept bridge; endpoint peers and macvlans never moved into a
 * sandbox (an interrupted join). Run it at agent start, BEFORE any join: an in-flight join's
 * unmoved peer counts as a leftover. Resolves the names deleted.
 */
export async function cleanupLeftovers(ctx: DriverContext, keepNetworkIds: ReadonlySet<string>): Promise<string[]> {
  const keep = new Set([...keepNetworkIds].flatMap((id) => [bridgeName(ctx.prefix, id), vxlanName(ctx.prefix, id)]));
  const doomed: string[] = [];
  for (const l of await ctx.links.listLinks(ctx.prefix)) {
    const kind = ownedKind(ctx.prefix, l.name);
    // Same name pattern but another link kind: not something we made, leave it alone.
    if (kind === undefined || l.kind !== KIND_OF[kind]) continue;
    const stale = kind === 'bridge' || kind === 'vxlan' ? !keep.has(l.name)
      : kind === 'veth' ? !(l.master !== undefined && keep.has(l.master))
        : true;
    if (stale) doomed.push(l.name);
  }
  await ctx.links.deleteLinks(doomed);
  await syncNat(ctx);
  return doomed;
}

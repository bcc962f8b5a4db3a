/**
 * What an nftables ruleset written by Shoal's load balancer (ingress/nft/render.ts) actually
 * balances to: the backend addresses in slot maps that a rule references. Slot maps are
 * content-addressed and replaced, not edited, so an old map can linger unreferenced until the
 * next collection; it sends no traffic and does not count.
 */
export function balancedAddresses(ruleset: string): Set<string> {
  const referenced = new Set(ruleset.match(/@m_[0-9a-zA-Z_]+/g)?.map((r) => r.slice(1)) ?? []);
  const out = new Set<string>();
  const mapRe = /\bmap (m_[0-9a-zA-Z_]+) \{([\s\S]*?)\n\s*\}/g;
  for (let m = mapRe.exec(ruleset); m; m = mapRe.exec(ruleset)) {
    if (!referenced.has(m[1] ?? '')) continue;
    for (const ip of (m[2] ?? '').match(/\b\d{1,3}(?:\.\d{1,3}){3}\b/g) ?? []) out.add(ip);
  }
  // Per-backend chains (session affinity) DNAT straight to their backend.
  for (const ip of ruleset.match(/dnat ip to (\d{1,3}(?:\.\d{1,3}){3})/g) ?? []) out.add(ip.replace('dnat ip to ', ''));
  return out;
}

/**
 * The names an agent gives its kernel objects, made so that two Shoal instances on one host
 * never share one: a random instance tag, made once and kept in `<data dir>/instance.json`,
 * goes into the default link prefix (`s` + 3 characters of the tag: bridges, VXLANs, veths and
 * the `<prefix>_*` nftables tables) and namespace prefix (`shoal-<tag>-`). Everything an
 * agent deletes as a leftover (links, tables, namespaces) is found by these prefixes, so with
 * distinct prefixes an instance never adopts or deletes what another owns.
 *
 * Claims make "distinct" certain rather than likely: each instance records its prefixes in
 * `/run/shoal/claims` (per host, gone at reboot with the kernel objects). A namespace prefix
 * must not overlap another's (one a prefix of the other: its cleanup would take the other's
 * namespaces); a link prefix must differ from the others in the same network namespace. A
 * claim whose data dir is gone is stale and dropped. On a clash a fresh tag is drawn again; a
 * kept tag (or an explicit `--link-prefix` / `--netns-prefix`) that clashes is refused with a
 * sentence naming the other instance's data dir.
 *
 * A data dir an older Shoal used (it has task records but no instance.json) keeps the old
 * defaults (`sh`, `shoal-<node name>-`), so an upgrade adopts its own sandboxes.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { conflict, invalid } from '../../src/errors.js';
import { checkPrefix, isInstanceTag, linkPrefixOf, netnsPrefixOf, newInstanceTag } from '../../src/drivers/names.js';

export const INSTANCE_FILE = 'instance.json';
export const DEFAULT_CLAIMS_DIR = '/run/shoal/claims';
const NETNS_PREFIX = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** What {@link instanceNames} decided. */
export interface InstanceNames {
  /** The instance tag (`legacy` for a data dir of an older Shoal). */
  tag: string;
  linkPrefix: string;
  netnsPrefix: string;
  /** The claim file written for it (absent when /run/shoal could not be written). */
  claimFile?: string;
}

interface Claim { dataDir: string; netns: string; linkPrefix: string; netnsPrefix: string }

export interface InstanceNamesOptions {
  dataDir: string;
  /** The node name (only for the legacy namespace prefix). */
  name: string;
  linkPrefix?: string;
  netnsPrefix?: string;
  /** Where claims live; default {@link DEFAULT_CLAIMS_DIR}. */
  claimsDir?: string;
  /** Identity of the network namespace the links live in; default the inode of /proc/self/ns/net. */
  netnsId?: string;
}

const read = <T>(path: string): T | undefined => {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as T;
  } catch {
    return undefined;
  }
};

/** The kept tag of `dataDir`, or undefined (none yet). A data dir an older Shoal used is `legacy`. */
function keptTag(dataDir: string): string | undefined {
  const kept = read<{ tag?: unknown }>(join(dataDir, INSTANCE_FILE));
  if (typeof kept?.tag === 'string' && (isInstanceTag(kept.tag) || kept.tag === 'legacy')) return kept.tag;
  const tasks = join(dataDir, 'tasks');
  if (existsSync(tasks) && readdirSync(tasks).length > 0) return 'legacy';
  return undefined;
}

/** Claims of other, live instances (stale ones, whose data dir is gone, and this one's earlier ones are removed). */
function otherClaims(dir: string, dataDir: string): Array<{ file: string; claim: Claim }> {
  const out: Array<{ file: string; claim: Claim }> = [];
  let files: string[];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith('.json'));
  } catch {
    return out;
  }
  for (const f of files) {
    const file = join(dir, f);
    const claim = read<Claim>(file);
    if (!claim || typeof claim.dataDir !== 'string') continue;
    if (claim.dataDir === dataDir || !existsSync(join(claim.dataDir, INSTANCE_FILE))) {
      rmSync(file, { force: true }); // ours (made again below), or its data dir, the owner of its objects, is gone
      continue;
    }
    out.push({ file, claim });
  }
  return out;
}

/** Why `names` cannot be used next to `other`, or undefined. */
function clash(names: Omit<Claim, 'dataDir'>, other: Claim): string | undefined {
  if (names.netnsPrefix.startsWith(other.netnsPrefix) || other.netnsPrefix.startsWith(names.netnsPrefix)) {
    return `namespace prefix '${names.netnsPrefix}' overlaps '${other.netnsPrefix}' of the Shoal instance with data dir ${other.dataDir} (pass --netns-prefix with another prefix)`;
  }
  if (names.netns === other.netns && names.linkPrefix === other.linkPrefix) {
    return `link prefix '${names.linkPrefix}' is used in this network namespace by the Shoal instance with data dir ${other.dataDir} (pass --link-prefix with another prefix)`;
  }
  return undefined;
}

/**
 * Decides (and records) the link and namespace prefixes of the agent using `dataDir`; see the
 * module doc. Throws Conflict when a kept or explicit prefix clashes with another instance's,
 * InvalidParameter for an unusable explicit prefix; changes nothing then.
 */
export function instanceNames(o: InstanceNamesOptions): InstanceNames {
  if (o.linkPrefix !== undefined) checkPrefix(o.linkPrefix);
  if (o.netnsPrefix !== undefined && !NETNS_PREFIX.test(o.netnsPrefix)) {
    throw invalid(`--netns-prefix '${o.netnsPrefix}' must be 1-64 of letters, digits, '_', '.', '-' (starting with a letter or digit)`);
  }
  const dir = o.claimsDir ?? DEFAULT_CLAIMS_DIR;
  const dataDir = resolve(o.dataDir);
  const netns = o.netnsId ?? String(statSync('/proc/self/ns/net').ino);
  const kept = keptTag(dataDir);
  const others = otherClaims(dir, dataDir);
  const namesOf = (tag: string): InstanceNames => ({
    tag,
    linkPrefix: o.linkPrefix ?? (tag === 'legacy' ? 'sh' : linkPrefixOf(tag)),
    netnsPrefix: o.netnsPrefix ?? (tag === 'legacy' ? `shoal-${o.name}-` : netnsPrefixOf(tag)),
  });
  let names = namesOf(kept ?? newInstanceTag());
  for (let attempt = 0; ; attempt++) {
    const why = others.map(({ claim }) => clash({ ...names, netns }, claim)).find((x) => x !== undefined);
    if (!why) break;
    // A tag drawn just now may be drawn again; a kept one or an explicit prefix is the operator's.
    if (kept !== undefined || attempt >= 8) throw conflict(`cannot start this agent: ${why}`, 'PREFIX_IN_USE');
    names = namesOf(newInstanceTag());
  }
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  if (kept === undefined || !existsSync(join(dataDir, INSTANCE_FILE))) {
    writeFileSync(join(dataDir, INSTANCE_FILE), `${JSON.stringify({ tag: names.tag })}\n`, { mode: 0o600 });
  }
  const claim: Claim = { dataDir, netns, linkPrefix: names.linkPrefix, netnsPrefix: names.netnsPrefix };
  try {
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    const file = join(dir, `${names.tag}-${netns}.json`);
    writeFileSync(file, `${JSON.stringify(claim)}\n`);
    names = { ...names, claimFile: file };
  } catch {
    // No /run/shoal (not root): the random tag alone keeps names apart.
  }
  return names;
}

/**
 * Names of everything the drivers create in the node namespace. Linux caps interface names
 * at 15 bytes, so a name is `<prefix (<=4)><kind letter><10 hex>`: at most 15.
 *
 * The kind letter lets cleanupLeftovers() recognise what a leftover is from its name alone:
 * `b` bridge, `x` vxlan, `v` host side of an endpoint veth, `p` endpoint veth peer still in
 * the node namespace (a join in progress or interrupted), `m` macvlan not yet moved.
 */
import { createHash, randomBytes } from 'node:crypto';
import { invalid } from '../errors.js';

const PREFIX = /^[a-z][a-z0-9]{0,3}$/;
const TAG_LEN = 10;

/**
 * An instance tag: 8 characters of `[a-z0-9]` (the first a letter), random, made once per data
 * dir and kept there (mesh/daemon/instance.ts). Default names carry it, so two Shoal instances
 * on one host never share a name: links `s<tag 1-3>...`, namespaces `shoal-<tag>-...`.
 */
export function newInstanceTag(): string {
  const alnum = 'abcdefghijklmnopqrstuvwxyz0123456789';
  const bytes = randomBytes(8);
  let out = alnum.charAt((bytes[0] as number) % 26);
  for (let i = 1; i < 8; i++) out += alnum.charAt((bytes[i] as number) % 36);
  return out;
}

const TAG = /^[a-z][a-z0-9]{7}$/;

/** Whether `tag` is an instance tag as {@link newInstanceTag} makes them. */
export const isInstanceTag = (tag: string): boolean => TAG.test(tag);

/**
 * The default link prefix of an instance: `s` and the tag's first 3 characters (4 characters:
 * the most a link name leaves, see the module doc), e.g. `sk3f` -> bridge `sk3fb0123456789`.
 */
export function linkPrefixOf(tag: string): string {
  if (!isInstanceTag(tag)) throw invalid(`'${tag}' is not an instance tag (8 of [a-z0-9], a letter first)`);
  return `s${tag.slice(0, 3)}`;
}

/** The default prefix of an instance's namespace names: `shoal-<tag>-` (task `shoal-<tag>-<task id>`, `shoal-<tag>-ingress-sbox`). */
export function netnsPrefixOf(tag: string): string {
  if (!isInstanceTag(tag)) throw invalid(`'${tag}' is not an instance tag (8 of [a-z0-9], a letter first)`);
  return `shoal-${tag}-`;
}

/** Throws InvalidParameter unless `prefix` is a usable owner prefix (1-4 chars, `[a-z][a-z0-9]*`). */
export function checkPrefix(prefix: string): void {
  if (!PREFIX.test(prefix)) {
    throw invalid(`driver name prefix '${prefix}' must be 1-4 characters: a lowercase letter, then letters or digits`);
  }
}

const hash = (text: string): string => createHash('sha256').update(text).digest('hex').slice(0, TAG_LEN);

/**
 * 10 hex characters naming a network: the start of its id when that is hex (Shoal ids are 16
 * hex characters, so `ip link` shows something an operator can match), a hash otherwise.
 */
export function networkTag(networkId: string): string {
  return /^[0-9a-f]{10,}$/.test(networkId) ? networkId.slice(0, TAG_LEN) : hash(`net/${networkId}`);
}

/** 10 hex characters naming one endpoint (a task on a network): a task may join many networks. */
export const endpointTag = (networkId: string, endpointId: string): string => hash(`ep/${networkId}/${endpointId}`);

/** The kinds of owned links, by their name's kind letter. */
export type OwnedKind = 'bridge' | 'vxlan' | 'veth' | 'peer' | 'macvlan';

const LETTER: Record<OwnedKind, string> = { bridge: 'b', vxlan: 'x', veth: 'v', peer: 'p', macvlan: 'm' };

/** The bridge of a bridge or overlay network. */
export const bridgeName = (prefix: string, networkId: string): string => `${prefix}b${networkTag(networkId)}`;
/** The VXLAN device of an overlay network. */
export const vxlanName = (prefix: string, networkId: string): string => `${prefix}x${networkTag(networkId)}`;
/** Host side of an endpoint's veth (stays in the node namespace, enslaved to the bridge). */
export const vethHostName = (prefix: string, networkId: string, endpointId: string): string => `${prefix}v${endpointTag(networkId, endpointId)}`;
/** The endpoint side of the veth, before it is moved into the sandbox and renamed. */
export const vethPeerName = (prefix: string, networkId: string, endpointId: string): string => `${prefix}p${endpointTag(networkId, endpointId)}`;
/** A macvlan endpoint before it is moved into the sandbox and renamed. */
export const macvlanTempName = (prefix: string, networkId: string, endpointId: string): string => `${prefix}m${endpointTag(networkId, endpointId)}`;

/** The nftables table (family `inet`) the drivers own in the node namespace. */
export const natTableName = (prefix: string): string => `${prefix}_net`;

/** A wildcard matching every Shoal bridge of this prefix, for nft (`oifname "shb*"`). */
export const bridgeWildcard = (prefix: string): string => `${prefix}b*`;

/** Which kind of owned link `name` is, or undefined when it is not one of ours. */
export function ownedKind(prefix: string, name: string): OwnedKind | undefined {
  if (!name.startsWith(prefix) || name.length !== prefix.length + 1 + TAG_LEN) return undefined;
  if (!/^[0-9a-f]+$/.test(name.slice(prefix.length + 1))) return undefined;
  const letter = name.charAt(prefix.length);
  return (Object.keys(LETTER) as OwnedKind[]).find((k) => LETTER[k] === letter);
}

/**
 * Pure IPv4/IPv6 address and CIDR math. Both families are held as `bigint` so one code path
 * serves both (a v4 address is a bigint below 2^32). Nothing here touches the store or the kernel.
 *
 * Parsing is strict (no leading zeros in v4 octets or prefix lengths, no v6 zone ids) so that
 * every accepted text has exactly one canonical form: `formatIp(parseIp(s))` is that form.
 * Errors are {@link ShoalError}s of kind InvalidParameter with a sentence a user can act on.
 */
import { invalid } from '../errors.js';

export type IpFamily = 4 | 6;

/** An IP address: `value` is the address as an unsigned integer of 32 (v4) or 128 (v6) bits. */
export interface IpAddress {
  readonly family: IpFamily;
  readonly value: bigint;
}

/** A CIDR block: `base` has no host bits set (guaranteed by every constructor here). */
export interface Cidr {
  readonly family: IpFamily;
  readonly base: bigint;
  readonly prefix: number;
}

/** Address width of a family: 32 or 128. */
export const familyBits = (family: IpFamily): number => (family === 4 ? 32 : 128);

/** "IPv4" / "IPv6", for messages. */
export const familyName = (family: IpFamily): string => (family === 4 ? 'IPv4' : 'IPv6');

const V4_OCTET = /^(0|[1-9]\d{0,2})$/;
const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;
const PREFIX_DIGITS = /^(0|[1-9]\d*)$/;

/** Why `text` is not an IPv4 address, or the value. */
function parseV4(text: string): bigint | string {
  const parts = text.split('.');
  if (parts.length !== 4) return 'expected four decimal octets like 10.0.0.1';
  let value = 0n;
  for (const part of parts) {
    if (!V4_OCTET.test(part)) {
      return /^\d+$/.test(part) ? `octet '${part}' has a leading zero (ambiguous: octal or decimal?)` : `octet '${part}' is not a decimal number`;
    }
    const n = Number(part);
    if (n > 255) return `octet ${n} is out of range 0-255`;
    value = (value << 8n) | BigInt(n);
  }
  return value;
}

/** Groups of one side of '::' (an embedded dotted v4 tail counts as two groups). */
function parseV6Groups(side: string, allowV4Tail: boolean): bigint[] | string {
  if (side === '') return [];
  const parts = side.split(':');
  const groups: bigint[] = [];
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i] ?? '';
    if (part.includes('.') && allowV4Tail && i === parts.length - 1) {
      const v4 = parseV4(part);
      if (typeof v4 === 'string') return `embedded IPv4 '${part}': ${v4}`;
      groups.push(v4 >> 16n, v4 & 0xffffn);
    } else if (HEX_GROUP.test(part)) {
      groups.push(BigInt(`0x${part}`));
    } else {
      return part === '' ? 'empty group (a single ":" where "::" or a number was expected)' : `group '${part}' is not 1-4 hex digits`;
    }
  }
  return groups;
}

function parseV6(text: string): bigint | string {
  if (text.includes('%')) return 'zone ids (%eth0) are not allowed here';
  const halves = text.split('::');
  if (halves.length > 2) return "'::' may appear only once";
  let groups: bigint[];
  if (halves.length === 2) {
    const left = parseV6Groups(halves[0] ?? '', false);
    if (typeof left === 'string') return left;
    const right = parseV6Groups(halves[1] ?? '', true);
    if (typeof right === 'string') return right;
    const missing = 8 - left.length - right.length;
    if (missing < 1) return "too many groups for '::' to stand for any";
    groups = [...left, ...new Array<bigint>(missing).fill(0n), ...right];
  } else {
    const all = parseV6Groups(text, true);
    if (typeof all === 'string') return all;
    if (all.length !== 8) return `expected 8 groups, got ${all.length}`;
    groups = all;
  }
  return groups.reduce((acc, g) => (acc << 16n) | g, 0n);
}

/** Parse an address, or return why it is not one (for callers that build their own message). */
export function parseIpOrReason(text: string): IpAddress | string {
  if (text.includes(':')) {
    const v = parseV6(text);
    return typeof v === 'string' ? v : { family: 6, value: v };
  }
  const v = parseV4(text);
  return typeof v === 'string' ? v : { family: 4, value: v };
}

/** Parse an IPv4 or IPv6 address. Throws InvalidParameter: "invalid IP address 'x': <why>". */
export function parseIp(text: string, what = 'IP address'): IpAddress {
  const r = parseIpOrReason(text);
  if (typeof r === 'string') throw invalid(`invalid ${what} '${text}': ${r}`);
  return r;
}

/** Parse an address, or undefined when it is not one. */
export function tryParseIp(text: string): IpAddress | undefined {
  const r = parseIpOrReason(text);
  return typeof r === 'string' ? undefined : r;
}

function formatV4(value: bigint): string {
  return [24n, 16n, 8n, 0n].map((s) => String((value >> s) & 0xffn)).join('.');
}

/** RFC 5952 form: lowercase, no leading zeros, the first longest run (>= 2) of zero groups as '::'. */
function formatV6(value: bigint): string {
  // IPv4-mapped addresses print with a dotted tail, as RFC 5952 section 5 recommends (and Go does).
  if (value >> 32n === 0xffffn) return `::ffff:${formatV4(value & 0xffffffffn)}`;
  const groups: number[] = [];
  for (let s = 112n; s >= 0n; s -= 16n) groups.push(Number((value >> s) & 0xffffn));
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) { bestStart = i; bestLen = j - i; }
    i = j;
  }
  const hex = (gs: number[]): string => gs.map((g) => g.toString(16)).join(':');
  if (bestStart < 0) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLen))}`;
}

/** The canonical text of an address (dotted quad, or RFC 5952 compressed IPv6). */
export function formatIp(addr: IpAddress): string {
  return addr.family === 4 ? formatV4(addr.value) : formatV6(addr.value);
}

/** `text` in canonical form; throws like {@link parseIp}. */
export const canonicalIp = (text: string): string => formatIp(parseIp(text));

const hostMask = (family: IpFamily, prefix: number): bigint => (1n << BigInt(familyBits(family) - prefix)) - 1n;

/** The block of `prefix` bits that contains `addr` (host bits cleared). */
export function cidrOf(addr: IpAddress, prefix: number): Cidr {
  const bits = familyBits(addr.family);
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > bits) {
    throw invalid(`prefix length must be 0-${bits}, got ${prefix}`);
  }
  return { family: addr.family, base: addr.value & ~hostMask(addr.family, prefix), prefix };
}

export interface ParseCidrOptions {
  /** Noun for messages: "invalid <what> '...'". Default "subnet". */
  what?: string;
  /** Accept an address with host bits (an interface address like 10.0.0.5/24) and mask them. Default false. */
  allowHostBits?: boolean;
}

/**
 * Parse "address/prefix". Strict by default: host bits must be clear, because a subnet typed
 * as 10.0.0.1/24 is nearly always a typo and silently masking it hides the mistake.
 * Throws InvalidParameter with a sentence, e.g.
 * "invalid subnet '10.0.0.0/33': prefix length must be 0-32" or
 * "10.0.0.1/24 has host bits set; did you mean 10.0.0.0/24?".
 */
export function parseCidr(text: string, opts: ParseCidrOptions = {}): Cidr {
  const what = opts.what ?? 'subnet';
  const slash = text.indexOf('/');
  if (slash < 0) throw invalid(`invalid ${what} '${text}': expected address/prefix-length, e.g. 10.0.1.0/24`);
  const addrText = text.slice(0, slash);
  const prefixText = text.slice(slash + 1);
  const addr = parseIpOrReason(addrText);
  if (typeof addr === 'string') throw invalid(`invalid ${what} '${text}': '${addrText}' is not an IP address: ${addr}`);
  const bits = familyBits(addr.family);
  if (!PREFIX_DIGITS.test(prefixText) || Number(prefixText) > bits) {
    throw invalid(`invalid ${what} '${text}': prefix length must be 0-${bits}`);
  }
  const cidr = cidrOf(addr, Number(prefixText));
  if (cidr.base !== addr.value && !opts.allowHostBits) {
    throw invalid(`${text} has host bits set; did you mean ${formatCidr(cidr)}?`);
  }
  return cidr;
}

/** Canonical "address/prefix" text. */
export function formatCidr(c: Cidr): string {
  return `${formatIp({ family: c.family, value: c.base })}/${c.prefix}`;
}

/** `text` in canonical form; throws like {@link parseCidr} (strict). */
export const canonicalCidr = (text: string, what?: string): string => formatCidr(parseCidr(text, { what }));

/** Number of addresses in the block (2^(bits - prefix)). */
export const cidrSize = (c: Cidr): bigint => 1n << BigInt(familyBits(c.family) - c.prefix);

/** Highest address value in the block (the broadcast address for IPv4). */
export const lastValue = (c: Cidr): bigint => c.base + cidrSize(c) - 1n;

/**
 * The n-th address of the block, 0-based; negative n counts from the end (-1 is the last).
 * Throws InvalidParameter when n is outside the block.
 */
export function nthAddress(c: Cidr, n: bigint | number): IpAddress {
  const size = cidrSize(c);
  let i = BigInt(n);
  if (i < 0n) i += size;
  if (i < 0n || i >= size) throw invalid(`${formatCidr(c)} has ${size} addresses; index ${n} is outside it`);
  return { family: c.family, value: c.base + i };
}

/** Offset of `addr` in the block (0 for the network address); callers check containment first. */
export const offsetOf = (c: Cidr, addr: IpAddress): bigint => addr.value - c.base;

const isCidr = (x: IpAddress | Cidr): x is Cidr => 'prefix' in x;

/** True when `inner` (an address or a block) lies entirely within `outer`; families must match. */
export function cidrContains(outer: Cidr, inner: IpAddress | Cidr): boolean {
  if (outer.family !== inner.family) return false;
  if (isCidr(inner)) return inner.prefix >= outer.prefix && inner.base >= outer.base && lastValue(inner) <= lastValue(outer);
  return inner.value >= outer.base && inner.value <= lastValue(outer);
}

/** True when the blocks share at least one address (CIDR blocks overlap iff one contains the other). */
export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  return a.family === b.family && a.base <= lastValue(b) && b.base <= lastValue(a);
}

/** Number of /`prefix` blocks in `pool`; 0 when `prefix` is shorter than the pool's. */
export function subnetCount(pool: Cidr, prefix: number): bigint {
  if (prefix < pool.prefix || prefix > familyBits(pool.family)) return 0n;
  return 1n << BigInt(prefix - pool.prefix);
}

/** The n-th (0-based) /`prefix` block of `pool`. Throws InvalidParameter when out of range. */
export function nthSubnet(pool: Cidr, prefix: number, n: bigint): Cidr {
  const count = subnetCount(pool, prefix);
  if (n < 0n || n >= count) throw invalid(`${formatCidr(pool)} has ${count} /${prefix} subnets; index ${n} is outside it`);
  return { family: pool.family, base: pool.base + n * (1n << BigInt(familyBits(pool.family) - prefix)), prefix };
}

/**
 * The /`prefix` blocks of `pool` in address order, starting with block number `start` and
 * wrapping around to block 0 when `wrap` is set (each block once). Lazy: safe on huge pools.
 */
export function* subnetsOf(pool: Cidr, prefix: number, start = 0n, wrap = false): Generator<Cidr> {
  const count = subnetCount(pool, prefix);
  for (let i = start; i < count; i++) yield nthSubnet(pool, prefix, i);
  if (wrap) for (let i = 0n; i < start && i < count; i++) yield nthSubnet(pool, prefix, i);
}

/** Orders addresses (v4 before v6, then numerically); for sorting. */
export function compareIp(a: IpAddress, b: IpAddress): number {
  if (a.family !== b.family) return a.family - b.family;
  return a.value < b.value ? -1 : a.value > b.value ? 1 : 0;
}

/**
 * DNS protocol numbers (RFC 1035, 2308, 3596, 2782, 6891) used by the codec and the chain.
 * Plain `as const` objects rather than enums so they stay erasable and tree-shakeable.
 */

/** Resource record types Shoal reads or writes by name. Others pass through as numbers. */
export const RRType = {
  A: 1,
  NS: 2,
  CNAME: 5,
  SOA: 6,
  PTR: 12,
  MX: 15,
  TXT: 16,
  AAAA: 28,
  SRV: 33,
  OPT: 41,
  TSIG: 250,
  IXFR: 251,
  AXFR: 252,
  MAILB: 253,
  MAILA: 254,
  ANY: 255,
} as const;

/** Record classes. Only IN is answered; CH (version.bind and friends) is refused. */
export const RRClass = { IN: 1, CH: 3, ANY: 255 } as const;

/**
 * Response codes. Values above 15 only travel in the EDNS extended-rcode field.
 * As a handler result a number means "nothing written yet": the server writes a
 * minimal response with that code (see `dns/respond.ts`), or nothing for {@link DROP}.
 */
export const Rcode = {
  NOERROR: 0,
  FORMERR: 1,
  SERVFAIL: 2,
  NXDOMAIN: 3,
  NOTIMP: 4,
  REFUSED: 5,
  BADVERS: 16,
} as const;

/** A response code; also a handler's "nothing written" result. */
export type Rcode = number;

/** Handler result meaning "send nothing at all" (responses, reflection bait, unparseable headers). */
export const DROP = -1;

/** Opcodes; only QUERY is served (others get NOTIMP). */
export const Opcode = { QUERY: 0 } as const;

/** Header flag bits (second 16-bit word of the header). */
export const Flag = {
  QR: 0x8000,
  AA: 0x0400,
  TC: 0x0200,
  RD: 0x0100,
  RA: 0x0080,
  AD: 0x0020,
  CD: 0x0010,
} as const;

/** Size of the fixed message header. */
export const HEADER_SIZE = 12;
/** RFC 1035 limit for a UDP message when the client sent no EDNS OPT record. */
export const MAX_UDP_NO_EDNS = 512;
/** The DNS Flag Day 2020 payload size: fits an IPv6 minimum MTU without fragmenting. */
export const DEFAULT_UDP_PAYLOAD = 1232;
/** Size of an OPT record with no options: root name, type, class, ttl, rdlength. */
export const OPT_RR_SIZE = 11;
/** Longest name on the wire (RFC 1035 2.3.4). */
export const MAX_NAME_WIRE = 255;
/** Longest label (RFC 1035 2.3.4). */
export const MAX_LABEL = 63;

const TYPE_NAMES = new Map<number, string>(Object.entries(RRType).map(([k, v]) => [v, k]));
const RCODE_NAMES = new Map<number, string>(Object.entries(Rcode).map(([k, v]) => [v, k]));

/** Mnemonic of a record type (`A`, `TYPE65` for unknown ones, RFC 3597 style). */
export function typeName(type: number): string {
  return TYPE_NAMES.get(type) ?? `TYPE${type}`;
}

/** Record type number of a mnemonic (`A`, `TYPE65`); undefined if unknown. */
export function typeOf(name: string): number | undefined {
  const upper = name.toUpperCase();
  const known = (RRType as Record<string, number>)[upper];
  if (known !== undefined) return known;
  const m = /^TYPE(\d{1,5})$/.exec(upper);
  return m && Number(m[1]) < 65536 ? Number(m[1]) : undefined;
}

/** Mnemonic of a response code (`NXDOMAIN`, `RCODE9` for unknown ones). */
export function rcodeName(rcode: number): string {
  return RCODE_NAMES.get(rcode) ?? `RCODE${rcode}`;
}

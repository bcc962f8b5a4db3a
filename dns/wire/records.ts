/**
 * Resource records as data: the shape tests, the registry and the builder share.
 * Names are presentation form (`web.app.`); the trailing dot is optional.
 */

interface Base {
  /** Owner name. */
  name: string;
  /** Seconds. */
  ttl: number;
  /** Record class; IN (1) when absent. */
  class?: number;
}

/** IPv4 address record. */
export interface ARecord extends Base { type: 'A'; address: string }
/** IPv6 address record. */
export interface AaaaRecord extends Base { type: 'AAAA'; address: string }
/** A record whose rdata is one name. */
export interface NameRecord extends Base { type: 'PTR' | 'CNAME' | 'NS'; target: string }
/** Service location (RFC 2782); the target is never compressed. */
export interface SrvRecord extends Base { type: 'SRV'; priority: number; weight: number; port: number; target: string }
/** Mail exchange. */
export interface MxRecord extends Base { type: 'MX'; preference: number; exchange: string }
/** Text strings (each at most 255 bytes). */
export interface TxtRecord extends Base { type: 'TXT'; text: string[] }
/** Start of authority; its MINIMUM bounds negative caching (RFC 2308). */
export interface SoaRecord extends Base {
  type: 'SOA';
  mname: string;
  rname: string;
  serial: number;
  refresh: number;
  retry: number;
  expire: number;
  minimum: number;
}
/** Any other type, rdata opaque (RFC 3597 `\# len hex` in zone lines). */
export interface RawRecord extends Base { type: 'RAW'; rrtype: number; rdata: Uint8Array }

/** One resource record. `type` is the mnemonic; {@link RawRecord} carries the number. */
export type ResourceRecord =
  | ARecord
  | AaaaRecord
  | NameRecord
  | SrvRecord
  | MxRecord
  | TxtRecord
  | SoaRecord
  | RawRecord;

/**
 * The primitives of the handler chain (CoreDNS `ServeDNS`, undici `compose`): requests,
 * responses, handlers, plugins. The standard order of plugins lives in `chain.ts`.
 *
 * A {@link Handler} gets a {@link DnsRequest} and returns either a complete
 * {@link DnsResponse} or a bare response code, meaning "nothing written yet": the server then
 * writes a minimal response with that code (or nothing for `DROP`). Handlers may answer
 * synchronously; the registry fast path never creates a promise.
 */
import { DEFAULT_UDP_PAYLOAD, MAX_UDP_NO_EDNS, Rcode } from './wire/constants.js';
import type { Query } from './wire/query.js';

/** Which networks a query may see, in search order, plus a metrics label. Build with {@link scopeOf}. */
export interface Scope {
  readonly networks: readonly string[];
  /** Stable key of the network list, used to key per-scope caches. */
  readonly key: string;
  /** Value of the `network` metric label (the first network's name by convention). */
  readonly label: string;
}

/** Makes a {@link Scope}; `label` defaults to the first network id. */
export function scopeOf(networks: readonly string[], label?: string): Scope {
  return { networks: [...networks], key: networks.join('\u0000'), label: label ?? networks[0] ?? '' };
}

/**
 * One query travelling down the chain. Created by the server; `query` and `maxSize` are filled
 * in by the hygiene plugin, which must run first.
 */
export class DnsRequest {
  /** The parsed query; undefined until hygiene has accepted the message. */
  query: Query | undefined = undefined;
  /**
   * Largest response the client accepts: 65535 over TCP; over UDP its EDNS payload size
   * (512 without EDNS), capped at the server's own payload size.
   */
  maxSize: number;

  constructor(
    /** The raw message as received. Plugins must not modify it. */
    readonly msg: Buffer,
    readonly transport: 'udp' | 'tcp',
    readonly clientAddress: string,
    readonly clientPort: number,
    readonly scope: Scope,
    /** The server's own EDNS UDP payload size, advertised in every OPT it writes. */
    readonly udpPayloadSize: number = DEFAULT_UDP_PAYLOAD,
  ) {
    this.maxSize = transport === 'tcp' ? 65535 : MAX_UDP_NO_EDNS;
  }
}

/** A complete response, id and question already the client's. */
export interface DnsResponse {
  /** The message bytes. Over UDP the server truncates it to {@link DnsRequest.maxSize} if needed. */
  readonly wire: Buffer;
  /** Response code, for metrics (already in `wire`). */
  readonly rcode: number;
  /** Number of answer records, for metrics. */
  readonly answers: number;
}

/** A handler's result: a response, or a response code (`DROP` = -1: send nothing). */
export type HandlerResult = DnsResponse | Rcode;

/** Serves one request. Must not throw for any input (a throw is answered with SERVFAIL and counted). */
export type Handler = (req: DnsRequest) => Promise<HandlerResult> | HandlerResult;

/** Wraps the rest of the chain. */
export type Plugin = (next: Handler) => Handler;

/** True when a handler result is a pending promise (the fast path checks this, not `instanceof`). */
export const isPending = (r: Promise<HandlerResult> | HandlerResult): r is Promise<HandlerResult> =>
  typeof r === 'object' && typeof (r as Promise<HandlerResult>).then === 'function';

/** The end of every chain: nobody knew the name and nothing forwarded it. */
export const refuse: Handler = () => Rcode.REFUSED;

/** Composes plugins; the first in the list sees the request first. */
export function compose(plugins: readonly Plugin[], terminal: Handler = refuse): Handler {
  let h = terminal;
  for (let i = plugins.length - 1; i >= 0; i--) h = (plugins[i] as Plugin)(h);
  return h;
}


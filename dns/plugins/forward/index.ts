/**
 * Forwarding to the host's upstream resolvers (from resolv.conf, or a given list).
 *
 * Per query: build our own query (fresh random id, the client's question bytes, RD/CD, our
 * OPT), try the upstreams in order (ones that failed in the last 5 s last), UDP then TCP when
 * truncated; SERVFAIL, REFUSED, timeouts and overload move on to the next one. When all fail
 * the result is a bare SERVFAIL, which lets the cache serve a stale answer.
 */
import type { DnsRequest, HandlerResult, Plugin } from '../../handler.js';
import { noopMetrics, type DnsMetrics } from '../../metrics.js';
import { DEFAULT_UDP_PAYLOAD, Flag, HEADER_SIZE, OPT_RR_SIZE, Rcode } from '../../wire/constants.js';
import { writeOpt } from '../../wire/response.js';
import { adaptResponse } from './adapt.js';
import { readResolvConf, upstreamsOf, type UpstreamAddress } from './resolv-conf.js';
import { Upstream } from './upstream.js';

export { parseResolvConf, readResolvConf, upstreamsOf, type ResolvConf, type UpstreamAddress } from './resolv-conf.js';

/** Options of {@link Forwarder}. */
export interface ForwarderOptions {
  /** Upstream servers, tried in order. */
  upstreams: readonly UpstreamAddress[];
  /** Per-upstream timeout (ms). Default 2000. */
  timeoutMs?: number;
  /** Outstanding queries per upstream. Default 256. */
  maxInFlight?: number;
  /** Queries waiting per upstream beyond that; more fail over at once. Default 1024. */
  maxQueue?: number;
  /** UDP source ports per upstream. Default 4. */
  sockets?: number;
  /** Queries after which a source port is replaced. Default 10000. */
  rotateAfter?: number;
  /** EDNS payload size advertised upstream. Default 1232. */
  udpPayloadSize?: number;
  metrics?: DnsMetrics;
}

/** Forwards queries; owns the upstream sockets until {@link close}. */
export class Forwarder {
  private readonly upstreams: Upstream[];
  private readonly udpPayloadSize: number;
  private readonly metrics: DnsMetrics;

  constructor(o: ForwarderOptions) {
    const u = {
      timeoutMs: o.timeoutMs ?? 2000,
      maxInFlight: o.maxInFlight ?? 256,
      maxQueue: o.maxQueue ?? 1024,
      sockets: o.sockets ?? 4,
      rotateAfter: o.rotateAfter ?? 10_000,
      metrics: o.metrics ?? noopMetrics,
    };
    this.metrics = u.metrics;
    this.upstreams = o.upstreams.map((a) => new Upstream(a, u));
    this.udpPayloadSize = o.udpPayloadSize ?? DEFAULT_UDP_PAYLOAD;
  }

  /**
   * A forwarder for the nameservers in a resolv.conf (default `/etc/resolv.conf`), minus the
   * resolver's own addresses in `exclude`. Its `options timeout:` is ignored on purpose: a
   * task's stub resolver waits on us, so our per-upstream timeout stays short (2 s) unless
   * `timeoutMs` says otherwise.
   */
  static async fromResolvConf(path?: string, o: Omit<ForwarderOptions, 'upstreams'> & { exclude?: readonly string[] } = {}): Promise<Forwarder> {
    const conf = await readResolvConf(path);
    return new Forwarder({ ...o, upstreams: upstreamsOf(conf, o.exclude) });
  }

  /** Number of upstreams (0: the plugin passes queries on). */
  get size(): number {
    return this.upstreams.length;
  }

  /** Resolves a request that hygiene accepted. Never rejects. */
  async resolve(req: DnsRequest): Promise<HandlerResult> {
    const q = req.query;
    if (!q) return Rcode.SERVFAIL;
    const query = Buffer.allocUnsafe(q.questionEnd + OPT_RR_SIZE);
    query.writeUInt16BE(0, 0); // the upstream writes its own random id
    query.writeUInt16BE(q.flags & (Flag.RD | Flag.CD), 2);
    query.writeUInt32BE(0x00010000, 4);
    query.writeUInt32BE(0x00000001, 8);
    req.msg.copy(query, HEADER_SIZE, HEADER_SIZE, q.questionEnd);
    writeOpt(query, q.questionEnd, this.udpPayloadSize);
    for (const up of this.order()) {
      let r = await up.exchange(query, q);
      // RFC 6891 7: a server that does not do EDNS answers FORMERR without OPT; ask it plainly.
      if (r.ok && r.index.rcode === Rcode.FORMERR && r.index.opt < 0) {
        const plain = Buffer.from(query.subarray(0, q.questionEnd));
        plain.writeUInt16BE(0, 10);
        r = await up.exchange(plain, q);
      }
      if (!r.ok) continue;
      if (r.index.rcode === Rcode.SERVFAIL || r.index.rcode === Rcode.REFUSED) {
        up.failingUntil = Date.now() + 5000;
        this.metrics.upstreamError(up.label, r.index.rcode === Rcode.SERVFAIL ? 'servfail' : 'refused');
        continue;
      }
      if (r.index.questionEnd !== q.questionEnd) continue;
      return adaptResponse(r.msg, r.index, req.msg, q, req.udpPayloadSize);
    }
    return Rcode.SERVFAIL;
  }

  /** Closes every upstream; outstanding queries resolve as failures. */
  close(): void {
    for (const u of this.upstreams) u.close();
  }

  private order(): Upstream[] {
    const now = Date.now();
    const healthy = this.upstreams.filter((u) => u.failingUntil <= now);
    return healthy.length === this.upstreams.length ? this.upstreams : [...healthy, ...this.upstreams.filter((u) => u.failingUntil > now)];
  }
}

/** The forward plugin: the chain's last resort. With no upstreams it passes the query on. */
export function forwardPlugin(f: Forwarder): Plugin {
  return (next) => (req) => (f.size === 0 || !req.query ? next(req) : f.resolve(req));
}

/**
 * One manager's TLS identity: a server certificate from the cluster CA (a key made here that
 * never leaves the process), with SANs for the addresses it listens on, re-issued at 2/3 of its
 * life and whenever the CA changes (a rotation), and put into the running HTTPS server with
 * `setSecureContext` — established connections keep their session.
 */
import { hostname, networkInterfaces } from 'node:os';
import { isIP } from 'node:net';
import type { Server as HttpsServer, ServerOptions } from 'node:https';
import type { ClusterSecurity } from './index.js';

const WILDCARDS = new Set(['', '0.0.0.0', '::', '[::]']);

/** SANs for a manager listening on `host`: it (or every local address for a wildcard), the host name, loopback. */
export function serverSans(host: string): { dns: string[]; ips: string[] } {
  const ips = new Set<string>(['127.0.0.1', '::1']);
  const dns = new Set<string>(['localhost', hostname()]);
  if (WILDCARDS.has(host)) {
    for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) ips.add(a.address.replace(/%.*$/, ''));
  } else if (isIP(host)) ips.add(host);
  else dns.add(host);
  return { dns: [...dns], ips: [...ips] };
}

/** A manager's server certificate and the HTTPS servers that present it; see the module doc. */
export class ManagerTls {
  private material: { keyPem: string; chainPem: string; notAfter: Date; issuedAt: number } | undefined;
  private readonly servers = new Set<HttpsServer>();
  private readonly off: () => void;
  private timer: NodeJS.Timeout | undefined;
  private renewing: Promise<void> | undefined;

  private constructor(private readonly sec: ClusterSecurity, private readonly name: string, private readonly sans: { dns: string[]; ips: string[] }, private readonly log: (m: string, e?: unknown) => void) {
    this.off = sec.on((e) => { if (e.type === 'ca') void this.renew('the cluster CA changed'); });
  }

  /** Issues the first certificate; `listenHost` decides the SANs. */
  static async create(sec: ClusterSecurity, o: { name: string; listenHost: string; log?: (m: string, e?: unknown) => void }): Promise<ManagerTls> {
    const t = new ManagerTls(sec, o.name, serverSans(o.listenHost), o.log ?? (() => undefined));
    await t.renew();
    // An hourly look is plenty for a 30-day certificate (a timer cannot wait that long anyway).
    t.timer = setInterval(() => {
      const m = t.material;
      if (m && Date.now() > m.issuedAt + ((m.notAfter.getTime() - m.issuedAt) * 2) / 3) void t.renew('2/3 of its life passed');
    }, 3_600_000);
    t.timer.unref();
    return t;
  }

  /** Options for `https.createServer`: this certificate and chain, the trusted CAs for client certificates. */
  options(): ServerOptions {
    const m = this.material;
    if (!m) throw new Error('no server certificate yet');
    return { key: m.keyPem, cert: m.chainPem, ca: this.sec.trustedCas, requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.2' };
  }

  /** Keeps `server`'s certificate and trusted CAs current; counts handshake failures by reason. */
  attach(server: HttpsServer): void {
    this.servers.add(server);
    server.on('close', () => this.servers.delete(server));
    server.on('tlsClientError', (err: NodeJS.ErrnoException, socket) => {
      const reason = /unknown ca|certificate unknown|bad certificate/i.test(err.message) ? 'client_rejected_server_certificate'
        : /wrong version|http request|unsupported protocol/i.test(err.message) ? 'protocol' : err.code === 'ECONNRESET' ? 'reset' : 'handshake';
      this.sec.failures.count('handshake', reason);
      this.log(`TLS handshake from ${socket.remoteAddress ?? '?'} failed: ${err.message}`);
    });
  }

  /** Counts a plain-HTTP connection to the TLS port (the front answered it). */
  plainHttp(remote: string): void {
    this.sec.failures.count('handshake', 'plain_http');
    this.log(`refused plain HTTP from ${remote} on the TLS port (use https://)`);
  }

  /** Current certificate's end of validity. */
  get notAfter(): Date | undefined { return this.material?.notAfter; }

  private renew(why?: string): Promise<void> {
    this.renewing ??= (async () => {
      try {
        const c = await this.sec.serverCertificate(this.name, this.sans);
        this.material = { keyPem: c.keyPem, chainPem: c.chainPem, notAfter: c.notAfter, issuedAt: Date.now() };
        for (const s of this.servers) s.setSecureContext(this.options());
        if (why) this.log(`server certificate re-issued (${why}); valid until ${c.notAfter.toISOString()}`);
      } catch (e) {
        this.log('issuing the server certificate failed (the old one stays)', e);
      } finally {
        this.renewing = undefined;
      }
    })();
    return this.renewing;
  }

  stop(): void {
    this.off();
    if (this.timer) clearInterval(this.timer);
  }
}

/**
 * TLS for an agent's session (mesh/agent/session.ts) with a manager's TCP listener:
 * - before connecting, the node identity (agent-identity.ts): loaded from the data dir, or got
 *   by joining with the join token (pinned to the token's CA fingerprint);
 * - the WebSocket options: the node certificate and key (mutual TLS), the trusted CAs, the
 *   node id and name in the URL (`?node=ID&name=NAME`, checked against the certificate);
 * - renewal at 2/3 of the certificate's life over the open session (no reconnect), and
 *   right away when the manager pushes new CAs with `renew` (a CA rotation);
 * - a refusal no retry can cure (revoked, expired, untrusted) stops the session with a sentence
 *   that says what to do.
 */
import type { IncomingMessage } from 'node:http';
import type { ClientOptions, WebSocket } from 'ws';
import type { ManagerUrl } from '../api/manager-url.js';
import { FATAL_CODES, NodeIdentity, type IssuedCertificate } from './agent-identity.js';
import { tlsClientOptions } from './tls-client.js';

/** Options of {@link AgentTls}. */
export interface AgentTlsOptions {
  dataDir: string;
  name: string;
  joinToken: () => string;
  log: (msg: string) => void;
  /** Called once when the manager refused this node for good (the session stops). */
  onFatal: (msg: string) => void;
}

/** Longest setTimeout delay. */
const MAX_DELAY = 2 ** 31 - 1;

/** The TLS side of one agent session (one per AgentSession); see the module doc. */
export class AgentTls {
  identity: NodeIdentity | undefined;
  private timer: NodeJS.Timeout | undefined;
  private ws: WebSocket | undefined;
  private renewDue = false;
  private renewing = false;
  /** Certificates renewed over a session (metrics, tests). */
  renewals = 0;

  constructor(private readonly o: AgentTlsOptions) {
    this.identity = NodeIdentity.load(o.dataDir);
  }

  /** Makes sure there is an identity, joining through `m` when there is none. */
  async prepare(m: ManagerUrl): Promise<void> {
    if (this.identity) return;
    this.o.log(`joining through ${m.text} with the join token (pinned to the token's CA fingerprint)`);
    this.identity = await NodeIdentity.join(this.o.dataDir, m, this.o.joinToken(), this.o.name);
    this.o.log(`joined as node ${this.identity.nodeId}; certificate valid until ${new Date(this.identity.validity().to).toISOString()}`);
  }

  /** The query that names this node in the session URL. */
  query(): string {
    return this.identity ? `?node=${encodeURIComponent(this.identity.nodeId)}&name=${encodeURIComponent(this.o.name)}` : '';
  }

  /** WebSocket options for mutual TLS. */
  wsOptions(): ClientOptions {
    if (!this.identity) throw new Error('no node identity yet');
    return tlsClientOptions(this.identity.trust()) as ClientOptions;
  }

  /** Seconds until the certificate expires (metrics); undefined before the first join. */
  expirySeconds(now = Date.now()): number | undefined {
    return this.identity ? (this.identity.validity().to - now) / 1000 : undefined;
  }

  /** After a welcome on `ws`: renew when due, and schedule the next renewal. */
  welcomed(ws: WebSocket): void {
    this.ws = ws;
    // A renewal asked on a previous session was lost with it: ask again on this one.
    if (this.renewing) { this.renewing = false; this.renewDue = true; }
    this.schedule();
    if (this.renewDue || (this.identity && Date.now() >= this.identity.renewAt())) void this.renew('2/3 of its life passed');
  }

  private schedule(): void {
    if (this.timer) clearTimeout(this.timer);
    if (!this.identity) return;
    const delay = Math.max(0, Math.min(MAX_DELAY, this.identity.renewAt() - Date.now()));
    this.timer = setTimeout(() => void this.renew('2/3 of its life passed'), delay);
    this.timer.unref();
  }

  private async renew(why: string): Promise<void> {
    const ws = this.ws;
    if (!this.identity || this.renewing) return;
    if (!ws || ws.readyState !== ws.OPEN) {
      this.renewDue = true;
      return;
    }
    this.renewing = true;
    try {
      const csr = await this.identity.renewalRequest();
      this.o.log(`renewing the node certificate (${why})`);
      ws.send(JSON.stringify({ type: 'renew', csr }));
      this.renewDue = false;
      // No answer (the manager failed to issue it): try again rather than wait for expiry.
      setTimeout(() => {
        if (!this.renewing || this.ws !== ws) return;
        this.renewing = false;
        this.o.log('no renewed certificate within 30 s; asking again');
        void this.renew('the last request went unanswered');
      }, 30_000).unref();
    } catch (e) {
      this.o.log(`renewing the node certificate failed (will retry): ${String(e)}`);
      this.renewing = false;
      this.renewDue = true;
    }
  }

  /** Handles the session messages about certificates; false for any other. */
  onMessage(msg: Record<string, unknown>): boolean {
    if (msg['type'] === 'certificate' && this.identity) {
      this.renewing = false;
      try {
        this.identity.acceptCertificate(msg as unknown as IssuedCertificate);
        this.renewals++;
        this.o.log(`node certificate renewed; valid until ${new Date(this.identity.validity().to).toISOString()}`);
      } catch (e) {
        this.o.log(`refusing a renewed certificate: ${String(e)}`);
        this.renewDue = true;
      }
      this.schedule();
      return true;
    }
    if (msg['type'] === 'ca' && this.identity) {
      const cas = Array.isArray(msg['ca']) ? (msg['ca'] as unknown[]).filter((c): c is string => typeof c === 'string') : [];
      this.identity.acceptCas(cas);
      this.o.log(`trusted CAs updated from the manager (${cas.length})${msg['renew'] === true ? '; renewing the node certificate from the new CA' : ''}`);
      if (msg['renew'] === true) void this.renew('the cluster CA is rotating');
      return true;
    }
    return false;
  }

  /**
   * A refused upgrade (401/403): reads the answer, logs it, and says whether retrying is
   * pointless (then `onFatal` was called).
   */
  async refused(res: IncomingMessage): Promise<boolean> {
    const chunks: Buffer[] = [];
    for await (const c of res as AsyncIterable<Buffer>) chunks.push(c);
    let e: { code?: string; message?: string } = {};
    try { e = JSON.parse(Buffer.concat(chunks).toString()) as typeof e; } catch { e = {}; }
    const msg = `manager refused the session (${res.statusCode ?? '?'}): ${e.message ?? 'no reason given'}`;
    this.o.log(msg);
    if (e.code && FATAL_CODES.has(e.code)) {
      this.o.onFatal(`${msg}. This node cannot reconnect with its certificate: to join again as a new node, delete ${NodeIdentity.dirOf(this.o.dataDir)} and start the agent with a join token`);
      return true;
    }
    return false;
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
  }
}

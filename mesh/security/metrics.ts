/**
 * Metrics of cluster security, read at scrape time:
 *
 * - `shoal_manager_node_certificate_expiry_seconds{node}`: seconds until the last certificate
 *   issued to each node expires (negative once expired); renewals keep it above 1/3 of the TTL.
 * - `shoal_manager_auth_failures_total{reason}`: requests and sessions refused by this
 *   manager (no_token, wrong_token, other_ca, join_token_as_manager, expired, untrusted,
 *   revoked, identity_mismatch, ...).
 * - `shoal_manager_tls_handshake_failures_total{reason}`: connections to the TLS port that
 *   never became a request (plain_http, protocol, client_rejected_server_certificate, reset).
 * - `shoal_manager_ca_rotation_in_progress`: 1 while a CA rotation waits for nodes.
 * - `shoal_agent_certificate_expiry_seconds` and `shoal_agent_certificate_renewals_total`:
 *   the node's own certificate.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Agent } from '../agent/index.js';
import type { Manager } from '../manager/index.js';

/** Registers a manager's security metrics (see the module doc). */
export function registerManagerSecurityMetrics(reg: Registry, m: Manager): void {
  new Gauge({
    name: 'shoal_manager_node_certificate_expiry_seconds', help: 'Seconds until the last certificate issued to each node expires.', labelNames: ['node'], registers: [reg],
    collect() {
      this.reset();
      const now = Date.now();
      for (const r of m.security.certs.values()) {
        if (m.security.revoked.has(r.nodeId)) continue;
        this.set({ node: r.nodeId }, (Date.parse(r.notAfter) - now) / 1000);
      }
    },
  });
  const byReason = (name: string, help: string, read: () => ReadonlyMap<string, number>): void => {
    new Counter({
      name, help, labelNames: ['reason'], registers: [reg],
      collect() {
        this.reset();
        for (const [reason, n] of read()) this.inc({ reason }, n);
      },
    });
  };
  byReason('shoal_manager_auth_failures_total', 'Requests and agent sessions this manager refused, by reason.', () => m.security.failures.auth);
  byReason('shoal_manager_tls_handshake_failures_total', 'Connections to the TLS port that failed before a request, by reason.', () => m.security.failures.handshake);
  new Gauge({
    name: 'shoal_manager_ca_rotation_in_progress', help: '1 while a CA rotation waits for nodes to renew.', registers: [reg],
    collect() { this.set(m.security.ca.rotation ? 1 : 0); },
  });
}

/** Registers an agent's certificate metrics (nothing for an agent on the unix socket). */
export function registerAgentSecurityMetrics(reg: Registry, a: Agent): void {
  const tls = a.session.tls;
  if (!tls) return;
  new Gauge({
    name: 'shoal_agent_certificate_expiry_seconds', help: 'Seconds until this node\'s certificate expires.', registers: [reg],
    collect() {
      const s = tls.expirySeconds();
      if (s !== undefined) this.set(s);
    },
  });
  new Counter({
    name: 'shoal_agent_certificate_renewals_total', help: 'Node certificates renewed over a manager session.', registers: [reg],
    collect() { this.reset(); this.inc(tls.renewals); },
  });
}

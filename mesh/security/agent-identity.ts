/**
 * An agent's node identity, kept in `<data-dir>/tls/` (mode 0700): `node.key` (its private
 * key, made here and never sent), `node.crt`, `ca.pem` (the CA certificates it trusts, from
 * the manager) and `node.json` (its node id). The first join trades the join token for a
 * certificate over pinned TLS (`POST /v1/nodes/join` with a certificate request); after that
 * the agent connects with mutual TLS and renews over its open session.
 *
 * Deleting `tls/` makes the agent join again as a new node (what `shoal node rm` requires).
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { kindOfHttpStatus, ShoalError } from '../../src/errors.js';
import type { ManagerUrl } from '../api/manager-url.js';
import { parseToken } from './tokens.js';
import { tlsConnector, type ClientTrust } from './tls-client.js';
import { createCsr, newKeyPair, type KeyPair } from './x509.js';

/** What the manager answers to a join or a renewal. */
export interface IssuedCertificate { certificate: string; ca: string[]; notAfter: string; nodeId?: string }

/** 403 codes no retry cures: the node must join again. */
export const FATAL_CODES = new Set(['SHOAL_ERR_REVOKED', 'SHOAL_ERR_EXPIRED', 'SHOAL_ERR_UNTRUSTED', 'SHOAL_ERR_WRONG_CLUSTER']);

/** The node's key, certificate and trusted CAs, as kept in `<data-dir>/tls/`. */
export class NodeIdentity {
  nodeId: string;
  keyPem: string;
  certPem: string;
  cas: string[];
  /** A key waiting for its certificate (a renewal in flight). */
  private pending: KeyPair | undefined;

  private constructor(private readonly dir: string, v: { nodeId: string; keyPem: string; certPem: string; cas: string[] }) {
    this.nodeId = v.nodeId;
    this.keyPem = v.keyPem;
    this.certPem = v.certPem;
    this.cas = v.cas;
  }

  static dirOf(dataDir: string): string { return join(dataDir, 'tls'); }

  /** The identity kept in `dataDir`, or undefined when the node never joined (or left). */
  static load(dataDir: string): NodeIdentity | undefined {
    const dir = NodeIdentity.dirOf(dataDir);
    if (!existsSync(join(dir, 'node.json'))) return undefined;
    const meta = JSON.parse(readFileSync(join(dir, 'node.json'), 'utf8')) as { nodeId: string };
    const cas = readFileSync(join(dir, 'ca.pem'), 'utf8').split(/(?<=-----END CERTIFICATE-----)\s*/).filter((p) => p.includes('BEGIN'));
    return new NodeIdentity(dir, { nodeId: meta.nodeId, keyPem: readFileSync(join(dir, 'node.key'), 'utf8'), certPem: readFileSync(join(dir, 'node.crt'), 'utf8'), cas: cas.map((c) => `${c.trim()}\n`) });
  }

  /**
   * Joins through `manager` (https) with the join token: a new key, a request, the certificate.
   * The manager is checked against the token's CA fingerprint before the token is sent.
   */
  static async join(dataDir: string, manager: ManagerUrl, joinToken: string, name: string): Promise<NodeIdentity> {
    if (manager.kind !== 'tcp') throw new Error('joining with a certificate needs an https:// manager');
    const t = parseToken(joinToken);
    if (!t) throw new ShoalError('InvalidParameter', 'BAD_TOKEN', 'the join token is not a Shoal token (SHOAL-1-<CA fingerprint>-<secret>): copy it from shoal join-token');
    const kp = newKeyPair();
    const csr = await createCsr(kp, name);
    const out = await postJson<IssuedCertificate>(manager, '/v1/nodes/join', { name, csr }, { pins: [t.fingerprint] }, joinToken);
    if (!out.nodeId) throw new Error('the manager answered the join without a node id');
    const id = new NodeIdentity(NodeIdentity.dirOf(dataDir), { nodeId: out.nodeId, keyPem: kp.keyPem, certPem: out.certificate, cas: out.ca });
    id.save();
    return id;
  }

  /** How to reach managers with this identity. */
  trust(): ClientTrust { return { cas: this.cas, cert: { certPem: this.certPem, keyPem: this.keyPem } }; }

  /** The certificate's validity. */
  validity(): { from: number; to: number } {
    const c = new X509Certificate(this.certPem);
    return { from: Date.parse(c.validFrom), to: Date.parse(c.validTo) };
  }

  /** When to renew: at 2/3 of the certificate's life. */
  renewAt(): number {
    const v = this.validity();
    return v.from + ((v.to - v.from) * 2) / 3;
  }

  /** A request for a renewal, with a new key (kept until its certificate arrives). */
  async renewalRequest(): Promise<string> {
    this.pending = newKeyPair();
    return createCsr(this.pending, this.nodeId);
  }

  /** Takes a certificate from a renewal (it must certify the pending key); saves it. */
  acceptCertificate(out: IssuedCertificate): void {
    const kp = this.pending;
    if (!kp) throw new Error('a certificate arrived that no renewal asked for');
    const cert = new X509Certificate(out.certificate);
    if (!cert.checkPrivateKey(createPrivateKey(kp.keyPem))) throw new Error('the renewed certificate is not for the key this agent asked with');
    this.pending = undefined;
    this.keyPem = kp.keyPem;
    this.certPem = out.certificate;
    if (out.ca.length) this.cas = out.ca;
    this.save();
  }

  /** New trusted CAs from the manager (a CA rotation). */
  acceptCas(cas: string[]): void {
    if (!cas.length) return;
    this.cas = cas;
    this.save();
  }

  private save(): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    chmodSync(this.dir, 0o700);
    const put = (f: string, text: string): void => {
      const tmp = join(this.dir, `.${f}.tmp`);
      writeFileSync(tmp, text, { mode: 0o600 });
      renameSync(tmp, join(this.dir, f));
    };
    // The key first: a crash between two renames leaves a key whose certificate is the old one
    // at worst, and the next renewal fixes that.
    put('node.key', this.keyPem);
    put('node.crt', this.certPem);
    put('ca.pem', this.cas.join(''));
    put('node.json', JSON.stringify({ nodeId: this.nodeId }) + '\n');
  }
}

/** POSTs JSON to a manager over TLS with `trust`; a `{code, message}` error answer becomes a ShoalError. */
export function postJson<T>(m: Extract<ManagerUrl, { kind: 'tcp' }>, path: string, body: unknown, trust: ClientTrust, token?: string): Promise<T> {
  const payload = Buffer.from(JSON.stringify(body));
  return new Promise<T>((resolve, reject) => {
    const req = request({
      host: m.url.hostname.replace(/^\[|\]$/g, ''), port: m.url.port || 443, path, method: 'POST', timeout: 30_000,
      createConnection: tlsConnector(trust) as never,
      headers: { 'content-type': 'application/json', 'content-length': payload.length, ...(token ? { authorization: `Bearer ${token}` } : {}) },
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        const status = res.statusCode ?? 500;
        let parsed: unknown;
        try { parsed = JSON.parse(text); } catch { parsed = undefined; }
        if (status >= 400) {
          const e = parsed as { code?: string; message?: string } | undefined;
          reject(new ShoalError(kindOfHttpStatus(status), e?.code ?? `HTTP_${status}`, e?.message ?? `manager answered ${status}`));
        } else resolve(parsed as T);
      });
    });
    req.on('timeout', () => req.destroy(new Error('timed out after 30 s')));
    req.on('error', reject);
    req.end(payload);
  });
}

/**
 * A manager's view of the cluster's security, kept current from the store: the tokens, the CA
 * (and a rotation under way), the revoked nodes. Every manager on a store runs one; they agree
 * through the store alone (a watch on `secrets/`), so a token rotated or a node removed through
 * one manager is refused by all of them within a watch round trip.
 *
 * It issues node certificates (join, renewal), this manager's server certificate, rotates
 * tokens and the CA, and finishes a CA rotation once every ready node holds a certificate from
 * the new CA (any manager may; a compare-and-swap makes it happen once).
 */
import { X509Certificate } from 'node:crypto';
import { conflict, internal, invalid, ShoalError } from '../../src/errors.js';
import { newId } from '../../src/ids.js';
import { aliveKey, nameKey } from '../../src/model/keys.js';
import type { Store, Watcher } from '../../src/store/types.js';
import type { ClusterInfo } from '../manager/cluster.js';
import { clusterSecretsKey } from '../manager/cluster.js';
import { getObject, listObjects } from '../manager/objects.js';
import {
  acceptedFingerprints, caKey, SECRETS as SECRETS_ROOT, certRecordKey, certsPrefix, completeRotation, fingerprintOf, pinnedFingerprint, readCa, readCertRecords,
  repin, serverChainTail, startRotation, trustedCas, type CaState, type CertRecord,
} from './ca.js';
import { revokedPrefix, type Revoked } from './revocation.js';
import { formatToken, newSecret } from './tokens.js';
import { issueCertificate, newKeyPair, publicKeyOfCsr } from './x509.js';

/** Default lifetime of a node certificate (renewed at 2/3 of it). */
export const DEFAULT_NODE_CERT_TTL_SECONDS = 24 * 3600;
/** Lifetime of a manager's server certificate (re-issued at 2/3 of it, and on a CA change). */
export const SERVER_CERT_TTL_SECONDS = 30 * 24 * 3600;

/** What changed, for listeners (TLS servers, agent sessions). */
export type SecurityEvent =
  | { type: 'ca'; state: CaState }
  | { type: 'tokens'; cluster: ClusterInfo }
  | { type: 'revoked'; revoked: Revoked };

/** Where a CA rotation stands (`shoal ca inspect`, `shoal ca rotate`). */
export interface CaStatus {
  generation: number;
  fingerprint: string;
  certificate: string;
  notAfter: string;
  rotating: boolean;
  startedAt?: string;
  previousFingerprint?: string;
  /** Ready nodes and whether each holds a certificate from the current CA. */
  nodes: Array<{ id: string; name: string; state: string; onCurrentCa: boolean; certificateNotAfter?: string }>;
}

/** Options of {@link ClusterSecurity.open}. */
export interface SecurityOptions {
  log?: (msg: string, err?: unknown) => void;
  /** Lifetime of node certificates issued by this manager, s (default 24 h). */
  nodeCertTtlSeconds?: number;
  /** Called when the tokens change (the daemon rewrites them into its data dir). */
  onTokens?: (c: ClusterInfo) => void;
}

/** Failure counters by reason (metrics). */
export class FailureCounts {
  readonly handshake = new Map<string, number>();
  readonly auth = new Map<string, number>();
  count(kind: 'handshake' | 'auth', reason: string): void {
    const m = this[kind];
    m.set(reason, (m.get(reason) ?? 0) + 1);
  }
}

/** One manager's security state and operations; `open()` it after ensureCluster, `stop()` it with the manager. */
export class ClusterSecurity {
  cluster: ClusterInfo;
  private clusterRevision: number;
  ca: CaState;
  private caRevision: number;
  readonly revoked = new Map<string, Revoked>();
  /** Last certificate issued per node, as the store says (metrics, rotation). */
  readonly certs = new Map<string, CertRecord>();
  readonly failures = new FailureCounts();
  readonly nodeCertTtlSeconds: number;
  private readonly listeners = new Set<(e: SecurityEvent) => void>();
  private watcher: Watcher | undefined;
  private stopped = false;
  private rotationTimer: NodeJS.Timeout | undefined;
  private completing = false;
  private readonly log: (msg: string, err?: unknown) => void;

  private constructor(private readonly store: Store, init: { cluster: ClusterInfo; clusterRevision: number; ca: CaState; caRevision: number }, private readonly opts: SecurityOptions) {
    this.cluster = init.cluster;
    this.clusterRevision = init.clusterRevision;
    this.ca = init.ca;
    this.caRevision = init.caRevision;
    this.nodeCertTtlSeconds = opts.nodeCertTtlSeconds ?? DEFAULT_NODE_CERT_TTL_SECONDS;
    this.log = opts.log ?? (() => undefined);
  }

  /** Reads the cluster's secrets (made by ensureCluster) and follows them. */
  static async open(store: Store, opts: SecurityOptions = {}): Promise<ClusterSecurity> {
    const { kvs, revision } = await store.range(SECRETS_ROOT);
    const byKey = new Map(kvs.map((kv) => [kv.key, kv]));
    const c = byKey.get(clusterSecretsKey);
    const ca = byKey.get(caKey);
    if (!c || !ca) throw internal('the cluster has no identity or CA in the store yet');
    const sec = new ClusterSecurity(store, {
      cluster: JSON.parse(c.value) as ClusterInfo, clusterRevision: c.modRevision,
      ca: JSON.parse(ca.value) as CaState, caRevision: ca.modRevision,
    }, opts);
    for (const kv of kvs) sec.apply(kv.key, kv.value, kv.modRevision, false);
    sec.follow(revision);
    sec.scheduleRotationCheck();
    return sec;
  }

  /** Subscribes to changes; returns the unsubscribe function. */
  on(listener: (e: SecurityEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(e: SecurityEvent): void {
    for (const l of this.listeners) {
      try { l(e); } catch (err) { this.log('a security listener failed', err); }
    }
  }

  private follow(fromRevision: number): void {
    if (this.stopped) return;
    this.watcher = this.store.watch(SECRETS_ROOT, (b) => {
      for (const e of b.events) if (e.type === 'put') this.apply(e.kv.key, e.kv.value, e.kv.modRevision, true);
    }, {
      fromRevision,
      onError: (err) => {
        // History compacted during a long outage: re-read everything and follow again.
        this.log('the secrets watch ended; re-reading', err);
        setTimeout(() => { void this.reread().catch((e: unknown) => this.log('re-reading the secrets failed', e)); }, 500);
      },
    });
  }

  private async reread(): Promise<void> {
    const { kvs, revision } = await this.store.range(SECRETS_ROOT);
    for (const kv of kvs) this.apply(kv.key, kv.value, kv.modRevision, true);
    this.follow(revision);
  }

  private apply(key: string, value: string, modRevision: number, live: boolean): void {
    if (key === clusterSecretsKey) {
      if (modRevision <= this.clusterRevision && live) return;
      this.cluster = JSON.parse(value) as ClusterInfo;
      this.clusterRevision = modRevision;
      if (live) {
        this.opts.onTokens?.(this.cluster);
        this.emit({ type: 'tokens', cluster: this.cluster });
      }
    } else if (key === caKey) {
      if (modRevision <= this.caRevision && live) return;
      this.ca = JSON.parse(value) as CaState;
      this.caRevision = modRevision;
      if (live) {
        this.log(this.ca.rotation ? `CA rotation to generation ${this.ca.generation} started: both CAs trusted until every node has a new certificate` : `cluster CA is generation ${this.ca.generation} (${fingerprintOf(this.ca.current.certPem).slice(0, 12)}…)`);
        this.emit({ type: 'ca', state: this.ca });
        this.scheduleRotationCheck();
      }
    } else if (key.startsWith(revokedPrefix)) {
      const r = JSON.parse(value) as Revoked;
      this.revoked.set(r.nodeId, r);
      if (live) this.emit({ type: 'revoked', revoked: r });
    } else if (key.startsWith(certsPrefix)) {
      const r = JSON.parse(value) as CertRecord;
      this.certs.set(r.nodeId, r);
      if (live && this.ca.rotation) this.scheduleRotationCheck(0);
    }
  }

  /** Fingerprints a token may pin now. */
  get acceptedFingerprints(): string[] { return acceptedFingerprints(this.ca); }

  /** CA certificates trusted now (for clients' certificates; agents keep them as their bundle). */
  get trustedCas(): string[] { return trustedCas(this.ca); }

  /** Whether `cert` was signed by the current CA. */
  isFromCurrentCa(cert: X509Certificate): boolean {
    const ca = new X509Certificate(this.ca.current.certPem);
    return cert.checkIssued(ca) && cert.verify(ca.publicKey);
  }

  // ---- tokens ----

  /** Replaces the join or manager token's secret (the old one is refused from now on); returns the new token. */
  async rotateToken(which: 'join' | 'manager'): Promise<string> {
    for (let attempt = 0; attempt < 8; attempt++) {
      const kv = await this.store.get(clusterSecretsKey);
      if (!kv) throw internal('the cluster record vanished');
      const c = JSON.parse(kv.value) as ClusterInfo;
      const token = formatToken(pinnedFingerprint(this.ca), newSecret());
      const next: ClusterInfo = which === 'join' ? { ...c, joinToken: token } : { ...c, managerToken: token };
      const res = await this.store.txn({
        compare: [{ key: clusterSecretsKey, target: 'modRevision', op: '=', value: kv.modRevision }],
        success: [{ type: 'put', key: clusterSecretsKey, value: JSON.stringify(next) }],
      });
      if (res.succeeded) {
        this.log(`${which} token rotated: the old one is refused from now on`);
        this.apply(clusterSecretsKey, JSON.stringify(next), res.revision, true);
        return token;
      }
    }
    throw conflict('the cluster record kept changing; try again');
  }

  // ---- certificates ----

  /** Signs a node certificate for `nodeId` from a PKCS#10 request, records it, returns it with the trusted CAs. */
  async issueNodeCertificate(nodeId: string, csrPem: unknown): Promise<{ certificate: string; ca: string[]; notAfter: string }> {
    if (typeof csrPem !== 'string' || !csrPem.includes('CERTIFICATE REQUEST')) throw invalid('csr must be a PEM certificate request (-----BEGIN CERTIFICATE REQUEST-----)', 'BAD_CSR');
    if (this.revoked.has(nodeId)) throw new ShoalError('Forbidden', 'NODE_REVOKED', `node ${nodeId} was removed from the cluster; its certificates are revoked`);
    let publicKeyPem: string;
    try {
      publicKeyPem = await publicKeyOfCsr(csrPem);
    } catch (e) {
      throw invalid(e instanceof Error ? e.message : String(e), 'BAD_CSR');
    }
    const certificate = await issueCertificate({
      ca: this.ca.current, publicKeyPem, validSeconds: this.nodeCertTtlSeconds,
      subject: { commonName: nodeId, role: 'shoal-worker', clusterId: this.cluster.id },
    });
    const x = new X509Certificate(certificate);
    const rec: CertRecord = { nodeId, serial: x.serialNumber, notAfter: new Date(x.validTo).toISOString(), ca: fingerprintOf(this.ca.current.certPem), issuedAt: new Date().toISOString() };
    await this.store.put(certRecordKey(nodeId), JSON.stringify(rec));
    this.certs.set(nodeId, rec);
    return { certificate, ca: this.trustedCas, notAfter: rec.notAfter };
  }

  /**
   * A node's first certificate (the join token was checked by the caller): the id of the node
   * named `name` when it exists and is down (an agent that lost its data dir), a new id for a
   * new name; refused while a node of that name is up (it holds its own certificate).
   */
  async joinCertificate(name: string, csrPem: unknown): Promise<{ nodeId: string; certificate: string; ca: string[]; notAfter: string }> {
    const idKv = await this.store.get(nameKey('nodes', name));
    let nodeId = newId();
    if (idKv) {
      const existing = await getObject(this.store, 'nodes', idKv.value);
      if (existing && (await this.store.get(aliveKey(existing.obj.id)))) {
        throw conflict(`node '${name}' is up with its own certificate; another agent cannot join under its name (stop it, or remove it with shoal node rm --force ${name})`, 'NODE_NAME_IN_USE');
      }
      if (existing) nodeId = existing.obj.id;
    }
    return { nodeId, ...(await this.issueNodeCertificate(nodeId, csrPem)) };
  }

  /** A server certificate for this manager (a fresh key, `names` and `ips` as SANs) with the chain to send. */
  async serverCertificate(name: string, sans: { dns: string[]; ips: string[] }): Promise<{ keyPem: string; certPem: string; chainPem: string; notAfter: Date }> {
    const kp = newKeyPair();
    const certPem = await issueCertificate({
      ca: this.ca.current, publicKeyPem: kp.publicKeyPem, validSeconds: SERVER_CERT_TTL_SECONDS,
      subject: { commonName: name, role: 'shoal-manager', clusterId: this.cluster.id }, dns: sans.dns, ips: sans.ips,
    });
    return { keyPem: kp.keyPem, certPem, chainPem: certPem + serverChainTail(this.ca), notAfter: new Date(new X509Certificate(certPem).validTo) };
  }

  // ---- CA rotation ----

  /** Starts a CA rotation (see ca.ts); agents are moved over by their sessions. */
  async rotateCa(): Promise<CaStatus> {
    const state = await startRotation(this.store, this.cluster.id);
    this.log(`CA rotation started: generation ${state.generation} (${fingerprintOf(state.current.certPem).slice(0, 12)}…)`);
    const ca = await readCa(this.store);
    if (ca) this.apply(caKey, JSON.stringify(ca.state), ca.modRevision, true);
    return this.caStatus();
  }

  async caStatus(): Promise<CaStatus> {
    const certs = new Map((await readCertRecords(this.store)).map((r) => [r.nodeId, r]));
    const current = fingerprintOf(this.ca.current.certPem);
    const nodes = (await listObjects(this.store, 'nodes')).map((v) => v.obj).filter((n) => n.state === 'ready' && certs.has(n.id)).map((n) => {
      const r = certs.get(n.id) as CertRecord;
      return { id: n.id, name: n.name, state: n.state, onCurrentCa: r.ca === current, certificateNotAfter: r.notAfter };
    });
    const s: CaStatus = {
      generation: this.ca.generation, fingerprint: current, certificate: this.ca.current.certPem,
      notAfter: new Date(new X509Certificate(this.ca.current.certPem).validTo).toISOString(), rotating: !!this.ca.rotation, nodes,
    };
    if (this.ca.rotation) s.startedAt = this.ca.rotation.startedAt;
    if (this.ca.previous) s.previousFingerprint = fingerprintOf(this.ca.previous.certPem);
    return s;
  }

  /** While a rotation lasts, checks (now, and every second) whether it can be finished. */
  private scheduleRotationCheck(delayMs = 1000): void {
    if (this.stopped || !this.ca.rotation) return;
    if (this.rotationTimer) clearTimeout(this.rotationTimer);
    this.rotationTimer = setTimeout(() => {
      this.rotationTimer = undefined;
      this.tryComplete().catch((e: unknown) => this.log('checking the CA rotation failed (will retry)', e)).finally(() => this.scheduleRotationCheck());
    }, delayMs);
    this.rotationTimer.unref();
  }

  private async tryComplete(): Promise<void> {
    if (this.completing || !this.ca.rotation) return;
    this.completing = true;
    try {
      const status = await this.caStatus();
      if (!status.rotating || status.nodes.some((n) => !n.onCurrentCa)) return;
      const ca = await readCa(this.store);
      const kv = await this.store.get(clusterSecretsKey);
      if (!ca?.state.rotation || !kv) return;
      const c = JSON.parse(kv.value) as ClusterInfo;
      const fp = fingerprintOf(ca.state.current.certPem);
      const next: ClusterInfo = { ...c, joinToken: repin(c.joinToken, fp), managerToken: repin(c.managerToken, fp) };
      if (await completeRotation(this.store, ca, { key: clusterSecretsKey, modRevision: kv.modRevision, ops: [{ type: 'put', key: clusterSecretsKey, value: JSON.stringify(next) }] })) {
        this.log(`CA rotation finished: every ready node (${status.nodes.length}) holds a certificate from generation ${ca.state.generation}; the old CA is no longer trusted and the tokens pin ${fp.slice(0, 12)}…`);
      }
    } finally {
      this.completing = false;
    }
  }

  stop(): void {
    this.stopped = true;
    this.watcher?.cancel();
    if (this.rotationTimer) clearTimeout(this.rotationTimer);
  }
}

/**
 * The cluster CA in the store, under `secrets/` (never sent by the watch stream, so the key
 * never leaves the managers, which alone read the store).
 *
 *   secrets/ca             {generation, current: {certPem, keyPem}, previous?, cross?, rotation?}
 *   secrets/certs/<node>   the last certificate issued to a node: {serial, notAfter, ca, issuedAt}
 *
 * A rotation (`shoal ca rotate`) is one transaction: a new CA becomes `current`, the old one
 * `previous`, and `cross` is the new CA's certificate signed by the old key. While it lasts
 * (`rotation` set) both CAs are trusted for client certificates, servers present
 * leaf -> cross -> old CA (a peer that trusts either CA verifies it), tokens keep pinning the
 * old CA, and every node is asked to renew. When every ready node holds a certificate from the
 * new CA, {@link completeRotation} drops the old CA and the tokens move to the new fingerprint.
 */
import { conflict, internal } from '../../src/errors.js';
import type { Store, TxnOp } from '../../src/store/types.js';
import { ROOT } from '../../src/model/keys.js';
import { base32, formatToken, parseToken } from './tokens.js';
import { certFingerprint, createCa, crossSign, type CertifiedKey } from './x509.js';

export const SECRETS = `${ROOT}secrets/`;
export const caKey = `${SECRETS}ca`;
export const certsPrefix = `${SECRETS}certs/`;
export const certRecordKey = (nodeId: string): string => `${certsPrefix}${nodeId}`;

/** CA lifetime: long; rotation is explicit (`shoal ca rotate`), as in Swarm (20 years). */
export const CA_VALID_DAYS = 20 * 365;

/** The cluster CA as stored. */
export interface CaState {
  generation: number;
  current: CertifiedKey;
  /** The CA being replaced, while a rotation lasts. */
  previous?: CertifiedKey;
  /** `current` signed by `previous` (during a rotation). */
  cross?: string;
  rotation?: { startedAt: string };
}

/** The last certificate issued to a node (metrics, rotation progress). */
export interface CertRecord {
  nodeId: string;
  serial: string;
  notAfter: string;
  /** Base32 fingerprint of the CA that signed it. */
  ca: string;
  issuedAt: string;
}

/** Base32 SHA-256 of a CA certificate: the fingerprint tokens carry. */
export const fingerprintOf = (certPem: string): string => base32(certFingerprint(certPem));

/** A fresh generation-1 CA state for a new cluster. */
export async function newCaState(clusterId: string): Promise<CaState> {
  return { generation: 1, current: await createCa({ clusterId, generation: 1, validDays: CA_VALID_DAYS }) };
}

/** Reads the CA state; undefined on a store that has none yet. */
export async function readCa(store: Store): Promise<{ state: CaState; modRevision: number } | undefined> {
  const kv = await store.get(caKey);
  return kv ? { state: JSON.parse(kv.value) as CaState, modRevision: kv.modRevision } : undefined;
}

/** The fingerprint tokens pin: the old CA's while a rotation lasts, else the current one's. */
export function pinnedFingerprint(s: CaState): string {
  return fingerprintOf((s.rotation && s.previous ? s.previous : s.current).certPem);
}

/** Fingerprints a token may pin and still be accepted (both CAs during a rotation). */
export function acceptedFingerprints(s: CaState): string[] {
  return [fingerprintOf(s.current.certPem), ...(s.previous ? [fingerprintOf(s.previous.certPem)] : [])];
}

/** CA certificates trusted for client certificates (and written to agents' bundles). */
export function trustedCas(s: CaState): string[] {
  return [s.current.certPem, ...(s.previous ? [s.previous.certPem] : [])];
}

/** What a server sends after its own certificate: the path to every CA a peer may trust. */
export function serverChainTail(s: CaState): string {
  return s.rotation && s.cross && s.previous ? s.cross + s.previous.certPem : s.current.certPem;
}

/** A token re-pinned to `fingerprint` (same secret). */
export function repin(token: string, fingerprint: string): string {
  const t = parseToken(token);
  if (!t) throw internal('a stored token is not a SHOAL-1 token');
  return formatToken(fingerprint, t.secret);
}

/**
 * Starts a CA rotation: one transaction writes the new CA (generation + 1), keeps the old one
 * as `previous` with the cross-signed certificate. Refused while another rotation lasts.
 */
export async function startRotation(store: Store, clusterId: string): Promise<CaState> {
  const cur = await readCa(store);
  if (!cur) throw internal('the cluster has no CA yet');
  if (cur.state.rotation) throw conflict(`a CA rotation started at ${cur.state.rotation.startedAt} is still under way (shoal ca inspect shows which nodes it waits for)`, 'CA_ROTATION_UNDER_WAY');
  const generation = cur.state.generation + 1;
  const next = await createCa({ clusterId, generation, validDays: CA_VALID_DAYS });
  const state: CaState = {
    generation, current: next, previous: cur.state.current,
    cross: await crossSign(next.certPem, cur.state.current),
    rotation: { startedAt: new Date().toISOString() },
  };
  const res = await store.txn({
    compare: [{ key: caKey, target: 'modRevision', op: '=', value: cur.modRevision }],
    success: [{ type: 'put', key: caKey, value: JSON.stringify(state) }],
  });
  if (!res.succeeded) throw conflict('the CA changed meanwhile (another rotation started?); try again', 'CA_ROTATION_UNDER_WAY');
  return state;
}

/**
 * Ends a rotation: drops the old CA and re-pins the tokens (in `clusterOps`, built by the
 * caller from the cluster record it read) to the new CA, in one transaction conditional on
 * both records being unchanged. False when something changed meanwhile (the caller retries).
 */
export async function completeRotation(store: Store, ca: { state: CaState; modRevision: number }, clusterOps: { key: string; modRevision: number; ops: TxnOp[] }): Promise<boolean> {
  const state: CaState = { generation: ca.state.generation, current: ca.state.current };
  const res = await store.txn({
    compare: [
      { key: caKey, target: 'modRevision', op: '=', value: ca.modRevision },
      { key: clusterOps.key, target: 'modRevision', op: '=', value: clusterOps.modRevision },
    ],
    success: [{ type: 'put', key: caKey, value: JSON.stringify(state) }, ...clusterOps.ops],
  });
  return res.succeeded;
}

/** Every node's last issued certificate. */
export async function readCertRecords(store: Store): Promise<CertRecord[]> {
  const { kvs } = await store.range(certsPrefix);
  return kvs.map((kv) => JSON.parse(kv.value) as CertRecord);
}

/**
 * Certificate creation: the cluster CA, cross-signed CA certificates, node and manager
 * certificates, and the agent's certificate request. Everything else about certificates
 * (parsing, fingerprints, checking a chain, TLS) uses Node's own `crypto.X509Certificate` and
 * `tls`, which cannot *create* certificates or requests.
 *
 * The library is `@peculiar/x509` (MIT, Peculiar Ventures; ~10M downloads a month), chosen
 * over the two other well-kept options:
 * - `node-forge` signs certificates with RSA only: it cannot make the ECDSA P-256 CA the
 *   cluster needs (nor verify an ECDSA request), and carries its own crypto in pure JS.
 * - `pkijs` can, but is the low-level ASN.1 object model: a certificate is assembled field by
 *   field from OIDs, which is the hand-written ASN.1 this project avoids.
 * - `@peculiar/x509` is typed (TypeScript sources), signs with WebCrypto (Node's
 *   `crypto.webcrypto`, so the keys and signatures are OpenSSL's), and has the extensions
 *   by name (basic constraints, key usages, SAN, SKI/AKI) and PKCS#10 requests with their
 *   signature check. Its one cost: `tsyringe` needs the `reflect-metadata` polyfill, loaded
 *   here before it. It is loaded lazily, so the CLI (which only checks fingerprints) never
 *   pays its ~100 ms.
 *
 * Keys are ECDSA P-256 everywhere, made by Node (`generateKeyPairSync`) and kept as PEM
 * (PKCS#8 private, SPKI public).
 */
import { createHash, generateKeyPairSync, randomBytes, webcrypto, X509Certificate } from 'node:crypto';

type CryptoKey = webcrypto.CryptoKey;

type X509Lib = typeof import('@peculiar/x509');
let lib: Promise<X509Lib> | undefined;

/** Loads the library once (the polyfill first: tsyringe checks for it at import). */
function x509(): Promise<X509Lib> {
  lib ??= (async () => {
    await import('reflect-metadata');
    const m = await import('@peculiar/x509');
    m.cryptoProvider.set(webcrypto as never);
    return m;
  })();
  return lib;
}

const EC = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGN = { name: 'ECDSA', hash: 'SHA-256' } as const;

/** A key pair as PEM strings. */
export interface KeyPair { keyPem: string; publicKeyPem: string }

/** A certificate and the private key it certifies, both PEM. */
export interface CertifiedKey { certPem: string; keyPem: string }

/** A new ECDSA P-256 key pair. */
export function newKeyPair(): KeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return {
    keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}

const derOf = (pem: string): Buffer => Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');

async function signingKey(keyPem: string): Promise<CryptoKey> {
  return webcrypto.subtle.importKey('pkcs8', derOf(keyPem), EC, false, ['sign']);
}

async function publicKey(publicKeyPem: string): Promise<CryptoKey> {
  return webcrypto.subtle.importKey('spki', derOf(publicKeyPem), EC, true, ['verify']);
}

/** PEM text ending in a newline (concatenated bundles stay valid). */
const pem = (o: { toString(f: 'pem'): string }): string => `${o.toString('pem').trim()}\n`;

/** A positive random 128-bit serial number (hex). */
const serial = (): string => {
  const b = randomBytes(16);
  b[0] = (b[0] as number) & 0x7f;
  return b.toString('hex');
};

/** SHA-256 of a certificate's DER encoding (what tokens pin). */
export function certFingerprint(certPem: string): Buffer {
  return createHash('sha256').update(new X509Certificate(certPem).raw).digest();
}

/** Escapes a value for a distinguished name string (RFC 4514). */
const dnValue = (v: string): string => v.replace(/([,+"\\<>;=])/g, '\\$1');

/**
 * A new self-signed CA: ECDSA P-256, path length 1 (end-entity certificates, and the next CA
 * cross-signed during a rotation),
 * `CN=shoal cluster CA <generation>, O=<clusterId>`.
 */
export async function createCa(o: { clusterId: string; generation: number; validDays: number }): Promise<CertifiedKey> {
  const x = await x509();
  const kp = newKeyPair();
  const keys = { privateKey: await signingKey(kp.keyPem), publicKey: await publicKey(kp.publicKeyPem) };
  const now = Date.now();
  const cert = await x.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=shoal cluster CA ${o.generation}, O=${dnValue(o.clusterId)}`,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + o.validDays * 86_400_000),
    keys: keys as never,
    signingAlgorithm: SIGN,
    extensions: [
      new x.BasicConstraintsExtension(true, 1, true),
      new x.KeyUsagesExtension(x.KeyUsageFlags.keyCertSign | x.KeyUsageFlags.cRLSign, true),
      await x.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: pem(cert), keyPem: kp.keyPem };
}

/**
 * The CA `subjectCaPem` signed by `issuer` (same subject, same key, same validity as the
 * subject CA): during a CA rotation, a peer that trusts only the old CA follows
 * leaf -> cross-signed new CA -> old CA.
 */
export async function crossSign(subjectCaPem: string, issuer: CertifiedKey): Promise<string> {
  const x = await x509();
  const subject = new x.X509Certificate(subjectCaPem);
  const iss = new x.X509Certificate(issuer.certPem);
  const cert = await x.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: subject.subject,
    issuer: iss.subject,
    notBefore: subject.notBefore,
    notAfter: subject.notAfter < iss.notAfter ? subject.notAfter : iss.notAfter,
    publicKey: subject.publicKey,
    signingKey: await signingKey(issuer.keyPem),
    signingAlgorithm: SIGN,
    extensions: [
      new x.BasicConstraintsExtension(true, 1, true),
      new x.KeyUsagesExtension(x.KeyUsageFlags.keyCertSign | x.KeyUsageFlags.cRLSign, true),
      await x.SubjectKeyIdentifierExtension.create(await subject.publicKey.export()),
      await x.AuthorityKeyIdentifierExtension.create(await iss.publicKey.export()),
    ],
  });
  return pem(cert);
}

/** What an end-entity certificate says about its holder. */
export interface Subject {
  /** The node id (node certificates) or the manager's name (server certificates). */
  commonName: string;
  /** The role: `shoal-worker` or `shoal-manager` (Swarm's OU). */
  role: 'shoal-worker' | 'shoal-manager';
  clusterId: string;
}

/** Options of {@link issueCertificate}. */
export interface IssueOptions {
  ca: CertifiedKey;
  subject: Subject;
  /** SPKI PEM of the holder's key. */
  publicKeyPem: string;
  validSeconds: number;
  /** Subject alternative names (server certificates): DNS names and IP addresses. */
  dns?: string[];
  ips?: string[];
}

/** An end-entity certificate signed by `o.ca`: client auth for workers, server and client auth for managers. */
export async function issueCertificate(o: IssueOptions): Promise<string> {
  const x = await x509();
  const ca = new x.X509Certificate(o.ca.certPem);
  const holder = await publicKey(o.publicKeyPem);
  const now = Date.now();
  const notAfter = new Date(Math.min(now + o.validSeconds * 1000, ca.notAfter.getTime()));
  const names = [...(o.dns ?? []).map((value) => ({ type: 'dns' as const, value })), ...(o.ips ?? []).map((value) => ({ type: 'ip' as const, value }))];
  const usages = o.subject.role === 'shoal-manager' ? [x.ExtendedKeyUsage.serverAuth, x.ExtendedKeyUsage.clientAuth] : [x.ExtendedKeyUsage.clientAuth];
  const cert = await x.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${dnValue(o.subject.commonName)}, OU=${o.subject.role}, O=${dnValue(o.subject.clusterId)}`,
    issuer: ca.subject,
    // Back-dated (a minute, a tenth of a short lifetime): clocks of a cluster's machines are
    // never exactly equal, and renewal at 2/3 of the life must stay after the issue.
    notBefore: new Date(now - (o.validSeconds > 0 ? Math.min(60_000, o.validSeconds * 100) : 60_000)),
    notAfter,
    publicKey: holder,
    signingKey: await signingKey(o.ca.keyPem),
    signingAlgorithm: SIGN,
    extensions: [
      new x.BasicConstraintsExtension(false, undefined, true),
      new x.KeyUsagesExtension(x.KeyUsageFlags.digitalSignature | x.KeyUsageFlags.keyAgreement, true),
      new x.ExtendedKeyUsageExtension(usages),
      await x.SubjectKeyIdentifierExtension.create(holder),
      await x.AuthorityKeyIdentifierExtension.create(await ca.publicKey.export()),
      ...(names.length ? [new x.SubjectAlternativeNameExtension(names)] : []),
    ],
  });
  return pem(cert);
}

/** A PKCS#10 request for `keyPem` (the agent's join and renewals): proof that it holds the key. */
export async function createCsr(kp: KeyPair, commonName: string): Promise<string> {
  const x = await x509();
  const keys = { privateKey: await signingKey(kp.keyPem), publicKey: await publicKey(kp.publicKeyPem) };
  const csr = await x.Pkcs10CertificateRequestGenerator.create({ name: `CN=${dnValue(commonName)}`, keys: keys as never, signingAlgorithm: SIGN });
  return pem(csr);
}

/**
 * Checks a certificate request (PEM, its signature, an ECDSA P-256 key) and returns the SPKI
 * PEM of its key; throws Error with a sentence when it is not acceptable.
 */
export async function publicKeyOfCsr(csrPem: string): Promise<string> {
  const x = await x509();
  let csr: InstanceType<X509Lib['Pkcs10CertificateRequest']>;
  try {
    csr = new x.Pkcs10CertificateRequest(csrPem);
  } catch (e) {
    throw new Error(`the certificate request is not a PEM PKCS#10 request (${e instanceof Error ? e.message : String(e)})`, { cause: e });
  }
  const alg = csr.publicKey.algorithm as webcrypto.EcKeyAlgorithm;
  if (alg.name !== 'ECDSA' || alg.namedCurve !== 'P-256') throw new Error('the certificate request must be for an ECDSA P-256 key');
  if (!(await csr.verify())) throw new Error('the certificate request\'s signature does not match its key');
  return pem(csr.publicKey);
}

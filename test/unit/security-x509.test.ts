/**
 * Certificates made with @peculiar/x509 read back by Node's own X509Certificate (and OpenSSL
 * in a real TLS handshake on loopback), and the pinned-chain check the CLI relies on.
 */
import { X509Certificate } from 'node:crypto';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { connect, type DetailedPeerCertificate } from 'node:tls';
import { afterEach, describe, expect, it } from 'vitest';
import { fingerprintOf } from '../../mesh/security/ca.js';
import { pinProblem } from '../../mesh/security/tls-client.js';
import { createCa, createCsr, crossSign, issueCertificate, newKeyPair, publicKeyOfCsr, type CertifiedKey } from '../../mesh/security/x509.js';

const servers: Server[] = [];
afterEach(() => { for (const s of servers.splice(0)) s.close(); });

async function serverCert(ca: CertifiedKey, role: 'shoal-manager' | 'shoal-worker' = 'shoal-manager', validSeconds = 600): Promise<CertifiedKey> {
  const kp = newKeyPair();
  return { keyPem: kp.keyPem, certPem: await issueCertificate({ ca, publicKeyPem: kp.publicKeyPem, validSeconds, subject: { commonName: 'm1', role, clusterId: 'c1' }, ips: ['127.0.0.1'], dns: ['localhost'] }) };
}

/** The chain a client sees from a real TLS server presenting `chain`. */
async function peerOf(key: string, chain: string): Promise<DetailedPeerCertificate> {
  const s = createServer({ key, cert: chain }, (_q, r) => r.end());
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return new Promise((resolve, reject) => {
    const c = connect({ host: '127.0.0.1', port: (s.address() as AddressInfo).port, rejectUnauthorized: false }, () => {
      resolve(c.getPeerCertificate(true));
      c.end();
    });
    c.on('error', reject);
  });
}

describe('certificates', () => {
  it('a CA, a node certificate from a request, a server certificate with SANs: as Node reads them', async () => {
    const ca = await createCa({ clusterId: 'c1', generation: 1, validDays: 1 });
    const c = new X509Certificate(ca.certPem);
    expect(c.ca).toBe(true);
    expect(c.subject).toBe('CN=shoal cluster CA 1\nO=c1');
    expect(c.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    const kp = newKeyPair();
    const pub = await publicKeyOfCsr(await createCsr(kp, 'n1'));
    const leaf = new X509Certificate(await issueCertificate({ ca, publicKeyPem: pub, validSeconds: 3600, subject: { commonName: 'abc123', role: 'shoal-worker', clusterId: 'c1' } }));
    expect(leaf.subject).toBe('CN=abc123\nOU=shoal-worker\nO=c1');
    expect(leaf.ca).toBe(false);
    expect(leaf.checkIssued(c) && leaf.verify(c.publicKey)).toBe(true);
    expect(Date.parse(leaf.validTo) - Date.now()).toBeLessThanOrEqual(3600_000);
    const srv = new X509Certificate((await serverCert(ca)).certPem);
    expect(srv.subjectAltName).toBe('DNS:localhost, IP Address:127.0.0.1');
  });

  it('refuses a request that is not PEM PKCS#10, or whose signature does not match its key', async () => {
    await expect(publicKeyOfCsr('hello')).rejects.toThrow(/not a PEM PKCS#10 request/);
    const csr = await createCsr(newKeyPair(), 'n1');
    const body = csr.replace(/-----[^-]+-----|\s/g, '');
    const der = Buffer.from(body, 'base64');
    der[der.length - 5] = (der[der.length - 5] as number) ^ 0xff; // flip bits in the signature
    const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
    await expect(publicKeyOfCsr(tampered)).rejects.toThrow(/signature|not a PEM/);
  });
});

describe('pinned chain check (what the CLI does before sending a token)', () => {
  it('accepts a manager chain leading to the pinned CA', async () => {
    const ca = await createCa({ clusterId: 'c1', generation: 1, validDays: 1 });
    const s = await serverCert(ca);
    expect(pinProblem(await peerOf(s.keyPem, s.certPem + ca.certPem), [fingerprintOf(ca.certPem)])).toBeUndefined();
  });

  it('refuses another CA, a worker certificate, an expired one, and a chain without the CA', async () => {
    const ca = await createCa({ clusterId: 'c1', generation: 1, validDays: 1 });
    const other = await createCa({ clusterId: 'c2', generation: 1, validDays: 1 });
    const pin = [fingerprintOf(ca.certPem)];
    const s = await serverCert(other);
    expect(pinProblem(await peerOf(s.keyPem, s.certPem + other.certPem), pin)).toMatch(/does not lead to the CA the token pins/);
    const w = await serverCert(ca, 'shoal-worker');
    expect(pinProblem(await peerOf(w.keyPem, w.certPem + ca.certPem), pin)).toMatch(/not a Shoal manager's/);
    const e = await serverCert(ca, 'shoal-manager', -30);
    expect(pinProblem(await peerOf(e.keyPem, e.certPem + ca.certPem), pin)).toMatch(/not valid now/);
    const lone = await serverCert(ca);
    expect(pinProblem(await peerOf(lone.keyPem, lone.certPem), pin)).toMatch(/does not lead/);
  });

  it('during a CA rotation: leaf from the new CA -> cross-signed -> old CA satisfies a pin of the old CA', async () => {
    const old = await createCa({ clusterId: 'c1', generation: 1, validDays: 1 });
    const next = await createCa({ clusterId: 'c1', generation: 2, validDays: 1 });
    const cross = await crossSign(next.certPem, old);
    const s = await serverCert(next);
    const peer = await peerOf(s.keyPem, s.certPem + cross + old.certPem);
    expect(pinProblem(peer, [fingerprintOf(old.certPem)])).toBeUndefined();
    // The cross-signed certificate is the new CA's key under the old CA's name as issuer.
    const x = new X509Certificate(cross);
    expect(x.subject).toBe(new X509Certificate(next.certPem).subject);
    expect(x.verify(new X509Certificate(old.certPem).publicKey)).toBe(true);
  });
});

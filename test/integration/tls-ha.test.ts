/**
 * TLS with several managers on etcd (the harness: 2 managers, 1 etcd member, 1 node, each in
 * its own namespace). Checked from the client namespace with real clients (openssl s_client,
 * curl): every manager serves its own server certificate from the one cluster CA (its name,
 * its address as SAN), one CA file and one token work with both, a token rotated through one
 * manager is refused by the other at once, and a node removed through one manager loses its
 * session on whichever manager it is connected to.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { destroyAllHarnesses, startHarness, type Harness, type HarnessManager } from '../harness/cluster.js';
import { until } from '../helpers/cluster.js';

let h: Harness;

beforeAll(async () => {
  h = await startHarness({ nodes: 1, managers: 2, etcd: { members: 1 } });
}, 120_000);

afterAll(async () => {
  await destroyAllHarnesses();
});

/** The certificates a manager presents, as openssl s_client (in the client netns) shows them. */
async function presented(m: HarnessManager): Promise<X509Certificate[]> {
  const r = await h.client.exec(['openssl', 's_client', '-connect', `${m.address}:4242`, '-showcerts'], { input: '', timeoutMs: 20_000 });
  const pems = r.stdout.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return pems.map((p) => new X509Certificate(p));
}

const caFile = (m: HarnessManager): string => join(m.dataDir, 'ca.pem');

async function curlStatus(m: HarnessManager, token: string, path = '/v1/nodes'): Promise<number> {
  const r = await h.client.exec(['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '-m', '10', '--cacert', caFile(h.manager), '-H', `Authorization: Bearer ${token}`, `${m.url}${path}`], { timeoutMs: 20_000 });
  return Number(r.stdout);
}

describe('several managers on etcd', () => {
  it('each serves its own certificate from the shared CA; one CA file and one token work with both', async () => {
    const ca = new X509Certificate(readFileSync(caFile(h.manager)));
    expect(readFileSync(caFile(h.managers[1]!), 'utf8')).toBe(readFileSync(caFile(h.manager), 'utf8'));
    const leaves: X509Certificate[] = [];
    for (const m of h.managers) {
      const [leaf] = await presented(m);
      if (!leaf) throw new Error(`${m.name} presented no certificate`);
      expect(leaf.subject).toMatch(new RegExp(`^CN=${m.name}\\nOU=shoal-manager\\nO=`));
      expect(leaf.subjectAltName).toContain(`IP Address:${m.address}`);
      expect(leaf.checkIssued(ca) && leaf.verify(ca.publicKey)).toBe(true);
      leaves.push(leaf);
      expect(await curlStatus(m, h.manager.token)).toBe(200);
    }
    expect(leaves[0]?.fingerprint256).not.toBe(leaves[1]?.fingerprint256);
  });

  it('a token rotated through one manager is refused by the other at once; the new one works on both', async () => {
    const [m1, m2] = h.managers as [HarnessManager, HarnessManager];
    const old = h.manager.token;
    const r = await h.client.exec(['curl', '-s', '-m', '10', '--cacert', caFile(m1), '-H', `Authorization: Bearer ${old}`, '-X', 'POST', '-d', '{"which":"manager"}', `${m1.url}/v1/tokens/rotate`], { timeoutMs: 20_000 });
    const fresh = (JSON.parse(r.stdout) as { token: string }).token;
    expect(fresh).toMatch(/^SHOAL-1-/);
    await until(async () => (await curlStatus(m2, old)) === 401, 'the other manager refusing the old token', 10_000, 100);
    expect(await curlStatus(m2, fresh)).toBe(200);
    expect(await curlStatus(m1, fresh)).toBe(200);
    expect(await curlStatus(m1, old)).toBe(401);
    // Each manager rewrote its data dir's token file.
    for (const m of h.managers) await until(() => readFileSync(join(m.dataDir, 'manager.token'), 'utf8').trim() === fresh, `${m.name}'s manager.token`, 10_000, 100);
  });

  it('a node removed through either manager is refused by both', async () => {
    const n = h.nodes[0]!;
    const fresh = readFileSync(join(h.manager.dataDir, 'manager.token'), 'utf8').trim();
    // Through the second manager's TLS port, whichever manager holds the node's session.
    const r = await h.client.exec(['curl', '-s', '-m', '10', '--cacert', caFile(h.manager), '-H', `Authorization: Bearer ${fresh}`, '-X', 'DELETE', `${h.managers[1]!.url}/v1/nodes/${n.name}?force=1`], { timeoutMs: 20_000 });
    expect(r.stdout, r.stderr).toContain(n.name);
    await until(() => !n.agentProcess.running(), 'the removed node\'s agent to exit', 30_000, 200);
    const out = n.agentProcess.output();
    expect(out).toMatch(/manager refused the session \(403\): .*removed from the cluster/);
    const refusedOn = h.managers.filter((m) => /certificate is revoked/.test(m.process.output()));
    expect(refusedOn.length).toBeGreaterThanOrEqual(1);
  });
});

/**
 * The cluster's ingress network: a /16 from the overlay pool by default (room for nodes and
 * publishing tasks past 253), `--ingress-subnet` at cluster init, and every bad value refused
 * with a clear sentence and nothing changed.
 */
import { describe, expect, it } from 'vitest';
import { createNetwork } from '../../mesh/manager/networks.js';
import { Manager } from '../../mesh/manager/index.js';
import { ensureIngressNetwork, ingressNetwork } from '../../mesh/manager/ingress.js';
import { openEmbeddedStore } from '../../src/store/embedded.js';
import type { Store } from '../../src/store/types.js';

async function dump(store: Store): Promise<string> {
  const r = await store.range('/');
  return JSON.stringify(r.kvs.map((kv) => [kv.key, kv.value, kv.modRevision]));
}

describe('ingress network subnet', () => {
  it('defaults to a /16 from the overlay pool', async () => {
    const store = await openEmbeddedStore({});
    const m = new Manager(store);
    await m.start();
    await m.stop();
    const net = await ingressNetwork(store);
    expect(net?.ipam.v4.subnet).toMatch(/^10\.\d+\.0\.0\/16$/);
    await store.close();
  });

  it('takes --ingress-subnet at cluster init; the same value again is fine, another one is refused and changes nothing', async () => {
    const store = await openEmbeddedStore({});
    const m = new Manager(store, { ingressSubnet: '10.200.0.0/16' });
    await m.start();
    await m.stop();
    expect((await ingressNetwork(store))?.ipam.v4).toEqual({ subnet: '10.200.0.0/16', gateway: '10.200.0.1' });
    await expect(ensureIngressNetwork(store, '10.200.0.0/16')).resolves.toMatchObject({ name: 'ingress' });
    const before = await dump(store);
    const again = new Manager(store, { ingressSubnet: '10.201.0.0/16' });
    await expect(again.start()).rejects.toThrow(/already has subnet 10\.200\.0\.0\/16; the ingress subnet is chosen once/);
    await again.stop();
    expect(await dump(store)).toBe(before);
    await store.close();
  });

  it.each([
    ['not-a-cidr', /--ingress-subnet/],
    ['fd00::/64', /--ingress-subnet: subnet fd00::\/64 is IPv6/],
    ['10.9.9.0/31', /--ingress-subnet: subnet 10\.9\.9\.0\/31 is too small/],
  ])('refuses %s with a clear error and creates nothing', async (subnet, msg) => {
    const store = await openEmbeddedStore({});
    await expect(ensureIngressNetwork(store, subnet)).rejects.toThrow(msg);
    expect(await ingressNetwork(store)).toBeUndefined();
    await store.close();
  });

  it('refuses a subnet overlapping a network the store already has', async () => {
    const store = await openEmbeddedStore({});
    await createNetwork(store, { name: 'app', driver: 'overlay', ipv6: false, options: {}, labels: {}, subnet: '10.60.1.0/24' });
    const before = await dump(store);
    await expect(ensureIngressNetwork(store, '10.60.0.0/16')).rejects.toThrow(/--ingress-subnet: subnet 10\.60\.0\.0\/16 overlaps network 'app' \(10\.60\.1\.0\/24\)/);
    expect(await dump(store)).toBe(before);
    await store.close();
  });
});

/**
 * The whole VIP path above the kernel, against the in-tree fakes: cluster objects in the
 * agent's local index -> NodeLb -> proxier -> IPVS dataplane -> FakeIpvs, checked as
 * `ipvsadm -Ln`-style golden dumps; a health change touches only its service.
 */
import { describe, expect, it } from 'vitest';
import { IpvsLoadBalancer } from '../../ingress/ipvs/index.js';
import { fwmarkOf } from '../../ingress/ipvs/fwmark.js';
import type { WireKv } from '../../mesh/api/watch.js';
import { LocalIndex } from '../../mesh/agent/local-index.js';
import { NodeLb } from '../../mesh/agent/lb.js';
import { FakeIpvs, FakeNft } from '../../src/kernel/index.js';
import { objectKey } from '../../src/model/keys.js';
import type { Node, Service, Task } from '../../src/model/types.js';

const node: Node = { id: 'n1', name: 'n1', address: '192.0.2.1', state: 'ready', availability: 'active', lease: 0, labels: {}, createdAt: '', updatedAt: '' };
const svc = (id: string, name: string, vip: string, extra: Partial<Service['spec']> = {}): Service => ({
  id, version: 1, createdAt: '', updatedAt: '', vips: { net: { v4: vip } },
  spec: { name, endpointMode: 'vip', replicas: 2, ports: [{ target: 80, published: 0, protocol: 'tcp', mode: 'ingress' }], networks: [{ network: 'net', aliases: [] }], command: ['x'], env: {}, labels: {}, ...extra },
});
const task = (id: string, s: Service, addr: string, healthy?: boolean): Task => ({
  id, serviceId: s.id, serviceName: s.spec.name, slot: 1, nodeId: 'n1', desiredState: 'running',
  status: { state: 'running', message: '', since: '', ...(healthy !== undefined ? { healthy } : {}) },
  addresses: { net: { v4: addr } }, serviceVersion: 1, specHash: '', createdAt: '',
});
const kv = (kind: 'services' | 'tasks' | 'nodes', o: { id: string }): WireKv => ({ key: objectKey(kind, o.id), value: JSON.stringify(o), modRevision: 1 });

describe('NodeLb over FakeIpvs', () => {
  it('programs a sandbox from the index, then follows a health change with one service touched', async () => {
    const web = svc('s1', 'web', '10.0.0.2', { scheduler: 'wrr' });
    const db = svc('s2', 'db', '10.0.0.3', { affinityTimeoutSeconds: 60 });
    const index = new LocalIndex();
    index.applyList([kv('nodes', node), kv('services', web), kv('services', db),
      kv('tasks', task('a', web, '10.0.0.11')), kv('tasks', task('b', web, '10.0.0.12')), kv('tasks', task('c', db, '10.0.0.21'))], 5);
    const ipvs = new FakeIpvs();
    const lb = new NodeLb(index, { kind: 'ipvs', make: () => new IpvsLoadBalancer({ ipvs, nft: new FakeNft() }) });
    index.onChange((c) => lb.changed(c.length));
    await lb.ensureSandbox('client', 'sbx-client', ['net']);
    expect(ipvs.dump()).toMatchInlineSnapshot(`
      "FWM  1343166155 wrr
        -> 10.0.0.11:0  Masq  1
        -> 10.0.0.12:0  Masq  1
      FWM  1346783610 wrr
        -> 10.0.0.11:0  Masq  1
        -> 10.0.0.12:0  Masq  1
      FWM  1347602042 rr persistent 60
        -> 10.0.0.21:0  Masq  1
      FWM  1355785948 rr persistent 60
        -> 10.0.0.21:0  Masq  1"
    `);
    ipvs.calls.length = 0;
    lb.start();
    // b fails its health check: only web's real server goes.
    index.applyEvents([{ type: 'put', key: objectKey('tasks', 'b'), value: JSON.stringify(task('b', web, '10.0.0.12', false)), modRevision: 6 }], 6);
    for (let i = 0; i < 100 && !ipvs.calls.length; i++) await new Promise((r) => setTimeout(r, 10));
    await lb.stop();
    // web's two every-port (fwmark) services, TCP and UDP, lose b; db is not touched.
    const fw = (protocol: 'tcp' | 'udp'): string => `fwmark/${fwmarkOf('10.0.0.2', protocol)}/inet`;
    expect(ipvs.calls.sort()).toEqual([`delDest ${fw('tcp')} 10.0.0.12:0`, `delDest ${fw('udp')} 10.0.0.12:0`].sort());
  });
});

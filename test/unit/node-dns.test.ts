/**
 * NodeDns, the node's resolver fed from the agent's index (no root: listeners on 127.0.0.1 and
 * a free port, an upstream that is never asked): index changes reach the registry one object
 * at a time, only serving tasks are answered, a client is scoped by its task's networks, and
 * one listener that cannot start does not keep the others from serving.
 */
import { createServer } from 'node:net';
import { createSocket } from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { RRType } from '../../dns/wire/constants.js';
import { indexMessage } from '../../dns/wire/message.js';
import { buildQuery, udpExchange } from '../../dns/testing/client.js';
import { NodeDns } from '../../mesh/agent/dns.js';
import { LocalIndex } from '../../mesh/agent/local-index.js';
import type { WireKv } from '../../mesh/api/watch.js';
import { objectKey } from '../../src/model/keys.js';
import type { Network, Service, Task } from '../../src/model/types.js';

const net = (id: string, name: string, gateway: string): Network => ({
  id, name, driver: 'overlay', scope: 'swarm', ipam: { v4: { subnet: `${gateway}/24`, gateway } }, options: {}, labels: {}, createdAt: '',
});
const svc = (id: string, name: string, networks: string[], vips: Record<string, string>): Service => ({
  id, version: 1, createdAt: '', updatedAt: '', vips: Object.fromEntries(Object.entries(vips).map(([n, v]) => [n, { v4: v }])),
  spec: { name, endpointMode: 'vip', replicas: 1, ports: [], networks: networks.map((network) => ({ network, aliases: [] })), command: ['x'], env: {}, labels: {} },
});
const task = (id: string, s: Service, addrs: Record<string, string>, status: Partial<Task['status']> = {}): Task => ({
  id, serviceId: s.id, serviceName: s.spec.name, slot: 1, nodeId: 'n1', desiredState: 'running',
  status: { state: 'running', message: '', since: '', ...status }, addresses: Object.fromEntries(Object.entries(addrs).map(([n, a]) => [n, { v4: a }])),
  serviceVersion: 1, specHash: '', createdAt: '',
});
const kv = (kind: 'services' | 'tasks' | 'networks', o: { id: string }): WireKv => ({ key: objectKey(kind, o.id), value: JSON.stringify(o), modRevision: 1 });

let rev = 10;
const put = (index: LocalIndex, kind: 'services' | 'tasks' | 'networks', o: { id: string }): void => {
  rev++;
  index.applyEvents([{ type: 'put', key: objectKey(kind, o.id), value: JSON.stringify(o), modRevision: rev }], rev);
};
const del = (index: LocalIndex, kind: 'services' | 'tasks', id: string): void => {
  rev++;
  index.applyEvents([{ type: 'delete', key: objectKey(kind, id), value: '', modRevision: rev }], rev);
};

/** A port free for UDP and TCP on 127.0.0.1 now. */
async function freePort(): Promise<number> {
  for (;;) {
    const s = createServer();
    const port = await new Promise<number>((r) => s.listen(0, '127.0.0.1', () => r((s.address() as { port: number }).port)));
    await new Promise((r) => s.close(r));
    const u = createSocket('udp4');
    const ok = await new Promise<boolean>((r) => { u.once('error', () => r(false)); u.bind(port, '127.0.0.1', () => r(true)); });
    u.close();
    if (ok) return port;
  }
}

const web = svc('s1', 'web', ['n1'], { n1: '10.1.0.2' });
const db = svc('s2', 'db', ['n2'], { n2: '10.2.0.2' });
const both = svc('s3', 'both', ['n1', 'n2'], { n1: '10.1.0.3', n2: '10.2.0.3' });

function setup(): { index: LocalIndex; dns: NodeDns } {
  const index = new LocalIndex();
  const dns = new NodeDns({ upstreams: [{ address: '127.0.0.1', port: 9 }] });
  index.onChange((c) => dns.apply(c));
  index.applyList([
    kv('networks', net('n1', 'front', '127.0.0.1')), kv('networks', net('n2', 'back', '10.2.0.1')),
    kv('services', web), kv('services', db), kv('services', both),
    kv('tasks', task('t1', web, { n1: '10.1.0.11' })), kv('tasks', task('t2', db, { n2: '10.2.0.21' })), kv('tasks', task('t3', both, { n1: '10.1.0.31', n2: '10.2.0.31' })),
  ], 5);
  return { index, dns };
}

const opened: NodeDns[] = [];
afterEach(async () => { for (const d of opened.splice(0)) await d.close(); });

describe('NodeDns', () => {
  it('follows index changes: a service\'s VIP, its serving tasks, removal', () => {
    const { index, dns } = setup();
    expect(dns.registry.lookup(['n1'], 'web', RRType.A)?.answer).toHaveLength(1);
    expect(dns.registry.lookup(['n1'], 'tasks.web', RRType.A)?.answer).toHaveLength(1);
    // A task that fails its health check leaves tasks.web; one that comes back returns.
    put(index, 'tasks', task('t1', web, { n1: '10.1.0.11' }, { healthy: false }));
    expect(dns.registry.lookup(['n1'], 'tasks.web', RRType.A)?.answer ?? []).toHaveLength(0);
    put(index, 'tasks', task('t1b', web, { n1: '10.1.0.12' }));
    expect(dns.registry.lookup(['n1'], 'tasks.web', RRType.A)?.answer).toHaveLength(1);
    del(index, 'services', web.id);
    expect(dns.registry.lookup(['n1'], 'web', RRType.A)).toBeUndefined();
  });

  it('scopes a client by its task\'s networks, in its service\'s order; unknown clients get none', () => {
    const { index, dns } = setup();
    expect(dns.scopeOfClient('10.1.0.31')?.networks).toEqual(['n1', 'n2']);
    expect(dns.scopeOfClient('::ffff:10.2.0.21')?.networks).toEqual(['n2']);
    expect(dns.scopeOfClient('10.9.9.9')).toBeUndefined();
    // db (on n2 only) is not visible from web's network n1.
    expect(dns.registry.lookup(['n1'], 'db', RRType.A)).toBeUndefined();
    expect(dns.registry.lookup(['n2'], 'db', RRType.A)?.answer).toHaveLength(1);
    del(index, 'tasks', 't3');
    expect(dns.scopeOfClient('10.1.0.31')).toBeUndefined();
  });

  it('answers on each network\'s gateway; one listener that cannot start does not stop the others', async () => {
    const port = await freePort();
    const d2 = new NodeDns({ upstreams: [{ address: '127.0.0.1', port: 9 }], port });
    opened.push(d2);
    const idx = new LocalIndex();
    idx.onChange((c) => d2.apply(c));
    idx.applyList([kv('networks', net('n1', 'front', '127.0.0.1')), kv('services', web), kv('tasks', task('t1', web, { n1: '10.1.0.11' }))], 5);
    // 192.0.2.77 is on no interface here: that listener fails; the 127.0.0.1 one serves anyway.
    await expect(d2.ensureListeners([net('n1', 'front', '127.0.0.1'), net('n9', 'nowhere', '192.0.2.77')])).rejects.toThrow();
    const res = await udpExchange(port, buildQuery('web', 'A'));
    expect(res).toBeDefined();
    const m = indexMessage(res as Buffer);
    expect(m?.rcode).toBe(0);
    expect(m?.records.filter((r) => r.section === 0 && r.type === RRType.A)).toHaveLength(1);
    // Listeners follow the wanted networks: none wanted, none listening.
    await d2.ensureListeners([]);
    expect(await udpExchange(port, buildQuery('web', 'A'), '127.0.0.1', 300)).toBeUndefined();
  });
});

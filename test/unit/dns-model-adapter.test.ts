import { describe, expect, it } from 'vitest';
import { MemoryRegistry, networkRecordOf, serviceRecordOf, taskRecordOf } from '../../dns/index.js';
import type { Task } from '../../src/model/types.js';

// Only the fields the adapter reads: the rest of the model may grow without touching this test.
type ServiceIn = Parameters<typeof serviceRecordOf>[0];
type TaskIn = Parameters<typeof taskRecordOf>[0];

const service: ServiceIn = {
  id: 's1',
  vips: { n1: { v4: '10.0.1.2', v6: 'fd00::2' } },
  spec: {
    name: 'web', endpointMode: 'vip', replicas: 2, command: [], env: {}, labels: {},
    networks: [{ network: 'n1', aliases: ['www'] }],
    ports: [
      { target: 80, published: 8080, protocol: 'tcp', mode: 'ingress', name: 'http' },
      { target: 9, published: 0, protocol: 'udp', mode: 'ingress' },
    ],
  },
};

const task = (id: string, slot: number, status: Partial<Task['status']>, desired: Task['desiredState'] = 'running'): TaskIn => ({
  id, serviceId: 's1', serviceName: 'web', slot, desiredState: desired,
  status: { state: 'running', message: '', since: '', ...status },
  addresses: { n1: { v4: `10.0.1.${10 + slot}` } },
});

describe('model adapter', () => {
  it('maps a service: aliases, VIPs, named ports only', () => {
    expect(serviceRecordOf(service)).toEqual({
      id: 's1', name: 'web', endpointMode: 'vip',
      networks: [{ network: 'n1', aliases: ['www'], vip: { v4: '10.0.1.2', v6: 'fd00::2' } }],
      ports: [{ name: 'http', protocol: 'tcp', port: 80 }],
    });
  });

  it.each([
    ['running, health unknown', task('t1', 1, {}), true],
    ['running and healthy', task('t1', 1, { healthy: true }), true],
    ['running but unhealthy', task('t1', 1, { healthy: false }), false],
    ['starting', task('t1', 1, { state: 'starting' }), false],
    ['being shut down', task('t1', 1, {}, 'shutdown'), false],
  ])('a task %s is healthy=%s', (_what, t, healthy) => {
    expect(taskRecordOf(t).healthy).toBe(healthy);
  });

  it('feeds MemoryRegistry end to end', () => {
    const r = new MemoryRegistry();
    r.upsertNetwork(networkRecordOf({ id: 'n1', name: 'app' }, 10));
    r.upsertService(serviceRecordOf(service));
    r.upsertTask(taskRecordOf(task('t1', 1, {})));
    r.upsertTask(taskRecordOf(task('t2', 2, { healthy: false })));
    expect(r.lookup(['n1'], 'www.app', 1)?.answer).toEqual([{ name: 'www.app', ttl: 10, type: 'A', address: '10.0.1.2' }]);
    expect(r.lookup(['n1'], 'tasks.web', 1)?.answer).toEqual([{ name: 'tasks.web', ttl: 10, type: 'A', address: '10.0.1.11' }]);
    expect(r.lookup(['n1'], 'web.2', 1)?.answer).toEqual([{ name: 'web.2', ttl: 10, type: 'A', address: '10.0.1.12' }]);
  });
});

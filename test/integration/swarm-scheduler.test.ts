/**
 * The scheduler's side of rolling updates on an in-process manager (real embedded store, no
 * agents): an update records `previousSpec` and `updateStatus`; an automatic rollback that
 * cannot be done (the previous spec's published port was taken meanwhile) pauses the update
 * with the reason instead of retrying for ever; `?version=N` on an update is honoured.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getObject, putObject } from '../../mesh/manager/objects.js';
import type { Service, Task } from '../../src/model/types.js';
import { api, startTestManager, until, type TestManager } from '../helpers/cluster.js';

let m: TestManager;
beforeAll(async () => { m = await startTestManager(); });
afterAll(async () => { await m?.close(); });

const svc = async (name: string): Promise<Service> => (await api(m, 'GET', `/v1/services/${name}`)).body as Service;

describe('scheduler: rolling update bookkeeping', () => {
  it('an update keeps the previous spec and starts a rolling update; ?version=N is checked', async () => {
    expect((await api(m, 'POST', '/v1/services', { name: 'a', command: ['sleep', '1'], ports: [{ target: 80, published: 8080 }], updateConfig: { failureAction: 'rollback' } })).status).toBe(201);
    const v1 = await svc('a');
    expect(v1.previousSpec).toBeUndefined();
    expect(v1.updateStatus).toBeUndefined();
    const u = await api(m, 'POST', `/v1/services/a/update?version=${v1.version}`, { command: ['sleep', '2'], ports: [{ target: 80, published: 8081 }] });
    expect(u.status, u.text).toBe(200);
    const v2 = u.body as Service;
    expect(v2.version).toBe(v1.version + 1);
    expect(v2.previousSpec?.command).toEqual(['sleep', '1']);
    expect(v2.updateStatus).toMatchObject({ state: 'updating', message: 'update in progress' });
    // A change that replaces no task (replicas) starts no rolling update.
    const scaled = (await api(m, 'POST', '/v1/services/a/scale', { replicas: 2 })).body as Service;
    expect(scaled.updateStatus?.startedAt).toBe(v2.updateStatus?.startedAt);
    expect(scaled.previousSpec?.replicas).toBe(1);
  });

  it('an automatic rollback that cannot be done pauses the update, saying why', async () => {
    // The previous spec published 8080; another service takes it meanwhile.
    expect((await api(m, 'POST', '/v1/services', { name: 'b', command: ['sleep', '1'], ports: [{ target: 80, published: 8080 }] })).status).toBe(201);
    // Put the previous spec back as the one to roll back to (the scale above replaced it), then
    // make a replacement fail: the update's failure action is rollback.
    const cur = await getObject(m.store, 'services', (await svc('a')).id);
    const prevSpec = { ...(cur?.obj.spec as Service['spec']), command: ['sleep', '1'], ports: [{ target: 80, published: 8080, protocol: 'tcp' as const, mode: 'ingress' as const }] };
    await m.store.put(`/shoal/services/${cur?.obj.id}`, JSON.stringify({ ...cur?.obj, previousSpec: prevSpec }));
    // No node: the replacement of the update waits, pending (created after the update started).
    const started = Date.parse(cur?.obj.updateStatus?.startedAt ?? '');
    const replacement = await until(async () => ((await api(m, 'GET', '/v1/tasks?service=a')).body as Task[])
      .find((t) => t.desiredState === 'running' && Date.parse(t.createdAt) >= started), 'a replacement task');
    expect(replacement.status.state).toBe('pending');
    const stored = await getObject(m.store, 'tasks', replacement.id);
    const failed: Task = { ...(stored?.obj as Task), status: { ...(stored?.obj as Task).status, state: 'failed', message: 'failed (exit code 1)' } };
    await m.store.txn({ compare: [], success: [putObject('tasks', replacement.id, failed)] });
    const paused = await until(async () => {
      const s = await svc('a');
      return s.updateStatus?.state === 'paused' ? s : undefined;
    }, 'update paused');
    expect(paused.updateStatus?.message).toMatch(/^update rolled back due to failure or early termination of task [0-9a-f]+, but the rollback failed: .*8080/);
    expect(paused.spec.command).toEqual(['sleep', '2']);
  });
});

/**
 * The process runtime with real (unprivileged) processes: it asks the restart policy after each
 * exit, reports `exited` (with the restart count) or `ended` (complete / failed) and then keeps
 * the ended task without restarting it until told to stop; restarts made before it took a task
 * on count against the policy; a task's own stop grace period decides when SIGTERM becomes
 * SIGKILL; a missing working directory fails the start with a reason.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ProcessRuntime, type TaskEvent } from '../../mesh/agent/process-runtime.js';
import { until } from '../helpers/cluster.js';

const dir = mkdtempSync(join(tmpdir(), 'shoal-runtime-policy-'));
const runtimes: ProcessRuntime[] = [];
afterAll(async () => {
  for (const r of runtimes) for (const id of r.list()) await r.ensureStopped(id);
  rmSync(dir, { recursive: true, force: true });
});

function runtime(name: string): { rt: ProcessRuntime; events: TaskEvent[] } {
  const rt = new ProcessRuntime(join(dir, name));
  runtimes.push(rt);
  const events: TaskEvent[] = [];
  rt.onEvent((e) => events.push(e));
  return { rt, events };
}

describe('ProcessRuntime and the restart policy', () => {
  it('on-failure with 2 attempts: two restarts, then ended failed; ensureRunning does not start it again', async () => {
    const { rt, events } = runtime('flaky');
    rt.ensureRunning({ taskId: 't1', command: ['sh', '-c', 'exit 4'], env: {}, restartPolicy: { condition: 'on-failure', maxAttempts: 2, delayMs: 10 } });
    const ended = await until(() => events.find((e) => e.type === 'ended'), 'ended');
    expect(ended).toMatchObject({ type: 'ended', state: 'failed', exitCode: 4, restarts: 2 });
    expect(events.filter((e) => e.type === 'exited').map((e) => (e as { restarts: number }).restarts)).toEqual([1, 2]);
    expect(rt.list()).toEqual(['t1']);
    const runs = events.filter((e) => e.type === 'running').length;
    // A start would be announced synchronously (launch emits `running` right after the spawn).
    rt.ensureRunning({ taskId: 't1', command: ['sh', '-c', 'exit 4'], env: {}, restartPolicy: { condition: 'on-failure', maxAttempts: 2, delayMs: 10 } });
    expect(events.filter((e) => e.type === 'running').length).toBe(runs);
    await rt.ensureStopped('t1');
    expect(rt.list()).toEqual([]);
  });

  it('restarts made before count: with 2 already made out of 2, the first exit ends it', async () => {
    const { rt, events } = runtime('seeded');
    rt.ensureRunning({ taskId: 't2', command: ['sh', '-c', 'exit 1'], env: {}, restartPolicy: { condition: 'any', maxAttempts: 2 }, restartsSoFar: 2 });
    const ended = await until(() => events.find((e) => e.type === 'ended'), 'ended');
    expect(ended).toMatchObject({ state: 'failed', restarts: 2 });
    expect(events.some((e) => e.type === 'exited')).toBe(false);
  });

  it('an ended task survives a restart of the agent: held, not restarted, its end reported again', async () => {
    const { rt, events } = runtime('survives');
    rt.ensureRunning({ taskId: 't6', command: ['sh', '-c', 'exit 2'], env: {}, restartPolicy: { condition: 'none' } });
    const ended = await until(() => events.find((e) => e.type === 'ended'), 'ended');
    await rt.close();
    const again = new ProcessRuntime(join(dir, 'survives'));
    runtimes.push(again);
    const seen: TaskEvent[] = [];
    again.onEvent((e) => seen.push(e));
    expect(again.list()).toEqual(['t6']);
    again.ensureRunning({ taskId: 't6', command: ['sh', '-c', 'exit 2'], env: {}, restartPolicy: { condition: 'none' } });
    again.ensureRunning({ taskId: 't6', command: ['sh', '-c', 'exit 2'], env: {}, restartPolicy: { condition: 'none' } });
    expect(seen).toEqual([ended]);
    await again.ensureStopped('t6');
    expect(new ProcessRuntime(join(dir, 'survives')).list()).toEqual([]);
  });

  it('on-failure: exit 0 ends complete', async () => {
    const { rt, events } = runtime('ok');
    rt.ensureRunning({ taskId: 't3', command: ['true'], env: {}, restartPolicy: { condition: 'on-failure' } });
    expect(await until(() => events.find((e) => e.type === 'ended'), 'ended')).toMatchObject({ state: 'complete', exitCode: 0, restarts: 0 });
  });

  it('the task\'s stop grace period: SIGKILL once it is over', async () => {
    const { rt, events } = runtime('grace');
    const file = join(dir, 'grace.log');
    const script = `trap 'echo term >> ${file}; sleep 5; echo late >> ${file}' TERM; echo up >> ${file}; while true; do sleep 0.05; done`;
    rt.ensureRunning({ taskId: 't4', command: ['sh', '-c', script], env: {}, stopGraceMs: 300 });
    await until(() => existsSync(file) && events.some((e) => e.type === 'running'), 'running');
    await rt.ensureStopped('t4');
    expect(readFileSync(file, 'utf8')).toBe('up\nterm\n');
    expect(events.at(-1)).toEqual({ type: 'stopped', taskId: 't4' });
  });

  it('a missing working directory fails the start with the reason, under the policy', async () => {
    const { rt, events } = runtime('nowhere');
    rt.ensureRunning({ taskId: 't5', command: ['true'], env: {}, workdir: '/nonexistent/x', restartPolicy: { condition: 'none' } });
    const ended = await until(() => events.find((e) => e.type === 'ended'), 'ended');
    expect(ended).toMatchObject({ state: 'failed' });
    expect((ended as { message: string }).message).toMatch(/^cannot start: working directory \/nonexistent\/x does not exist on this node; failed \(exit code 127\)/);
    expect(events[0]).toMatchObject({ type: 'failed', message: 'cannot start: working directory /nonexistent/x does not exist on this node' });
  });
});

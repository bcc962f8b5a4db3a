/**
 * The restart policy decision (swarmkit's rules) as a table: condition x exit status, attempts
 * with and without a window (injected clock), fixed delay vs back-off.
 */
import { describe, expect, it } from 'vitest';
import { decideRestart, type ExitStatus } from '../../mesh/agent/restart-policy.js';
import type { RestartPolicy } from '../../src/model/types.js';

const ok: ExitStatus = { exitCode: 0, signal: null };
const bad: ExitStatus = { exitCode: 3, signal: null };
const killed: ExitStatus = { exitCode: null, signal: 'SIGKILL' };
const NOW = 1_000_000;

describe('decideRestart', () => {
  it.each<[string, RestartPolicy | undefined, ExitStatus, 'restart' | 'complete' | 'failed']>([
    ['default (any) restarts after success', undefined, ok, 'restart'],
    ['default (any) restarts after failure', undefined, bad, 'restart'],
    ['any restarts after success', { condition: 'any' }, ok, 'restart'],
    ['none: success ends complete', { condition: 'none' }, ok, 'complete'],
    ['none: failure ends failed', { condition: 'none' }, bad, 'failed'],
    ['none: a signal ends failed', { condition: 'none' }, killed, 'failed'],
    ['on-failure: success ends complete', { condition: 'on-failure' }, ok, 'complete'],
    ['on-failure: failure restarts', { condition: 'on-failure' }, bad, 'restart'],
    ['on-failure: a signal restarts', { condition: 'on-failure' }, killed, 'restart'],
  ])('%s', (_n, policy, exit, want) => {
    const d = decideRestart(policy, exit, [], NOW);
    expect(d.restart ? 'restart' : d.state).toBe(want);
  });

  it('says why it did not restart, with the exit status', () => {
    const d = decideRestart({ condition: 'none' }, bad, [], NOW);
    expect(d).toEqual({ restart: false, state: 'failed', message: 'failed (exit code 3); restart policy none: not restarted' });
    const k = decideRestart({ condition: 'on-failure', maxAttempts: 1 }, killed, [NOW - 5], NOW);
    expect(k.restart === false && k.message).toBe('failed (killed by SIGKILL); restart policy reached its 1 attempt: not restarted');
  });

  it('max attempts without a window: every earlier restart counts', () => {
    const p: RestartPolicy = { condition: 'on-failure', maxAttempts: 3 };
    expect(decideRestart(p, bad, [1, 2], NOW).restart).toBe(true);
    const d = decideRestart(p, bad, [1, 2, 3], NOW);
    expect(d.restart).toBe(false);
    expect(!d.restart && d.state).toBe('failed');
    // With condition any, a success after the last attempt ends complete.
    const c = decideRestart({ condition: 'any', maxAttempts: 1 }, ok, [NOW - 1], NOW);
    expect(!c.restart && c.state).toBe('complete');
  });

  it('max attempts with a window: only restarts within it count', () => {
    const p: RestartPolicy = { condition: 'any', maxAttempts: 2, windowMs: 10_000 };
    expect(decideRestart(p, bad, [NOW - 30_000, NOW - 20_000, NOW - 5_000], NOW).restart).toBe(true);
    expect(decideRestart(p, bad, [NOW - 30_000, NOW - 9_000, NOW - 5_000], NOW).restart).toBe(false);
    // The same history later: the window has moved on.
    expect(decideRestart(p, bad, [NOW - 30_000, NOW - 9_000, NOW - 5_000], NOW + 6_000).restart).toBe(true);
  });

  it('max attempts 0 means unlimited', () => {
    expect(decideRestart({ condition: 'any', maxAttempts: 0 }, bad, Array.from({ length: 1000 }, (_, i) => i), NOW).restart).toBe(true);
  });

  it('a fixed delay, or back-off from 1 s doubling to the cap', () => {
    expect(decideRestart({ condition: 'any', delayMs: 250 }, bad, [1, 2, 3, 4], NOW)).toEqual({ restart: true, delayMs: 250 });
    const delays = [0, 1, 2, 3, 4, 5, 6].map((n) => decideRestart(undefined, bad, Array.from({ length: n }, () => 1), NOW));
    expect(delays.map((d) => (d.restart ? d.delayMs : -1))).toEqual([1000, 2000, 4000, 8000, 16000, 30000, 30000]);
    expect(decideRestart(undefined, bad, [1, 2], NOW, { maxBackoffMs: 1500 })).toEqual({ restart: true, delayMs: 1500 });
  });
});

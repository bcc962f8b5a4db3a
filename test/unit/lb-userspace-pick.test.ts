/**
 * The userspace dataplane's schedulers (ingress/userspace/pick.ts): exact distributions with an
 * injected clock and random source.
 */
import { describe, expect, it } from 'vitest';
import { MH_TABLE_SIZE, Picker, type Candidate } from '../../ingress/userspace/pick.js';
import type { LbScheduler } from '../../ingress/types.js';

const be = (id: string, weight = 1): Candidate => ({ id, weight });
const three = [be('a'), be('b'), be('c')];

function counts<C extends Candidate>(p: Picker<C>, n: number, client: (i: number) => string = () => 'x'): Record<string, number> {
  const out: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const c = p.pick(client(i));
    const id = c?.id ?? 'none';
    out[id] = (out[id] ?? 0) + 1;
  }
  return out;
}

function picker(scheduler: LbScheduler, backends: Candidate[], extra: Partial<ConstructorParameters<typeof Picker<Candidate>>[0]> = {}): Picker<Candidate> {
  const p = new Picker<Candidate>({ scheduler, ...extra });
  p.setBackends(backends);
  return p;
}

describe('rr / wrr', () => {
  it('rr is exact over a cycle and skips weight 0', () => {
    expect(counts(picker('rr', three), 300)).toEqual({ a: 100, b: 100, c: 100 });
    expect(counts(picker('rr', [be('a'), be('b', 0), be('c')]), 100)).toEqual({ a: 50, c: 50 });
  });

  it('wrr is smooth (nginx) and exact over one cycle of sum(weights)', () => {
    const p = picker('wrr', [be('a', 5), be('b', 1), be('c', 1)]);
    expect(Array.from({ length: 7 }, () => p.pick('x')?.id).join('')).toBe('aabacaa');
    expect(counts(p, 7 * 40)).toEqual({ a: 200, b: 40, c: 40 });
    const q = picker('wrr', [be('a', 3), be('b', 2), be('c', 0), be('d', 256)]);
    expect(counts(q, 261 * 3)).toEqual({ a: 9, b: 6, d: 768 });
  });

  it('exclude skips the tried backends and the cycle goes on', () => {
    const p = picker('rr', three);
    expect(p.pick('x', new Set(['a']))?.id).toBe('b');
    expect(p.pick('x', new Set(['a', 'b', 'c']))).toBeUndefined();
    expect(picker('wrr', three).pick('x', new Set(['a', 'b']))?.id).toBe('c');
  });

  it('no backend, or only draining ones: nothing is picked', () => {
    for (const s of ['rr', 'wrr', 'random', 'lc', 'sh', 'mh'] as const) {
      expect(picker(s, []).pick('x')).toBeUndefined();
      expect(picker(s, [be('a', 0), be('b', 0)]).pick('x')).toBeUndefined();
    }
  });
});

describe('random / lc', () => {
  it('random is weighted by the injected source', () => {
    let r = 0;
    const p = picker('random', [be('a', 1), be('b', 3)], { random: () => r });
    const seen: string[] = [];
    for (r of [0, 0.24, 0.26, 0.5, 0.99, 0.999999]) seen.push(p.pick('x')!.id);
    expect(seen).toEqual(['a', 'a', 'b', 'b', 'b', 'b']);
  });

  it('lc picks the fewest open flows (per weight) and rotates between ties', () => {
    const open: Record<string, number> = { a: 3, b: 1, c: 2 };
    const p = picker('lc', three, { load: (c) => open[c.id] ?? 0 });
    expect(p.pick('x')?.id).toBe('b');
    open.b = 5;
    expect(p.pick('x')?.id).toBe('c');
    open.a = open.b = open.c = 0;
    expect(counts(p, 30)).toEqual({ a: 10, b: 10, c: 10 });
    const w = picker('lc', [be('a', 1), be('b', 4)], { load: (c) => (c.id === 'a' ? 1 : 3) });
    expect(w.pick('x')?.id).toBe('b'); // 3/4 < 1/1
  });
});

describe('sh / mh', () => {
  const clients = Array.from({ length: 2000 }, (_, i) => `10.${(i >> 8) & 255}.${i & 255}.7`);

  for (const s of ['sh', 'mh'] as const) {
    it(`${s}: a client always gets the same backend; clients spread by weight`, () => {
      const p = picker(s, [be('a', 1), be('b', 1), be('c', 2)]);
      for (const c of clients.slice(0, 50)) {
        const first = p.pick(c)?.id;
        for (let i = 0; i < 5; i++) expect(p.pick(c)?.id).toBe(first);
      }
      const n = counts(p, clients.length, (i) => clients[i]!);
      expect(n.c! / clients.length).toBeGreaterThan(0.4);
      expect(n.c! / clients.length).toBeLessThan(0.6);
      expect(n.a! / clients.length).toBeGreaterThan(0.18);
      // Independent of the order the backends are given in.
      const q = picker(s, [be('c', 2), be('b', 1), be('a', 1)]);
      for (const c of clients.slice(0, 200)) expect(q.pick(c)?.id).toBe(p.pick(c)?.id);
    });
  }

  it('mh is consistent: removing one of 5 backends moves only its own clients', () => {
    const ids = ['a', 'b', 'c', 'd', 'e'];
    const p = picker('mh', ids.map((id) => be(id)));
    const before = clients.map((c) => p.pick(c)!.id);
    p.setBackends(ids.filter((id) => id !== 'c').map((id) => be(id)));
    const after = clients.map((c) => p.pick(c)!.id);
    let moved = 0;
    for (let i = 0; i < clients.length; i++) {
      if (before[i] !== 'c' && after[i] !== before[i]) moved++;
      expect(after[i]).not.toBe('c');
    }
    // Maglev is near-minimal, not minimal: a few percent of the others may move.
    expect(moved / clients.length).toBeLessThan(0.05);
    expect(MH_TABLE_SIZE).toBe(4093);
  });

  it('sh with a failed backend falls back to another one for that flow only', () => {
    const p = picker('sh', three);
    const home = p.pick('10.0.0.1')!.id;
    const other = p.pick('10.0.0.1', new Set([home]))!.id;
    expect(other).not.toBe(home);
    expect(p.pick('10.0.0.1')!.id).toBe(home);
  });
});

describe('affinity', () => {
  it('a client sticks while it has open flows and for the timeout after; then it is rescheduled', () => {
    let now = 1000;
    const p = picker('rr', three, { affinityMs: 10_000, now: () => now });
    const first = p.pick('10.0.0.1')!.id;
    expect(p.pick('10.0.0.2')!.id).not.toBe(first); // rr goes on for others
    for (let i = 0; i < 5; i++) expect(p.pick('10.0.0.1')!.id).toBe(first);
    for (let i = 0; i < 6; i++) p.release('10.0.0.1');
    now += 9_999;
    expect(p.pick('10.0.0.1')!.id).toBe(first); // within the timeout: kept (and open again)
    now += 60_000;
    expect(p.pick('10.0.0.1')!.id).toBe(first); // an open flow keeps it past the timeout
    p.release('10.0.0.1');
    p.release('10.0.0.1');
    now += 10_001;
    const seen = new Set(Array.from({ length: 3 }, () => {
      const id = p.pick('10.0.0.1')!.id;
      p.release('10.0.0.1');
      now += 10_001;
      return id;
    }));
    expect(seen.size).toBeGreaterThan(1); // expired each time: rr decides
  });

  it('expired entries are swept; a draining or removed backend loses its clients', () => {
    let now = 0;
    const a = { id: 'a', weight: 1 };
    const p = picker('rr', [a, be('b')], { affinityMs: 1000, now: () => now });
    for (let i = 0; i < 100; i++) {
      p.pick(`c${i}`);
      p.release(`c${i}`);
    }
    expect(p.affinitySize).toBe(100);
    now = 5000;
    p.pick('late');
    expect(p.affinitySize).toBe(1);
    // 'late' got a backend; drain it: the client moves and never comes back to it.
    const home = p.pick('late')!.id;
    p.setBackends(home === 'a' ? [{ id: 'a', weight: 0 }, be('b')] : [a, { id: 'b', weight: 0 }]);
    for (let i = 0; i < 10; i++) expect(p.pick('late')!.id).not.toBe(home);
    p.setBackends([be('c')]);
    expect(p.pick('late')!.id).toBe('c');
  });

  it('weight 0 is never picked, by any scheduler, with or without affinity', () => {
    for (const s of ['rr', 'wrr', 'random', 'lc', 'sh', 'mh'] as const) {
      for (const affinityMs of [0, 5000]) {
        const p = picker(s, [be('a'), be('z', 0), be('b', 3)], { affinityMs });
        const n = counts(p, 500, (i) => `192.168.${i % 7}.${i % 250}`);
        expect(n.z).toBeUndefined();
      }
    }
  });

  it('configure keeps the rr position and clears affinity when turned off', () => {
    const p = picker('rr', three, { affinityMs: 1000 });
    p.pick('x');
    expect(p.affinitySize).toBe(1);
    p.configure('rr', 0);
    expect(p.affinitySize).toBe(0);
    expect(p.pick('y')?.id).toBe('b');
    p.configure('mh', 0);
    expect(p.pick('y')?.id).toBe(p.pick('y')?.id);
  });
});

/**
 * StatusOutbox: one pending status per task (latest wins, counted), a bound that drops the
 * stalest task, and unconfirmed statuses that come back after a dead connection unless a
 * pong covered them or a newer one is pending.
 */
import { describe, expect, it } from 'vitest';
import { StatusOutbox, type OutboxStats } from '../../mesh/agent/status-outbox.js';

const st = (state: 'starting' | 'running' | 'failed', message = ''): { state: typeof state; message: string } => ({ state, message });
const fresh = (max = 10): { box: StatusOutbox; stats: OutboxStats } => {
  const stats = { statusCoalesced: 0, statusDropped: 0 };
  return { box: new StatusOutbox(max, stats), stats };
};

describe('StatusOutbox', () => {
  it('keeps the latest status per task, least recently updated first', () => {
    const { box, stats } = fresh();
    box.queue('a', st('starting'));
    box.queue('b', st('starting'));
    box.queue('a', st('running'));
    expect(box.take()).toEqual([['b', st('starting')], ['a', st('running')]]);
    expect(box.take()).toEqual([]);
    expect(stats).toEqual({ statusCoalesced: 1, statusDropped: 0 });
  });

  it('drops the stalest task past the bound, counted', () => {
    const { box, stats } = fresh(2);
    box.queue('a', st('running'));
    box.queue('b', st('running'));
    box.queue('a', st('failed')); // a is now the freshest
    box.queue('c', st('running'));
    expect(box.take().map(([id]) => id)).toEqual(['a', 'c']);
    expect(stats.statusDropped).toBe(1);
  });

  it('requeues what no pong confirmed, keeps a newer pending status over an unconfirmed one', () => {
    const { box } = fresh();
    box.sent('confirmed', st('running'), 1);
    box.sent('late', st('running'), 2);
    box.sent('superseded', st('starting'), 2);
    box.confirm(1);
    expect(box.unconfirmedCount).toBe(2);
    box.queue('superseded', st('failed'));
    box.requeueUnconfirmed();
    expect(box.unconfirmedCount).toBe(0);
    expect(new Map(box.take())).toEqual(new Map([['superseded', st('failed')], ['late', st('running')]]));
  });

  it('bounds unconfirmed statuses too', () => {
    const { box, stats } = fresh(2);
    for (const id of ['a', 'b', 'c']) box.sent(id, st('running'), 1);
    expect(box.unconfirmedCount).toBe(2);
    expect(stats.statusDropped).toBe(1);
  });
});

/**
 * LiveStats (mesh/manager/live-stats.ts): agents are asked for connection summaries only while
 * a viewer watches (an agent joining meanwhile is asked at once), reports reach the viewers,
 * a node whose last session closes is forgotten; agent rows are validated.
 */
import { describe, expect, it } from 'vitest';
import { LiveStats, MAX_LB_STATS_ROWS, parseLbStatsRows, type LbStatsRow } from '../../mesh/manager/live-stats.js';

describe('LiveStats', () => {
  it('asks agents to report only while someone watches', () => {
    const live = new LiveStats();
    const sentA: object[] = [];
    const sentB: object[] = [];
    const offA = live.register('a', (m) => sentA.push(m));
    expect(sentA).toEqual([]);
    const seen: Array<[string, readonly LbStatsRow[] | undefined]> = [];
    const stop = live.watch((n, rows) => seen.push([n, rows]));
    expect(sentA).toEqual([{ type: 'lb-stats-want', on: true }]);
    live.register('b', (m) => sentB.push(m));
    expect(sentB).toEqual([{ type: 'lb-stats-want', on: true }]);
    const rows: LbStatsRow[] = [['web', '10.0.0.2:80', null, 3, 'vip']];
    live.report('a', rows);
    expect(seen).toEqual([['a', rows]]);
    expect(live.all().map((x) => x.nodeId)).toEqual(['a']);
    offA();
    expect(seen.at(-1)).toEqual(['a', undefined]);
    expect(live.all()).toEqual([]);
    stop();
    stop(); // idempotent
    expect(sentB).toEqual([{ type: 'lb-stats-want', on: true }, { type: 'lb-stats-want', on: false }]);
    expect(live.viewers).toBe(0);
  });

  it('validates rows: shape, kinds, counts, size', () => {
    expect(parseLbStatsRows([['web', '10.0.0.2:80', 1, 5, 'ingress']])).toEqual([['web', '10.0.0.2:80', 1, 5, 'ingress']]);
    expect(() => parseLbStatsRows('x')).toThrow(/needs backends/);
    expect(() => parseLbStatsRows([['web', '10.0.0.2:80', -1, 5, 'vip']])).toThrow(/backend 0 is not/);
    expect(() => parseLbStatsRows([['web', '10.0.0.2:80', 1, 5, 'other']])).toThrow(/backend 0 is not/);
    expect(() => parseLbStatsRows(Array.from({ length: MAX_LB_STATS_ROWS + 1 }, () => ['w', 'b', null, 0, 'vip']))).toThrow(/at most/);
  });
});

/**
 * LogMerger: the manager's streaming merge of the nodes' log backlogs by time. A line goes out
 * only when no node still sending its backlog can have an earlier one; live lines wait for the
 * last backlog; nothing is lost or written twice, whatever the arrival order.
 */
import { describe, expect, it } from 'vitest';
import { LogMerger } from '../../mesh/api/log-merge.js';
import type { LogLine } from '../../mesh/api/log-relay.js';

const l = (task: string, time: number): LogLine => ({ task, time, text: `${task}@${time}` });
type Step = ['lines', string, number[]] | ['synced', string] | ['end'];

function play(nodes: string[], steps: Step[]): { writes: string[][]; all: string[] } {
  const writes: string[][] = [];
  const m = new LogMerger(nodes, (ls) => writes.push(ls.map((x) => x.text)));
  for (const s of steps) {
    if (s[0] === 'lines') m.lines(s[1], s[2].map((t) => l(s[1], t)));
    else if (s[0] === 'synced') m.nodeSynced(s[1]);
    else m.end();
  }
  return { writes, all: writes.flat() };
}

describe('LogMerger', () => {
  it('holds a node\'s lines until every other backlog node has one (or is done), then merges', () => {
    const r = play(['a', 'b'], [['lines', 'a', [1, 3, 5]], ['lines', 'b', [2, 4]], ['synced', 'b'], ['synced', 'a']]);
    expect(r.writes).toEqual([['a@1', 'b@2', 'a@3', 'b@4'], ['a@5']]);
  });

  it.each<[string, Step[], string[]]>([
    ['one node', [['lines', 'a', [1, 2]], ['synced', 'a'], ['lines', 'a', [9]]], ['a@1', 'a@2', 'a@9']],
    ['a node with no output does not block once synced', [['lines', 'a', [1, 2]], ['synced', 'b'], ['synced', 'a']], ['a@1', 'a@2']],
    ['batches arriving in pieces', [['lines', 'a', [1]], ['lines', 'b', [2]], ['lines', 'a', [3]], ['lines', 'b', [2, 6]], ['lines', 'a', [4]], ['synced', 'a'], ['synced', 'b']], ['a@1', 'b@2', 'b@2', 'a@3', 'a@4', 'b@6']],
    ['ties keep arrival order per node', [['lines', 'a', [5, 5]], ['lines', 'b', [5]], ['synced', 'a'], ['synced', 'b']], ['a@5', 'a@5', 'b@5']],
    ['live lines wait for the last backlog', [['lines', 'a', [1]], ['synced', 'a'], ['lines', 'a', [10]], ['lines', 'b', [2]], ['synced', 'b'], ['lines', 'b', [11]]], ['a@1', 'b@2', 'a@10', 'b@11']],
    ['end flushes what waits', [['lines', 'a', [3]], ['lines', 'b', [1]], ['end']], ['b@1', 'a@3']],
    ['no nodes: everything is live', [['end']], []],
  ])('%s', (_n, steps, want) => {
    const nodes = [...new Set(steps.flatMap((s) => (s[0] === 'end' ? [] : [s[1]])))].sort();
    expect(play(nodes, steps).all).toEqual(want);
  });

  it('streams: with two nodes in step, lines go out as they come, not at the end', () => {
    const m: string[][] = [];
    const merger = new LogMerger(['a', 'b'], (ls) => m.push(ls.map((x) => x.text)));
    for (let t = 0; t < 100; t += 2) {
      merger.lines('a', [l('a', t)]);
      merger.lines('b', [l('b', t + 1)]);
    }
    expect(m.flat().length).toBeGreaterThanOrEqual(99); // all but the last line of b's, before any sync
    merger.nodeSynced('a');
    merger.nodeSynced('b');
    expect(m.flat()).toHaveLength(100);
  });
});

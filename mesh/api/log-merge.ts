/**
 * Merges the log lines of several nodes by time as they arrive, for `shoal service logs`. Each
 * node sends what its tasks already wrote (its backlog) in time order, then says so; a line is
 * written once no node still sending its backlog could have an earlier one (every such node
 * has a line waiting, or is done). So a large backlog streams through with only the lines of
 * the nodes that are ahead held here, never the whole log. Lines a node sends after its
 * backlog (following) are written as they come once every backlog is through; until then they
 * wait, since they are newer than any backlog line.
 */
import type { LogLine } from './log-relay.js';

export class LogMerger {
  /** Backlog lines waiting, per node (head index first). */
  private readonly queues = new Map<string, { lines: LogLine[]; head: number }>();
  /** Nodes still sending their backlog. */
  private readonly pending: Set<string>;
  /** Live lines that came while some backlog was still coming. */
  private held: LogLine[] = [];
  private live = false;

  constructor(nodes: readonly string[], private readonly write: (lines: LogLine[]) => void) {
    this.pending = new Set(nodes);
    for (const n of nodes) this.queues.set(n, { lines: [], head: 0 });
    if (this.pending.size === 0) this.live = true;
  }

  lines(node: string, lines: LogLine[]): void {
    if (this.live) { this.write(lines); return; }
    const q = this.queues.get(node);
    if (!q || !this.pending.has(node)) { this.held.push(...lines); return; }
    q.lines.push(...lines);
    this.drain();
  }

  nodeSynced(node: string): void {
    if (!this.pending.delete(node)) return;
    this.drain();
    if (this.pending.size > 0) return;
    this.live = true;
    const held = this.held.sort((a, b) => a.time - b.time);
    this.held = [];
    if (held.length) this.write(held);
  }

  /** Everything is through: whatever still waits goes out, in order. */
  end(): void {
    for (const n of [...this.pending]) this.nodeSynced(n);
  }

  private drain(): void {
    const out: LogLine[] = [];
    for (;;) {
      let best: { lines: LogLine[]; head: number } | undefined;
      let blocked = false;
      for (const [node, q] of this.queues) {
        const l = q.lines[q.head];
        if (!l) { if (this.pending.has(node)) blocked = true; continue; }
        if (!best || l.time < (best.lines[best.head] as LogLine).time) best = q;
      }
      if (blocked || !best) break;
      out.push(best.lines[best.head++] as LogLine);
      if (best.head > 1024 && best.head * 2 > best.lines.length) { best.lines.splice(0, best.head); best.head = 0; }
    }
    if (out.length) this.write(out);
  }
}

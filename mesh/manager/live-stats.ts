/**
 * Live per-backend connection counts for the /ui page, reported by the agents connected to
 * THIS manager (in memory only: counters are not cluster state, and writing them to the store
 * every few seconds would cost every watcher). Demand-driven: agents send their summaries only
 * while someone watches (`viewers > 0`), so a cluster nobody looks at reads no extra counters.
 *
 * Protocol (over the agent session, mesh/api/agent-session.ts): the manager sends
 * `{type:"lb-stats-want", on}` when the first viewer arrives or the last leaves (and `on:true` to
 * an agent joining while someone watches); the agent then sends `{type:"lb-stats", backends}`
 * when its counters change (at most every few seconds: they are read in the background).
 * With several managers, a page shows the nodes connected to the manager serving it.
 */

/** One row of an agent's summary: service, backend `address:port`, open connections (null: not counted), flows total, path. */
export type LbStatsRow = [service: string, backend: string, open: number | null, total: number, via: 'vip' | 'ingress'];

/** Most rows accepted from one agent. */
export const MAX_LB_STATS_ROWS = 5000;

type Listener = (nodeId: string, rows: readonly LbStatsRow[] | undefined) => void;

export class LiveStats {
  private readonly byNode = new Map<string, { rows: LbStatsRow[]; at: number }>();
  private readonly sessions = new Map<string, Set<(msg: object) => void>>();
  private readonly listeners = new Set<Listener>();
  private viewerCount = 0;

  /** An agent session of `nodeId` opened; `send` reaches it. Returns the unregister function. */
  register(nodeId: string, send: (msg: object) => void): () => void {
    let set = this.sessions.get(nodeId);
    if (!set) this.sessions.set(nodeId, (set = new Set()));
    set.add(send);
    if (this.viewerCount > 0) send({ type: 'lb-stats-want', on: true });
    return () => {
      set.delete(send);
      if (set.size === 0) {
        this.sessions.delete(nodeId);
        this.byNode.delete(nodeId);
        this.emit(nodeId, undefined);
      }
    };
  }

  /** An agent's summary (rows already validated). */
  report(nodeId: string, rows: LbStatsRow[]): void {
    this.byNode.set(nodeId, { rows, at: Date.now() });
    this.emit(nodeId, rows);
  }

  /** Every node's last summary. */
  all(): Array<{ nodeId: string; rows: readonly LbStatsRow[]; at: number }> {
    return [...this.byNode].map(([nodeId, v]) => ({ nodeId, rows: v.rows, at: v.at }));
  }

  /** A viewer arrives; the returned function is its departure. Agents are asked to report while any is there. */
  watch(l: Listener): () => void {
    this.listeners.add(l);
    if (++this.viewerCount === 1) this.broadcast({ type: 'lb-stats-want', on: true });
    let gone = false;
    return () => {
      if (gone) return;
      gone = true;
      this.listeners.delete(l);
      if (--this.viewerCount === 0) {
        this.broadcast({ type: 'lb-stats-want', on: false });
        this.byNode.clear();
      }
    };
  }

  get viewers(): number { return this.viewerCount; }

  private broadcast(msg: object): void {
    for (const set of this.sessions.values()) for (const send of set) send(msg);
  }

  private emit(nodeId: string, rows: readonly LbStatsRow[] | undefined): void {
    for (const l of this.listeners) l(nodeId, rows);
  }
}

/** Validates an agent's `backends` field; throws a sentence when it is not a list of rows. */
export function parseLbStatsRows(v: unknown): LbStatsRow[] {
  if (!Array.isArray(v)) throw new Error('lb-stats needs backends: a list of [service, backend, open, total, via]');
  if (v.length > MAX_LB_STATS_ROWS) throw new Error(`lb-stats: at most ${MAX_LB_STATS_ROWS} backends`);
  return v.map((r: unknown, i) => {
    const ok = Array.isArray(r) && r.length === 5 && typeof r[0] === 'string' && typeof r[1] === 'string'
      && (r[2] === null || (typeof r[2] === 'number' && r[2] >= 0)) && typeof r[3] === 'number' && r[3] >= 0 && (r[4] === 'vip' || r[4] === 'ingress');
    if (!ok) throw new Error(`lb-stats: backend ${i} is not [service, backend, open|null, total, 'vip'|'ingress']`);
    const row = r as LbStatsRow;
    return [row[0].slice(0, 128), row[1].slice(0, 64), row[2], row[3], row[4]];
  });
}

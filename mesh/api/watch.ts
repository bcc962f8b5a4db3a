/**
 * The watch stream over a WebSocket, shared by `/v1/watch` (CLI, tools) and the agent session.
 *
 * Frames (JSON text):
 * - `{type:"established", revision, relist, kvs?}` first. With no resume revision, or one that
 *   was compacted, `relist` is true and `kvs` is the full list at `revision`; the client
 *   replaces its index. When resuming, `relist` is false and events follow from the given one.
 * - `{type:"events", revision, events:[{type, key, value?, modRevision}]}` per store revision.
 * A client whose unsent data exceeds `maxBufferedBytes` is closed with code 4008; it reconnects
 * without a revision and re-lists. Keys under `secrets/` are never sent.
 */
import type { WebSocket } from 'ws';
import { ROOT } from '../../src/model/keys.js';
import type { KeyValue, Store, WatchBatch, Watcher } from '../../src/store/types.js';
import { SECRETS_PREFIX } from '../manager/cluster.js';

export const CLOSE_SLOW_CONSUMER = 4008;
export const DEFAULT_MAX_BUFFERED = 8 << 20;

export interface WireKv { key: string; value: string; modRevision: number }
export interface WireEvent { type: 'put' | 'delete'; key: string; value?: string; modRevision: number }
export type WatchFrame =
  | { type: 'established'; revision: number; relist: boolean; kvs?: WireKv[] }
  | { type: 'events'; revision: number; events: WireEvent[] };

const visible = (key: string): boolean => !key.startsWith(SECRETS_PREFIX);
const wireKv = (kv: KeyValue): WireKv => ({ key: kv.key, value: kv.value, modRevision: kv.modRevision });

/** Starts streaming to `ws`; returns the store watcher (cancelled when the socket closes). */
export async function streamWatch(
  ws: WebSocket, store: Store, resumeFrom: number | undefined, opts: { maxBufferedBytes?: number } = {},
): Promise<Watcher> {
  const max = opts.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED;
  let from = resumeFrom;
  if (from !== undefined && (from < (await store.compactedRevision()) || from > (await store.currentRevision()))) from = undefined;
  let established: WatchFrame;
  if (from === undefined) {
    const { kvs, revision } = await store.range(ROOT);
    established = { type: 'established', revision, relist: true, kvs: kvs.filter((kv) => visible(kv.key)).map(wireKv) };
    from = revision;
  } else {
    established = { type: 'established', revision: from, relist: false };
  }
  let closed = false;
  // Set right after the established frame is sent; `send` may need to cancel it.
  const held: { watcher?: Watcher } = {};
  const send = (frame: WatchFrame): void => {
    if (closed || ws.readyState !== ws.OPEN) return;
    if (ws.bufferedAmount > max) {
      closed = true;
      held.watcher?.cancel();
      ws.close(CLOSE_SLOW_CONSUMER, 'slow consumer: re-list');
      return;
    }
    ws.send(JSON.stringify(frame));
  };
  send(established);
  const watcher = store.watch(ROOT, (b: WatchBatch) => {
    const events: WireEvent[] = [];
    for (const e of b.events) {
      if (!visible(e.kv.key)) continue;
      events.push(e.type === 'put'
        ? { type: 'put', key: e.kv.key, value: e.kv.value, modRevision: e.kv.modRevision }
        : { type: 'delete', key: e.kv.key, modRevision: b.revision });
    }
    if (events.length > 0) send({ type: 'events', revision: b.revision, events });
  }, { fromRevision: from, onError: () => { if (!closed) ws.close(1011, 'watch failed: re-list'); } });
  held.watcher = watcher;
  ws.on('close', () => { closed = true; watcher.cancel(); });
  return watcher;
}

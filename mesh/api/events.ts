/**
 * `WS /v1/events[?since=UNIX_MS]`: cluster events with Docker's verbs, derived from the store's
 * watch (a put that created the key is `create`, another put `update`, a delete `remove`);
 * task and node updates carry their state and, when it changed, the state before (`was`).
 *
 * Frames (JSON text):
 * - `{type:"established", revision, note?}`: watching after `revision`; `note` says when events
 *   older than `since` are gone (the manager started later, or the store's history was trimmed);
 * - `{type:"event", event}` per object change, in revision order (replayed ones first);
 * - `{type:"caught-up", revision}` once the replay reached the revision current at connect time.
 * Without `since`, only new events. Event times come from the manager's {@link RevisionClock}.
 */
import type { WebSocket } from 'ws';
import { parseObjectKey, ROOT } from '../../src/model/keys.js';
import { taskName, type Network, type Node, type Service, type Task } from '../../src/model/types.js';
import type { KeyValue, Store, WatchBatch, WatchEvent, Watcher } from '../../src/store/types.js';
import type { RevisionClock } from './revision-clock.js';
import { CLOSE_SLOW_CONSUMER, DEFAULT_MAX_BUFFERED } from './watch.js';

export type EventType = 'network' | 'service' | 'task' | 'node';
export type EventAction = 'create' | 'update' | 'remove';

export interface ClusterEvent {
  /** Unix ms. */
  time: number;
  revision: number;
  type: EventType;
  action: EventAction;
  id: string;
  /** `name` first; tasks: state, was, desired, service, node; nodes: state, was, availability. */
  attributes: Record<string, string>;
}

export type EventsFrame =
  | { type: 'established'; revision: number; note?: string }
  | { type: 'event'; event: ClusterEvent }
  | { type: 'caught-up'; revision: number };

type AnyObject = Partial<Network & Node & Task> & { spec?: Partial<Service['spec']> };

function parse(kv: KeyValue | undefined): AnyObject | undefined {
  if (!kv) return undefined;
  try { return JSON.parse(kv.value) as AnyObject; } catch { return undefined; }
}

function nameOf(type: EventType, o: AnyObject): string {
  if (type === 'task' && o.serviceName !== undefined && o.slot !== undefined && o.id) return taskName(o as Task);
  return o.name ?? o.spec?.name ?? '';
}

/** The Docker-style event of one store change, or undefined for keys that are not objects. */
export function toEvent(e: WatchEvent, revision: number, time: number): ClusterEvent | undefined {
  const key = parseObjectKey(e.kv.key);
  if (!key) return undefined;
  const type = key.kind.slice(0, -1) as EventType;
  const action: EventAction = e.type === 'delete' ? 'remove' : e.kv.createRevision === e.kv.modRevision ? 'create' : 'update';
  const now = parse(e.type === 'delete' ? (e.prevKv ?? e.kv) : e.kv) ?? {};
  const before = e.type === 'put' && action === 'update' ? parse(e.prevKv) : undefined;
  const attributes: Record<string, string> = {};
  const name = nameOf(type, now);
  if (name) attributes['name'] = name;
  if (type === 'task') {
    const state = now.status?.state;
    if (state) attributes['state'] = state;
    const was = before?.status?.state;
    if (was && was !== state) attributes['was'] = was;
    if (now.desiredState) attributes['desired'] = now.desiredState;
    if (before?.desiredState && before.desiredState !== now.desiredState) attributes['desiredWas'] = before.desiredState;
    if (now.serviceName) attributes['service'] = now.serviceName;
    if (now.serviceId) attributes['serviceId'] = now.serviceId;
    if (now.nodeId) attributes['nodeId'] = now.nodeId;
  } else if (type === 'node') {
    if (now.state) attributes['state'] = now.state;
    if (before?.state && before.state !== now.state) attributes['was'] = before.state;
    if (now.availability) attributes['availability'] = now.availability;
  } else if (type === 'service' && now.spec?.replicas !== undefined) {
    attributes['replicas'] = String(now.spec.replicas);
    const old = before?.spec?.replicas;
    if (old !== undefined && old !== now.spec.replicas) attributes['replicasWas'] = String(old);
  } else if (type === 'network' && now.driver) attributes['driver'] = now.driver;
  return { time, revision, type, action, id: key.id, attributes };
}

/** Streams events to `ws` from `since` (Unix ms; undefined = only new ones). Returns the watcher. */
export async function streamEvents(ws: WebSocket, store: Store, clock: RevisionClock, since: number | undefined): Promise<Watcher> {
  const current = await store.currentRevision();
  let from = current;
  let note: string | undefined;
  if (since !== undefined) {
    const r = clock.revisionSince(since);
    const compacted = await store.compactedRevision();
    from = Math.max(r.from, compacted);
    if (!r.complete || r.from < compacted) {
      const oldest = r.from < compacted ? clock.timeOf(compacted + 1) ?? r.oldest : r.oldest;
      note = `events before ${new Date(oldest).toISOString()} are not kept: a manager replays the events it saw since it started, as far as the store's history goes`;
    }
  }
  let closed = false;
  const send = (f: EventsFrame): void => {
    if (closed || ws.readyState !== ws.OPEN) return;
    if (ws.bufferedAmount > DEFAULT_MAX_BUFFERED) { closed = true; ws.close(CLOSE_SLOW_CONSUMER, 'slow consumer'); return; }
    ws.send(JSON.stringify(f));
  };
  send(note ? { type: 'established', revision: from, note } : { type: 'established', revision: from });
  let caughtUp = from >= current;
  if (caughtUp) send({ type: 'caught-up', revision: current });
  const watcher = store.watch(ROOT, (b: WatchBatch) => {
    const time = clock.timeOf(b.revision) ?? Date.now();
    for (const e of b.events) {
      // A put that rewrote the same value changed nothing a user can see.
      if (e.type === 'put' && e.prevKv?.value === e.kv.value) continue;
      const ev = toEvent(e, b.revision, time);
      if (ev) send({ type: 'event', event: ev });
    }
    if (!caughtUp && b.revision >= current) { caughtUp = true; send({ type: 'caught-up', revision: current }); }
  }, { fromRevision: from, onError: () => { if (!closed) ws.close(1011, 'watch failed'); } });
  ws.on('close', () => { closed = true; watcher.cancel(); });
  return watcher;
}

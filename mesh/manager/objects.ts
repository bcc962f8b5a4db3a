/**
 * Typed access to the objects in the store. Objects are JSON; every read returns the object with
 * the `modRevision` it was read at, so updates can be compare-and-swapped against it.
 */
import { internal, notFound } from '../../src/errors.js';
import { nameKey, objectKey, objectPrefix, type ObjectKind } from '../../src/model/keys.js';
import type { Network, Node, Service, Task } from '../../src/model/types.js';
import type { Compare, KeyValue, Store, TxnOp } from '../../src/store/types.js';

export interface KindMap { networks: Network; services: Service; tasks: Task; nodes: Node }

/** An object as read, with the revision to compare against when writing it back. */
export interface Versioned<T> { obj: T; modRevision: number }

const singular: Record<ObjectKind, string> = { networks: 'network', services: 'service', tasks: 'task', nodes: 'node' };
const lsHint: Record<ObjectKind, string> = {
  networks: 'shoal network ls lists networks',
  services: 'shoal service ls lists services',
  tasks: 'shoal service ps SERVICE lists tasks',
  nodes: 'shoal node ls lists nodes',
};

export function decode<T>(kv: KeyValue): T {
  try {
    return JSON.parse(kv.value) as T;
  } catch (e) {
    throw internal(`corrupt object at ${kv.key}`, e);
  }
}

export async function listObjects<K extends ObjectKind>(store: Store, kind: K): Promise<Array<Versioned<KindMap[K]>>> {
  const { kvs } = await store.range(objectPrefix(kind));
  return kvs.map((kv) => ({ obj: decode<KindMap[K]>(kv), modRevision: kv.modRevision }));
}

export async function getObject<K extends ObjectKind>(store: Store, kind: K, id: string): Promise<Versioned<KindMap[K]> | undefined> {
  const kv = await store.get(objectKey(kind, id));
  return kv ? { obj: decode<KindMap[K]>(kv), modRevision: kv.modRevision } : undefined;
}

/**
 * Finds an object by id, by name (networks, services, nodes), or by unique id prefix, the way
 * Docker does. Throws a NotFound error that tells the user how to list what exists.
 */
export async function resolveObject<K extends ObjectKind>(store: Store, kind: K, ref: string): Promise<Versioned<KindMap[K]>> {
  if (ref !== '' && !ref.includes('/')) {
    const byId = await getObject(store, kind, ref);
    if (byId) return byId;
    if (kind !== 'tasks') {
      const idKv = await store.get(nameKey(kind, ref));
      if (idKv) {
        const byName = await getObject(store, kind, idKv.value);
        if (byName) return byName;
      }
    }
    if (/^[0-9a-f]{3,15}$/.test(ref)) {
      const { kvs } = await store.range(objectKey(kind, ref));
      if (kvs.length === 1 && kvs[0]) return { obj: decode<KindMap[K]>(kvs[0]), modRevision: kvs[0].modRevision };
    }
  }
  throw notFound(`${singular[kind]} '${ref}'`, lsHint[kind]);
}

/** The compare that makes a write fail if the object changed since it was read. */
export const unchanged = (kind: ObjectKind, id: string, modRevision: number): Compare =>
  ({ key: objectKey(kind, id), target: 'modRevision', op: '=', value: modRevision });

export const putObject = (kind: ObjectKind, id: string, obj: unknown): TxnOp =>
  ({ type: 'put', key: objectKey(kind, id), value: JSON.stringify(obj) });

export const deleteObject = (kind: ObjectKind, id: string): TxnOp => ({ type: 'delete', key: objectKey(kind, id) });

/** Claim a unique name: the txn fails if another object holds it. */
export const nameFree = (kind: ObjectKind, name: string): Compare =>
  ({ key: nameKey(kind, name), target: 'createRevision', op: '=', value: 0 });
export const putName = (kind: ObjectKind, name: string, id: string): TxnOp => ({ type: 'put', key: nameKey(kind, name), value: id });
export const deleteName = (kind: ObjectKind, name: string): TxnOp => ({ type: 'delete', key: nameKey(kind, name) });

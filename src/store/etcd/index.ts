/**
 * The etcd implementation of the Store (see store.ts for what it emulates, connection.ts for
 * deadlines and retries, watch.ts for watches). {@link openEtcdStore} checks that the cluster
 * answers before handing the store out, so a manager pointed at nothing fails at start with the
 * endpoints it tried.
 */
import { unavailable } from '../../errors.js';
import type { RequestObserver } from './connection.js';
import type { EtcdEndpoint } from './endpoints.js';
import { classify } from './errors.js';
import { EtcdStore } from './store.js';

export { EtcdStore } from './store.js';
export type { RequestObserver } from './connection.js';
export { formatStoreLocation, parseEndpoint, parseStoreLocation, type EtcdEndpoint, type StoreLocation } from './endpoints.js';

export interface OpenEtcdOptions {
  endpoints: EtcdEndpoint[];
  /** How long to keep trying to reach a member with a quorum at start, ms. Default 10 s. */
  connectTimeoutMs?: number;
  /** Deadline of one store request (all its attempts), ms. Default 5 s. */
  requestTimeoutMs?: number;
  /** Deadline of one attempt of a read on one member, ms. Default 2 s. */
  attemptTimeoutMs?: number;
  observe?: RequestObserver;
}

/**
 * Connects to etcd and checks that it serves a linearizable read (a member with a quorum).
 * Rejects with Unavailable naming every endpoint and what each said when none did in time.
 */
export async function openEtcdStore(o: OpenEtcdOptions): Promise<EtcdStore> {
  const store = new EtcdStore({
    endpoints: o.endpoints,
    requestTimeoutMs: o.requestTimeoutMs ?? 5000,
    attemptTimeoutMs: o.attemptTimeoutMs ?? 2000,
    ...(o.observe ? { observe: o.observe } : {}),
  });
  const deadline = Date.now() + (o.connectTimeoutMs ?? 10_000);
  const said = new Map<string, string>();
  for (;;) {
    // Every member in turn, each with a short deadline: one that answers with a quorum will do.
    for (const m of store.conn.members) {
      try {
        await m.client.kv.range({ key: Buffer.from([0]), count_only: true }, { deadline: new Date(Date.now() + Math.min(1000, Math.max(100, deadline - Date.now()))) });
        return store;
      } catch (e) {
        said.set(m.endpoint.address, classify(e).detail);
      }
    }
    if (Date.now() >= deadline) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  await store.close();
  const why = [...said].map(([a, d]) => `${a}: ${d}`).join('; ');
  throw unavailable(`cannot reach etcd at ${o.endpoints.map((e) => e.address).join(', ')} (${why}); check --store and that etcd is running with a quorum`);
}

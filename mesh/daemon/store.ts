/**
 * The store a manager runs on, from `--store`: the embedded store in `<data-dir>/store` (the
 * default, exactly as before) or an etcd cluster shared by several managers. With etcd the
 * data dir holds no state, only the announcements (socket, tokens), so it is locked on its
 * own: two managers must not announce themselves in one directory.
 */
import { join } from 'node:path';
import { lockDir } from '../../src/store/dir-lock.js';
import { openEmbeddedStore } from '../../src/store/embedded.js';
import { parseStoreLocation, type StoreLocation } from '../../src/store/etcd/endpoints.js';
import type { RequestObserver } from '../../src/store/etcd/index.js';
import type { Store } from '../../src/store/types.js';

export interface ClusterStore {
  store: Store;
  location: StoreLocation;
  /** Several managers may share it (etcd): elect a leader. */
  shared: boolean;
  /** Closes the store and releases the data dir. */
  close(): Promise<void>;
}

export interface OpenStoreOptions {
  /** The `--store` value; undefined or `embedded` for the embedded store. */
  store?: string;
  dataDir: string;
  /** Timing of every etcd request (metrics). */
  observe?: RequestObserver;
  /** How long to keep trying to reach etcd at start, ms (default 10 s). */
  connectTimeoutMs?: number;
}

export async function openClusterStore(o: OpenStoreOptions): Promise<ClusterStore> {
  const location = parseStoreLocation(o.store);
  if (location.kind === 'embedded') {
    const store = await openEmbeddedStore({ dir: join(o.dataDir, 'store') });
    return { store, location, shared: false, close: () => store.close() };
  }
  const lock = await lockDir(o.dataDir);
  try {
    // Loaded only here: the gRPC client costs every CLI command startup time otherwise.
    const { openEtcdStore } = await import('../../src/store/etcd/index.js');
    const store = await openEtcdStore({
      endpoints: location.endpoints,
      ...(o.observe ? { observe: o.observe } : {}),
      ...(o.connectTimeoutMs !== undefined ? { connectTimeoutMs: o.connectTimeoutMs } : {}),
    });
    return { store, location, shared: true, async close() { await store.close(); await lock.release(); } };
  } catch (e) {
    await lock.release();
    throw e;
  }
}

/** The cluster-state store: the {@link Store} contract and its embedded implementation. */
export * from './types.js';
export {
  DEFAULT_HISTORY_LIMIT,
  DEFAULT_SNAPSHOT_EVERY_RECORDS,
  inspectEmbeddedStore,
  openEmbeddedStore,
  type EmbeddedStoreOptions,
  type RecoveryReport,
} from './embedded.js';

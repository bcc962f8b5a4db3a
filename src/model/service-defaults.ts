/**
 * Defaults of the optional Swarm service fields, in one place for every layer: the scheduler
 * plans with them, the agent restarts with them, `service inspect --pretty` shows them, and a
 * Docker API layer can insert them (`insertDefaults`). They are Docker's (swarmkit's) defaults.
 */
import type { RestartPolicy, Service, ServiceMode, ServiceSpec, UpdateConfig } from './types.js';

/** Swarmkit's update (and rollback) defaults: one task at a time, stop-first, pause on failure, 5 s monitor. */
export const DEFAULT_UPDATE_CONFIG: Readonly<UpdateConfig> = Object.freeze({
  parallelism: 1, delayMs: 0, order: 'stop-first', failureAction: 'pause', monitorMs: 5000, maxFailureRatio: 0,
});

/** Restart always, with the agent's back-off (1 s doubling to 30 s) between attempts. */
export const DEFAULT_RESTART_POLICY: Readonly<RestartPolicy> = Object.freeze({ condition: 'any' });

/** SIGTERM, then SIGKILL after this long (Docker's default). */
export const DEFAULT_STOP_GRACE_MS = 10_000;

export const modeOf = (s: Pick<ServiceSpec, 'mode'>): ServiceMode => s.mode ?? 'replicated';
export const updateConfigOf = (s: Pick<ServiceSpec, 'updateConfig'>): UpdateConfig => s.updateConfig ?? { ...DEFAULT_UPDATE_CONFIG };
export const rollbackConfigOf = (s: Pick<ServiceSpec, 'rollbackConfig'>): UpdateConfig => s.rollbackConfig ?? { ...DEFAULT_UPDATE_CONFIG };
export const restartPolicyOf = (s: Pick<ServiceSpec, 'restartPolicy'>): RestartPolicy => s.restartPolicy ?? { ...DEFAULT_RESTART_POLICY };

/** True while a rollback (manual or automatic) drives the service's task replacement. */
export const isRollingBack = (svc: Pick<Service, 'updateStatus'>): boolean =>
  svc.updateStatus?.state === 'rollback_started' || svc.updateStatus?.state === 'rollback_paused';

/** The config that drives the current replacement: the rollback config during a rollback. */
export const activeUpdateConfig = (svc: Pick<Service, 'spec' | 'updateStatus'>): UpdateConfig =>
  isRollingBack(svc) ? rollbackConfigOf(svc.spec) : updateConfigOf(svc.spec);

/**
 * The Swarm fields of a service spec on create and update: copied from a validated create,
 * merged from a validated update (partial nested configs onto the current ones; `null`
 * resets to the default). Pure.
 */
import { invalid } from '../../src/errors.js';
import { DEFAULT_RESTART_POLICY, DEFAULT_UPDATE_CONFIG, modeOf } from '../../src/model/service-defaults.js';
import type { ServiceSpec } from '../../src/model/types.js';
import type { SwarmFields, SwarmFieldsUpdate } from '../api/validate-swarm.js';

const KEYS = ['mode', 'constraints', 'restartPolicy', 'updateConfig', 'rollbackConfig', 'stopGracePeriodMs', 'resources', 'hostname', 'workdir', 'user', 'forceUpdate'] as const;

/** Copies the Swarm fields given at create onto `spec`. */
export function applySwarmCreate(spec: ServiceSpec, from: SwarmFields): void {
  for (const k of KEYS) {
    const v = from[k];
    if (v !== undefined) (spec as unknown as Record<string, unknown>)[k] = v;
  }
  if (spec.constraints?.length === 0) delete spec.constraints;
}

/** Merges the Swarm fields of an update into `spec` (a copy of the current spec). */
export function mergeSwarmUpdate(spec: ServiceSpec, u: SwarmFieldsUpdate & { replicas?: number }): void {
  if (modeOf(spec) === 'global' && u.replicas !== undefined) {
    throw invalid(`service '${spec.name}' is global (one task per eligible node): replicas do not apply; constrain it to fewer nodes instead`);
  }
  const target = spec as unknown as Record<string, unknown>;
  const reset = (k: string): void => { delete target[k]; };
  if (u.constraints !== undefined) {
    if (u.constraints.length) spec.constraints = u.constraints;
    else reset('constraints');
  }
  if (u.restartPolicy === null) reset('restartPolicy');
  else if (u.restartPolicy !== undefined) spec.restartPolicy = { ...(spec.restartPolicy ?? DEFAULT_RESTART_POLICY), ...u.restartPolicy };
  for (const k of ['updateConfig', 'rollbackConfig'] as const) {
    const v = u[k];
    if (v === null) reset(k);
    else if (v !== undefined) spec[k] = { ...(spec[k] ?? DEFAULT_UPDATE_CONFIG), ...v };
  }
  if (u.resources === null) reset('resources');
  else if (u.resources !== undefined) {
    const limits = { ...spec.resources?.limits, ...u.resources.limits };
    if (Object.keys(limits).length) spec.resources = { limits };
    else reset('resources');
  }
  for (const k of ['stopGracePeriodMs', 'hostname', 'workdir', 'user'] as const) {
    const v = u[k];
    if (v === null) reset(k);
    else if (v !== undefined) target[k] = v;
  }
  if (u.forceUpdate !== undefined) spec.forceUpdate = u.forceUpdate;
}

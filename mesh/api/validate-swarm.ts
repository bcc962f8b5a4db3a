/**
 * Validation of the Swarm service fields (mode, placement, restart policy, update and rollback
 * configs, stop grace period, resources, host name, working directory, user). Same contract as
 * validate.ts: every bad value is an InvalidParameter error whose one sentence names the field,
 * what was wrong and what is allowed. In an update, `null` resets a field to its default.
 */
import { invalid } from '../../src/errors.js';
import { DEFAULT_RESTART_POLICY, DEFAULT_UPDATE_CONFIG } from '../../src/model/service-defaults.js';
import type { ResourceLimits, RestartPolicy, ServiceMode, UpdateConfig } from '../../src/model/types.js';
import { parseConstraints } from '../manager/placement.js';

type Obj = Record<string, unknown>;

/** The Swarm fields of a create (only those given). */
export interface SwarmFields {
  mode?: ServiceMode;
  constraints?: string[];
  restartPolicy?: RestartPolicy;
  updateConfig?: UpdateConfig;
  rollbackConfig?: UpdateConfig;
  stopGracePeriodMs?: number;
  resources?: { limits?: ResourceLimits };
  hostname?: string;
  workdir?: string;
  user?: string;
  forceUpdate?: number;
}

/** The Swarm fields of an update: nested configs may be partial (merged onto the current ones); `null` resets. */
export interface SwarmFieldsUpdate {
  constraints?: string[];
  restartPolicy?: Partial<RestartPolicy> | null;
  updateConfig?: Partial<UpdateConfig> | null;
  rollbackConfig?: Partial<UpdateConfig> | null;
  stopGracePeriodMs?: number | null;
  resources?: { limits?: ResourceLimits } | null;
  hostname?: string | null;
  workdir?: string | null;
  user?: string | null;
  forceUpdate?: number;
}

export const SWARM_FIELDS = ['mode', 'constraints', 'restartPolicy', 'updateConfig', 'rollbackConfig', 'stopGracePeriodMs', 'resources', 'hostname', 'workdir', 'user', 'forceUpdate'] as const;

const DAY_MS = 86_400_000;
/** cgroup v1's smallest CFS quota is 1 ms per 100 ms period: 0.01 CPU. */
export const MIN_NANO_CPUS = 10_000_000;
/** Docker's smallest memory limit. */
export const MIN_MEMORY_BYTES = 6 * 1024 * 1024;

function obj(v: unknown, what: string): Obj {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw invalid(`${what} must be a JSON object`);
  return v as Obj;
}

function only(o: Obj, allowed: readonly string[], what: string): void {
  for (const k of Object.keys(o)) if (!allowed.includes(k)) throw invalid(`unknown field '${k}' in ${what} (allowed: ${allowed.join(', ')})`, 'UNKNOWN_FIELD');
}

function int(o: Obj, k: string, what: string, min: number, max: number, unit = ''): number | undefined {
  const v = o[k];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v)) throw invalid(`${what}.${k} must be an integer${unit}`);
  if (v < min || v > max) throw invalid(`${what}.${k} must be between ${min} and ${max}${unit}, got ${v}`);
  return v;
}

function oneOf<T extends string>(o: Obj, k: string, what: string, values: readonly T[]): T | undefined {
  const v = o[k];
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || !(values as readonly string[]).includes(v)) throw invalid(`${what}.${k} must be one of ${values.join(', ')}, got '${String(v)}'`);
  return v as T;
}

function parseRestartPolicy(v: unknown, partial: boolean): Partial<RestartPolicy> {
  const what = 'restartPolicy';
  const o = obj(v, what);
  only(o, ['condition', 'delayMs', 'maxAttempts', 'windowMs'], what);
  const out: Partial<RestartPolicy> = {};
  const condition = oneOf(o, 'condition', what, ['none', 'on-failure', 'any'] as const);
  if (condition !== undefined) out.condition = condition;
  else if (!partial) out.condition = DEFAULT_RESTART_POLICY.condition;
  const delay = int(o, 'delayMs', what, 0, DAY_MS, ' (milliseconds)');
  if (delay !== undefined) out.delayMs = delay;
  const max = int(o, 'maxAttempts', what, 0, 1_000_000);
  if (max !== undefined) out.maxAttempts = max;
  const win = int(o, 'windowMs', what, 0, 365 * DAY_MS, ' (milliseconds)');
  if (win !== undefined) out.windowMs = win;
  return out;
}

function parseUpdateConfig(v: unknown, what: 'updateConfig' | 'rollbackConfig', partial: boolean): Partial<UpdateConfig> {
  const o = obj(v, what);
  only(o, ['parallelism', 'delayMs', 'order', 'failureAction', 'monitorMs', 'maxFailureRatio'], what);
  const out: Partial<UpdateConfig> = partial ? {} : { ...DEFAULT_UPDATE_CONFIG };
  const par = int(o, 'parallelism', what, 0, 1_000_000, ' (0 = all at once)');
  if (par !== undefined) out.parallelism = par;
  const delay = int(o, 'delayMs', what, 0, 7 * DAY_MS, ' (milliseconds)');
  if (delay !== undefined) out.delayMs = delay;
  const order = oneOf(o, 'order', what, ['stop-first', 'start-first'] as const);
  if (order !== undefined) out.order = order;
  const actions = what === 'rollbackConfig' ? (['pause', 'continue'] as const) : (['pause', 'continue', 'rollback'] as const);
  const fa = oneOf<'pause' | 'continue' | 'rollback'>(o, 'failureAction', what, actions);
  if (fa !== undefined) out.failureAction = fa;
  const mon = int(o, 'monitorMs', what, 0, DAY_MS, ' (milliseconds)');
  if (mon !== undefined) out.monitorMs = mon;
  const r = o['maxFailureRatio'];
  if (r !== undefined) {
    if (typeof r !== 'number' || !Number.isFinite(r) || r < 0 || r > 1) throw invalid(`${what}.maxFailureRatio must be a number from 0 to 1, got ${JSON.stringify(r)}`);
    out.maxFailureRatio = r;
  }
  return out;
}

function parseResources(v: unknown): { limits?: ResourceLimits } {
  const o = obj(v, 'resources');
  only(o, ['limits'], 'resources');
  if (o['limits'] === undefined) return {};
  const l = obj(o['limits'], 'resources.limits');
  only(l, ['nanoCpus', 'memoryBytes'], 'resources.limits');
  const limits: ResourceLimits = {};
  const cpu = int(l, 'nanoCpus', 'resources.limits', MIN_NANO_CPUS, 1024 * 1e9, ' (1e9 = one CPU; at least 0.01 CPU)');
  if (cpu !== undefined) limits.nanoCpus = cpu;
  const mem = int(l, 'memoryBytes', 'resources.limits', MIN_MEMORY_BYTES, Number.MAX_SAFE_INTEGER, ' (bytes; at least 6 MiB)');
  if (mem !== undefined) limits.memoryBytes = mem;
  return Object.keys(limits).length ? { limits } : {};
}

const HOSTNAME_RE = /^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$/;
const USER_PART = /^([a-z_][a-z0-9_-]{0,31}\$?|\d{1,10})$/;

function parseHostname(v: unknown): string {
  if (typeof v !== 'string' || v.length > 64 || !HOSTNAME_RE.test(v)) {
    throw invalid(`hostname '${String(v)}' is invalid: use at most 64 letters, digits, '-' and '.', each label starting and ending with a letter or digit`);
  }
  return v;
}

function parseWorkdir(v: unknown): string {
  if (typeof v !== 'string' || !v.startsWith('/') || v.length > 4096 || v.includes('\0')) {
    throw invalid(`workdir '${String(v)}' must be an absolute path (starting with '/')`);
  }
  return v;
}

function parseUser(v: unknown): string {
  const parts = typeof v === 'string' ? v.split(':') : [];
  const ok = parts.length >= 1 && parts.length <= 2 && parts.every((p) => USER_PART.test(p) && (!/^\d+$/.test(p) || Number(p) < 4_294_967_295));
  if (!ok) throw invalid(`user '${String(v)}' is invalid: use NAME, UID, NAME:GROUP or UID:GID`);
  return v as string;
}

function parseConstraintList(v: unknown): string[] {
  if (!Array.isArray(v) || v.length > 64 || v.some((c) => typeof c !== 'string')) throw invalid(`constraints must be a list of at most 64 strings like "node.labels.zone==a"`);
  parseConstraints(v as string[]);
  return v as string[];
}

/** The Swarm fields of a service create; nested configs get Docker's defaults for what they leave out. */
export function parseSwarmCreate(o: Obj): SwarmFields {
  const out: SwarmFields = {};
  const mode = oneOf(o, 'mode', 'service', ['replicated', 'global'] as const);
  if (mode !== undefined) out.mode = mode;
  if (mode === 'global' && o['replicas'] !== undefined) throw invalid(`service.replicas only applies to replicated services: a global service runs one task per eligible node`);
  if (o['constraints'] !== undefined) out.constraints = parseConstraintList(o['constraints']);
  if (o['restartPolicy'] !== undefined) out.restartPolicy = parseRestartPolicy(o['restartPolicy'], false) as RestartPolicy;
  if (o['updateConfig'] !== undefined) out.updateConfig = parseUpdateConfig(o['updateConfig'], 'updateConfig', false) as UpdateConfig;
  if (o['rollbackConfig'] !== undefined) out.rollbackConfig = parseUpdateConfig(o['rollbackConfig'], 'rollbackConfig', false) as UpdateConfig;
  const grace = int(o, 'stopGracePeriodMs', 'service', 0, DAY_MS, ' (milliseconds)');
  if (grace !== undefined) out.stopGracePeriodMs = grace;
  if (o['resources'] !== undefined) out.resources = parseResources(o['resources']);
  if (o['hostname'] !== undefined) out.hostname = parseHostname(o['hostname']);
  if (o['workdir'] !== undefined) out.workdir = parseWorkdir(o['workdir']);
  if (o['user'] !== undefined) out.user = parseUser(o['user']);
  const force = int(o, 'forceUpdate', 'service', 0, Number.MAX_SAFE_INTEGER);
  if (force !== undefined) out.forceUpdate = force;
  return out;
}

/** The Swarm fields of a service update (only those given; `null` resets one to its default). */
export function parseSwarmUpdate(o: Obj): SwarmFieldsUpdate {
  const out: SwarmFieldsUpdate = {};
  if (o['mode'] !== undefined) throw invalid(`service mode cannot be changed after create (Docker refuses it too): remove the service and create it again`);
  if (o['constraints'] !== undefined) out.constraints = o['constraints'] === null ? [] : parseConstraintList(o['constraints']);
  const nullable = <T>(k: string, parse: (v: unknown) => T): void => {
    if (o[k] === undefined) return;
    (out as Record<string, unknown>)[k] = o[k] === null ? null : parse(o[k]);
  };
  nullable('restartPolicy', (v) => parseRestartPolicy(v, true));
  nullable('updateConfig', (v) => parseUpdateConfig(v, 'updateConfig', true));
  nullable('rollbackConfig', (v) => parseUpdateConfig(v, 'rollbackConfig', true));
  nullable('stopGracePeriodMs', () => int(o, 'stopGracePeriodMs', 'service', 0, DAY_MS, ' (milliseconds)'));
  nullable('resources', parseResources);
  nullable('hostname', parseHostname);
  nullable('workdir', parseWorkdir);
  nullable('user', parseUser);
  const force = int(o, 'forceUpdate', 'service', 0, Number.MAX_SAFE_INTEGER);
  if (force !== undefined) out.forceUpdate = force;
  return out;
}

/**
 * The Swarm flags of `service create` and `service update` (Docker's names and value syntax),
 * turned into the API's fields: mode, placement, restart policy, rolling update and rollback
 * configs, stop grace period, env files, limits, host name, working directory, user.
 * Kept apart from commands.ts so the command table only lists them.
 */
import { invalid } from '../../src/errors.js';
import type { Service } from '../../src/model/types.js';
import { all, isSet, one, type FlagSpec, type Parsed } from './args.js';
import { call, type Endpoint } from './client.js';
import { readEnvFiles } from './env-file.js';
import { parseBytes, parseCount, parseCpus, parseDuration } from './units.js';

const CONFIG_FLAGS = (p: 'update' | 'rollback'): FlagSpec[] => [
  { name: `${p}-parallelism`, value: 'N', help: `tasks ${p === 'update' ? 'updated' : 'rolled back'} at once (0 = all; default 1)` },
  { name: `${p}-delay`, value: 'DURATION', help: `wait between ${p === 'update' ? 'update' : 'rollback'} batches (e.g. 10s)` },
  { name: `${p}-order`, value: 'ORDER', choices: ['stop-first', 'start-first'], help: 'stop the old task first (default) or start the new one first' },
  { name: `${p}-failure-action`, value: 'ACTION', choices: p === 'update' ? ['pause', 'continue', 'rollback'] : ['pause', 'continue'], help: 'what a failed task does to the update (default pause)' },
  { name: `${p}-monitor`, value: 'DURATION', help: 'how long a new task is watched for failure (default 5s)' },
  { name: `${p}-max-failure-ratio`, value: 'RATIO', help: 'failures tolerated, 0 to 1 (default 0)' },
];

const COMMON: FlagSpec[] = [
  { name: 'restart-condition', value: 'COND', choices: ['none', 'on-failure', 'any'], help: 'when a task that ended is restarted (default any)' },
  { name: 'restart-delay', value: 'DURATION', help: 'wait before a restart (default 5s)' },
  { name: 'restart-max-attempts', value: 'N', help: 'give up after this many restarts (default: never)' },
  { name: 'restart-window', value: 'DURATION', help: 'window in which restarts are counted against the maximum' },
  ...CONFIG_FLAGS('update'), ...CONFIG_FLAGS('rollback'),
  { name: 'stop-grace-period', value: 'DURATION', help: 'time between SIGTERM and SIGKILL (default 10s)' },
  { name: 'env-file', repeat: true, value: 'FILE', help: 'read environment variables from a file (repeatable; -e wins)' },
  { name: 'limit-memory', value: 'BYTES', help: 'memory limit of each task (512m, 1g)' },
  { name: 'limit-cpu', value: 'CPUS', help: 'CPU limit of each task (0.5, 2)' },
  { name: 'hostname', value: 'NAME', help: 'the tasks\' host name' },
  { name: 'workdir', short: 'w', value: 'DIR', help: 'the tasks\' working directory' },
  { name: 'user', short: 'u', value: 'USER[:GROUP]', help: 'run the tasks as this user' },
];

/** Flags `service create` adds. */
export const SWARM_CREATE_FLAGS: FlagSpec[] = [
  { name: 'mode', value: 'MODE', choices: ['replicated', 'global'], help: 'replicated (--replicas tasks, default) or global (one task per eligible node)' },
  { name: 'constraint', repeat: true, value: 'EXPR', help: 'placement constraint: node.id|node.hostname|node.labels.K ==|!= V (repeatable)' },
  ...COMMON,
];
/** Flags `service update` adds (`--constraint` replaces the list; `-add`/`-rm` edit it). */
export const SWARM_UPDATE_FLAGS: FlagSpec[] = [
  { name: 'constraint', repeat: true, value: 'EXPR', help: 'replace the placement constraints (repeatable)' },
  { name: 'constraint-add', repeat: true, value: 'EXPR', help: 'add a placement constraint' },
  { name: 'constraint-rm', repeat: true, value: 'EXPR', help: 'remove a placement constraint' },
  { name: 'force', bool: true, help: 'replace the tasks even if nothing changed' },
  { name: 'rollback', bool: true, help: 'go back to the previous spec (as shoal service rollback)' },
  ...COMMON,
];

function configBody(p: Parsed, prefix: 'update' | 'rollback'): Record<string, unknown> | undefined {
  const c: Record<string, unknown> = {};
  const v = (f: string): string | undefined => one(p, `${prefix}-${f}`);
  const par = v('parallelism');
  if (par !== undefined) c['parallelism'] = parseCount(par, `--${prefix}-parallelism`);
  const delay = v('delay');
  if (delay !== undefined) c['delayMs'] = parseDuration(delay, `--${prefix}-delay`);
  const order = v('order');
  if (order !== undefined) c['order'] = order;
  const fa = v('failure-action');
  if (fa !== undefined) c['failureAction'] = fa;
  const mon = v('monitor');
  if (mon !== undefined) c['monitorMs'] = parseDuration(mon, `--${prefix}-monitor`);
  const ratio = v('max-failure-ratio');
  if (ratio !== undefined) {
    if (!/^\d+(\.\d+)?$/.test(ratio)) throw invalid(`--${prefix}-max-failure-ratio must be a number from 0 to 1, got '${ratio}'`);
    c['maxFailureRatio'] = Number(ratio);
  }
  return Object.keys(c).length ? c : undefined;
}

/**
 * The API fields of the Swarm flags given (only those). `env` is the body's `-e` map, if any:
 * env files come first and `-e` overrides them.
 */
export function swarmBody(p: Parsed, env: Record<string, string> | undefined): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  const mode = one(p, 'mode');
  if (mode !== undefined) body['mode'] = mode;
  if (all(p, 'constraint').length) body['constraints'] = all(p, 'constraint');
  const rp: Record<string, unknown> = {};
  const cond = one(p, 'restart-condition');
  if (cond !== undefined) rp['condition'] = cond;
  const rd = one(p, 'restart-delay');
  if (rd !== undefined) rp['delayMs'] = parseDuration(rd, '--restart-delay');
  const rm = one(p, 'restart-max-attempts');
  if (rm !== undefined) rp['maxAttempts'] = parseCount(rm, '--restart-max-attempts');
  const rw = one(p, 'restart-window');
  if (rw !== undefined) rp['windowMs'] = parseDuration(rw, '--restart-window');
  if (Object.keys(rp).length) body['restartPolicy'] = rp;
  const uc = configBody(p, 'update');
  if (uc) body['updateConfig'] = uc;
  const rc = configBody(p, 'rollback');
  if (rc) body['rollbackConfig'] = rc;
  const grace = one(p, 'stop-grace-period');
  if (grace !== undefined) body['stopGracePeriodMs'] = parseDuration(grace, '--stop-grace-period');
  const limits: Record<string, number> = {};
  const mem = one(p, 'limit-memory');
  if (mem !== undefined) limits['memoryBytes'] = parseBytes(mem, '--limit-memory');
  const cpu = one(p, 'limit-cpu');
  if (cpu !== undefined) limits['nanoCpus'] = parseCpus(cpu, '--limit-cpu');
  if (Object.keys(limits).length) body['resources'] = { limits };
  for (const f of ['hostname', 'workdir', 'user'] as const) {
    const v = one(p, f);
    if (v !== undefined) body[f] = v;
  }
  const files = all(p, 'env-file');
  if (files.length) body['env'] = { ...readEnvFiles(files, process.env), ...env };
  return body;
}

/**
 * Fields of `service update` that edit the current spec (`--constraint-add/-rm`, `--force`):
 * read the service, edit, and send its version so a concurrent change is refused (409) rather
 * than overwritten.
 */
export async function editedFields(ep: Endpoint, p: Parsed, ref: string): Promise<Record<string, unknown>> {
  const add = all(p, 'constraint-add'), rm = all(p, 'constraint-rm');
  if (!add.length && !rm.length && !isSet(p, 'force')) return {};
  if ((add.length || rm.length) && all(p, 'constraint').length) throw invalid(`--constraint replaces every constraint: use it without --constraint-add/--constraint-rm`);
  const svc = await call<Service>(ep, 'GET', `/v1/services/${encodeURIComponent(ref)}`);
  const out: Record<string, unknown> = { version: svc.version };
  if (add.length || rm.length) {
    const cur = svc.spec.constraints ?? [];
    const missing = rm.find((c) => !cur.includes(c));
    if (missing !== undefined) throw invalid(`constraint '${missing}' is not set on service '${svc.spec.name}' (shoal service inspect ${svc.spec.name} lists them)`);
    out['constraints'] = [...cur.filter((c) => !rm.includes(c)), ...add.filter((c) => !cur.includes(c))];
  }
  if (isSet(p, 'force')) out['forceUpdate'] = (svc.spec.forceUpdate ?? 0) + 1;
  return out;
}

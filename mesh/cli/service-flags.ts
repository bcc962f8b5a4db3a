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
  { name: `${p}-parallelism` }, { name: `${p}-delay` }, { name: `${p}-order` }, { name: `${p}-failure-action` }, { name: `${p}-monitor` }, { name: `${p}-max-failure-ratio` },
];

const COMMON: FlagSpec[] = [
  { name: 'restart-condition' }, { name: 'restart-delay' }, { name: 'restart-max-attempts' }, { name: 'restart-window' },
  ...CONFIG_FLAGS('update'), ...CONFIG_FLAGS('rollback'),
  { name: 'stop-grace-period' }, { name: 'env-file', repeat: true }, { name: 'limit-memory' }, { name: 'limit-cpu' },
  { name: 'hostname' }, { name: 'workdir', short: 'w' }, { name: 'user', short: 'u' },
];

/** Flags `service create` adds. */
export const SWARM_CREATE_FLAGS: FlagSpec[] = [{ name: 'mode' }, { name: 'constraint', repeat: true }, ...COMMON];
/** Flags `service update` adds (`--constraint` replaces the list; `-add`/`-rm` edit it). */
export const SWARM_UPDATE_FLAGS: FlagSpec[] = [
  { name: 'constraint', repeat: true }, { name: 'constraint-add', repeat: true }, { name: 'constraint-rm', repeat: true }, { name: 'force', bool: true }, { name: 'rollback', bool: true }, ...COMMON,
];

export const SWARM_USAGE = '[--mode replicated|global] [--constraint node.labels.K==V]... [--restart-condition none|on-failure|any] [--restart-delay 5s] [--restart-max-attempts N] [--restart-window 1m] '
  + '[--update-parallelism N] [--update-delay 10s] [--update-order stop-first|start-first] [--update-failure-action pause|continue|rollback] [--update-monitor 5s] [--update-max-failure-ratio R] [--rollback-* ...] '
  + '[--stop-grace-period 10s] [--env-file FILE]... [--limit-memory 512m] [--limit-cpu 0.5] [--hostname H] [--workdir DIR] [--user USER[:GROUP]]';

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

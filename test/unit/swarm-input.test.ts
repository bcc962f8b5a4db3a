/**
 * The Swarm fields at the edges, as tables: constraint parsing, API validation of every new
 * field (accepted values and one-sentence refusals), update merging, the CLI's value syntaxes
 * (durations, sizes, CPUs), env files, the process argv (cgroups, host name, netns, user) with
 * user resolution, cgroup v1 discovery, and `service inspect --pretty`.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { findV1Controllers } from '../../mesh/agent/cgroups.js';
import { processArgv, resolveUser } from '../../mesh/agent/process-exec.js';
import { runOptionsOf } from '../../mesh/agent/task-spec.js';
import { parseServiceCreate, parseServiceUpdate, parseNodeUpdate, parseRollback } from '../../mesh/api/validate.js';
import { parseEnvFile } from '../../mesh/cli/env-file.js';
import { formatDuration, prettyService } from '../../mesh/cli/service-pretty.js';
import { parseBytes, parseCpus, parseDuration } from '../../mesh/cli/units.js';
import { parseConstraint } from '../../mesh/manager/placement.js';
import { mergeSwarmUpdate } from '../../mesh/manager/service-spec.js';
import type { Service, ServiceSpec } from '../../src/model/types.js';

const dir = mkdtempSync(join(tmpdir(), 'shoal-swarm-input-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('parseConstraint', () => {
  it.each<[string, object]>([
    ['node.labels.zone==a', { key: 'node.labels', label: 'zone', op: '==', value: 'a' }],
    ['node.labels.zone != a', { key: 'node.labels', label: 'zone', op: '!=', value: 'a' }],
    ['node.hostname==n1', { key: 'node.hostname', op: '==', value: 'n1' }],
    ['Node.ID==abc', { key: 'node.id', op: '==', value: 'abc' }],
    ['node.platform.os==linux', { key: 'node.platform.os', op: '==', value: 'linux' }],
  ])('%s', (text, want) => {
    expect(parseConstraint(text)).toMatchObject(want);
  });

  it.each<[string, RegExp]>([
    ['node.labels.zone', /needs an operator: KEY==VALUE or KEY!=VALUE/],
    ['node.labels.zone=a', /needs an operator/],
    ['node.labels.zone==', /value must be non-empty/],
    ['node.labels.zone==a==b', /no second operator/],
    ['node.colour==red', /unknown key 'node.colour'/],
    ['node.labels.==x', /unknown key/],
    ['node.role==manager', /node.role is not supported/],
    ['engine.labels.x==y', /engine labels are not supported/],
    ['==x', /needs an operator/],
  ])('refuses %s', (text, message) => {
    expect(() => parseConstraint(text)).toThrow(message);
  });
});

const svc = (extra: Record<string, unknown>): Record<string, unknown> => ({ name: 'web', command: ['sleep', '1'], ...extra });

describe('service create: Swarm fields', () => {
  it('accepts every field and fills nested defaults', () => {
    const s = parseServiceCreate(svc({
      mode: 'replicated', constraints: ['node.labels.zone==a'], restartPolicy: { condition: 'on-failure', maxAttempts: 3 },
      updateConfig: { parallelism: 2, order: 'start-first' }, rollbackConfig: { failureAction: 'continue' }, stopGracePeriodMs: 2000,
      resources: { limits: { nanoCpus: 500_000_000, memoryBytes: 64 * 1024 * 1024 } }, hostname: 'web-1.local', workdir: '/srv', user: 'nobody:nogroup', forceUpdate: 0,
    }));
    expect(s.restartPolicy).toEqual({ condition: 'on-failure', maxAttempts: 3 });
    expect(s.updateConfig).toEqual({ parallelism: 2, delayMs: 0, order: 'start-first', failureAction: 'pause', monitorMs: 5000, maxFailureRatio: 0 });
    expect(s.rollbackConfig?.failureAction).toBe('continue');
    expect(s.resources).toEqual({ limits: { nanoCpus: 500_000_000, memoryBytes: 64 * 1024 * 1024 } });
    expect([s.hostname, s.workdir, s.user, s.stopGracePeriodMs]).toEqual(['web-1.local', '/srv', 'nobody:nogroup', 2000]);
  });

  it('a restart policy without a condition means any', () => {
    expect(parseServiceCreate(svc({ restartPolicy: { delayMs: 100 } })).restartPolicy).toEqual({ condition: 'any', delayMs: 100 });
  });

  it('global: replicas do not apply (stored as 0)', () => {
    expect(parseServiceCreate(svc({ mode: 'global' })).replicas).toBe(0);
  });

  it.each<[string, Record<string, unknown>, RegExp]>([
    ['bad mode', { mode: 'everywhere' }, /service.mode must be one of replicated, global, got 'everywhere'/],
    ['global with replicas', { mode: 'global', replicas: 3 }, /replicas only applies to replicated services/],
    ['constraints not a list', { constraints: 'node.id==x' }, /constraints must be a list/],
    ['bad constraint', { constraints: ['zone=a'] }, /constraint 'zone=a' needs an operator/],
    ['duplicate constraint', { constraints: ['node.id==x', 'node.id==x'] }, /listed twice/],
    ['bad restart condition', { restartPolicy: { condition: 'sometimes' } }, /restartPolicy.condition must be one of none, on-failure, any/],
    ['negative restart delay', { restartPolicy: { delayMs: -1 } }, /restartPolicy.delayMs must be between 0/],
    ['restart attempts not integer', { restartPolicy: { maxAttempts: 1.5 } }, /restartPolicy.maxAttempts must be an integer/],
    ['unknown restart field', { restartPolicy: { retries: 3 } }, /unknown field 'retries' in restartPolicy/],
    ['negative parallelism', { updateConfig: { parallelism: -1 } }, /updateConfig.parallelism must be between 0/],
    ['bad update order', { updateConfig: { order: 'random' } }, /updateConfig.order must be one of stop-first, start-first/],
    ['bad failure action', { updateConfig: { failureAction: 'explode' } }, /updateConfig.failureAction must be one of pause, continue, rollback/],
    ['rollback failure action rollback', { rollbackConfig: { failureAction: 'rollback' } }, /rollbackConfig.failureAction must be one of pause, continue/],
    ['failure ratio above 1', { updateConfig: { maxFailureRatio: 2 } }, /maxFailureRatio must be a number from 0 to 1/],
    ['update config not an object', { updateConfig: 3 }, /updateConfig must be a JSON object/],
    ['grace period negative', { stopGracePeriodMs: -5 }, /stopGracePeriodMs must be between 0/],
    ['memory below 6 MiB', { resources: { limits: { memoryBytes: 1000 } } }, /memoryBytes must be between 6291456/],
    ['cpu below 0.01', { resources: { limits: { nanoCpus: 1000 } } }, /nanoCpus must be between 10000000/],
    ['unknown resources field', { resources: { reservations: {} } }, /unknown field 'reservations' in resources/],
    ['unknown limit', { resources: { limits: { pids: 3 } } }, /unknown field 'pids' in resources.limits/],
    ['bad hostname', { hostname: 'web_1!' }, /hostname 'web_1!' is invalid/],
    ['hostname too long', { hostname: 'a'.repeat(65) }, /hostname .* is invalid/],
    ['relative workdir', { workdir: 'srv' }, /workdir 'srv' must be an absolute path/],
    ['bad user', { user: 'a:b:c' }, /user 'a:b:c' is invalid/],
    ['user with spaces', { user: 'root user' }, /user 'root user' is invalid/],
  ])('%s', (_n, extra, message) => {
    expect(() => parseServiceCreate(svc(extra))).toThrow(message);
  });
});

describe('service update: Swarm fields', () => {
  it('nested configs may be partial; null resets', () => {
    expect(parseServiceUpdate({ updateConfig: { parallelism: 3 } }).updateConfig).toEqual({ parallelism: 3 });
    expect(parseServiceUpdate({ hostname: null }).hostname).toBeNull();
    expect(parseServiceUpdate({ constraints: [] }).constraints).toEqual([]);
  });

  it.each<[string, Record<string, unknown>, RegExp]>([
    ['mode change', { mode: 'global' }, /mode cannot be changed after create/],
    ['bad constraint', { constraints: ['node.x==1'] }, /unknown key 'node.x'/],
    ['bad order', { updateConfig: { order: 'sideways' } }, /updateConfig.order must be one of/],
  ])('%s', (_n, body, message) => {
    expect(() => parseServiceUpdate(body)).toThrow(message);
  });

  const base: ServiceSpec = { name: 'web', endpointMode: 'vip', replicas: 2, ports: [], networks: [], command: ['x'], env: {}, labels: {} };

  it('merges onto the current spec', () => {
    const spec: ServiceSpec = { ...base, updateConfig: { parallelism: 1, delayMs: 0, order: 'stop-first', failureAction: 'pause', monitorMs: 5000, maxFailureRatio: 0 }, hostname: 'h', resources: { limits: { memoryBytes: 1e8 } } };
    mergeSwarmUpdate(spec, { updateConfig: { parallelism: 4 }, restartPolicy: { maxAttempts: 2 }, hostname: null, resources: { limits: { nanoCpus: 1e9 } }, constraints: ['node.id==x'] });
    expect(spec.updateConfig?.parallelism).toBe(4);
    expect(spec.updateConfig?.order).toBe('stop-first');
    expect(spec.restartPolicy).toEqual({ condition: 'any', maxAttempts: 2 });
    expect(spec.hostname).toBeUndefined();
    expect(spec.resources).toEqual({ limits: { memoryBytes: 1e8, nanoCpus: 1e9 } });
    mergeSwarmUpdate(spec, { constraints: [], resources: null });
    expect(spec.constraints).toBeUndefined();
    expect(spec.resources).toBeUndefined();
  });

  it('refuses replicas for a global service', () => {
    expect(() => mergeSwarmUpdate({ ...base, mode: 'global' }, { replicas: 3 })).toThrow(/is global .* replicas do not apply/);
  });

  it('rollback takes an optional version only', () => {
    expect(parseRollback(undefined)).toEqual({});
    expect(parseRollback({ version: 4 })).toEqual({ expectVersion: 4 });
    expect(() => parseRollback({ version: 'x' })).toThrow(/version must be an integer/);
    expect(() => parseRollback({ force: true })).toThrow(/unknown field 'force'/);
  });
});

describe('node update: labels', () => {
  it('labelAdd and labelRm', () => {
    expect(parseNodeUpdate({ labelAdd: { zone: 'a' }, labelRm: ['ssd'] })).toEqual({ labelAdd: { zone: 'a' }, labelRm: ['ssd'] });
  });
  it.each<[string, Record<string, unknown>, RegExp]>([
    ['labels with labelAdd', { labels: {}, labelAdd: { a: 'b' } }, /either labels .* or labelAdd\/labelRm/],
    ['added and removed', { labelAdd: { a: 'b' }, labelRm: ['a'] }, /label 'a' is both added and removed/],
    ['bad key', { labelAdd: { 'has space': 'b' } }, /not a valid label key/],
    ['labelRm not a list', { labelRm: 'a' }, /labelRm must be a list/],
    ['nothing', {}, /changes nothing/],
  ])('%s', (_n, body, message) => {
    expect(() => parseNodeUpdate(body)).toThrow(message);
  });
});

describe('CLI value syntaxes', () => {
  it.each<[string, number]>([['0', 0], ['10s', 10_000], ['1m30s', 90_000], ['500ms', 500], ['1.5s', 1500], ['2h', 7_200_000], ['100us', 0]])('duration %s', (v, ms) => {
    expect(parseDuration(v, '--x')).toBe(ms);
  });
  it.each(['10', '5 s', 's', '-1s', '1d'])('bad duration %s', (v) => {
    expect(() => parseDuration(v, '--update-delay')).toThrow(`--update-delay '${v}' is not a duration`);
  });
  it.each<[string, number]>([['512m', 512 * 1024 ** 2], ['1g', 1024 ** 3], ['1GB', 1024 ** 3], ['1024', 1024], ['64k', 65536], ['1.5m', 1.5 * 1024 ** 2]])('size %s', (v, n) => {
    expect(parseBytes(v, '--limit-memory')).toBe(n);
  });
  it.each(['lots', '-1m', '1x'])('bad size %s', (v) => {
    expect(() => parseBytes(v, '--limit-memory')).toThrow(`--limit-memory '${v}' is not a size`);
  });
  it('cpus', () => {
    expect(parseCpus('0.5', '--limit-cpu')).toBe(500_000_000);
    expect(parseCpus('2', '--limit-cpu')).toBe(2e9);
    expect(() => parseCpus('half', '--limit-cpu')).toThrow(/not a number of CPUs/);
  });
  it('formats durations back the Go way', () => {
    expect([0, 250, 5000, 90_000, 3_600_000].map(formatDuration)).toEqual(['0s', '250ms', '5s', '1m30s', '1h0m']);
  });
});

describe('env files', () => {
  it('KEY=VALUE lines, comments and blanks skipped, bare keys from the environment', () => {
    const text = '# config\nA=1\n\n  B=two words\nC=\nD\nE\nURL=http://x/?a=b\r\n';
    expect(parseEnvFile(text, 'f', { D: 'from-env' })).toEqual({ A: '1', B: 'two words', C: '', D: 'from-env', URL: 'http://x/?a=b' });
  });
  it('refuses a line that is not KEY=VALUE', () => {
    expect(() => parseEnvFile('A=1\nNOT A LINE\n', 'app.env', {})).toThrow("--env-file app.env, line 2: 'NOT A LINE' is not KEY=VALUE");
    expect(() => parseEnvFile('=x\n', 'app.env', {})).toThrow(/line 1/);
  });
});

describe('process argv', () => {
  const user = { uid: 1000, gid: 1000, name: 'app', home: '/home/app' };

  it('the plain command when nothing is asked', () => {
    expect(processArgv(['sleep', '1'], {})).toEqual(['sleep', '1']);
  });

  it('cgroups, host name, netns, user: in that order, the user dropped last', () => {
    const argv = processArgv(['sleep', '1'], { netns: 'ns1', hostname: 'h1' }, ['/cg/memory/shoal/t/cgroup.procs'], user);
    expect(argv[0]).toBe('sh');
    const rest = argv.slice(argv.indexOf('--') + 1);
    expect(rest).toEqual(['unshare', '--uts', '--', 'sh', '-c', expect.stringContaining('hostname "$1"'), 'shoal-hostname', 'h1',
      'ip', 'netns', 'exec', 'ns1', 'setpriv', '--reuid', '1000', '--regid', '1000', '--init-groups', '--', 'sleep', '1']);
  });

  it('a uid without a passwd entry clears supplementary groups', () => {
    expect(processArgv(['id'], {}, [], { uid: 4242, gid: 0 })).toEqual(['setpriv', '--reuid', '4242', '--regid', '0', '--clear-groups', '--', 'id']);
  });

  it('resolves users like Docker (name, uid, name:group, uid:gid), refusing unknown names', () => {
    const passwd = join(dir, 'passwd'), group = join(dir, 'group');
    writeFileSync(passwd, 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n');
    writeFileSync(group, 'root:x:0:\nappgrp:x:1001:\nstaff:x:50:\n');
    const files = { passwd, group };
    expect(resolveUser('app', files)).toEqual({ uid: 1000, gid: 1001, name: 'app', home: '/home/app' });
    expect(resolveUser('1000', files)).toEqual({ uid: 1000, gid: 1001, name: 'app', home: '/home/app' });
    expect(resolveUser('app:staff', files)).toMatchObject({ uid: 1000, gid: 50 });
    expect(resolveUser('4242', files)).toEqual({ uid: 4242, gid: 0 });
    expect(resolveUser('4242:7', files)).toEqual({ uid: 4242, gid: 7 });
    expect(() => resolveUser('ghost', files)).toThrow("user 'ghost' does not exist on this node");
    expect(() => resolveUser('app:nogroup', files)).toThrow("group 'nogroup' does not exist on this node");
  });

  it('run options from a spec', () => {
    const spec: ServiceSpec = { name: 'w', endpointMode: 'vip', replicas: 1, ports: [], networks: [], command: ['x'], env: {}, labels: {},
      restartPolicy: { condition: 'none' }, stopGracePeriodMs: 100, workdir: '/tmp', user: 'app', hostname: 'h', resources: { limits: { memoryBytes: 1e7 } } };
    expect(runOptionsOf(spec, 2)).toEqual({ restartPolicy: { condition: 'none' }, restartsSoFar: 2, stopGraceMs: 100, workdir: '/tmp', user: 'app', hostname: 'h', limits: { memoryBytes: 1e7 } });
  });
});

describe('cgroup v1 discovery', () => {
  const mountinfo = [
    '31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
    '32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct',
    '35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory',
    '40 31 0:40 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw',
  ].join('\n');

  it('finds memory and cpu with the agent\'s own cgroup in each', () => {
    const self = '4:memory:/process_api/abc\n1:cpu,cpuacct:/\n0::/\n';
    expect(findV1Controllers(mountinfo, self)).toEqual({ cpu: '/sys/fs/cgroup/cpu,cpuacct', memory: '/sys/fs/cgroup/memory/process_api/abc' });
  });

  it('finds nothing on a cgroup v2-only host', () => {
    expect(findV1Controllers('30 23 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate', '0::/init.scope\n')).toEqual({});
  });
});

describe('service inspect --pretty', () => {
  it('shows the mode, placement, configs with defaults, restart policy, limits and endpoint', () => {
    const s: Service = {
      id: 'abc', version: 3, vips: { n1: { v4: '10.0.0.2' } }, createdAt: '', updatedAt: '',
      spec: { name: 'web', endpointMode: 'vip', replicas: 3, ports: [{ target: 80, published: 8080, protocol: 'tcp', mode: 'ingress' }], networks: [{ network: 'n1', aliases: [] }],
        command: ['node', 'app.js'], env: { A: '1' }, labels: {}, constraints: ['node.labels.zone==a'], restartPolicy: { condition: 'on-failure', maxAttempts: 3 },
        resources: { limits: { nanoCpus: 5e8, memoryBytes: 512 * 1024 * 1024 } }, updateConfig: { parallelism: 2, delayMs: 10_000, order: 'start-first', failureAction: 'rollback', monitorMs: 5000, maxFailureRatio: 0 } },
      updateStatus: { state: 'paused', startedAt: 'T', message: 'update paused due to failure' },
    };
    const text = prettyService(s, (id) => (id === 'n1' ? 'app' : id));
    for (const line of ['Service Mode:\tReplicated', ' Replicas:\t3', ' Constraints:\t[node.labels.zone==a]', ' Parallelism:\t2', ' Delay:\t\t10s', ' On failure:\trollback',
      ' Update order:      start-first', ' Rollback order:    stop-first', ' Condition:\ton-failure', ' Max attempts:\t3', '  CPU:\t\t0.5', '  Memory:\t512MiB',
      ' State:\t\tpaused', ' app (VIP 10.0.0.2)', ' StopGracePeriod: 10s', ' PublishedPort = 8080']) {
      expect(text).toContain(line);
    }
  });
});

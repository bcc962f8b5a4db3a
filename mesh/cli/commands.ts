/**
 * The `shoal` commands that talk to a manager. `runCommand` returns the text to print; errors
 * are thrown as ShoalErrors and printed by main.ts as one sentence with a non-zero exit.
 */
import { invalid } from '../../src/errors.js';
import { taskName, type Network, type Node, type Service, type Task } from '../../src/model/types.js';
import { all, isSet, keyValues, one, parsePublish, type FlagSpec, type Parsed } from './args.js';
import { call, stream, type Endpoint } from './client.js';
import { ago, table } from './format.js';
import { nodeTable, type ManagerStatus } from './nodes-table.js';

export const GLOBAL_FLAGS: FlagSpec[] = [
  { name: 'host', short: 'H' }, { name: 'token' }, { name: 'data-dir' }, { name: 'format' }, { name: 'quiet', short: 'q', bool: true },
];

/** Returns what to print; long-running output (logs) is written to `out` as it comes. */
type Handler = (ep: Endpoint, p: Parsed, out: (s: string) => void) => Promise<string>;
interface Command { flags: FlagSpec[]; run: Handler; usage: string }

const json = (v: unknown): string => JSON.stringify(v, null, 2) + '\n';
const wantJson = (p: Parsed): boolean => {
  const f = one(p, 'format');
  if (f !== undefined && f !== 'json' && f !== 'table') throw invalid(`--format must be json or table, got '${f}'`);
  return f === 'json';
};
const need = (p: Parsed, n: number, usage: string): string[] => {
  if (p.positional.length < n) throw invalid(`missing argument: usage: ${usage}`);
  return p.positional;
};
const exactly = (p: Parsed, n: number, usage: string): string[] => {
  if (p.positional.length !== n) throw invalid(`expected ${n} argument${n === 1 ? '' : 's'}: usage: ${usage}`);
  return p.positional;
};
const enc = encodeURIComponent;

async function inspectMany(ep: Endpoint, kind: string, refs: string[]): Promise<string> {
  const out: unknown[] = [];
  for (const r of refs) out.push(await call(ep, 'GET', `/v1/${kind}/${enc(r)}`));
  return json(out);
}

async function removeMany(ep: Endpoint, kind: string, refs: string[], query = ''): Promise<string> {
  let text = '';
  for (const r of refs) {
    await call(ep, 'DELETE', `/v1/${kind}/${enc(r)}${query}`);
    text += `${r}\n`;
  }
  return text;
}

function networkRows(nets: Network[]): string {
  return table(['NETWORK ID', 'NAME', 'DRIVER', 'SCOPE', 'SUBNET', 'GATEWAY'],
    nets.map((n) => [n.id.slice(0, 12), n.name, n.driver, n.scope, [n.ipam.v4.subnet, n.ipam.v6?.subnet].filter(Boolean).join(','), n.ipam.v4.gateway]));
}

function servicePorts(s: Service): string {
  return s.spec.ports.map((p) => `${p.mode === 'host' ? 'host:' : '*:'}${p.published}->${p.target}/${p.protocol}`).join(', ');
}

const commands: Record<string, Command> = {
  'network create': {
    usage: 'shoal network create [-d bridge|overlay|macvlan] [--subnet CIDR] [--gateway IP] [--ipv6] [--subnet-v6 CIDR] [-o k=v] [--label k=v] NAME',
    flags: [{ name: 'driver', short: 'd' }, { name: 'subnet' }, { name: 'gateway' }, { name: 'ipv6', bool: true }, { name: 'subnet-v6' }, { name: 'gateway-v6' }, { name: 'opt', short: 'o', repeat: true }, { name: 'label', repeat: true }],
    run: async (ep, p) => {
      const [name] = exactly(p, 1, commands['network create']!.usage);
      const body: Record<string, unknown> = { name, options: keyValues(all(p, 'opt'), '-o'), labels: keyValues(all(p, 'label'), '--label') };
      for (const [flag, field] of [['driver', 'driver'], ['subnet', 'subnet'], ['gateway', 'gateway'], ['subnet-v6', 'subnetV6'], ['gateway-v6', 'gatewayV6']] as const) {
        const v = one(p, flag);
        if (v !== undefined) body[field] = v;
      }
      if (isSet(p, 'ipv6')) body['ipv6'] = true;
      const n = await call<Network>(ep, 'POST', '/v1/networks', body);
      return wantJson(p) ? json(n) : `${n.id}\n`;
    },
  },
  'network ls': {
    usage: 'shoal network ls [--format json]', flags: [],
    run: async (ep, p) => {
      exactly(p, 0, commands['network ls']!.usage);
      const nets = await call<Network[]>(ep, 'GET', '/v1/networks');
      if (wantJson(p)) return json(nets);
      return isSet(p, 'quiet') ? nets.map((n) => n.id + '\n').join('') : networkRows(nets);
    },
  },
  'network inspect': { usage: 'shoal network inspect NETWORK...', flags: [], run: (ep, p) => inspectMany(ep, 'networks', need(p, 1, commands['network inspect']!.usage)) },
  'network rm': { usage: 'shoal network rm NETWORK...', flags: [], run: (ep, p) => removeMany(ep, 'networks', need(p, 1, commands['network rm']!.usage)) },
  'network prune': {
    usage: 'shoal network prune', flags: [{ name: 'force', short: 'f', bool: true }],
    run: async (ep, p) => {
      exactly(p, 0, commands['network prune']!.usage);
      const r = await call<{ removed: string[] }>(ep, 'POST', '/v1/networks/prune');
      return wantJson(p) ? json(r) : r.removed.length ? `Deleted Networks:\n${r.removed.join('\n')}\n` : '';
    },
  },

  'service create': {
    usage: 'shoal service create --name NAME [--replicas N] [-p PUBLISHED:TARGET[/udp]] [-p mode=host,published=P,target=T] [--network NET] [--network-alias NET=ALIAS] [--endpoint-mode vip|dnsrr] [-e K=V] [--health-type tcp|http] [--health-port P] [--health-path /] [--health-interval MS] [--dns-option OPT] [--lb-scheduler rr|wrr|random|lc|sh|mh] [--affinity-timeout S] [--drain-timeout MS] [--traffic-policy cluster|local] -- CMD...',
    flags: [{ name: 'name' }, { name: 'replicas' }, { name: 'publish', short: 'p', repeat: true }, { name: 'network', repeat: true }, { name: 'network-alias', repeat: true }, { name: 'endpoint-mode' }, { name: 'env', short: 'e', repeat: true }, { name: 'label', repeat: true },
      { name: 'health-type' }, { name: 'health-port' }, { name: 'health-path' }, { name: 'health-interval' }, { name: 'health-timeout' }, { name: 'health-retries' }, { name: 'health-start-period' },
      { name: 'dns-option', repeat: true }, { name: 'lb-scheduler' }, { name: 'affinity-timeout' }, { name: 'drain-timeout' }, { name: 'traffic-policy' }],
    run: async (ep, p) => {
      const usage = commands['service create']!.usage;
      const name = one(p, 'name') ?? p.positional[0];
      if (!name) throw invalid(`--name is required: usage: ${usage}`);
      const extra = one(p, 'name') ? p.positional : p.positional.slice(1);
      const command = [...extra, ...p.rest];
      if (command.length === 0) throw invalid(`a command is required after --: usage: ${usage}`);
      const body = serviceBody(p);
      const s = await call<Service>(ep, 'POST', '/v1/services', { name, command, ...body });
      return wantJson(p) ? json(s) : `${s.id}\n`;
    },
  },
  'service ls': {
    usage: 'shoal service ls [--format json]', flags: [],
    run: async (ep, p) => {
      exactly(p, 0, commands['service ls']!.usage);
      const [services, tasks] = await Promise.all([call<Service[]>(ep, 'GET', '/v1/services'), call<Task[]>(ep, 'GET', '/v1/tasks')]);
      if (wantJson(p)) return json(services);
      if (isSet(p, 'quiet')) return services.map((s) => s.id + '\n').join('');
      return table(['ID', 'NAME', 'MODE', 'REPLICAS', 'PORTS'], services.map((s) => {
        const running = tasks.filter((t) => t.serviceId === s.id && t.desiredState === 'running' && t.status.state === 'running').length;
        return [s.id.slice(0, 12), s.spec.name, s.spec.endpointMode, `${running}/${s.spec.replicas}`, servicePorts(s)];
      }));
    },
  },
  'service ps': {
    usage: 'shoal service ps SERVICE [--format json]', flags: [],
    run: async (ep, p) => {
      const [svc] = exactly(p, 1, commands['service ps']!.usage);
      const [tasks, nodes] = await Promise.all([call<Task[]>(ep, 'GET', `/v1/tasks?service=${enc(svc ?? '')}`), call<Node[]>(ep, 'GET', '/v1/nodes')]);
      if (wantJson(p)) return json(tasks);
      const nodeName = new Map(nodes.map((n) => [n.id, n.name]));
      return table(['ID', 'NAME', 'NODE', 'DESIRED STATE', 'CURRENT STATE', 'MESSAGE'], tasks.map((t) => [
        t.id.slice(0, 12), taskName(t).replace(`.${t.id}`, ''), nodeName.get(t.nodeId) ?? (t.nodeId ? t.nodeId.slice(0, 12) : ''),
        t.desiredState, `${t.status.state[0]?.toUpperCase()}${t.status.state.slice(1)} ${ago(t.status.since)}`, t.status.message,
      ]));
    },
  },
  'service logs': {
    usage: 'shoal service logs [-f] SERVICE', flags: [{ name: 'follow', short: 'f', bool: true }],
    run: async (ep, p, out) => {
      const [svc] = exactly(p, 1, commands['service logs']!.usage);
      await stream(ep, `/v1/services/${enc(svc ?? '')}/logs${isSet(p, 'follow') ? '?follow=1' : ''}`, out);
      return '';
    },
  },
  'service inspect': { usage: 'shoal service inspect SERVICE...', flags: [], run: (ep, p) => inspectMany(ep, 'services', need(p, 1, commands['service inspect']!.usage)) },
  'service rm': { usage: 'shoal service rm SERVICE...', flags: [], run: (ep, p) => removeMany(ep, 'services', need(p, 1, commands['service rm']!.usage)) },
  'service scale': {
    usage: 'shoal service scale SERVICE=REPLICAS...', flags: [],
    run: async (ep, p) => {
      let out = '';
      for (const a of need(p, 1, commands['service scale']!.usage)) {
        const m = /^([^=]+)=(\d+)$/.exec(a);
        if (!m) throw invalid(`'${a}' is not SERVICE=REPLICAS`);
        await call(ep, 'POST', `/v1/services/${enc(m[1] ?? '')}/scale`, { replicas: Number(m[2]) });
        out += `${m[1]} scaled to ${m[2]}\n`;
      }
      return out;
    },
  },
  'service update': {
    usage: 'shoal service update [--replicas N] [-p ...] [--network NET] [--endpoint-mode M] [-e K=V] [--version V] [-- CMD...] SERVICE',
    flags: [{ name: 'replicas' }, { name: 'publish', short: 'p', repeat: true }, { name: 'network', repeat: true }, { name: 'network-alias', repeat: true }, { name: 'endpoint-mode' }, { name: 'env', short: 'e', repeat: true }, { name: 'label', repeat: true }, { name: 'version' },
      { name: 'health-type' }, { name: 'health-port' }, { name: 'health-path' }, { name: 'health-interval' }, { name: 'health-timeout' }, { name: 'health-retries' }, { name: 'health-start-period' },
      { name: 'dns-option', repeat: true }, { name: 'lb-scheduler' }, { name: 'affinity-timeout' }, { name: 'drain-timeout' }, { name: 'traffic-policy' }],
    run: async (ep, p) => {
      const [svc] = exactly(p, 1, commands['service update']!.usage);
      const body = serviceBody(p);
      if (p.rest.length) body['command'] = p.rest;
      const v = one(p, 'version');
      if (v !== undefined) body['version'] = intFlag(v, '--version');
      const s = await call<Service>(ep, 'POST', `/v1/services/${enc(svc ?? '')}/update`, body);
      return wantJson(p) ? json(s) : `${s.spec.name}\n`;
    },
  },

  'node ls': {
    usage: 'shoal node ls [--format json]', flags: [],
    run: async (ep, p) => {
      exactly(p, 0, commands['node ls']!.usage);
      const nodes = await call<Node[]>(ep, 'GET', '/v1/nodes');
      if (wantJson(p)) return json(nodes);
      return nodeTable(nodes, await call<ManagerStatus[]>(ep, 'GET', '/v1/managers'));
    },
  },
  'node inspect': { usage: 'shoal node inspect NODE...', flags: [], run: (ep, p) => inspectMany(ep, 'nodes', need(p, 1, commands['node inspect']!.usage)) },
  'node update': {
    usage: 'shoal node update [--availability active|drain|pause] [--label k=v] NODE', flags: [{ name: 'availability' }, { name: 'label', repeat: true }],
    run: async (ep, p) => {
      const [node] = exactly(p, 1, commands['node update']!.usage);
      const body: Record<string, unknown> = {};
      const a = one(p, 'availability');
      if (a !== undefined) body['availability'] = a;
      if (all(p, 'label').length) body['labels'] = keyValues(all(p, 'label'), '--label');
      const n = await call<Node>(ep, 'POST', `/v1/nodes/${enc(node ?? '')}/update`, body);
      return wantJson(p) ? json(n) : `${n.name}\n`;
    },
  },
  'node rm': { usage: 'shoal node rm [--force] NODE...', flags: [{ name: 'force', short: 'f', bool: true }], run: (ep, p) => removeMany(ep, 'nodes', need(p, 1, commands['node rm']!.usage), isSet(p, 'force') ? '?force=1' : '') },
  'node prune': {
    usage: 'shoal node prune', flags: [{ name: 'force', short: 'f', bool: true }],
    run: async (ep, p) => {
      const r = await call<{ removed: string[] }>(ep, 'POST', '/v1/nodes/prune');
      return wantJson(p) ? json(r) : r.removed.map((n) => `${n}\n`).join('');
    },
  },
};

function intFlag(v: string, what: string): number {
  if (!/^-?\d+$/.test(v)) throw invalid(`${what} must be a whole number, got '${v}'`);
  return Number(v);
}

/** Fields common to `service create` and `service update`, from flags (only those given). */
function serviceBody(p: Parsed): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  const r = one(p, 'replicas');
  if (r !== undefined) body['replicas'] = intFlag(r, '--replicas');
  if (all(p, 'publish').length) body['ports'] = all(p, 'publish').map(parsePublish);
  const aliases = keyValuesMulti(all(p, 'network-alias'));
  if (all(p, 'network').length) body['networks'] = all(p, 'network').map((n) => ({ network: n, aliases: aliases.get(n) ?? [] }));
  const em = one(p, 'endpoint-mode');
  if (em !== undefined) body['endpointMode'] = em;
  if (all(p, 'env').length) body['env'] = keyValues(all(p, 'env'), '-e');
  if (all(p, 'label').length) body['labels'] = keyValues(all(p, 'label'), '--label');
  const ht = one(p, 'health-type');
  if (ht !== undefined) {
    const hc: Record<string, unknown> = { type: ht };
    for (const [flag, field] of [['health-port', 'port'], ['health-interval', 'intervalMs'], ['health-timeout', 'timeoutMs'], ['health-retries', 'retries'], ['health-start-period', 'startPeriodMs']] as const) {
      const v = one(p, flag);
      if (v !== undefined) hc[field] = intFlag(v, `--${flag}`);
    }
    const path = one(p, 'health-path');
    if (path !== undefined) hc['path'] = path;
    body['healthCheck'] = hc;
  }
  if (all(p, 'dns-option').length) body['dnsOptions'] = all(p, 'dns-option');
  const sch = one(p, 'lb-scheduler');
  if (sch !== undefined) body['scheduler'] = sch;
  const aff = one(p, 'affinity-timeout');
  if (aff !== undefined) body['affinityTimeoutSeconds'] = intFlag(aff, '--affinity-timeout');
  const drain = one(p, 'drain-timeout');
  if (drain !== undefined) body['drainTimeoutMs'] = intFlag(drain, '--drain-timeout');
  const tp = one(p, 'traffic-policy');
  if (tp !== undefined) body['trafficPolicy'] = tp;
  return body;
}

function keyValuesMulti(list: string[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const v of list) {
    const eq = v.indexOf('=');
    if (eq <= 0) throw invalid(`--network-alias '${v}' must be NETWORK=ALIAS`);
    const net = v.slice(0, eq);
    out.set(net, [...(out.get(net) ?? []), v.slice(eq + 1)]);
  }
  return out;
}

/** Looks up `group sub` (e.g. "service ls"); aliases `list`->`ls`, `remove`->`rm`. */
export function findCommand(group: string | undefined, sub: string | undefined): { key: string; cmd: Command } | undefined {
  const alias: Record<string, string> = { list: 'ls', remove: 'rm' };
  const key = `${group ?? ''} ${alias[sub ?? ''] ?? sub ?? ''}`;
  const cmd = commands[key];
  return cmd ? { key, cmd } : undefined;
}

export function usageText(): string {
  return Object.values(commands).map((c) => `  ${c.usage}`).join('\n');
}

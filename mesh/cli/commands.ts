/**
 * The `shoal` commands that talk to a manager, as one table: `group sub` -> usage, one-line
 * summary, flags (each with its help line) and the handler. `--help`, the top-level usage and
 * the shell completion scripts are generated from this table (help.ts, completion.ts), so a
 * flag added here shows up in all three. Handlers return the text to print; errors are thrown
 * as ShoalErrors and printed by main.ts as one sentence with a non-zero exit.
 */
import { conflict, invalid, isShoalError, ShoalError } from '../../src/errors.js';
import type { Network, Node, Service, Task } from '../../src/model/types.js';
import { all, isSet, keyValues, one, parsePublish, usageError, type FlagSpec, type Parsed } from './args.js';
import { call, stream, type Endpoint } from './client.js';
import { applyFilters, parseFilters } from './filters.js';
import { randomName } from './names.js';
import { checkOutput, FILTER_FLAG, FORMAT_FLAG, OBJECT_FIELDS, QUIET_FLAG, renderList, renderObjects } from './output.js';
import { editedFields, swarmBody, SWARM_CREATE_FLAGS, SWARM_UPDATE_FLAGS } from './service-flags.js';
import { prettyService } from './service-pretty.js';
import { parseSince } from './time.js';
import { NETWORK_FILTERS, NODE_FILTERS, networkView, nodeView, SERVICE_FILTERS, serviceView, taskFilters, taskView } from './views.js';
import { managerNodeView, nodeRows, type ManagerStatus } from './nodes-table.js';
import { SECURITY_COMMANDS } from './security-commands.js';

/** Flags every command that talks to a manager takes. */
export const GLOBAL_FLAGS: FlagSpec[] = [
  { name: 'host', short: 'H', value: 'URL', help: 'manager to talk to: https://HOST:PORT or unix:///PATH (or SHOAL_HOST)' },
  { name: 'token', value: 'TOKEN', help: 'manager token (or SHOAL_TOKEN; default: read from the data dir)' },
  { name: 'data-dir', value: 'DIR', help: 'where shoal up/manager announce their socket and token (or SHOAL_DATA_DIR; default /var/lib/shoal)' },
];

/** Returns what to print; long-running output (logs, events) is written to `out` as it comes. */
export type Handler = (ep: Endpoint, p: Parsed, out: (s: string) => void) => Promise<string>;

/** One command of the table. */
export interface Command {
  flags: FlagSpec[];
  run: Handler;
  /** `shoal network create [OPTIONS] NAME`: the grammar, shown by --help and usage errors. */
  usage: string;
  /** One line for the command lists of --help. */
  summary?: string;
  /** What the positional arguments name, for shell completion of names. */
  completes?: 'network' | 'service' | 'node';
  /** Parse flags only before the first argument (Docker's `service create IMAGE [ARG...]`). */
  stopAtArgument?: boolean;
}

const need = (p: Parsed, n: number, usage: string): string[] => {
  if (p.positional.length < n) throw usageError(`missing argument: usage: ${usage}`);
  return p.positional;
};
const exactly = (p: Parsed, n: number, usage: string): string[] => {
  if (p.positional.length !== n) throw usageError(`expected ${n} argument${n === 1 ? '' : 's'}, got ${p.positional.length}: usage: ${usage}`);
  return p.positional;
};
const noRest = (p: Parsed, usage: string): void => {
  if (p.rest.length) throw usageError(`unexpected arguments after --: usage: ${usage}`);
};
const enc = encodeURIComponent;

async function inspectMany(ep: Endpoint, kind: 'networks' | 'services' | 'nodes', p: Parsed, usage: string): Promise<string> {
  need(p, 1, usage);
  checkOutput(p);
  const out: object[] = [];
  for (const r of need(p, 1, usage)) out.push(await call<object>(ep, 'GET', `/v1/${kind}/${enc(r)}`));
  return renderObjects(p, out, OBJECT_FIELDS[kind.slice(0, -1) as 'network' | 'service' | 'node']);
}

async function removeMany(ep: Endpoint, kind: string, refs: string[], query = ''): Promise<string> {
  let text = '';
  for (const r of refs) {
    await call(ep, 'DELETE', `/v1/${kind}/${enc(r)}${query}`);
    text += `${r}\n`;
  }
  return text;
}

const LABEL_FLAG: FlagSpec = { name: 'label', repeat: true, value: 'KEY=VALUE', help: 'set a label (repeatable)' };

/** Flags `service create` and `service update` share. */
const SERVICE_FLAGS: FlagSpec[] = [
  { name: 'replicas', value: 'N', help: 'number of tasks (default 1)' },
  { name: 'publish', short: 'p', repeat: true, value: 'PORT', help: 'publish a port: PUBLISHED:TARGET[/udp], TARGET, or mode=host,published=P,target=T' },
  { name: 'network', repeat: true, value: 'NETWORK', help: 'attach to a network (repeatable)' },
  { name: 'network-alias', repeat: true, value: 'NETWORK=ALIAS', help: 'an extra DNS name of the service on a network' },
  { name: 'endpoint-mode', value: 'MODE', choices: ['vip', 'dnsrr'], help: 'vip (one virtual IP, default) or dnsrr (DNS round robin over the tasks)' },
  { name: 'env', short: 'e', repeat: true, value: 'KEY=VALUE', help: 'set an environment variable of the tasks' },
  LABEL_FLAG,
  { name: 'health-type', value: 'TYPE', choices: ['tcp', 'http', 'none'], help: 'health check: tcp connect or http GET' },
  { name: 'health-port', value: 'PORT', help: 'port the health check probes' },
  { name: 'health-path', value: 'PATH', help: 'path of an http health check (default /)' },
  { name: 'health-interval', value: 'MS', help: 'milliseconds between health checks (default 5000)' },
  { name: 'health-timeout', value: 'MS', help: 'milliseconds a health check may take (default 2000)' },
  { name: 'health-retries', value: 'N', help: 'consecutive failures before a task is unhealthy (default 3)' },
  { name: 'health-start-period', value: 'MS', help: 'milliseconds after start during which failures do not count' },
  { name: 'dns-option', repeat: true, value: 'OPT', help: 'resolv.conf option of the tasks (ndots:2, timeout:1, ...)' },
  { name: 'lb-scheduler', value: 'S', choices: ['rr', 'wrr', 'random', 'lc', 'sh', 'mh'], help: 'how the VIP picks a task (default rr)' },
  { name: 'affinity-timeout', value: 'SECONDS', help: 'keep a client on one task while it is idle less than this' },
  { name: 'drain-timeout', value: 'MS', help: 'how long a stopping task keeps its connections (default 10000)' },
  { name: 'traffic-policy', value: 'POLICY', choices: ['cluster', 'local'], help: 'published ports reach any task (cluster) or only the receiving node\'s (local)' },
];

/** The message for an image the manager cannot run (no container runtime yet). */
function imageRefused(image: string, command: string[]): ShoalError {
  const argv = [image, ...command].join(' ');
  return new ShoalError('NotImplemented', 'IMAGE_NOT_SUPPORTED',
    `this manager cannot run images yet (no container runtime): '${image}' was read as the IMAGE; to run a process, put it after --: shoal service create [OPTIONS] -- ${argv}`);
}

const commands: Record<string, Command> = {
  'network create': {
    usage: 'shoal network create [OPTIONS] NETWORK',
    summary: 'Create a network',
    flags: [
      { name: 'driver', short: 'd', value: 'DRIVER', choices: ['bridge', 'overlay', 'macvlan'], help: 'overlay (multi-host, default), bridge (one host) or macvlan (a LAN)' },
      { name: 'subnet', value: 'CIDR', help: 'IPv4 subnet (default: the next free one of the driver\'s pool)' },
      { name: 'gateway', value: 'IP', help: 'IPv4 gateway (default: the first address of the subnet)' },
      { name: 'ipv6', bool: true, help: 'also give the network an IPv6 subnet' },
      { name: 'subnet-v6', value: 'CIDR', help: 'IPv6 subnet (implies --ipv6)' },
      { name: 'gateway-v6', value: 'IP', help: 'IPv6 gateway' },
      { name: 'opt', short: 'o', repeat: true, value: 'KEY=VALUE', help: 'driver option: mtu, dns.ttl (all drivers), parent (macvlan)' },
      { name: 'internal', bool: true, help: 'no route out of the network: no NAT, nothing forwarded to or from other interfaces' },
      { name: 'attachable', bool: true, help: 'let standalone containers attach (recorded; Shoal has no standalone attachments yet)' },
      LABEL_FLAG, FORMAT_FLAG,
    ],
    run: async (ep, p) => {
      const [name] = exactly(p, 1, commands['network create']!.usage);
      noRest(p, commands['network create']!.usage);
      checkOutput(p);
      // Docker takes `-o encrypted` with no value: a bare key means an empty value.
      const opts = keyValues(all(p, 'opt').map((o) => (o.includes('=') || o === '' ? o : `${o}=`)), '-o');
      const body: Record<string, unknown> = { name, options: opts, labels: keyValues(all(p, 'label'), '--label') };
      for (const [flag, field] of [['driver', 'driver'], ['subnet', 'subnet'], ['gateway', 'gateway'], ['subnet-v6', 'subnetV6'], ['gateway-v6', 'gatewayV6']] as const) {
        const v = one(p, flag);
        if (v !== undefined) body[field] = v;
      }
      if (isSet(p, 'ipv6')) body['ipv6'] = true;
      if (isSet(p, 'internal')) body['internal'] = true;
      if (isSet(p, 'attachable')) body['attachable'] = true;
      const n = await call<Network>(ep, 'POST', '/v1/networks', body);
      return one(p, 'format') ? renderObjects(p, [n], OBJECT_FIELDS.network, true) : `${n.id}\n`;
    },
  },
  'network ls': {
    usage: 'shoal network ls [OPTIONS]', summary: 'List networks',
    flags: [FILTER_FLAG, FORMAT_FLAG, QUIET_FLAG],
    run: async (ep, p) => {
      exactly(p, 0, commands['network ls']!.usage);
      checkOutput(p, networkView.fields);
      const filters = parseFilters(all(p, 'filter'), NETWORK_FILTERS, 'network ls');
      const nets = applyFilters(await call<Network[]>(ep, 'GET', '/v1/networks'), filters, NETWORK_FILTERS);
      return renderList(p, nets, networkView);
    },
  },
  'network inspect': {
    usage: 'shoal network inspect [OPTIONS] NETWORK...', summary: 'Show networks in detail (JSON, or through --format)', flags: [FORMAT_FLAG], completes: 'network',
    run: (ep, p) => inspectMany(ep, 'networks', p, commands['network inspect']!.usage),
  },
  'network rm': {
    usage: 'shoal network rm NETWORK...', summary: 'Remove networks', flags: [], completes: 'network',
    run: (ep, p) => removeMany(ep, 'networks', need(p, 1, commands['network rm']!.usage)),
  },
  'network prune': {
    usage: 'shoal network prune [OPTIONS]', summary: 'Remove every network no service uses',
    flags: [{ name: 'force', short: 'f', bool: true, help: 'do not ask (Shoal never asks; accepted for Docker habits)' }, FORMAT_FLAG],
    run: async (ep, p) => {
      exactly(p, 0, commands['network prune']!.usage);
      checkOutput(p);
      const r = await call<{ removed: string[] }>(ep, 'POST', '/v1/networks/prune');
      return one(p, 'format') ? renderObjects(p, [r], ['removed'], true) : r.removed.length ? `Deleted Networks:\n${r.removed.join('\n')}\n` : '';
    },
  },

  'service create': {
    usage: 'shoal service create [OPTIONS] IMAGE [COMMAND] [ARG...]\n       shoal service create [OPTIONS] -- CMD [ARG...]',
    summary: 'Create a service from an image, or from a command run as a process (after --)',
    stopAtArgument: true,
    flags: [{ name: 'name', value: 'NAME', help: 'service name (default: a generated adjective-noun)' }, ...SERVICE_FLAGS, ...SWARM_CREATE_FLAGS, FORMAT_FLAG],
    run: async (ep, p) => {
      const usage = commands['service create']!.usage.replace(/\n\s+/, ' | ');
      const [image, ...args] = p.positional;
      if (image === undefined && p.rest.length === 0) throw usageError(`service create needs an IMAGE or -- CMD: usage: ${usage}`);
      if (image !== undefined && args[0] === '--') {
        throw usageError(`give either IMAGE [COMMAND] or -- CMD, not '${image} -- ...' (the service name goes in --name): usage: ${usage}`);
      }
      checkOutput(p);
      const body: Record<string, unknown> = { ...serviceBody(p) };
      Object.assign(body, swarmBody(p, body['env'] as Record<string, string> | undefined));
      if (image !== undefined) {
        body['image'] = image;
        if (args.length) body['command'] = args;
      } else body['command'] = p.rest;
      const given = one(p, 'name');
      for (let attempt = 0; ; attempt++) {
        const name = given ?? randomName();
        try {
          const s = await call<Service>(ep, 'POST', '/v1/services', { name, ...body });
          return one(p, 'format') ? renderObjects(p, [s], OBJECT_FIELDS.service, true) : `${s.id}\n`;
        } catch (e) {
          if (image !== undefined && isShoalError(e) && e.code === 'SHOAL_ERR_UNKNOWN_FIELD' && /'image'/.test(e.message)) throw imageRefused(image, args);
          // A generated name that happens to be taken: draw another.
          if (given === undefined && attempt < 5 && isShoalError(e) && e.code === 'SHOAL_ERR_NAME_IN_USE') continue;
          throw e;
        }
      }
    },
  },
  'service ls': {
    usage: 'shoal service ls [OPTIONS]', summary: 'List services', flags: [FILTER_FLAG, FORMAT_FLAG, QUIET_FLAG],
    run: async (ep, p) => {
      exactly(p, 0, commands['service ls']!.usage);
      checkOutput(p, serviceView([]).fields);
      const filters = parseFilters(all(p, 'filter'), SERVICE_FILTERS, 'service ls');
      const [services, tasks] = await Promise.all([call<Service[]>(ep, 'GET', '/v1/services'), call<Task[]>(ep, 'GET', '/v1/tasks')]);
      return renderList(p, applyFilters(services, filters, SERVICE_FILTERS), serviceView(tasks));
    },
  },
  'service ps': {
    usage: 'shoal service ps [OPTIONS] SERVICE...', summary: 'List the tasks of services', flags: [FILTER_FLAG, FORMAT_FLAG, QUIET_FLAG], completes: 'service',
    run: async (ep, p) => {
      const refs = need(p, 1, commands['service ps']!.usage);
      checkOutput(p, taskView([], []).fields);
      parseFilters(all(p, 'filter'), taskFilters([]), 'service ps');
      const [nodes, services] = await Promise.all([call<Node[]>(ep, 'GET', '/v1/nodes'), call<Service[]>(ep, 'GET', '/v1/services')]);
      const spec = taskFilters(nodes);
      const filters = parseFilters(all(p, 'filter'), spec, 'service ps');
      const tasks: Task[] = [];
      for (const r of refs) tasks.push(...await call<Task[]>(ep, 'GET', `/v1/tasks?service=${enc(r)}`));
      return renderList(p, applyFilters(tasks, filters, spec), taskView(nodes, services));
    },
  },
  'service logs': {
    usage: 'shoal service logs [OPTIONS] SERVICE', summary: 'Show the output of a service\'s tasks, merged by time', completes: 'service',
    flags: [
      { name: 'follow', short: 'f', bool: true, help: 'keep printing new output' },
      { name: 'tail', short: 'n', value: 'N', help: 'only the last N lines of each task (or all)' },
      { name: 'since', value: 'TIME', help: 'only lines since a time (2024-05-01T10:00:00Z) or a duration ago (10m)' },
      { name: 'timestamps', short: 't', bool: true, help: 'prefix each line with the time it was written' },
    ],
    run: async (ep, p, out) => {
      const [svc] = exactly(p, 1, commands['service logs']!.usage);
      const q = new URLSearchParams();
      if (isSet(p, 'follow')) q.set('follow', '1');
      const tail = one(p, 'tail');
      if (tail !== undefined && tail !== 'all') q.set('tail', String(intFlag(tail, '--tail', 0)));
      const since = one(p, 'since');
      if (since !== undefined) q.set('since', String(parseSince(since, '--since')));
      if (isSet(p, 'timestamps')) q.set('timestamps', '1');
      const qs = q.toString();
      await stream(ep, `/v1/services/${enc(svc ?? '')}/logs${qs ? `?${qs}` : ''}`, out);
      return '';
    },
  },
  'service inspect': {
    usage: 'shoal service inspect [OPTIONS] SERVICE...', summary: 'Show services in detail (JSON, through --format, or --pretty)', completes: 'service',
    flags: [{ name: 'pretty', bool: true, help: 'print a readable summary instead of JSON' }, FORMAT_FLAG],
    run: async (ep, p) => {
      if (!isSet(p, 'pretty')) return inspectMany(ep, 'services', p, commands['service inspect']!.usage);
      const refs = need(p, 1, commands['service inspect']!.usage);
      if (one(p, 'format') !== undefined) throw usageError('--pretty and --format do not go together');
      const nets = new Map((await call<Network[]>(ep, 'GET', '/v1/networks')).map((n) => [n.id, n.name]));
      const out: string[] = [];
      for (const r of refs) out.push(prettyService(await call<Service>(ep, 'GET', `/v1/services/${enc(r)}`), (id) => nets.get(id) ?? id));
      return out.join('\n');
    },
  },
  'service rm': {
    usage: 'shoal service rm SERVICE...', summary: 'Remove services (their tasks stop)', flags: [], completes: 'service',
    run: (ep, p) => removeMany(ep, 'services', need(p, 1, commands['service rm']!.usage)),
  },
  'service scale': {
    usage: 'shoal service scale SERVICE=REPLICAS...', summary: 'Change the number of tasks of services', flags: [], completes: 'service',
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
    usage: 'shoal service update [OPTIONS] SERVICE [-- CMD [ARG...]]', summary: 'Change a service (its tasks are replaced, as its update config says)', completes: 'service',
    flags: [...SERVICE_FLAGS, ...SWARM_UPDATE_FLAGS, { name: 'version', value: 'N', help: 'only update if the service is still at this version (from inspect)' }, FORMAT_FLAG],
    run: async (ep, p) => {
      const [svc] = exactly(p, 1, commands['service update']!.usage);
      checkOutput(p);
      // Docker's `service update --rollback`: the same as `service rollback`.
      if (isSet(p, 'rollback')) {
        if (p.rest.length) throw invalid(`--rollback takes no other change (got a command after --): roll back first, then update`);
        return commands['service rollback']!.run(ep, { ...p, flags: new Map([...p.flags].filter(([k]) => ['rollback', 'version', 'format'].includes(k) || rollbackOnly(k))) }, () => undefined);
      }
      const body = serviceBody(p);
      Object.assign(body, swarmBody(p, body['env'] as Record<string, string> | undefined), await editedFields(ep, p, svc ?? ''));
      if (p.rest.length) body['command'] = p.rest;
      const v = one(p, 'version');
      if (v !== undefined) {
        if (body['version'] !== undefined && body['version'] !== intFlag(v, '--version')) throw conflict(`service '${svc ?? ''}' is not at --version ${v}: it changed since you read it; inspect it again`);
        body['version'] = intFlag(v, '--version');
      }
      const s = await call<Service>(ep, 'POST', `/v1/services/${enc(svc ?? '')}/update`, body);
      return one(p, 'format') ? renderObjects(p, [s], OBJECT_FIELDS.service, true) : `${s.spec.name}\n`;
    },
  },
  'service rollback': {
    usage: 'shoal service rollback [OPTIONS] SERVICE', summary: 'Go back to a service\'s previous spec (as its rollback config says)', completes: 'service',
    flags: [{ name: 'version', value: 'N', help: 'only roll back if the service is still at this version (from inspect)' }, FORMAT_FLAG],
    run: async (ep, p) => {
      const [svc] = exactly(p, 1, commands['service rollback']!.usage);
      checkOutput(p);
      const v = one(p, 'version');
      const s = await call<Service>(ep, 'POST', `/v1/services/${enc(svc ?? '')}/rollback`, v !== undefined ? { version: intFlag(v, '--version') } : undefined);
      return one(p, 'format') ? renderObjects(p, [s], OBJECT_FIELDS.service, true) : `${s.spec.name}\n`;
    },
  },

  'node ls': {
    usage: 'shoal node ls [OPTIONS]', summary: 'List nodes', flags: [FILTER_FLAG, FORMAT_FLAG, QUIET_FLAG],
    run: async (ep, p) => {
      exactly(p, 0, commands['node ls']!.usage);
      checkOutput(p, nodeView.fields);
      const filters = parseFilters(all(p, 'filter'), NODE_FILTERS, 'node ls');
      const [nodes, managers] = await Promise.all([call<Node[]>(ep, 'GET', '/v1/nodes'), call<ManagerStatus[]>(ep, 'GET', '/v1/managers')]);
      const shown = applyFilters(nodes, filters, NODE_FILTERS);
      // Several managers (etcd): Docker's MANAGER STATUS column, managers without an agent too.
      if (managers.length && one(p, 'format') === undefined && !isSet(p, 'quiet')) return renderList(p, nodeRows(shown, managers), managerNodeView);
      return renderList(p, shown, nodeView);
    },
  },
  'node inspect': {
    usage: 'shoal node inspect [OPTIONS] NODE...', summary: 'Show nodes in detail (JSON, or through --format)', flags: [FORMAT_FLAG], completes: 'node',
    run: (ep, p) => inspectMany(ep, 'nodes', p, commands['node inspect']!.usage),
  },
  'node update': {
    usage: 'shoal node update [OPTIONS] NODE', summary: 'Drain, pause or label a node', completes: 'node',
    flags: [
      { name: 'availability', value: 'A', choices: ['active', 'drain', 'pause'], help: 'active, drain (tasks move away) or pause (no new tasks)' },
      { ...LABEL_FLAG, help: 'replace the node\'s labels (repeatable)' },
      { name: 'label-add', repeat: true, value: 'KEY[=VALUE]', help: 'add or change a label (repeatable)' },
      { name: 'label-rm', repeat: true, value: 'KEY', help: 'remove a label (repeatable)' },
      FORMAT_FLAG,
    ],
    run: async (ep, p) => {
      const [node] = exactly(p, 1, commands['node update']!.usage);
      checkOutput(p);
      const body: Record<string, unknown> = {};
      const a = one(p, 'availability');
      if (a !== undefined) body['availability'] = a;
      if (all(p, 'label').length) body['labels'] = keyValues(all(p, 'label'), '--label');
      // Docker's --label-add takes KEY=VALUE or a bare KEY (an empty value).
      if (all(p, 'label-add').length) body['labelAdd'] = keyValues(all(p, 'label-add').map((l) => (l.includes('=') ? l : `${l}=`)), '--label-add');
      if (all(p, 'label-rm').length) body['labelRm'] = all(p, 'label-rm');
      const n = await call<Node>(ep, 'POST', `/v1/nodes/${enc(node ?? '')}/update`, body);
      return one(p, 'format') ? renderObjects(p, [n], OBJECT_FIELDS.node, true) : `${n.name}\n`;
    },
  },
  'node rm': {
    usage: 'shoal node rm [OPTIONS] NODE...', summary: 'Remove nodes from the cluster', completes: 'node',
    flags: [{ name: 'force', short: 'f', bool: true, help: 'also remove a node that is still up' }],
    run: (ep, p) => removeMany(ep, 'nodes', need(p, 1, commands['node rm']!.usage), isSet(p, 'force') ? '?force=1' : ''),
  },
  'node prune': {
    usage: 'shoal node prune [OPTIONS]', summary: 'Remove every node that is down',
    flags: [{ name: 'force', short: 'f', bool: true, help: 'do not ask (Shoal never asks; accepted for Docker habits)' }, FORMAT_FLAG],
    run: async (ep, p) => {
      exactly(p, 0, commands['node prune']!.usage);
      checkOutput(p);
      const r = await call<{ removed: string[] }>(ep, 'POST', '/v1/nodes/prune');
      return one(p, 'format') ? renderObjects(p, [r], ['removed'], true) : r.removed.map((n) => `${n}\n`).join('');
    },
  },
};

/** `--rollback` takes no other change: any other flag is refused. */
function rollbackOnly(flag: string): boolean {
  if (['host', 'token', 'data-dir', 'quiet'].includes(flag)) return true;
  throw invalid(`--rollback takes no other change (got --${flag}): roll back first, then update`);
}

function intFlag(v: string, what: string, min = -Infinity): number {
  if (!/^-?\d+$/.test(v) || Number(v) < min) throw invalid(`${what} must be a whole number${min === 0 ? ' (0 or more)' : ''}, got '${v}'`);
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

const ALIASES: Record<string, string> = { list: 'ls', remove: 'rm' };

/** Looks up `group sub` (e.g. "service ls"); aliases `list`->`ls`, `remove`->`rm`. */
export function findCommand(group: string | undefined, sub: string | undefined): { key: string; cmd: Command } | undefined {
  const key = `${group ?? ''} ${ALIASES[sub ?? ''] ?? sub ?? ''}`;
  const cmd = commands[key] ?? SECURITY_COMMANDS[key];
  return cmd ? { key, cmd } : undefined;
}

/** Every command of the table, `group sub` -> command (help and completion read this). */
export function commandTable(): ReadonlyArray<[string, Command]> {
  return Object.entries({ ...commands, ...SECURITY_COMMANDS });
}

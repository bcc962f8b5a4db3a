/**
 * Validation of API request bodies: the one boundary where user input becomes model objects.
 * Every failure is an InvalidParameter ShoalError whose message names the field, what was wrong
 * and what is allowed. Unknown fields are refused (a typo must not be silently ignored).
 * Address semantics (CIDR syntax, overlap, gateway inside the subnet) are checked by IPAM
 * when the manager claims them.
 */
import { isIP } from 'node:net';
import { invalid, ShoalError } from '../../src/errors.js';
import type {
  HealthCheck, NetworkDriver, NodeAvailability, PortConfig, Protocol, PublishMode, ServiceLbFields, ServiceSpec,
} from '../../src/model/types.js';
import { parseSwarmCreate, parseSwarmUpdate, SWARM_FIELDS, type SwarmFieldsUpdate } from './validate-swarm.js';

type Json = unknown;
type Obj = Record<string, Json>;

function object(v: Json, what: string): Obj {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw invalid(`${what} must be a JSON object`);
  return v as Obj;
}

function onlyFields(o: Obj, allowed: readonly string[], what: string): void {
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k)) throw invalid(`unknown field '${k}' in ${what} (allowed: ${allowed.join(', ')})`, 'UNKNOWN_FIELD');
  }
}

function str(o: Obj, k: string, what: string): string | undefined {
  const v = o[k];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw invalid(`${what}.${k} must be a string`);
  return v;
}

function int(o: Obj, k: string, what: string, min: number, max: number): number | undefined {
  const v = o[k];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v)) throw invalid(`${what}.${k} must be an integer`);
  if (v < min || v > max) throw invalid(`${what}.${k} must be between ${min} and ${max}, got ${v}`);
  return v;
}

function bool(o: Obj, k: string, what: string): boolean | undefined {
  const v = o[k];
  if (v === undefined) return undefined;
  if (typeof v !== 'boolean') throw invalid(`${what}.${k} must be true or false`);
  return v;
}

function oneOf<T extends string>(o: Obj, k: string, what: string, values: readonly T[]): T | undefined {
  const v = str(o, k, what);
  if (v === undefined) return undefined;
  if (!(values as readonly string[]).includes(v)) throw invalid(`${what}.${k} must be one of ${values.join(', ')}, got '${v}'`);
  return v as T;
}

function stringMap(o: Obj, k: string, what: string): Record<string, string> {
  const v = o[k];
  if (v === undefined) return {};
  const m = object(v, `${what}.${k}`);
  const out: Record<string, string> = {};
  for (const [key, val] of Object.entries(m)) {
    if (typeof val !== 'string') throw invalid(`${what}.${k}.${key} must be a string`);
    if (key === '' || key.length > 256) throw invalid(`${what}.${k} has an empty or over-long key`);
    out[key] = val;
  }
  return out;
}

/** A name usable as a DNS label: services and networks are resolved by name. */
const NAME_RE = /^[a-zA-Z0-9](?:[a-zA-Z0-9_-]{0,61}[a-zA-Z0-9])?$/;

/** Checks `name` is a valid object name; `what` is e.g. "network name". */
export function validateName(name: unknown, what: string): string {
  if (typeof name !== 'string' || name === '') throw invalid(`${what} is required`);
  if (!NAME_RE.test(name)) {
    throw invalid(`${what} '${name}' is invalid: use 1-63 letters, digits, '-' or '_', starting and ending with a letter or digit`);
  }
  if (/^[0-9a-f]{16}$/.test(name)) throw invalid(`${what} '${name}' looks like an id; choose a name that is not 16 hex digits`);
  return name;
}

export interface NetworkCreate {
  name: string;
  driver: NetworkDriver;
  internal?: boolean;
  attachable?: boolean;
  subnet?: string;
  gateway?: string;
  ipv6: boolean;
  subnetV6?: string;
  gatewayV6?: string;
  options: Record<string, string>;
  labels: Record<string, string>;
}

/** Network option: TTL of the embedded DNS's answers for the network's names (default: the resolver's, a few seconds). */
export const DNS_TTL_OPTION = 'dns.ttl';

const NETWORK_FIELDS = ['name', 'driver', 'subnet', 'gateway', 'ipv6', 'subnetV6', 'gatewayV6', 'options', 'labels', 'internal', 'attachable'] as const;

/**
 * The `-o` options each driver reads (src/drivers/, and the embedded DNS for dns.ttl); anything
 * else would be stored and ignored, so it is refused.
 */
export const DRIVER_OPTIONS: Record<NetworkDriver, readonly string[]> = {
  bridge: ['mtu', DNS_TTL_OPTION],
  overlay: ['mtu', DNS_TTL_OPTION],
  macvlan: ['parent', 'mtu', DNS_TTL_OPTION],
};
/** Docker's names of options Shoal has under a shorter one (named in the refusal). */
const DOCKER_NAMES: Record<string, string> = { 'com.docker.network.driver.mtu': 'mtu' };
/** Options Docker users pass that Shoal will implement but does not yet. */
const NOT_YET: Record<string, string> = {
  encrypted: 'network option encrypted is not supported yet: overlay traffic is not encrypted (IPsec for overlays is planned); remove -o encrypted',
};

function checkDriverOptions(driver: NetworkDriver, options: Record<string, string>): void {
  for (const k of Object.keys(options)) {
    if (NOT_YET[k]) throw new ShoalError('NotImplemented', 'NOT_SUPPORTED_YET', NOT_YET[k]);
    if (!DRIVER_OPTIONS[driver].includes(k)) {
      const hint = DOCKER_NAMES[k] && DRIVER_OPTIONS[driver].includes(DOCKER_NAMES[k]) ? `; Docker's ${k} is ${DOCKER_NAMES[k]} here` : '';
      throw invalid(`network option '${k}' is not an option of the ${driver} driver (known: ${DRIVER_OPTIONS[driver].join(', ')})${hint}`, 'UNKNOWN_OPTION');
    }
  }
}

export function parseNetworkCreate(body: Json): NetworkCreate {
  const o = object(body, 'network');
  onlyFields(o, NETWORK_FIELDS, 'network');
  const name = validateName(o['name'], 'network name');
  if (name === 'ingress') throw invalid(`network name 'ingress' is reserved for the cluster's ingress network`);
  const driver = oneOf(o, 'driver', 'network', ['bridge', 'overlay', 'macvlan'] as const) ?? 'overlay';
  const options = stringMap(o, 'options', 'network');
  checkDriverOptions(driver, options);
  if (driver === 'macvlan' && !options['parent']) throw invalid(`macvlan network needs a parent interface: -o parent=<interface>`);
  const internal = bool(o, 'internal', 'network');
  if (internal && driver === 'macvlan') throw invalid(`--internal applies to bridge and overlay networks; a macvlan network is the LAN of its parent interface`);
  const attachable = bool(o, 'attachable', 'network');
  const subnet = str(o, 'subnet', 'network');
  const gateway = str(o, 'gateway', 'network');
  if (gateway !== undefined && subnet === undefined) throw invalid(`network.gateway needs network.subnet: a gateway is only accepted with an explicit subnet`);
  const subnetV6 = str(o, 'subnetV6', 'network');
  const gatewayV6 = str(o, 'gatewayV6', 'network');
  if (gatewayV6 !== undefined && subnetV6 === undefined) throw invalid(`network.gatewayV6 needs network.subnetV6`);
  const ipv6 = (bool(o, 'ipv6', 'network') ?? false) || subnetV6 !== undefined;
  if (options['mtu'] !== undefined) {
    const mtu = Number(options['mtu']);
    if (!Number.isInteger(mtu) || mtu < 1280 || mtu > 9000) throw invalid(`network option mtu must be an integer from 1280 to 9000, got '${options['mtu']}'`);
  }
  if (options[DNS_TTL_OPTION] !== undefined && !/^\d{1,4}$/.test(options[DNS_TTL_OPTION]) || Number(options[DNS_TTL_OPTION] ?? 0) > 3600) {
    throw invalid(`network option ${DNS_TTL_OPTION} (seconds the embedded DNS lets clients cache its answers) must be an integer from 0 to 3600, got '${options[DNS_TTL_OPTION]}'`);
  }
  const out: NetworkCreate = { name, driver, ipv6, options, labels: stringMap(o, 'labels', 'network') };
  if (internal) out.internal = true;
  if (attachable) out.attachable = true;
  if (subnet !== undefined) out.subnet = subnet;
  if (gateway !== undefined) out.gateway = gateway;
  if (subnetV6 !== undefined) out.subnetV6 = subnetV6;
  if (gatewayV6 !== undefined) out.gatewayV6 = gatewayV6;
  return out;
}

const PORT_FIELDS = ['target', 'published', 'protocol', 'mode', 'name'] as const;

export function parsePort(v: Json, i: number): PortConfig {
  const what = `ports[${i}]`;
  const o = object(v, what);
  onlyFields(o, PORT_FIELDS, what);
  const target = int(o, 'target', what, 1, 65535);
  if (target === undefined) throw invalid(`${what}.target is required (the port inside the task, 1-65535)`);
  const mode: PublishMode = oneOf(o, 'mode', what, ['ingress', 'host'] as const) ?? 'ingress';
  const published = int(o, 'published', what, 0, 65535) ?? 0;
  if (mode === 'host' && published === 0) throw invalid(`${what}: host-mode ports need an explicit published port`);
  const protocol: Protocol = oneOf(o, 'protocol', what, ['tcp', 'udp'] as const) ?? 'tcp';
  const name = str(o, 'name', what);
  if (name !== undefined && !/^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$/.test(name)) {
    throw invalid(`${what}.name '${name}' is invalid: 1-15 lowercase letters, digits or '-' (used in SRV names)`);
  }
  const p: PortConfig = { target, published, protocol, mode };
  if (name !== undefined) p.name = name;
  return p;
}

const HEALTH_FIELDS = ['type', 'port', 'path', 'intervalMs', 'timeoutMs', 'retries', 'startPeriodMs'] as const;

export function parseHealthCheck(v: Json): HealthCheck {
  const o = object(v, 'healthCheck');
  onlyFields(o, HEALTH_FIELDS, 'healthCheck');
  const type = oneOf(o, 'type', 'healthCheck', ['tcp', 'http', 'none'] as const) ?? 'tcp';
  const hc: HealthCheck = {
    type,
    intervalMs: int(o, 'intervalMs', 'healthCheck', 100, 3_600_000) ?? 5000,
    timeoutMs: int(o, 'timeoutMs', 'healthCheck', 10, 600_000) ?? 2000,
    retries: int(o, 'retries', 'healthCheck', 1, 100) ?? 3,
    startPeriodMs: int(o, 'startPeriodMs', 'healthCheck', 0, 3_600_000) ?? 0,
  };
  const port = int(o, 'port', 'healthCheck', 1, 65535);
  if (type !== 'none' && port === undefined) throw invalid(`healthCheck.port is required for a ${type} check`);
  if (port !== undefined) hc.port = port;
  const path = str(o, 'path', 'healthCheck');
  if (path !== undefined) {
    if (type !== 'http') throw invalid(`healthCheck.path only applies to http checks`);
    if (!path.startsWith('/')) throw invalid(`healthCheck.path must start with '/'`);
    hc.path = path;
  } else if (type === 'http') hc.path = '/';
  return hc;
}

export interface ServiceNetworkRef {
  /** Network name or id, resolved by the manager. */
  network: string;
  aliases: string[];
}

/** A service as requested: the spec, with networks named by the caller (resolved to ids by the manager). */
export type ServiceCreate = Omit<ServiceSpec, 'networks'> & { networks: ServiceNetworkRef[] };

const SERVICE_FIELDS = ['name', 'replicas', 'endpointMode', 'ports', 'networks', 'command', 'env', 'healthCheck', 'labels',
  'dnsOptions', 'scheduler', 'affinityTimeoutSeconds', 'drainTimeoutMs', 'trafficPolicy', ...SWARM_FIELDS] as const;
const SCHEDULERS = ['rr', 'wrr', 'random', 'lc', 'sh', 'mh'] as const;
const DNS_OPTION = /^(ndots:(\d|1[0-5])|timeout:([1-9]|[12]\d|30)|attempts:[1-5]|rotate|edns0|single-request|single-request-reopen|use-vc|no-aaaa|trust-ad)$/;

function parseDnsOptions(v: Json): string[] {
  if (!Array.isArray(v)) throw invalid(`service.dnsOptions must be a list of resolv.conf options, e.g. ["ndots:2"]`);
  return v.map((o: Json, i) => {
    if (typeof o !== 'string' || !DNS_OPTION.test(o)) {
      throw invalid(`service.dnsOptions[${i}] '${String(o)}' is not a resolv.conf option Shoal accepts (ndots:0-15, timeout:1-30, attempts:1-5, rotate, edns0, single-request, single-request-reopen, use-vc, no-aaaa, trust-ad)`);
    }
    return o;
  });
}

/** The load-balancing and DNS fields shared by create and update (only those present). */
function parseLbFields(o: Obj): ServiceLbFields {
  const out: ServiceLbFields = {};
  if (o['dnsOptions'] !== undefined) out.dnsOptions = parseDnsOptions(o['dnsOptions']);
  const sch = oneOf(o, 'scheduler', 'service', SCHEDULERS);
  if (sch !== undefined) out.scheduler = sch;
  const aff = int(o, 'affinityTimeoutSeconds', 'service', 0, 86_400);
  if (aff !== undefined) out.affinityTimeoutSeconds = aff;
  const drain = int(o, 'drainTimeoutMs', 'service', 0, 3_600_000);
  if (drain !== undefined) out.drainTimeoutMs = drain;
  const tp = oneOf(o, 'trafficPolicy', 'service', ['cluster', 'local'] as const);
  if (tp !== undefined) out.trafficPolicy = tp;
  return out;
}
export const MAX_REPLICAS = 1000;

function parseNetworks(v: Json): ServiceNetworkRef[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw invalid(`service.networks must be a list`);
  const seen = new Set<string>();
  return v.map((n: Json, i) => {
    const ref: ServiceNetworkRef = typeof n === 'string' ? { network: n, aliases: [] } : (() => {
      const o = object(n, `networks[${i}]`);
      onlyFields(o, ['network', 'aliases'], `networks[${i}]`);
      const network = str(o, 'network', `networks[${i}]`);
      if (!network) throw invalid(`networks[${i}].network is required`);
      const aliases = o['aliases'] ?? [];
      if (!Array.isArray(aliases)) throw invalid(`networks[${i}].aliases must be a list of names`);
      return { network, aliases: aliases.map((a: Json) => validateName(a, `networks[${i}] alias`)) };
    })();
    if (ref.network === '') throw invalid(`networks[${i}] is empty`);
    if (seen.has(ref.network)) throw invalid(`network '${ref.network}' is listed twice`);
    seen.add(ref.network);
    return ref;
  });
}

function parsePorts(v: Json): PortConfig[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw invalid(`service.ports must be a list`);
  const ports = v.map((p: Json, i) => parsePort(p, i));
  const seen = new Set<string>();
  for (const p of ports) {
    if (p.published === 0) continue;
    const k = `${p.published}/${p.protocol}`;
    if (seen.has(k)) throw invalid(`published port ${k} is listed twice`);
    seen.add(k);
  }
  return ports;
}

function parseCommand(v: Json): string[] {
  if (!Array.isArray(v) || v.length === 0) throw invalid(`service.command is required: the task's program and arguments, e.g. ["node", "server.js"]`);
  return v.map((a: Json, i) => {
    if (typeof a !== 'string') throw invalid(`service.command[${i}] must be a string`);
    return a;
  });
}

export function parseServiceCreate(body: Json): ServiceCreate {
  const o = object(body, 'service');
  onlyFields(o, SERVICE_FIELDS, 'service');
  const s: ServiceCreate = {
    name: validateName(o['name'], 'service name'),
    replicas: int(o, 'replicas', 'service', 0, MAX_REPLICAS) ?? 1,
    endpointMode: oneOf(o, 'endpointMode', 'service', ['vip', 'dnsrr'] as const) ?? 'vip',
    ports: parsePorts(o['ports']),
    networks: parseNetworks(o['networks']),
    command: parseCommand(o['command']),
    env: stringMap(o, 'env', 'service'),
    labels: stringMap(o, 'labels', 'service'),
    ...parseLbFields(o),
    ...parseSwarmCreate(o),
  };
  if (s.mode === 'global') s.replicas = 0;
  if (o['healthCheck'] !== undefined) s.healthCheck = parseHealthCheck(o['healthCheck']);
  if (s.endpointMode === 'dnsrr' && s.ports.some((p) => p.mode === 'ingress')) {
    throw invalid(`dnsrr services cannot publish ingress ports (there is no VIP to balance them); use mode=host or --endpoint-mode vip`);
  }
  return s;
}

/** A service update: every field optional; `version` (from inspect) guards against lost updates. */
export type ServiceUpdate = Partial<Omit<ServiceCreate, 'name' | 'mode' | keyof SwarmFieldsUpdate>> & SwarmFieldsUpdate & { version?: number };

export function parseServiceUpdate(body: Json): ServiceUpdate {
  const o = object(body, 'service update');
  onlyFields(o, ['version', ...SERVICE_FIELDS.filter((f) => f !== 'name')], 'service update');
  const u: ServiceUpdate = {};
  const version = int(o, 'version', 'service update', 1, Number.MAX_SAFE_INTEGER);
  if (version !== undefined) u.version = version;
  const replicas = int(o, 'replicas', 'service', 0, MAX_REPLICAS);
  if (replicas !== undefined) u.replicas = replicas;
  const mode = oneOf(o, 'endpointMode', 'service', ['vip', 'dnsrr'] as const);
  if (mode !== undefined) u.endpointMode = mode;
  if (o['ports'] !== undefined) u.ports = parsePorts(o['ports']);
  if (o['networks'] !== undefined) u.networks = parseNetworks(o['networks']);
  if (o['command'] !== undefined) u.command = parseCommand(o['command']);
  if (o['env'] !== undefined) u.env = stringMap(o, 'env', 'service');
  if (o['labels'] !== undefined) u.labels = stringMap(o, 'labels', 'service');
  if (o['healthCheck'] !== undefined) u.healthCheck = parseHealthCheck(o['healthCheck']);
  Object.assign(u, parseLbFields(o), parseSwarmUpdate(o));
  if (Object.keys(u).filter((k) => k !== 'version').length === 0) throw invalid(`service update changes nothing: give at least one field to change`);
  return u;
}

export function parseScale(body: Json): number {
  const o = object(body, 'scale request');
  onlyFields(o, ['replicas'], 'scale request');
  const r = int(o, 'replicas', 'scale request', 0, MAX_REPLICAS);
  if (r === undefined) throw invalid(`scale request needs replicas (0-${MAX_REPLICAS})`);
  return r;
}

/** A rollback request: an optional version (optimistic concurrency, as for an update). */
export function parseRollback(body: Json): { expectVersion?: number } {
  if (body === undefined) return {};
  const o = object(body, 'rollback request');
  onlyFields(o, ['version'], 'rollback request');
  const v = int(o, 'version', 'rollback request', 1, Number.MAX_SAFE_INTEGER);
  return v === undefined ? {} : { expectVersion: v };
}

/**
 * A node update. `labels` replaces every label; `labelAdd` / `labelRm` change some, applied
 * atomically by the manager (Docker's `node update --label-add K=V --label-rm K`).
 */
export interface NodeUpdate { availability?: NodeAvailability; labels?: Record<string, string>; labelAdd?: Record<string, string>; labelRm?: string[] }

const LABEL_KEY = /^[A-Za-z0-9]([A-Za-z0-9._/-]{0,253}[A-Za-z0-9])?$/;

function labelKeys(m: Record<string, string>, what: string): void {
  for (const k of Object.keys(m)) if (!LABEL_KEY.test(k)) throw invalid(`${what} '${k}' is not a valid label key: letters, digits, '.', '-', '_' and '/', starting and ending with a letter or digit`);
}

export function parseNodeUpdate(body: Json): NodeUpdate {
  const o = object(body, 'node update');
  onlyFields(o, ['availability', 'labels', 'labelAdd', 'labelRm'], 'node update');
  const u: NodeUpdate = {};
  const a = oneOf(o, 'availability', 'node', ['active', 'drain', 'pause'] as const);
  if (a !== undefined) u.availability = a;
  if (o['labels'] !== undefined) labelKeys(u.labels = stringMap(o, 'labels', 'node'), 'node label');
  if (o['labelAdd'] !== undefined) labelKeys(u.labelAdd = stringMap(o, 'labelAdd', 'node'), 'node label');
  if (o['labelRm'] !== undefined) {
    const rm = o['labelRm'];
    if (!Array.isArray(rm) || rm.some((k) => typeof k !== 'string' || k === '')) throw invalid(`node.labelRm must be a list of label keys`);
    u.labelRm = rm as string[];
  }
  if (u.labels !== undefined && (u.labelAdd !== undefined || u.labelRm !== undefined)) throw invalid(`node update takes either labels (replace all) or labelAdd/labelRm, not both`);
  const both = Object.keys(u.labelAdd ?? {}).find((k) => u.labelRm?.includes(k));
  if (both !== undefined) throw invalid(`node label '${both}' is both added and removed`);
  if (u.availability === undefined && u.labels === undefined && u.labelAdd === undefined && u.labelRm === undefined) {
    throw invalid(`node update changes nothing: give availability, labels, labelAdd or labelRm`);
  }
  return u;
}

export interface NodeJoin { name: string; address: string; boundPorts?: string[] }

/** The hello an agent sends when it joins. */
export function parseNodeJoin(body: Json): NodeJoin {
  const o = object(body, 'join request');
  onlyFields(o, ['type', 'name', 'address', 'revision', 'boundPorts'], 'join request');
  const name = validateName(o['name'], 'node name');
  const address = str(o, 'address', 'join request');
  if (!address || isIP(address) === 0) throw invalid(`join request needs the node's underlay address (an IPv4 or IPv6 address)`);
  const out: NodeJoin = { name, address };
  if (o['boundPorts'] !== undefined) out.boundPorts = parseBoundPorts(o['boundPorts']);
  return out;
}

const BOUND_PORT = /^([1-9]\d{0,4})\/(tcp|udp)$/;

/** The ports a node's processes listen on, as its agent reports them: `["8080/tcp", "53/udp"]`. */
export function parseBoundPorts(v: Json): string[] {
  if (!Array.isArray(v) || v.length > 131_072) throw invalid(`boundPorts must be a list of 'PORT/tcp|udp'`);
  const out = new Set<string>();
  for (const p of v) {
    const m = typeof p === 'string' ? BOUND_PORT.exec(p) : null;
    if (!m || Number(m[1]) > 65_535) throw invalid(`boundPorts: '${String(p)}' is not 'PORT/tcp' or 'PORT/udp'`);
    out.add(p as string);
  }
  return [...out].sort();
}

/**
 * Process composition: `shoal up` (manager + agent + embedded store in one process: the
 * embedded default), `shoal manager` and `shoal agent`. With `--store etcd://...` several
 * managers form one cluster (daemon/store.ts, manager/leader.ts).
 *
 * A manager announces itself in its data dir: `shoal.sock` (the API on a unix socket, mode
 * 0600), `manager.token` and `join.token` (0600, rewritten when rotated) and `ca.pem` (the
 * cluster CA, for tools like `curl --cacert`). The CLI on the same machine finds them through
 * `--data-dir` / `SHOAL_DATA_DIR`. Its `--listen` TCP listener serves TLS only (mesh/security).
 */
import { mkdirSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { chmod } from 'node:fs/promises';
import type { Server } from 'node:http';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { isIP } from 'node:net';
import type { Registry as PromRegistry } from 'prom-client';
import { createDnsMetrics } from '../../dns/index.js';
import { invalid, unavailable } from '../../src/errors.js';
import type { RequestObserver } from '../../src/store/etcd/index.js';
import type { Store } from '../../src/store/types.js';
import { Agent } from '../agent/index.js';
import { UserspaceLoadBalancer } from '../../ingress/userspace/index.js';
import { boundPorts } from '../agent/bound-ports.js';
import { recordFootprint, RecordingSysctl } from './footprint.js';
import { chooseDataplane, hostLocalnetGuard, hostPublishDataplane, loopbackWarning, type DataplaneChoice } from './dataplane.js';
import { instanceNames } from './instance.js';
import { tcpManagerUrl } from '../api/manager-url.js';
import { closeApiServer, createApiServer, listenApiServer } from '../api/server.js';
import { ManagerTls } from '../security/manager-tls.js';
import type { ClusterInfo } from '../manager/cluster.js';
import { openClusterStore } from './store.js';
import { Manager, type ManagerOptions } from '../manager/index.js';
import { createDrivers, hostDriverContext, type NetworkDriver } from '../../src/drivers/index.js';
import type { NetworkDriver as DriverName } from '../../src/model/types.js';

export const DEFAULT_DATA_DIR = '/var/lib/shoal';
export const socketPath = (dataDir: string): string => join(dataDir, 'shoal.sock');
export const tokenPath = (dataDir: string, which: 'manager' | 'join'): string => join(dataDir, `${which}.token`);
/** What an agent writes in its data dir about itself (`shoal info` reads it). */
export const NODE_INFO_FILE = 'node-info.json';

/** Node lease TTL with several managers on etcd: a dead node leaves DNS and LB everywhere within 3 s. */
export const HA_NODE_TTL_SECONDS = 2;

export interface ManagerProcessOptions {
  dataDir: string;
  /** Also listen on TCP, `host:port`. */
  listen?: string;
  /** Default 10 s on the embedded store, {@link HA_NODE_TTL_SECONDS} on etcd. */
  nodeLeaseTtlSeconds?: number;
  /** Subnet of the ingress network at cluster init (`--ingress-subnet`). */
  ingressSubnet?: string;
  /** `--store`: `embedded` (default) or `etcd://HOST:PORT[,...]`. */
  store?: string;
  /** This manager's name among several (default the host name). */
  name?: string;
  /** Session lease TTL of the leader election, s (default 1; etcd raises it to its minimum). */
  leaderTtlSeconds?: number;
  /** Timing of every etcd request (metrics). */
  storeObserver?: RequestObserver;
  /** Lifetime of the node certificates this manager issues, s (`--node-cert-ttl`; default 24 h). */
  nodeCertTtlSeconds?: number;
  log: (msg: string, err?: unknown) => void;
}

export interface Running {
  manager: Manager;
  store: Store;
  servers: Server[];
  /** The TCP URL (https) when listening on TCP. */
  url?: string;
  /** The TLS identity of the TCP listener. */
  tls?: ManagerTls;
  stop(): Promise<void>;
}

function parseListen(s: string): { host: string; port: number } {
  const m = /^(?:\[?([^\]]*)\]?:)?(\d+)$/.exec(s);
  const port = Number(m?.[2]);
  if (!m || !Number.isInteger(port) || port > 65535) throw unavailable(`--listen '${s}' is not host:port`);
  return { host: m[1] || '127.0.0.1', port };
}

export async function startManager(o: ManagerProcessOptions): Promise<Running> {
  mkdirSync(o.dataDir, { recursive: true, mode: 0o700 });
  const cs = await openClusterStore({ dataDir: o.dataDir, ...(o.store !== undefined ? { store: o.store } : {}), ...(o.storeObserver ? { observe: o.storeObserver } : {}) });
  const store = cs.store;
  const where = o.listen ? parseListen(o.listen) : undefined;
  const writeTokens = (c: ClusterInfo): void => {
    writeFileSync(tokenPath(o.dataDir, 'manager'), c.managerToken + '\n', { mode: 0o600 });
    writeFileSync(tokenPath(o.dataDir, 'join'), c.joinToken + '\n', { mode: 0o600 });
  };
  const mopts: ManagerOptions = { log: o.log, onTokens: writeTokens };
  if (o.nodeCertTtlSeconds !== undefined) mopts.nodeCertTtlSeconds = o.nodeCertTtlSeconds;
  const ttl = o.nodeLeaseTtlSeconds ?? (cs.shared ? HA_NODE_TTL_SECONDS : undefined);
  if (ttl !== undefined) mopts.nodeLeaseTtlSeconds = ttl;
  if (cs.shared) {
    mopts.ha = {
      name: o.name ?? hostname().split('.')[0] ?? 'manager',
      ...(where && where.port !== 0 ? { url: tcpManagerUrl(where.host, where.port) } : {}),
      ...(o.leaderTtlSeconds !== undefined ? { leaseTtlSeconds: o.leaderTtlSeconds } : {}),
    };
  }
  if (o.ingressSubnet !== undefined) mopts.ingressSubnet = o.ingressSubnet;
  const manager = new Manager(store, mopts);
  try {
    await manager.start();
  } catch (e) {
    await manager.stop().catch(() => undefined);
    await cs.close().catch(() => undefined);
    throw e;
  }
  const servers: Server[] = [];
  const sock = socketPath(o.dataDir);
  // A socket file left by a killed manager: the store's dir lock proved we are the only one.
  if (existsSync(sock)) rmSync(sock);
  const local = createApiServer(manager, { log: o.log });
  await listenApiServer(local, { path: sock });
  await chmod(sock, 0o600);
  servers.push(local);
  let url: string | undefined;
  let tls: ManagerTls | undefined;
  if (where) {
    tls = await ManagerTls.create(manager.security, { name: mopts.ha?.name ?? (hostname().split('.')[0] || 'manager'), listenHost: where.host, log: o.log });
    const tcp = createApiServer(manager, { log: o.log, tls });
    servers.push(tcp);
    url = tcpManagerUrl(where.host, await listenApiServer(tcp, where));
  }
  writeTokens(manager.cluster);
  const writeCa = (): void => writeFileSync(join(o.dataDir, 'ca.pem'), manager.security.trustedCas.join(''), { mode: 0o644 });
  writeCa();
  const offCa = manager.security.on((e) => { if (e.type === 'ca') writeCa(); });
  const running: Running = {
    manager, store, servers,
    async stop() {
      offCa();
      tls?.stop();
      for (const s of servers) await closeApiServer(s);
      await manager.stop();
      await cs.close();
      rmSync(sock, { force: true });
    },
  };
  if (url) running.url = url;
  if (tls) running.tls = tls;
  return running;
}

export interface AgentProcessOptions {
  managerUrl: string;
  /** The join token, or a function returning the current one (`shoal up`: it may be rotated). */
  joinToken: string | (() => string);
  /** Called when a manager refused this node for good (revoked, expired certificate). */
  onFatal?: (msg: string) => void;
  dataDir: string;
  name?: string;
  address?: string;
  /**
   * `netns`: every task in its own network namespace with an endpoint per network (needs root);
   * `none`: tasks share the agent's namespace. Default: netns when running as root.
   */
  isolation?: 'netns' | 'none';
  /** Prefix of the links and nft tables the agent owns (1-4 chars). Default `s` + 3 characters of the instance tag (mesh/daemon/instance.ts). */
  linkPrefix?: string;
  /** Prefix of the task namespaces' names. Default `shoal-<instance tag>-`. */
  netnsPrefix?: string;
  /** VXLAN UDP port of overlay networks (the same on every node). Default 4789. */
  vxlanPort?: number;
  /** DNS upstreams (`IP` or `IP:PORT`); default the host's /etc/resolv.conf. */
  dnsUpstreams?: string[];
  /** Where the DNS and LB metrics go (the node's /metrics registry). */
  metricsRegistry?: PromRegistry;
  /** VIP dataplane in task sandboxes (with netns isolation); default auto: ipvs, else nftables. */
  lbDataplane?: DataplaneChoice;
  /** Period of the agent's full resync (drift repair), ms; default 30 s. */
  resyncIntervalMs?: number;
  /** Heartbeat interval, ms; default a quarter of the node lease TTL the manager announces. */
  heartbeatIntervalMs?: number;
  log: (msg: string) => void;
}

function parseUpstream(s: string): { address: string; port: number } {
  const m = /^\[?([0-9a-fA-F:.]+?)\]?(?::(\d+))?$/.exec(s);
  if (!m || !m[1] || isIP(m[1]) === 0) throw invalid(`--dns-upstream '${s}' is not IP or IP:PORT`);
  return { address: m[1], port: m[2] ? Number(m[2]) : 53 };
}

export interface RunningAgent { agent: Agent; stop(): Promise<void> }

export async function startAgent(o: AgentProcessOptions): Promise<RunningAgent> {
  mkdirSync(o.dataDir, { recursive: true, mode: 0o700 });
  const name = o.name ?? hostname().split('.')[0] ?? 'node';
  const address = o.address ?? '127.0.0.1';
  const isolation = o.isolation ?? (process.getuid?.() === 0 ? 'netns' : 'none');
  const warn = loopbackWarning(address, o.address === undefined);
  if (warn) o.log(warn);
  // Names no other instance on this host uses (never adopt or delete another's objects).
  const names = isolation === 'netns' ? instanceNames({ dataDir: o.dataDir, name, ...(o.linkPrefix ? { linkPrefix: o.linkPrefix } : {}), ...(o.netnsPrefix ? { netnsPrefix: o.netnsPrefix } : {}) }) : undefined;
  if (names) o.log(`names: links and tables ${names.linkPrefix}*, namespaces ${names.netnsPrefix}* (instance ${names.tag}, ${o.dataDir}/instance.json)`);
  // Written before anything is made, so `shoal down` can take back whatever this start makes.
  const footprint = recordFootprint(o.dataDir, {
    isolation, linkPrefix: names?.linkPrefix ?? '', netnsPrefix: names?.netnsPrefix ?? '', etcNetnsDir: '/etc/netns',
    ...(names?.claimFile ? { claimFile: names.claimFile } : {}),
  });
  const host = names
    ? hostDriverContext({ prefix: names.linkPrefix, underlay: { address }, ...(o.vxlanPort ? { vxlanPort: o.vxlanPort } : {}) })
    : undefined;
  const ctx = host ? { ...host, sysctl: new RecordingSysctl(host.sysctl, o.dataDir, footprint) } : undefined;
  const lb = ctx ? await chooseDataplane(o.lbDataplane ?? 'auto', o.log) : undefined;
  if (lb) o.log(`load balancing: ${lb.kind} in every task sandbox and the ingress sandbox; published ports: nftables in the node's namespace`);
  else if (!ctx) o.log('load balancing: VIPs off (tasks share the agent\'s namespace: intercepting VIP traffic needs root and sandboxes); published ports: userspace proxy at the node address');
  const agent = new Agent({
    managerUrl: o.managerUrl, joinToken: o.joinToken, name, address, dataDir: o.dataDir, log: o.log, ...(o.onFatal ? { onFatal: o.onFatal } : {}),
    ...(ctx && names ? { network: { ctx, drivers: new Map(Object.entries(createDrivers(ctx))) as Map<DriverName, NetworkDriver>, nsPrefix: names.netnsPrefix } } : {}),
    dns: {
      ...(o.dnsUpstreams?.length ? { upstreams: o.dnsUpstreams.map(parseUpstream) } : {}),
      ...(o.metricsRegistry ? { metrics: createDnsMetrics(o.metricsRegistry) } : {}),
    },
    ...(lb ? { lb: { ...lb, ...(o.metricsRegistry ? { metricsRegistry: o.metricsRegistry } : {}) } } : {}),
    ...(lb && ctx ? { ingress: { host: hostPublishDataplane(ctx.prefix), localnet: hostLocalnetGuard(ctx.prefix, ctx.sysctl), make: lb.make, ...(o.metricsRegistry ? { metricsRegistry: o.metricsRegistry } : {}) } } : {}),
    // No sandboxes (no root, or --isolation none): published ports through the userspace proxy.
    ...(!ctx ? { ingress: { host: new UserspaceLoadBalancer({ log: (m, e) => o.log(e ? `${m}: ${String(e)}` : m) }), shared: true, ...(o.metricsRegistry ? { metricsRegistry: o.metricsRegistry } : {}) } } : {}),
    boundPorts: () => boundPorts(address),
    ...(o.resyncIntervalMs !== undefined ? { resyncIntervalMs: o.resyncIntervalMs } : {}),
    ...(o.heartbeatIntervalMs !== undefined ? { heartbeatIntervalMs: o.heartbeatIntervalMs } : {}),
  });
  agent.start();
  // For `shoal info` on this machine: which node this is and how it balances (the CLI reads it beside the tokens).
  writeFileSync(join(o.dataDir, NODE_INFO_FILE), JSON.stringify({
    name, address, isolation, vipDataplane: lb?.kind ?? 'none', publishedPorts: ctx ? 'nftables' : 'userspace', pid: process.pid,
  }) + '\n');
  return { agent, async stop() { await agent.stop(); await ctx?.close(); rmSync(join(o.dataDir, NODE_INFO_FILE), { force: true }); } };
}

#!/usr/bin/env node
/**
 * `shoal`: the CLI and the daemons. `runCli` is the whole program minus process exit, so tests
 * drive it in-process; errors become one sentence on stderr and exit status 1 (2 for usage).
 */
import { readFileSync } from 'node:fs';
import { WebSocket } from 'ws';
import { isShoalError, messageOf } from '../../src/errors.js';
import { parseObjectKey } from '../../src/model/keys.js';
import { DEFAULT_DATA_DIR, startAgent, startManager, tokenPath, type AgentProcessOptions } from '../daemon/index.js';
import { DATAPLANE_CHOICES, type DataplaneChoice } from '../daemon/dataplane.js';
import type { WatchFrame } from '../api/watch.js';
import { wsUrl } from '../agent/session.js';
import { parseManagerUrls } from '../api/manager-url.js';
import type { Agent } from '../agent/index.js';
import { registerAgentMetrics, registerManagerMetrics, Registry, serveMetrics } from '../metrics.js';
import { createStoreMetrics } from '../manager/metrics.js';
import { formatStoreLocation, parseStoreLocation } from '../../src/store/etcd/endpoints.js';
import { one, parseArgs, type FlagSpec } from './args.js';
import { resolveEndpoint } from './client.js';
import { findCommand, GLOBAL_FLAGS, usageText } from './commands.js';

export interface Io { out: (s: string) => void; err: (s: string) => void; env: NodeJS.ProcessEnv }

const DAEMON_FLAGS: FlagSpec[] = [
  { name: 'data-dir' }, { name: 'listen' }, { name: 'name' }, { name: 'address' }, { name: 'join' }, { name: 'token' }, { name: 'node-ttl' },
  { name: 'metrics-addr' }, { name: 'isolation' }, { name: 'link-prefix' }, { name: 'netns-prefix' }, { name: 'dns-upstream', repeat: true }, { name: 'vxlan-port' }, { name: 'lb-dataplane' },
  { name: 'resync-interval' }, { name: 'store' }, { name: 'leader-ttl' }, { name: 'heartbeat-interval' },
];

/** `30s`, `500ms`, `2m` or a bare number of seconds, as milliseconds (`--resync-interval`). */
export function parseDuration(v: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(v.trim());
  if (!m) throw new Error(`${flag} must be a duration like 30s, 500ms or 2m, got '${v}'`);
  const n = Number(m[1]);
  const ms = m[2] === 'ms' ? n : m[2] === 'm' ? n * 60_000 : n * 1000;
  if (!(ms >= 100) || ms > 86_400_000) throw new Error(`${flag} must be between 100ms and 24h, got '${v}'`);
  return Math.round(ms);
}

/** `--metrics-addr HOST:PORT` ('' turns it off); up and agent serve 127.0.0.1:9323 by default. */
async function startMetrics(p: ReturnType<typeof parseArgs>, fallback: string, reg: Registry, register: (reg: Registry) => void, io: Io): Promise<(() => Promise<void>) | undefined> {
  const addr = one(p, 'metrics-addr') ?? fallback;
  if (!addr) return undefined;
  const m = /^(.*):(\d+)$/.exec(addr);
  if (!m) throw new Error(`--metrics-addr '${addr}' is not HOST:PORT`);
  register(reg);
  const server = await serveMetrics(reg, m[1] || '127.0.0.1', Number(m[2]));
  const a = server.address();
  io.out(`metrics: http://${m[1] || '127.0.0.1'}:${typeof a === 'object' && a ? a.port : m[2]}/metrics\n`);
  return () => new Promise((r) => server.close(() => r()));
}

const USAGE = `usage: shoal COMMAND
  shoal up [--data-dir DIR] [--listen HOST:PORT] [--name NODE] [--address IP] [--metrics-addr HOST:PORT] [--store etcd://HOST:PORT,...]
  shoal manager [--data-dir DIR] [--listen HOST:PORT] [--metrics-addr HOST:PORT] [--store embedded|etcd://HOST:PORT[,HOST:PORT...]]
                [--name NAME] [--node-ttl SECONDS] [--leader-ttl SECONDS]
  shoal agent --join URL[,URL...] --token JOIN_TOKEN [--data-dir DIR] [--name NODE] [--address IP] [--metrics-addr HOST:PORT] [--heartbeat-interval 500ms]
              [--isolation netns|none] [--link-prefix sh] [--netns-prefix shoal-NODE-] [--dns-upstream IP[:PORT]]... [--vxlan-port 4789]
              [--lb-dataplane auto|ipvs|nftables|none] [--resync-interval 30s]
  shoal events
${usageText()}
global flags: --host URL (or SHOAL_HOST), --token T (or SHOAL_TOKEN), --data-dir DIR (or SHOAL_DATA_DIR), --format json
`;

/** Runs a daemon until SIGINT/SIGTERM; resolves with the exit code. */
async function daemon(kind: 'up' | 'manager' | 'agent', argv: string[], io: Io): Promise<number> {
  const p = parseArgs(argv, DAEMON_FLAGS);
  if (p.positional.length) throw new Error(`shoal ${kind} takes no arguments (got '${p.positional[0]}')`);
  const dataDir = one(p, 'data-dir') ?? io.env['SHOAL_DATA_DIR'] ?? DEFAULT_DATA_DIR;
  const log = (m: string, e?: unknown): void => io.err(`${new Date().toISOString()} ${m}${e ? `: ${messageOf(e)}` : ''}\n`);
  const ttl = seconds(one(p, 'node-ttl'), '--node-ttl');
  const leaderTtl = seconds(one(p, 'leader-ttl'), '--leader-ttl');
  const store = one(p, 'store');
  for (const f of kind === 'agent' ? ['store', 'leader-ttl', 'node-ttl', 'listen'] : kind === 'manager' ? ['heartbeat-interval'] : []) {
    if (p.flags.has(f)) throw new Error(`shoal ${kind} does not take --${f} (${kind === 'agent' ? 'managers do' : 'agents do'})`);
  }
  const stops: Array<() => Promise<void>> = [];
  // One registry per process: the agent's DNS registers on it as it starts.
  const reg = new Registry();
  if (kind === 'up' || kind === 'manager') {
    const listen = one(p, 'listen');
    const storeMetrics = createStoreMetrics(reg);
    const name = one(p, 'name');
    const m = await startManager({
      dataDir, log, storeObserver: storeMetrics, ...(listen ? { listen } : {}), ...(ttl ? { nodeLeaseTtlSeconds: ttl } : {}),
      ...(store !== undefined ? { store } : {}), ...(name ? { name } : {}), ...(leaderTtl ? { leaderTtlSeconds: leaderTtl } : {}),
    });
    stops.push(() => m.stop());
    io.out(`manager ready: unix://${dataDir}/shoal.sock${m.url ? ` and ${m.url}` : ''}${store ? ` (store ${formatStoreLocation(parseStoreLocation(store))})` : ''}\n`);
    if (kind === 'manager') io.out(`join token: ${m.manager.cluster.joinToken}\n`);
    let agent: Agent | undefined;
    if (kind === 'up') {
      const a = await startAgent({ managerUrl: `unix://${dataDir}/shoal.sock`, joinToken: m.manager.cluster.joinToken, dataDir: `${dataDir}/agent`, log, metricsRegistry: reg, ...nodeIdentity(p) });
      stops.unshift(() => a.stop());
      agent = a.agent;
    }
    const stopMetrics = await startMetrics(p, kind === 'up' ? '127.0.0.1:9323' : '', reg, () => {
      registerManagerMetrics(reg, m.manager);
      if (agent) registerAgentMetrics(reg, agent);
    }, io);
    if (stopMetrics) stops.unshift(stopMetrics);
  } else {
    const join = one(p, 'join');
    const token = one(p, 'token') ?? io.env['SHOAL_JOIN_TOKEN'];
    if (!join || !token) throw new Error('shoal agent needs --join URL and --token JOIN_TOKEN (printed by shoal manager)');
    parseManagerUrls(join, '--join'); // a bad list is refused before anything on the node is touched
    const a = await startAgent({ managerUrl: join, joinToken: token, dataDir, log, metricsRegistry: reg, ...nodeIdentity(p) });
    stops.push(() => a.stop());
    const stopMetrics = await startMetrics(p, '127.0.0.1:9323', reg, () => registerAgentMetrics(reg, a.agent), io);
    if (stopMetrics) stops.unshift(stopMetrics);
    io.out(`agent started, joining ${join}\n`);
  }
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  for (const s of stops) await s();
  return 0;
}

/** A whole number of seconds (1..3600) from a flag, or undefined when the flag is absent. */
function seconds(v: string | undefined, flag: string): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > 3600) throw new Error(`${flag} must be a whole number of seconds from 1 to 3600, got '${v}'`);
  return Number(v);
}

type AgentFlags = Pick<AgentProcessOptions, 'name' | 'address' | 'isolation' | 'linkPrefix' | 'netnsPrefix' | 'dnsUpstreams' | 'vxlanPort' | 'lbDataplane' | 'resyncIntervalMs' | 'heartbeatIntervalMs'>;

function nodeIdentity(p: ReturnType<typeof parseArgs>): AgentFlags {
  const out: AgentFlags = {};
  const name = one(p, 'name');
  const address = one(p, 'address');
  const isolation = one(p, 'isolation');
  if (name) out.name = name;
  if (address) out.address = address;
  if (isolation !== undefined) {
    if (isolation !== 'netns' && isolation !== 'none') throw new Error(`--isolation must be netns or none, got '${isolation}'`);
    out.isolation = isolation;
  }
  const lp = one(p, 'link-prefix');
  if (lp !== undefined) out.linkPrefix = lp;
  const np = one(p, 'netns-prefix');
  if (np !== undefined) out.netnsPrefix = np;
  const up = p.flags.get('dns-upstream');
  if (up) out.dnsUpstreams = up;
  const vx = one(p, 'vxlan-port');
  if (vx !== undefined) {
    if (!/^\d+$/.test(vx) || Number(vx) < 1 || Number(vx) > 65535) throw new Error(`--vxlan-port must be a port number (1-65535), got '${vx}'`);
    out.vxlanPort = Number(vx);
  }
  const dp = one(p, 'lb-dataplane');
  if (dp !== undefined) {
    if (!(DATAPLANE_CHOICES as readonly string[]).includes(dp)) throw new Error(`--lb-dataplane must be one of ${DATAPLANE_CHOICES.join(', ')}, got '${dp}'`);
    out.lbDataplane = dp as DataplaneChoice;
  }
  const ri = one(p, 'resync-interval');
  if (ri !== undefined) out.resyncIntervalMs = parseDuration(ri, '--resync-interval');
  const hb = one(p, 'heartbeat-interval');
  if (hb !== undefined) out.heartbeatIntervalMs = parseDuration(hb, '--heartbeat-interval');
  return out;
}

/** `shoal events`: the watch stream as one line per object change, until interrupted. */
function events(argv: string[], io: Io): Promise<number> {
  const p = parseArgs(argv, GLOBAL_FLAGS);
  const ep = resolveEndpoint(endpointFlags(p), io.env);
  return new Promise((resolve) => {
    const ws = new WebSocket(wsUrl(ep.url, '/v1/watch'), { headers: { authorization: `Bearer ${ep.token}` } });
    ws.on('message', (d) => {
      const f = JSON.parse(d.toString()) as WatchFrame;
      // On stderr, so scripts reading stdout see only events, but know when watching began.
      if (f.type === 'established') io.err(`watching cluster events from revision ${f.revision}\n`);
      if (f.type !== 'events') return;
      for (const e of f.events) {
        const o = parseObjectKey(e.key);
        if (!o) continue;
        const obj = e.value ? (JSON.parse(e.value) as { name?: string; spec?: { name?: string }; serviceName?: string; slot?: number }) : {};
        const name = obj.name ?? obj.spec?.name ?? (obj.serviceName ? `${obj.serviceName}.${obj.slot}` : '');
        io.out(`${new Date().toISOString()} ${o.kind.slice(0, -1)} ${e.type === 'put' ? 'update' : 'remove'} ${o.id}${name ? ` (name=${name})` : ''}\n`);
      }
    });
    ws.on('error', (e) => { io.err(`shoal: ${e.message}\n`); resolve(1); });
    ws.on('close', () => resolve(0));
    process.once('SIGINT', () => ws.close());
  });
}

function endpointFlags(p: ReturnType<typeof parseArgs>): { host?: string; token?: string; dataDir?: string } {
  const o: { host?: string; token?: string; dataDir?: string } = {};
  const host = one(p, 'host'), token = one(p, 'token'), dataDir = one(p, 'data-dir');
  if (host) o.host = host;
  if (token) o.token = token;
  if (dataDir) o.dataDir = dataDir;
  return o;
}

export async function runCli(argv: string[], io: Io): Promise<number> {
  const [group, sub, ...rest] = argv;
  try {
    if (!group || group === '--help' || group === 'help' || group === '-h') { io.out(USAGE); return group ? 0 : 2; }
    if (group === 'up' || group === 'manager' || group === 'agent') return await daemon(group, argv.slice(1), io);
    if (group === 'events') return await events(argv.slice(1), io);
    if (group === 'version') { io.out('shoal 0.1.0\n'); return 0; }
    if (group === 'join-token') {
      const p = parseArgs(argv.slice(1), GLOBAL_FLAGS);
      const dir = one(p, 'data-dir') ?? io.env['SHOAL_DATA_DIR'] ?? DEFAULT_DATA_DIR;
      io.out(readFileSync(tokenPath(dir, 'join'), 'utf8'));
      return 0;
    }
    const found = findCommand(group, sub);
    if (!found) {
      io.err(`shoal: unknown command '${[group, sub].filter(Boolean).join(' ')}'; run 'shoal --help' for the list\n`);
      return 2;
    }
    const p = parseArgs(rest, [...GLOBAL_FLAGS, ...found.cmd.flags]);
    const ep = resolveEndpoint(endpointFlags(p), io.env);
    io.out(await found.cmd.run(ep, p, io.out));
    return 0;
  } catch (e) {
    io.err(`shoal: ${isShoalError(e) || e instanceof Error ? messageOf(e) : String(e)}\n`);
    return 1;
  }
}

// Run when executed as the `shoal` binary (not when imported by tests).
if (process.argv[1] && /(?:^|\/)(?:main\.[jt]s|shoal)$/.test(process.argv[1])) {
  runCli(process.argv.slice(2), { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s), env: process.env })
    .then((code) => { process.exitCode = code; }, (e: unknown) => { process.stderr.write(`shoal: ${messageOf(e)}\n`); process.exitCode = 1; });
}

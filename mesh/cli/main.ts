#!/usr/bin/env node
/**
 * `shoal`: the CLI and the daemons. `runCli` is the whole program minus process exit, so tests
 * drive it in-process; errors become one sentence on stderr and exit status 1 (2 for usage).
 * Commands, help and completion come from the tables in commands.ts, system.ts and
 * daemon-help.ts (the daemons' flags are listed here).
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { isShoalError, messageOf } from '../../src/errors.js';
import { DEFAULT_DATA_DIR, startAgent, startManager, type AgentProcessOptions } from '../daemon/index.js';
import { DATAPLANE_CHOICES, type DataplaneChoice } from '../daemon/dataplane.js';
import { pidPath, procStartTime, type PidRecord } from '../daemon/down.js';
import { parseManagerUrls } from '../api/manager-url.js';
import type { Agent } from '../agent/index.js';
import { registerAgentMetrics, registerManagerMetrics, Registry, serveMetrics } from '../metrics.js';
import { createStoreMetrics } from '../manager/metrics.js';
import { formatStoreLocation, parseStoreLocation } from '../../src/store/etcd/endpoints.js';
import { VERSION } from '../version.js';
import { isUsageError, one, parseArgs, usageError, type FlagSpec } from './args.js';
import { resolveEndpoint } from './client.js';
import { commandTable, findCommand, GLOBAL_FLAGS } from './commands.js';
import { daemonCommands } from './daemon-help.js';
import { commandHelp, groupHelp, topHelp, wantsHelp, type CommandInfo } from './help.js';
import { SYSTEM_COMMANDS } from './system.js';

export interface Io { out: (s: string) => void; err: (s: string) => void; env: NodeJS.ProcessEnv }

const DAEMON_FLAGS: FlagSpec[] = [
  { name: 'data-dir' }, { name: 'listen' }, { name: 'name' }, { name: 'address' }, { name: 'join' }, { name: 'token' }, { name: 'node-ttl' },
  { name: 'metrics-addr' }, { name: 'isolation' }, { name: 'link-prefix' }, { name: 'netns-prefix' }, { name: 'dns-upstream', repeat: true }, { name: 'vxlan-port' }, { name: 'lb-dataplane' },
  { name: 'resync-interval' }, { name: 'ingress-subnet' }, { name: 'store' }, { name: 'leader-ttl' }, { name: 'heartbeat-interval' },
  { name: 'node-cert-ttl' },
];

type DaemonKind = 'up' | 'manager' | 'agent';
/** Daemon flags that only some daemons read; any other daemon refuses them (a flag always means what it says). */
const DAEMON_FLAG_KINDS: Readonly<Record<string, readonly DaemonKind[]>> = {
  'listen': ['up', 'manager'], 'node-ttl': ['up', 'manager'], 'node-cert-ttl': ['up', 'manager'], 'ingress-subnet': ['up', 'manager'], 'store': ['up', 'manager'], 'leader-ttl': ['up', 'manager'],
  'join': ['agent'], 'token': ['agent'], 'heartbeat-interval': ['up', 'agent'],
  'address': ['up', 'agent'], 'isolation': ['up', 'agent'], 'link-prefix': ['up', 'agent'], 'netns-prefix': ['up', 'agent'],
  'dns-upstream': ['up', 'agent'], 'vxlan-port': ['up', 'agent'], 'lb-dataplane': ['up', 'agent'], 'resync-interval': ['up', 'agent'],
};

/** `30s`, `500ms`, `2m` or a bare number of seconds, as milliseconds (`--resync-interval`). */
export function parseDuration(v: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(v.trim());
  if (!m) throw new Error(`${flag} must be a duration like 30s, 500ms or 2m, got '${v}'`);
  const n = Number(m[1]);
  const ms = m[2] === 'ms' ? n : m[2] === 'm' ? n * 60_000 : n * 1000;
  if (!(ms >= 100) || ms > 86_400_000) throw new Error(`${flag} must be between 100ms and 24h, got '${v}'`);
  return Math.round(ms);
}

/** `--node-cert-ttl`: `90s`, `30m`, `24h`, `7d` or bare seconds; 3 s to 365 days. */
export function parseCertTtl(v: string): number {
  const m = /^(\d+)(s|m|h|d)?$/.exec(v.trim());
  const n = m ? Number(m[1]) * ({ s: 1, m: 60, h: 3600, d: 86_400 }[m[2] as 's' | 'm' | 'h' | 'd'] ?? 1) : NaN;
  if (!(n >= 3 && n <= 365 * 86_400)) throw new Error(`--node-cert-ttl must be a lifetime like 24h, 30m or 90s, from 3s to 365d, got '${v}'`);
  return n;
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

/** Runs a daemon until SIGINT/SIGTERM; resolves with the exit code. */
async function daemon(kind: DaemonKind, argv: string[], io: Io): Promise<number> {
  const p = parseArgs(argv, DAEMON_FLAGS);
  if (p.positional.length) throw new Error(`shoal ${kind} takes no arguments (got '${p.positional[0]}')`);
  for (const f of p.flags.keys()) {
    const kinds = DAEMON_FLAG_KINDS[f];
    if (kinds && !kinds.includes(kind)) throw usageError(`--${f} is not a flag of shoal ${kind} (only of shoal ${kinds.join(' and shoal ')})`);
  }
  const dataDir = one(p, 'data-dir') ?? io.env['SHOAL_DATA_DIR'] ?? DEFAULT_DATA_DIR;
  const log = (m: string, e?: unknown): void => io.err(`${new Date().toISOString()} ${m}${e ? `: ${messageOf(e)}` : ''}\n`);
  const ttl = seconds(one(p, 'node-ttl'), '--node-ttl');
  const leaderTtl = seconds(one(p, 'leader-ttl'), '--leader-ttl');
  const store = one(p, 'store');
  const certTtl = one(p, 'node-cert-ttl');
  const nodeCertTtlSeconds = certTtl === undefined ? undefined : parseCertTtl(certTtl);
  announcePid(dataDir, kind);
  // A manager refusing this node for good (revoked, expired certificate) ends the agent: exit 1.
  let fatal: (msg: string) => void = () => undefined;
  const refusedForGood = new Promise<number>((resolve) => { fatal = (msg) => { log(msg); resolve(1); }; });
  const stops: Array<() => Promise<void>> = [];
  // One registry per process: the agent's DNS registers on it as it starts.
  const reg = new Registry();
  if (kind === 'up' || kind === 'manager') {
    const listen = one(p, 'listen');
    const ingressSubnet = one(p, 'ingress-subnet');
    const storeMetrics = createStoreMetrics(reg);
    const name = one(p, 'name');
    const m = await startManager({
      dataDir, log, storeObserver: storeMetrics, ...(listen ? { listen } : {}), ...(ttl ? { nodeLeaseTtlSeconds: ttl } : {}),
      ...(store !== undefined ? { store } : {}), ...(name ? { name } : {}), ...(leaderTtl ? { leaderTtlSeconds: leaderTtl } : {}),
      ...(ingressSubnet ? { ingressSubnet } : {}), ...(nodeCertTtlSeconds !== undefined ? { nodeCertTtlSeconds } : {}),
    });
    stops.push(() => m.stop());
    io.out(`manager ready: unix://${dataDir}/shoal.sock${m.url ? ` and ${m.url}` : ''}${store ? ` (store ${formatStoreLocation(parseStoreLocation(store))})` : ''}\n`);
    if (kind === 'manager') io.out(`join token: ${m.manager.cluster.joinToken}\n`);
    let agent: Agent | undefined;
    if (kind === 'up') {
      const a = await startAgent({ managerUrl: `unix://${dataDir}/shoal.sock`, joinToken: () => m.manager.cluster.joinToken, dataDir: `${dataDir}/agent`, log, metricsRegistry: reg, ...nodeIdentity(p) });
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
    const a = await startAgent({ managerUrl: join, joinToken: token, dataDir, log, metricsRegistry: reg, onFatal: (msg) => fatal(msg), ...nodeIdentity(p) });
    stops.push(() => a.stop());
    const stopMetrics = await startMetrics(p, '127.0.0.1:9323', reg, () => registerAgentMetrics(reg, a.agent), io);
    if (stopMetrics) stops.unshift(stopMetrics);
    io.out(`agent started, joining ${join}\n`);
  }
  const code = await Promise.race([refusedForGood, new Promise<number>((resolve) => {
    process.once('SIGINT', () => resolve(0));
    process.once('SIGTERM', () => resolve(0));
  })]);
  for (const s of stops) await s();
  rmSync(pidPath(dataDir), { force: true });
  return code;
}

/** `<data-dir>/shoal.pid`: how `shoal down` finds the daemon (the start time tells a reused pid apart). */
function announcePid(dataDir: string, kind: DaemonKind): void {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const rec: PidRecord = { pid: process.pid, start: procStartTime(process.pid) ?? '', kind };
  writeFileSync(pidPath(dataDir), JSON.stringify(rec) + '\n', { mode: 0o600 });
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

function endpointFlags(p: ReturnType<typeof parseArgs>): { host?: string; token?: string; dataDir?: string } {
  const o: { host?: string; token?: string; dataDir?: string } = {};
  const host = one(p, 'host'), token = one(p, 'token'), dataDir = one(p, 'data-dir');
  if (host) o.host = host;
  if (token) o.token = token;
  if (dataDir) o.dataDir = dataDir;
  return o;
}

/** Every command, for help and completion: the object commands, the system ones, the daemons. */
export function fullTable(): CommandInfo[] {
  const objects = commandTable().map(([name, c]): CommandInfo => ({ name, usage: c.usage, summary: c.summary ?? '', flags: c.flags, globals: GLOBAL_FLAGS, ...(c.completes ? { completes: c.completes } : {}) }));
  const system = Object.entries(SYSTEM_COMMANDS).map(([name, c]): CommandInfo => ({ name, usage: c.usage, summary: c.summary, flags: c.flags, ...(c.local ? {} : { globals: GLOBAL_FLAGS }) }));
  return [...objects, ...system, ...daemonCommands(DAEMON_FLAGS)];
}

/** The groups (`network`, `service`, ...): whatever the command table has commands under. */
const GROUPS = new Set(commandTable().filter(([k]) => k.includes(' ')).map(([k]) => k.split(' ')[0] as string));

/** What a usage error tells to read. */
class Usage extends Error {
  constructor(err: unknown, readonly helpFor: string) { super(messageOf(err)); }
}

/**
 * The whole CLI minus process exit. Exit status: 0 success; 1 error (the manager refused, it
 * cannot be reached, a value is wrong); 2 usage (unknown command or flag, a flag without its
 * value, wrong number of arguments). Errors are one line on stderr.
 */
export async function runCli(argv: string[], io: Io): Promise<number> {
  const [group, sub, ...rest] = argv;
  try {
    if (!group) { io.out(topHelp(fullTable(), GLOBAL_FLAGS)); return 2; }
    if (group === '--help' || group === '-h' || group === 'help') {
      if (group === 'help' && sub) return await runCli([...argv.slice(1), '--help'], io);
      io.out(topHelp(fullTable(), GLOBAL_FLAGS));
      return 0;
    }
    if (group === '--version' || group === '-v') { io.out(`shoal version ${VERSION}\n`); return 0; }
    const daemonInfo = daemonCommands(DAEMON_FLAGS).find((c) => c.name === group);
    if (daemonInfo) {
      if (wantsHelp(argv.slice(1), DAEMON_FLAGS)) { io.out(commandHelp(daemonInfo)); return 0; }
      return await usageBoundary(group, () => daemon(group as 'up' | 'manager' | 'agent', argv.slice(1), io));
    }
    const system = SYSTEM_COMMANDS[group];
    if (system) {
      const flags = [...(system.local ? [] : GLOBAL_FLAGS), ...system.flags];
      if (wantsHelp(argv.slice(1), flags)) { io.out(commandHelp(fullTable().find((c) => c.name === group) as CommandInfo)); return 0; }
      const p = await usageBoundary(group, async () => parseArgs(argv.slice(1), flags));
      return await usageBoundary(group, () => system.run({ p, io, endpoint: () => resolveEndpoint(endpointFlags(p), io.env), table: fullTable, globals: GLOBAL_FLAGS }));
    }
    if (!GROUPS.has(group)) throw new Usage(usageError(`unknown command '${group}'`), '');
    if (!sub || sub === '--help' || sub === '-h') {
      io.out(groupHelp(group, fullTable()));
      return sub ? 0 : 2;
    }
    const found = findCommand(group, sub);
    if (!found) throw new Usage(usageError(`unknown command '${group} ${sub}'`), group);
    const { key, cmd } = found;
    const flags = [...GLOBAL_FLAGS, ...cmd.flags];
    if (wantsHelp(rest, flags, cmd.stopAtArgument)) { io.out(commandHelp(fullTable().find((c) => c.name === key) as CommandInfo)); return 0; }
    const p = await usageBoundary(key, async () => parseArgs(rest, flags, { stopAtArgument: cmd.stopAtArgument === true }));
    const ep = resolveEndpoint(endpointFlags(p), io.env);
    io.out(await usageBoundary(key, () => cmd.run(ep, p, io.out)));
    return 0;
  } catch (e) {
    if (e instanceof Usage) {
      io.err(`shoal: ${e.message} (see 'shoal ${e.helpFor ? `${e.helpFor} ` : ''}--help')\n`);
      return 2;
    }
    io.err(`shoal: ${isShoalError(e) || e instanceof Error ? messageOf(e) : String(e)}\n`);
    return 1;
  }
}

/** Runs `fn`; a usage error it throws becomes a {@link Usage} pointing at `command`'s help. */
async function usageBoundary<T>(command: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (isUsageError(e)) throw new Usage(e, command);
    throw e;
  }
}

// Run when executed as the `shoal` binary (not when imported by tests).
if (process.argv[1] && /(?:^|\/)(?:main\.[jt]s|shoal)$/.test(process.argv[1])) {
  runCli(process.argv.slice(2), { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s), env: process.env })
    .then((code) => { process.exitCode = code; }, (e: unknown) => { process.stderr.write(`shoal: ${messageOf(e)}\n`); process.exitCode = 1; });
}

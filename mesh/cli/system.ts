/**
 * The top-level commands that are not about one kind of object: `info`, `events`, `version`,
 * `completion`, `down`, `join-token`. Like the table in commands.ts, each has a usage, a summary and
 * flags with help lines; help.ts and completion.ts read them the same way.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ShoalError } from '../../src/errors.js';
import { DEFAULT_DATA_DIR, NODE_INFO_FILE, tokenPath } from '../daemon/index.js';
import { formatDown, shoalDown } from '../daemon/down.js';
import { VERSION } from '../version.js';
import { one, usageError, type FlagSpec, type Parsed } from './args.js';
import { call, type Endpoint } from './client.js';
import { bashCompletion, zshCompletion } from './completion.js';
import { EVENTS_FLAGS, runEvents } from './events.js';
import type { CommandInfo } from './help.js';
import { FORMAT_FLAG, formatOf, renderObjects } from './output.js';

export interface SystemIo { out: (s: string) => void; err: (s: string) => void; env: NodeJS.ProcessEnv }

/** What a system command gets: the parse, the streams, and the manager (resolved on first use). */
export interface SystemContext { p: Parsed; io: SystemIo; endpoint: () => Endpoint; table: () => readonly CommandInfo[]; globals: readonly FlagSpec[] }

export interface SystemCommand {
  usage: string;
  summary: string;
  flags: FlagSpec[];
  /** Resolves the exit status. */
  run: (ctx: SystemContext) => Promise<number>;
  /** Takes no manager flags (--host, --token). */
  local?: boolean;
}

const dataDirOf = (p: Parsed, env: NodeJS.ProcessEnv): string => one(p, 'data-dir') ?? env['SHOAL_DATA_DIR'] ?? DEFAULT_DATA_DIR;

function noArgs(p: Parsed, usage: string): void {
  if (p.positional.length || p.rest.length) throw usageError(`expected no arguments, got '${[...p.positional, ...p.rest][0]}': usage: ${usage}`);
}

/** What the agent on this machine wrote about itself (`shoal up`: <dir>/agent, `shoal agent`: <dir>). */
function thisNode(dataDir: string): Record<string, unknown> | undefined {
  for (const f of [join(dataDir, 'agent', NODE_INFO_FILE), join(dataDir, NODE_INFO_FILE)]) {
    if (!existsSync(f)) continue;
    try {
      const o = JSON.parse(readFileSync(f, 'utf8')) as Record<string, unknown>;
      let running = false;
      try { process.kill(Number(o['pid']), 0); running = true; } catch { running = false; }
      return { ...o, running, file: f };
    } catch {
      return undefined;
    }
  }
  return undefined;
}

const counts = (o: unknown): string => Object.entries((o ?? {}) as Record<string, number>).map(([k, v]) => `${k} ${v}`).join(', ');

function infoText(i: Record<string, unknown>): string {
  const get = (path: string): unknown => path.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], i);
  const lines: Array<[string, string]> = [
    ['Cluster', `${String(get('clusterId'))} (created ${String(get('createdAt'))})`],
    ['Version', `manager ${String(get('version'))}, CLI ${VERSION}`],
    ['Store revision', String(get('revision'))],
    ['Managers', `the one answering${(get('manager.managersOnNodes') as string[] | undefined)?.length ? `; beside the agent of ${(get('manager.managersOnNodes') as string[]).join(', ')}` : ''}`],
    ['Nodes', `${String(get('nodes.total'))} (${counts(get('nodes.byState'))}${get('nodes.total') ? `; ${counts(get('nodes.byAvailability'))}; ${counts(get('nodes.byRole'))}` : ''})`],
    ['Networks', `${String(get('networks.total'))}${get('networks.total') ? ` (${counts(get('networks.byDriver'))})` : ''}`],
    ['Services', String(get('services.total'))],
    ['Tasks', `${String(get('tasks.total'))}${get('tasks.total') ? ` (${counts(get('tasks.byState'))})` : ''}`],
  ];
  const n = i['thisNode'] as Record<string, unknown> | undefined;
  lines.push(['This node', n
    ? `${String(n['name'])} at ${String(n['address'])}, isolation ${String(n['isolation'])}, VIP dataplane ${String(n['vipDataplane'])}, published ports ${String(n['publishedPorts'])}${n['running'] ? '' : ' (its agent is not running)'}`
    : 'no agent on this machine (nothing in the data dir)']);
  const w = Math.max(...lines.map(([k]) => k.length)) + 2;
  return lines.map(([k, v]) => `${`${k}:`.padEnd(w)}${v}\n`).join('');
}

export const SYSTEM_COMMANDS: Record<string, SystemCommand> = {
  info: {
    usage: 'shoal info [OPTIONS]', summary: 'Show the cluster: managers, nodes, networks, services and tasks by state, this node',
    flags: [FORMAT_FLAG],
    run: async ({ p, io, endpoint }) => {
      noArgs(p, SYSTEM_COMMANDS['info']!.usage);
      const f = formatOf(p);
      const info = await call<Record<string, unknown>>(endpoint(), 'GET', '/v1/info');
      const node = thisNode(dataDirOf(p, io.env));
      const full = node ? { ...info, thisNode: node } : info;
      io.out(f.kind === 'default' ? infoText(full) : renderObjects(p, [full], Object.keys(full), true));
      return 0;
    },
  },
  events: {
    usage: 'shoal events [OPTIONS]', summary: 'Print cluster changes as they happen (create, update, remove)', flags: EVENTS_FLAGS,
    run: ({ p, io, endpoint }) => runEvents(endpoint(), p, io),
  },
  version: {
    usage: 'shoal version [OPTIONS]', summary: 'Show the version of the CLI and of the manager', flags: [FORMAT_FLAG],
    run: async ({ p, io, endpoint }) => {
      noArgs(p, SYSTEM_COMMANDS['version']!.usage);
      let server: string;
      try {
        server = String((await call<{ version?: string }>(endpoint(), 'GET', '/v1/info')).version);
      } catch (e) {
        server = `unknown (${e instanceof Error ? e.message : String(e)})`;
      }
      const v = { Client: { Version: VERSION, Node: process.version }, Server: { Version: server } };
      io.out(formatOf(p).kind === 'default' ? `Client: shoal ${VERSION} (node ${process.version})\nServer: ${server}\n` : renderObjects(p, [v], ['Client', 'Server'], true));
      return 0;
    },
  },
  completion: {
    usage: 'shoal completion bash|zsh', summary: 'Print a shell completion script (source <(shoal completion bash))', flags: [], local: true,
    run: async ({ p, io, table }) => {
      const [shell, ...extra] = p.positional;
      if (shell === undefined || extra.length) throw usageError(`expected the shell's name (bash or zsh): usage: ${SYSTEM_COMMANDS['completion']!.usage}`);
      if (shell !== 'bash' && shell !== 'zsh') throw usageError(`completion for '${shell}' is not available (bash, zsh)`);
      io.out(shell === 'bash' ? bashCompletion(table()) : zshCompletion(table()));
      return 0;
    },
  },
  down: {
    usage: 'shoal down [OPTIONS]', local: true,
    summary: 'Stop the local daemon and every task it ran; remove every namespace, link, nft table and sysctl change Shoal made here (SIGTERM alone keeps them running)',
    flags: [{ name: 'data-dir', value: 'DIR', help: 'the daemon\'s data dir (or SHOAL_DATA_DIR; default /var/lib/shoal)' }],
    run: async ({ p, io }) => {
      noArgs(p, SYSTEM_COMMANDS['down']!.usage);
      const r = await shoalDown(dataDirOf(p, io.env));
      io.out(formatDown(r));
      return r.errors.length ? 1 : 0;
    },
  },
  'join-token': {
    usage: 'shoal join-token [OPTIONS]', summary: 'Print the token agents join with (read from the manager\'s data dir)', local: true,
    flags: [{ name: 'data-dir', value: 'DIR', help: 'the manager\'s data dir (or SHOAL_DATA_DIR; default /var/lib/shoal)' }],
    run: async ({ p, io }) => {
      noArgs(p, SYSTEM_COMMANDS['join-token']!.usage);
      const dir = dataDirOf(p, io.env);
      let token: string;
      try {
        token = readFileSync(tokenPath(dir, 'join'), 'utf8');
      } catch {
        throw new ShoalError('Unavailable', 'NO_MANAGER', `no join token in ${dir}: run this where shoal up or shoal manager keeps its data (--data-dir or SHOAL_DATA_DIR)`);
      }
      io.out(token);
      return 0;
    },
  },
};

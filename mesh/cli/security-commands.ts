/**
 * `shoal token rotate join|manager`, `shoal ca inspect`, `shoal ca rotate`: the commands of
 * cluster security, in the shape of commands.ts's table (which includes them).
 */
import { X509Certificate } from 'node:crypto';
import type { CaStatus } from '../security/index.js';
import { isSet, one, usageError, type Parsed } from './args.js';
import { call, type Endpoint } from './client.js';
import type { Command } from './commands.js';
import { FORMAT_FLAG, renderObjects } from './output.js';

const caText = (s: CaStatus): string => {
  const c = new X509Certificate(s.certificate);
  const waiting = s.nodes.filter((n) => !n.onCurrentCa);
  return [
    `CA:           ${c.subject.replace(/\n/g, ', ')} (generation ${s.generation})`,
    `Fingerprint:  sha256 (base32) ${s.fingerprint}`,
    `Valid until:  ${s.notAfter}`,
    `Rotation:     ${s.rotating ? `under way since ${s.startedAt ?? '?'}: ${s.nodes.length - waiting.length}/${s.nodes.length} ready nodes on the new CA${waiting.length ? ` (waiting for ${waiting.map((n) => n.name).join(', ')})` : ''}` : 'none'}`,
    ...s.nodes.map((n) => `  ${n.name.padEnd(20)} ${n.onCurrentCa ? 'current CA ' : 'old CA     '} certificate until ${n.certificateNotAfter ?? '?'}`),
    '',
  ].join('\n');
};

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export const SECURITY_COMMANDS: Record<string, Command> = {
  'token rotate': {
    usage: 'shoal token rotate join|manager',
    summary: 'Replace the join or manager token (the old one is refused from now on); prints the new one',
    flags: [],
    run: async (ep: Endpoint, p: Parsed) => {
      const [which, ...extra] = p.positional;
      if ((which !== 'join' && which !== 'manager') || extra.length) throw usageError('say which token: shoal token rotate join|manager');
      const r = await call<{ token: string }>(ep, 'POST', '/v1/tokens/rotate', { which });
      return `${r.token}\n`;
    },
  },
  'ca inspect': {
    usage: 'shoal ca inspect [OPTIONS]', summary: 'Show the cluster CA, its fingerprint and a rotation\'s progress',
    flags: [FORMAT_FLAG],
    run: async (ep: Endpoint, p: Parsed) => {
      if (p.positional.length) throw usageError('shoal ca inspect takes no arguments');
      const s = await call<CaStatus>(ep, 'GET', '/v1/ca');
      return one(p, 'format') ? renderObjects(p, [s], Object.keys(s), true) : caText(s);
    },
  },
  'ca rotate': {
    usage: 'shoal ca rotate [OPTIONS]',
    summary: 'Issue a new cluster CA and move every node to it without downtime (both CAs are trusted meanwhile)',
    flags: [
      { name: 'detach', short: 'd', bool: true, help: 'return once the rotation started, without waiting for every node' },
      { name: 'timeout', value: 'SECONDS', help: 'how long to wait for every ready node to renew (default 120)' },
    ],
    run: async (ep: Endpoint, p: Parsed, out) => {
      if (p.positional.length) throw usageError('shoal ca rotate takes no arguments');
      const timeout = Number(one(p, 'timeout') ?? 120);
      if (!Number.isInteger(timeout) || timeout < 1) throw usageError(`--timeout must be a whole number of seconds, got '${one(p, 'timeout') ?? ''}'`);
      const started = await call<CaStatus>(ep, 'POST', '/v1/ca/rotate');
      out(`CA rotation started: generation ${started.generation}, fingerprint ${started.fingerprint}\n`);
      if (isSet(p, 'detach')) return '';
      const until = Date.now() + timeout * 1000;
      let last = '';
      for (;;) {
        const s = await call<CaStatus>(ep, 'GET', '/v1/ca');
        if (!s.rotating) return `CA rotation done: every ready node (${s.nodes.length}) holds a certificate from generation ${s.generation}; new tokens: shoal join-token\n`;
        const line = `${s.nodes.filter((n) => n.onCurrentCa).length}/${s.nodes.length} nodes renewed\n`;
        if (line !== last) out(line);
        last = line;
        if (Date.now() > until) throw new Error(`the rotation is still waiting for ${s.nodes.filter((n) => !n.onCurrentCa).map((n) => n.name).join(', ')} after ${timeout} s (shoal ca inspect shows it; it finishes by itself when they renew)`);
        await sleep(250);
      }
    },
  },
};

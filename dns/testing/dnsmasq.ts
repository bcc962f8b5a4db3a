/**
 * Starts a real dnsmasq (Debian `dnsmasq`) as a test upstream or benchmark peer: loopback only,
 * no host resolv.conf or /etc/hosts, no config files, pid file and logs in a temp directory,
 * and stopped by its own PID (never by name).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildQuery, udpExchange } from './client.js';

/** A running dnsmasq. */
export interface Dnsmasq {
  readonly address: string;
  readonly port: number;
  readonly pid: number;
  /** Temp directory holding the pid file, hosts file and log. */
  readonly dir: string;
  /** Stops this dnsmasq (SIGTERM to its PID, SIGKILL after 2 s) and removes its directory. Idempotent. */
  stop(): Promise<void>;
}

/** Options of {@link startDnsmasq}. */
export interface DnsmasqOptions {
  /** Loopback address to listen on. Default 127.0.0.1. */
  address?: string;
  /** Port; default a free one. */
  port?: number;
  /** Lines of a hosts file (`198.51.100.1 big.test`) served as local records. */
  hosts?: string[];
  /** Extra flags (`--host-record=...`, `--local=/test/`, `--local-ttl=60`). */
  args?: string[];
}

/** A port free for both UDP and TCP right now on `address` (best effort: callers retry). */
export async function freePort(address = '127.0.0.1'): Promise<number> {
  const sock = createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    sock.once('error', reject);
    sock.bind(0, address, () => resolve());
  });
  const port = sock.address().port;
  await new Promise<void>((resolve) => sock.close(() => resolve()));
  return port;
}

/** Starts dnsmasq and waits (polling, 10 s deadline) until it answers. */
export async function startDnsmasq(o: DnsmasqOptions = {}): Promise<Dnsmasq> {
  const address = o.address ?? '127.0.0.1';
  const dir = await mkdtemp(join(tmpdir(), 'shoal-dnsmasq-'));
  const hostsFile = join(dir, 'hosts');
  await writeFile(hostsFile, `${(o.hosts ?? []).join('\n')}\n`);
  let lastErr = '';
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = o.port ?? (await freePort(address));
    // /usr/sbin is not on every user's PATH; Debian's dnsmasq-base installs the binary there.
    const child: ChildProcess = spawn(
      existsSync('/usr/sbin/dnsmasq') ? '/usr/sbin/dnsmasq' : 'dnsmasq',
      [
        '--keep-in-foreground',
        '--conf-file=/dev/null',
        '--no-resolv',
        '--no-hosts',
        `--addn-hosts=${hostsFile}`,
        `--listen-address=${address}`,
        '--bind-interfaces',
        `--port=${port}`,
        `--pid-file=${join(dir, 'dnsmasq.pid')}`,
        '--user=root',
        '--log-facility=-',
        ...(o.args ?? []),
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    child.stderr?.on('data', (d: Buffer) => {
      lastErr = (lastErr + d.toString()).slice(-2000);
    });
    const pid = child.pid;
    const exited = new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.once('error', (e) => {
        lastErr = e.message;
        resolve();
      });
    });
    let alive = pid !== undefined;
    void exited.then(() => (alive = false));
    const deadline = Date.now() + 10_000;
    while (alive && Date.now() < deadline) {
      if (await udpExchange(port, buildQuery('ready.invalid', 'A'), address, 200)) break;
    }
    if (alive && pid !== undefined) {
      let stopped = false;
      return {
        address,
        port,
        pid,
        dir,
        async stop() {
          if (stopped) return;
          stopped = true;
          if (alive) {
            process.kill(pid, 'SIGTERM');
            const t = setTimeout(() => alive && process.kill(pid, 'SIGKILL'), 2000);
            await exited;
            clearTimeout(t);
          }
          await rm(dir, { recursive: true, force: true });
        },
      };
    }
    if (pid !== undefined && alive) process.kill(pid, 'SIGKILL');
    await exited;
    if (o.port !== undefined) break;
  }
  await rm(dir, { recursive: true, force: true });
  throw new Error(`dnsmasq did not start: ${lastErr}`);
}

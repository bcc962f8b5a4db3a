/**
 * sysctls (`net.ipv4.ip_forward`, `net.ipv4.conf.br0.rp_filter`...), in the host or a netns.
 *
 * Which netns a `/proc/sys/net/...` file shows is decided by the thread that OPENS it. Node's
 * async fs runs on libuv's shared thread pool, whose threads never entered our netns, so
 * {@link ProcSysctl} uses synchronous fs on purpose: inside a NetnsWorker it then reads and
 * writes the worker's netns. (The files are tiny; the main thread blocks for microseconds.)
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { KernelError } from '../errors.js';
import { toKernelError } from './errno.js';
import { execTool, inNetns } from './exec.js';

/** Reads and writes sysctls of one network namespace. */
export interface Sysctl {
  /** The value, trimmed (`'1'`). Unknown key: KernelError ENOENT. */
  get(key: string): Promise<string>;
  /** Set a value; setting the current value is a no-op success. */
  set(key: string, value: string | number): Promise<void>;
}

/**
 * `net.ipv4.conf.eth0.rp_filter` -> `/proc/sys/net/ipv4/conf/eth0/rp_filter`. Interface names
 * may contain dots (`eth0.5`): pass the slash form (`net/ipv4/conf/eth0.5/rp_filter`) for those.
 */
export function sysctlPath(op: string, key: string): string {
  const rel = key.includes('/') ? key : key.replaceAll('.', '/');
  if (rel.split('/').some((p) => p === '' || p === '..' || p === '.')) {
    throw new KernelError(op, 'EINVAL', `'${key}' is not a sysctl key`);
  }
  return `/proc/sys/${rel}`;
}

/** sysctls of the CALLING THREAD's netns, through /proc/sys (see the module doc). */
export class ProcSysctl implements Sysctl {
  async get(key: string): Promise<string> {
    const path = sysctlPath('sysctl.get', key);
    try {
      return readFileSync(path, 'utf8').trim();
    } catch (e) {
      throw toKernelError('sysctl.get', e, key);
    }
  }

  async set(key: string, value: string | number): Promise<void> {
    const path = sysctlPath('sysctl.set', key);
    try {
      writeFileSync(path, `${value}\n`);
    } catch (e) {
      throw toKernelError('sysctl.set', e, `${key}=${value}`);
    }
  }
}

/**
 * sysctls of another netns without a NetnsWorker, by spawning `nsenter --net=PATH sysctl`.
 * Costs a process per call: prefer `NetnsWorker.sysctl` when a worker exists anyway.
 */
export class NsenterSysctl implements Sysctl {
  private readonly cmd: string;
  private readonly prefix: string[];

  /** @param netns a netns name under /run/netns or an nsfs path. */
  constructor(netns: string) {
    [this.cmd, ...this.prefix] = inNetns('sysctl', netns);
  }

  async get(key: string): Promise<string> {
    sysctlPath('sysctl.get', key);
    const { stdout } = await execTool('sysctl.get', this.cmd, [...this.prefix, '-n', key]);
    return stdout.trim();
  }

  async set(key: string, value: string | number): Promise<void> {
    sysctlPath('sysctl.set', key);
    await execTool('sysctl.set', this.cmd, [...this.prefix, '-q', '-w', `${key}=${value}`]);
  }
}

/** In-memory {@link Sysctl} for unit tests; unknown keys fail with ENOENT like the kernel. */
export class FakeSysctl implements Sysctl {
  private readonly values: Map<string, string>;

  /** @param initial keys that "exist", with their values (dotted form). */
  constructor(initial: Record<string, string | number> = {}) {
    this.values = new Map(Object.entries(initial).map(([k, v]) => [k, String(v)]));
  }

  async get(key: string): Promise<string> {
    const v = this.values.get(key);
    if (v === undefined) throw new KernelError('sysctl.get', 'ENOENT', `${key}: no such sysctl`);
    return v;
  }

  async set(key: string, value: string | number): Promise<void> {
    if (!this.values.has(key)) throw new KernelError('sysctl.set', 'ENOENT', `${key}: no such sysctl`);
    this.values.set(key, String(value));
  }

  /** Every key and value, sorted by key. */
  dump(): Record<string, string> {
    return Object.fromEntries([...this.values].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  }
}

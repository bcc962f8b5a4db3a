/**
 * What an agent puts on its machine, written down where `shoal down` can read it even when the
 * agent is not running (killed, crashed): the prefixes of the namespaces, links and nft tables
 * it owns, where it writes per-namespace files, and the node sysctls it changed with the value
 * each had before Shoal first touched it.
 *
 * `<agent data dir>/footprint.json`; only {@link startAgent} writes it (at start, and when a
 * sysctl is first changed), `shoal down` reads it. A restarted agent keeps the recorded
 * originals: the value it finds then is Shoal's own, not the machine's.
 */
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Sysctl } from '../../src/kernel/sysctl.js';

export interface Footprint {
  /** `netns`: tasks in namespaces, links and nft tables in the node namespace; `none`: only processes. */
  isolation: 'netns' | 'none';
  /** Prefix of the links and node nft tables (`<prefix>_net`, `<prefix>_publish`). */
  linkPrefix: string;
  /** Prefix of the task and ingress sandboxes' namespace names. */
  netnsPrefix: string;
  /** Where per-namespace files (`<dir>/<netns>/resolv.conf`) are written. */
  etcNetnsDir: string;
  /** The instance's name claim under /run/shoal/claims (mesh/daemon/instance.ts), removed with the rest. */
  claimFile?: string;
  /** Node-namespace sysctls Shoal changed -> the value they had before. */
  sysctls: Record<string, string>;
}

export const footprintPath = (agentDataDir: string): string => join(agentDataDir, 'footprint.json');

export function readFootprint(agentDataDir: string): Footprint | undefined {
  const p = footprintPath(agentDataDir);
  if (!existsSync(p)) return undefined;
  return JSON.parse(readFileSync(p, 'utf8')) as Footprint;
}

function write(agentDataDir: string, fp: Footprint): void {
  const p = footprintPath(agentDataDir);
  writeFileSync(`${p}.tmp`, JSON.stringify(fp, null, 2) + '\n', { mode: 0o600 });
  renameSync(`${p}.tmp`, p);
}

/**
 * Records this start's prefixes, keeping the sysctl originals an earlier start recorded (with
 * the same prefixes: other prefixes are another footprint, whose originals do not apply).
 */
export function recordFootprint(agentDataDir: string, fp: Omit<Footprint, 'sysctls'>): Footprint {
  const had = readFootprint(agentDataDir);
  const same = had && had.linkPrefix === fp.linkPrefix && had.netnsPrefix === fp.netnsPrefix;
  const next: Footprint = { ...fp, sysctls: same ? had.sysctls : {} };
  write(agentDataDir, next);
  return next;
}

/**
 * A {@link Sysctl} that writes a key's previous value into the footprint before Shoal changes
 * it for the first time (a key already recorded keeps its first original).
 */
export class RecordingSysctl implements Sysctl {
  constructor(private readonly inner: Sysctl, private readonly agentDataDir: string, private readonly fp: Footprint) {}

  get(key: string): Promise<string> { return this.inner.get(key); }

  async set(key: string, value: string | number): Promise<void> {
    if (!(key in this.fp.sysctls)) {
      const before = await this.inner.get(key);
      if (before === String(value)) return;
      this.fp.sysctls[key] = before;
      write(this.agentDataDir, this.fp);
    }
    await this.inner.set(key, value);
  }
}

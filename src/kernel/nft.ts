/**
 * nftables, spoken through `nft -f -`: a whole script is ONE kernel transaction (all of it is
 * committed or none), which is what a reconciler's sync needs (knftables works the same way).
 *
 * Notes for script authors (nft 1.0.6, Debian 12):
 * - on the `output` hook write `priority -100`, not `dstnat` (1.0.6 rejects the name there);
 * - `add table` is idempotent, `create table` fails with EEXIST, `delete table` of an absent
 *   table fails with ENOENT: `add table X; delete table X; table X {...}` replaces a table
 *   atomically whether or not it existed.
 */
import { KernelError } from '../errors.js';
import { execTool, inNetns } from './exec.js';

/** nftables address families. */
export type NftFamily = 'ip' | 'ip6' | 'inet' | 'arp' | 'bridge' | 'netdev';

/** `nft -j` output: `{nftables: [{metainfo}, {table}, {chain}, {rule}, ...]}`. */
export interface NftJson {
  nftables: Array<Record<string, unknown>>;
}

/** nftables of one network namespace. */
export interface Nft {
  /**
   * Run `script` as one atomic transaction. On failure nothing changed and the promise
   * rejects with a KernelError (op `nft.apply`) whose `stderr` holds nft's diagnostics.
   */
  apply(script: string): Promise<void>;
  /** One table as JSON; an absent table rejects with errno ENOENT (`isNotFound`). */
  list(table: string, family?: NftFamily): Promise<NftJson>;
  /**
   * Only the named counters of one table (`list counters table`): what a metrics read needs,
   * a fraction of a full listing. Optional: without it, callers use {@link list}.
   */
  listCounters?(table: string, family?: NftFamily): Promise<NftJson>;
}

/** Options of {@link ExecNft}. */
export interface ExecNftOptions {
  /** Run inside this netns (a name under /run/netns or an nsfs path), via `nsenter --net=`. */
  netns?: string;
  /** The nft binary; default `nft` from PATH. */
  nft?: string;
  /** Kill an `nft` that runs longer (ms); default execTool's 30 s. A cold sync of tens of thousands of services may need more. */
  timeoutMs?: number;
}

/**
 * {@link Nft} by spawning `nft` (Debian: `apt-get install nftables`). Concurrent applies are
 * each atomic; their order is the order the kernel receives them: serialize syncs above this.
 */
export class ExecNft implements Nft {
  private readonly prefix: string[];
  private readonly cmd: string;
  private readonly timeout: { timeoutMs?: number };

  constructor(opts: ExecNftOptions = {}) {
    [this.cmd, ...this.prefix] = inNetns(opts.nft ?? 'nft', opts.netns);
    this.timeout = opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {};
  }

  async apply(script: string): Promise<void> {
    await execTool('nft.apply', this.cmd, [...this.prefix, '-f', '-'], { input: script, ...this.timeout });
  }

  async list(table: string, family: NftFamily = 'inet'): Promise<NftJson> {
    const { stdout } = await execTool('nft.list', this.cmd, [...this.prefix, '-j', 'list', 'table', family, table], this.timeout);
    return parseNftJson('nft.list', stdout);
  }

  async listCounters(table: string, family: NftFamily = 'inet'): Promise<NftJson> {
    const { stdout } = await execTool('nft.list', this.cmd, [...this.prefix, '-j', 'list', 'counters', 'table', family, table]);
    return parseNftJson('nft.list', stdout);
  }
}

/** Parse and shape-check `nft -j` output. */
export function parseNftJson(op: string, text: string): NftJson {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new KernelError(op, undefined, 'nft printed invalid JSON', { stderr: text.slice(0, 500), cause: e });
  }
  const items = typeof v === 'object' && v !== null ? (v as { nftables?: unknown }).nftables : undefined;
  if (!Array.isArray(items) || !items.every((i) => typeof i === 'object' && i !== null)) {
    throw new KernelError(op, undefined, 'nft JSON has no nftables array');
  }
  return { nftables: items as Array<Record<string, unknown>> };
}

/**
 * In-memory {@link Nft} for unit tests. It records every applied script (`dump()` returns them,
 * for golden files) and models table existence only, with nft's semantics: `add table` /
 * `table X {` is idempotent, `create table` of a present table fails EEXIST, `delete table` of
 * an absent one fails ENOENT, and a failing script changes nothing (atomic). `failNext()`
 * injects a failure for retry tests. Rule contents are not interpreted.
 */
export class FakeNft implements Nft {
  /** Scripts applied successfully, in order. */
  readonly applied: string[] = [];
  private tables = new Set<string>();
  private injected: KernelError | undefined;

  async apply(script: string): Promise<void> {
    if (this.injected) {
      const e = this.injected;
      this.injected = undefined;
      throw e;
    }
    // Work on a copy: commit only when the whole script passed.
    const next = new Set(this.tables);
    for (const raw of script.split(/[\n;]/)) {
      const m = /^\s*(add|create|delete|destroy|flush)?\s*table\s+(?:(ip|ip6|inet|arp|bridge|netdev)\s+)?([A-Za-z0-9_-]+)/.exec(raw);
      if (!m) continue;
      const verb = m[1] ?? 'add';
      const key = `${m[2] ?? 'ip'} ${m[3] ?? ''}`;
      if (verb === 'create' && next.has(key)) throw fakeError('EEXIST', `Could not process rule: File exists\ncreate table ${key}`);
      if ((verb === 'delete' || verb === 'flush') && !next.has(key)) {
        throw fakeError('ENOENT', `Could not process rule: No such file or directory\n${verb} table ${key}`);
      }
      if (verb === 'delete' || verb === 'destroy') next.delete(key);
      else if (verb !== 'flush') next.add(key);
    }
    this.tables = next;
    this.applied.push(script);
  }

  async list(table: string, family: NftFamily = 'inet'): Promise<NftJson> {
    if (!this.tables.has(`${family} ${table}`)) {
      throw fakeError('ENOENT', `No such file or directory\nlist table ${family} ${table}`, 'nft.list');
    }
    return { nftables: [{ metainfo: { json_schema_version: 1 } }, { table: { family, name: table } }] };
  }

  /** Make the next `apply` fail with `errno` (default EINVAL) without changing anything. */
  failNext(errno = 'EINVAL', stderr = 'Error: injected failure'): void {
    this.injected = fakeError(errno, stderr);
  }

  /** The applied scripts joined in order: the text a golden file compares. */
  dump(): string {
    return this.applied.join('\n');
  }

  /** Tables present, as `family name`, sorted. */
  listTables(): string[] {
    return [...this.tables].sort();
  }
}

function fakeError(errno: string, stderr: string, op = 'nft.apply'): KernelError {
  return new KernelError(op, errno, `Error: ${stderr.split('\n')[0] ?? ''}`, { stderr: `Error: ${stderr}\n` });
}

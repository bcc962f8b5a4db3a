/**
 * Several managers on one store: a registry of managers and a lease-based leader election, so
 * that singleton work (scheduler, node liveness, ingress network) runs on exactly one of them.
 *
 * Each manager holds a session lease (TTL `leaseTtlSeconds`; etcd raises it to its minimum,
 * 1.5 x its election timeout) renewed every third of the TTL. Under it: `manager-alive/<name>`
 * (reachability for `node ls`) and, for the leader, `leader`. Campaigning is one compare-and-
 * swap: put `leader` if it does not exist. Everyone watches `leader`; when it goes (the
 * leader stopped and revoked its lease, or died and its lease expired) every manager
 * campaigns at once and one wins: a new leader within the lease TTL plus etcd's expiry tick
 * (0.5 s) of the old one's death.
 *
 * Losing the session: a renewal answered "lease not found" means the lease expired (a long
 * stall, or etcd was out of reach for a TTL): the manager steps down at once, takes a new
 * lease and campaigns again. Renewals that fail for a whole TTL make it step down too (another
 * manager may hold the leadership by now); it resumes if its lease survived (etcd extends
 * leases across its own leader changes). Singletons are idempotent and every write they make
 * is a compare-and-swap, so a leader that steps down late cannot do harm; the slot claims
 * (slots.ts) keep two schedulers from running two tasks for one slot.
 */
import { randomBytes } from 'node:crypto';
import { conflict, isKind, messageOf } from '../../src/errors.js';
import { ROOT } from '../../src/model/keys.js';
import type { Store, Watcher } from '../../src/store/types.js';

export const MANAGERS_PREFIX = `${ROOT}managers/`;
export const MANAGER_ALIVE_PREFIX = `${ROOT}manager-alive/`;
export const LEADER_KEY = `${ROOT}leader`;
const managerKey = (name: string): string => `${MANAGERS_PREFIX}${name}`;
const aliveKey = (name: string): string => `${MANAGER_ALIVE_PREFIX}${name}`;

/** What a manager says about itself in the registry (kept after it stops: `node ls` shows it unreachable). */
export interface ManagerRecord {
  name: string;
  /** Its API URL, when it listens on TCP. */
  url?: string;
  /** Changes at every start: tells a restart from a second process using the same name. */
  instance: string;
  startedAt: string;
}

/** A manager as `node ls` shows it. */
export interface ManagerStatus {
  name: string;
  url?: string;
  /** It holds a live session in the store. */
  reachable: boolean;
  leader: boolean;
}

export interface ElectionOptions {
  name: string;
  url?: string;
  /** Session lease TTL, seconds. Default 1 (etcd raises it to its minimum). */
  leaseTtlSeconds?: number;
  log?: (msg: string, err?: unknown) => void;
  /** Called when this manager becomes the leader; the leadership is held once it resolves. */
  onElected: () => Promise<void>;
  /** Called when it stops being the leader (always after the matching onElected). */
  onDemoted: () => Promise<void>;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class LeaderElection {
  readonly instance = randomBytes(6).toString('hex');
  /** True between onElected resolving and onDemoted being called. */
  isLeader = false;
  /** Elections this manager won. */
  elections = 0;
  /** Leader changes this manager saw (including its own). */
  leaderChanges = 0;
  private lease = 0;
  private ttl: number;
  private lastRenewal = 0;
  private stopped = false;
  private watcher: Watcher | undefined;
  private renewTimer: NodeJS.Timeout | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  /** Serializes campaigns and transitions. */
  private chain: Promise<void> = Promise.resolve();
  private lastLeader: string | undefined;
  private readonly log: (msg: string, err?: unknown) => void;

  constructor(private readonly store: Store, private readonly opts: ElectionOptions) {
    this.ttl = opts.leaseTtlSeconds ?? 1;
    this.log = opts.log ?? (() => undefined);
  }

  /** Registers this manager (refusing a second live one with the same name) and starts campaigning. */
  async start(): Promise<void> {
    await this.register();
    this.watchLeader();
    this.renewTimer = setInterval(() => void this.renew(), Math.max(100, (this.ttl * 1000) / 3));
    // A safety net for a missed event; campaigning costs one read when a leader exists.
    this.pollTimer = setInterval(() => this.schedule(), Math.max(1000, this.ttl * 1000));
    this.schedule();
    await this.chain;
  }

  /** Watches `leader` (the key only: the prefix also matches nothing else); re-watches on failure. */
  private watchLeader(): void {
    if (this.stopped) return;
    this.watcher = this.store.watch(LEADER_KEY, (b) => {
      for (const e of b.events) {
        if (e.kv.key !== LEADER_KEY) continue;
        if (e.type === 'delete') this.schedule();
        else this.noteLeader(e.kv.value);
      }
    }, {
      onError: (e) => {
        this.log('leader watch ended; polling until it is back', e);
        setTimeout(() => { this.watchLeader(); this.schedule(); }, 500);
      },
    });
  }

  /** Takes the session lease and the name; waits out a previous life of this name (a restart). */
  private async register(): Promise<void> {
    const lease = await this.store.grantLease(this.ttl);
    this.lease = lease.id;
    this.ttl = lease.ttlSeconds;
    this.lastRenewal = Date.now();
    const record: ManagerRecord = { name: this.opts.name, instance: this.instance, startedAt: new Date().toISOString(), ...(this.opts.url ? { url: this.opts.url } : {}) };
    // An earlier process with this name that died keeps its alive key until its lease
    // expires (one TTL); one that still renews it is a second manager with the same name.
    const until = Date.now() + (2 * this.ttl + 2) * 1000;
    for (;;) {
      const res = await this.store.txn({
        compare: [{ key: aliveKey(this.opts.name), target: 'createRevision', op: '=', value: 0 }],
        success: [
          { type: 'put', key: aliveKey(this.opts.name), value: this.instance, lease: this.lease },
          { type: 'put', key: managerKey(this.opts.name), value: JSON.stringify(record) },
        ],
      });
      if (res.succeeded) return;
      if (Date.now() > until) {
        await this.store.revokeLease(this.lease).catch(() => undefined);
        throw conflict(`another manager named '${this.opts.name}' is running on this store (it keeps renewing its session); give each manager its own --name`, 'MANAGER_NAME_IN_USE');
      }
      await sleep(200);
      await this.store.keepAlive(this.lease);
    }
  }

  private schedule(): void {
    if (this.stopped) return;
    this.chain = this.chain.then(() => this.campaign()).catch((e: unknown) => this.log('leader election step failed (will retry)', e));
  }

  private noteLeader(value: string): void {
    const who = parseLeader(value)?.name;
    if (who && who !== this.lastLeader) {
      this.lastLeader = who;
      this.leaderChanges++;
      this.log(`leader is now ${who}`);
    }
  }

  private async campaign(): Promise<void> {
    if (this.stopped || this.isLeader) return;
    // Our session must be live: a leader key under an expired lease would vanish at once.
    if (Date.now() - this.lastRenewal > this.ttl * 1000) return;
    const value = JSON.stringify({ name: this.opts.name, instance: this.instance, since: new Date().toISOString() });
    const res = await this.store.txn({
      compare: [{ key: LEADER_KEY, target: 'createRevision', op: '=', value: 0 }],
      success: [{ type: 'put', key: LEADER_KEY, value, lease: this.lease }],
      failure: [{ type: 'get', key: LEADER_KEY }],
    });
    const holder = res.succeeded ? value : res.results[0]?.kvs[0]?.value;
    if (holder) this.noteLeader(holder);
    if (!res.succeeded) {
      // Still ours from before a step-down (our lease survived): take the work back.
      const h = holder ? parseLeader(holder) : undefined;
      if (!(h?.instance === this.instance)) return;
    }
    this.elections += res.succeeded ? 1 : 0;
    this.log(res.succeeded ? `elected leader (election ${this.elections})` : 'leadership kept across a store outage; resuming');
    try {
      await this.opts.onElected();
      this.isLeader = true;
    } catch (e) {
      // Could not take up the work: give the leadership to someone who can.
      this.log('starting the leader\'s work failed; stepping down', e);
      await this.opts.onDemoted().catch(() => undefined);
      await this.store.delete(LEADER_KEY).catch(() => undefined);
      throw e;
    }
  }

  private async stepDown(why: string): Promise<void> {
    if (!this.isLeader) return;
    this.isLeader = false;
    this.log(`stepping down as leader: ${why}`);
    await this.opts.onDemoted().catch((e: unknown) => this.log('stopping the leader\'s work failed', e));
  }

  private async renew(): Promise<void> {
    if (this.stopped) return;
    try {
      await this.store.keepAlive(this.lease);
      this.lastRenewal = Date.now();
      if (!this.isLeader) this.schedule();
    } catch (e) {
      if (isKind(e, 'NotFound')) {
        // The session expired: whatever we held is gone. New session, campaign again.
        this.chain = this.chain.then(async () => {
          await this.stepDown('session lease expired');
          if (this.stopped) return;
          await this.register();
          this.schedule();
        }).catch((err: unknown) => this.log('re-registering after the session expired failed (will retry)', err));
        return;
      }
      if (Date.now() - this.lastRenewal > this.ttl * 1000) {
        this.chain = this.chain.then(() => this.stepDown(`store unreachable for ${this.ttl} s (${messageOf(e)})`)).catch(() => undefined);
      }
    }
  }

  /** Steps down (if leader) and ends the session so another manager takes over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.renewTimer) clearInterval(this.renewTimer);
    if (this.pollTimer) clearInterval(this.pollTimer);
    this.watcher?.cancel();
    await this.chain.catch(() => undefined);
    await this.stepDown('manager stopping');
    // Revoking deletes `leader` and `manager-alive/<name>` in one revision: the others campaign now.
    await this.store.revokeLease(this.lease).catch(() => undefined);
  }
}

function parseLeader(v: string): { name: string; instance: string } | undefined {
  try {
    const o = JSON.parse(v) as { name?: unknown; instance?: unknown };
    return typeof o.name === 'string' && typeof o.instance === 'string' ? { name: o.name, instance: o.instance } : undefined;
  } catch {
    return undefined;
  }
}

/** Every manager that ever registered, whether it holds a session now, and which one leads. */
export async function listManagers(store: Store): Promise<ManagerStatus[]> {
  const [records, alive, leader] = await Promise.all([store.range(MANAGERS_PREFIX), store.range(MANAGER_ALIVE_PREFIX), store.get(LEADER_KEY)]);
  const live = new Set(alive.kvs.map((kv) => kv.key.slice(MANAGER_ALIVE_PREFIX.length)));
  const lead = leader ? parseLeader(leader.value)?.name : undefined;
  return records.kvs.map((kv) => {
    const r = JSON.parse(kv.value) as ManagerRecord;
    return { name: r.name, ...(r.url ? { url: r.url } : {}), reachable: live.has(r.name), leader: r.name === lead && live.has(r.name) };
  }).sort((a, b) => a.name.localeCompare(b.name));
}

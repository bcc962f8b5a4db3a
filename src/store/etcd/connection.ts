/**
 * The connection to an etcd cluster: one npm `etcd3` client per member (so every request is
 * timed and counted per endpoint), a preferred member that requests go to, and the retry rules.
 *
 * - Every unary call has a deadline (etcd3 has none by default: a request to a leader that died
 *   stalls for seconds). Each attempt gets at most `attemptTimeoutMs`, the whole call
 *   `requestTimeoutMs`.
 * - etcd3's own retries are off: they re-send writes whose first attempt may have applied. Here
 *   a read or an idempotent request is retried on the next member until the deadline; a write
 *   only when it was certainly not applied (no connection, the member has no leader); a write
 *   whose outcome is unknown fails with Unavailable saying so.
 * - Every call carries gRPC metadata `hasleader=true` (what etcd's Go client sends for watches):
 *   a member cut off from the quorum answers at once "no leader" instead of hanging, and ends
 *   its watch streams, so watches move to a member that has one.
 */
import { InterceptingCall, type Interceptor } from '@grpc/grpc-js';
import { noop } from 'cockatiel';
import { Etcd3, type IDuplexStream, type ILeaseKeepAliveRequest, type ILeaseKeepAliveResponse } from 'etcd3';
import { ShoalError } from '../../errors.js';
import type { EtcdEndpoint } from './endpoints.js';
import { classify, storeUnavailable, type Classified } from './errors.js';

/** Called once per attempt of every request: endpoint, method, duration, error code if it failed. */
export type RequestObserver = (endpoint: string, method: string, seconds: number, errorCode?: string) => void;

export interface EtcdConnectionOptions {
  endpoints: EtcdEndpoint[];
  /** Deadline of one attempt of a read on one member, ms. Default 2000. */
  attemptTimeoutMs?: number;
  /** Deadline of a whole call (all attempts), ms. Default 5000. */
  requestTimeoutMs?: number;
  observe?: RequestObserver;
}

/** How a call may be retried. */
export type CallMode =
  /** Reads and requests that may be repeated (keepalive, revoke, a grant with a chosen id). */
  | 'idempotent'
  /** Writes: retried only when certainly not applied. */
  | 'write';

/** A final answer from etcd about the request (not about the cluster's health). */
export class EtcdRequestError extends Error {
  constructor(readonly classified: Classified, cause: unknown) {
    super(classified.detail, { cause });
    this.name = 'EtcdRequestError';
  }
}

const hasLeader: Interceptor = (options, nextCall) => new InterceptingCall(nextCall(options), {
  start(metadata, listener, next) {
    metadata.set('hasleader', 'true');
    next(metadata, listener);
  },
});

/** One member: its client and, once used, its lease keepalive stream. */
export class Member {
  readonly client: Etcd3;
  private keepalive: KeepAliveStream | undefined;

  constructor(readonly endpoint: EtcdEndpoint) {
    this.client = new Etcd3({
      hosts: endpoint.address,
      // No retries and no circuit breaker inside etcd3: EtcdConnection decides (see module doc).
      faultHandling: { global: noop, host: () => noop },
      grpcOptions: {
        interceptors: [hasLeader],
        // A member that went away silently (its link down) is noticed; a restarted one is
        // reconnected to within a second, not after grpc's default back-off of minutes.
        'grpc.keepalive_time_ms': 10_000,
        'grpc.keepalive_timeout_ms': 3_000,
        'grpc.initial_reconnect_backoff_ms': 100,
        'grpc.max_reconnect_backoff_ms': 1_000,
        'grpc.max_receive_message_length': 256 << 20,
      } as Record<string, unknown>,
    });
  }

  /** Renews a lease over this member's keepalive stream; resolves with the TTL left (0: gone). */
  async keepAliveOnce(id: number, deadline: number): Promise<number> {
    if (!this.keepalive || this.keepalive.dead) this.keepalive = await KeepAliveStream.open(this.client);
    return this.keepalive.send(id, deadline);
  }

  close(): void {
    this.keepalive?.close();
    this.client.close();
  }
}

/** One LeaseKeepAlive stream, shared by every renewal through its member; answers come in order per lease. */
class KeepAliveStream {
  dead = false;
  private readonly pending = new Map<string, Array<{ resolve: (ttl: number) => void; reject: (e: Error) => void }>>();

  private constructor(private readonly stream: IDuplexStream<ILeaseKeepAliveRequest, ILeaseKeepAliveResponse>) {
    stream.on('data', (res: ILeaseKeepAliveResponse) => {
      const q = this.pending.get(String(res.ID));
      const p = q?.shift();
      if (q && q.length === 0) this.pending.delete(String(res.ID));
      p?.resolve(Number(res.TTL));
    });
    const fail = (e: Error): void => {
      this.dead = true;
      for (const q of this.pending.values()) for (const p of q) p.reject(e);
      this.pending.clear();
    };
    stream.on('error', fail);
    stream.on('end', () => fail(new Error('14 UNAVAILABLE: keepalive stream ended')));
  }

  static async open(client: Etcd3): Promise<KeepAliveStream> {
    return new KeepAliveStream(await client.leaseClient.leaseKeepAlive());
  }

  send(id: number, deadline: number): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        // A stream that does not answer in time is broken for everyone using it.
        this.close();
        reject(new Error('4 DEADLINE_EXCEEDED: lease keepalive got no answer in time'));
      }, Math.max(1, deadline - Date.now()));
      const q = this.pending.get(String(id)) ?? [];
      q.push({ resolve: (t) => { clearTimeout(timer); resolve(t); }, reject: (e) => { clearTimeout(timer); reject(e); } });
      this.pending.set(String(id), q);
      this.stream.write({ ID: id } as ILeaseKeepAliveRequest);
    });
  }

  close(): void {
    if (this.dead) return;
    this.dead = true;
    const e = new Error('14 UNAVAILABLE: keepalive stream closed');
    for (const q of this.pending.values()) for (const p of q) p.reject(e);
    this.pending.clear();
    try { this.stream.end(); } catch { /* already gone */ }
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** See the module doc. `close()` makes every later call reject with Unavailable. */
export class EtcdConnection {
  readonly members: Member[];
  /** The endpoints as one string, for messages. */
  readonly label: string;
  private preferred = 0;
  private closed = false;
  /** Highest store revision seen in any response (a lower bound of the current one). */
  lastRevision = 0;
  readonly attemptTimeoutMs: number;
  readonly requestTimeoutMs: number;

  constructor(private readonly opts: EtcdConnectionOptions) {
    if (opts.endpoints.length === 0) throw new ShoalError('InvalidParameter', 'BAD_STORE', 'no etcd endpoint given');
    this.members = opts.endpoints.map((e) => new Member(e));
    this.label = opts.endpoints.map((e) => e.address).join(',');
    this.attemptTimeoutMs = opts.attemptTimeoutMs ?? 2000;
    this.requestTimeoutMs = opts.requestTimeoutMs ?? 5000;
  }

  get isClosed(): boolean { return this.closed; }

  closedError(): ShoalError {
    return new ShoalError('Unavailable', 'STORE_CLOSED', 'the store is closed');
  }

  /** Notes a response header's revision. */
  seen(header: { revision?: string | number } | undefined): number {
    const r = Number(header?.revision ?? 0);
    if (r > this.lastRevision) this.lastRevision = r;
    return r;
  }

  /** The member requests go to now. */
  current(): Member {
    return this.members[this.preferred % this.members.length] as Member;
  }

  /** Moves requests off `m` (it failed), unless that already happened. */
  demote(m: Member): void {
    if (this.current() === m) this.preferred = (this.preferred + 1) % this.members.length;
  }

  observe(m: Member, method: string, startedMs: number, code?: string): void {
    this.opts.observe?.(m.endpoint.address, method, (performance.now() - startedMs) / 1000, code);
  }

  /**
   * Runs `fn` against a member under the retry rules (module doc). `fn` gets the member and
   * the deadline of this attempt. Final etcd answers are thrown as {@link EtcdRequestError}.
   */
  async call<T>(method: string, mode: CallMode, fn: (m: Member, deadline: number) => Promise<T>): Promise<T> {
    if (this.closed) throw this.closedError();
    const deadline = Date.now() + this.requestTimeoutMs;
    for (let attempt = 1; ; attempt++) {
      const m = this.current();
      const started = performance.now();
      const attemptDeadline = mode === 'write' ? deadline : Math.min(deadline, Date.now() + this.attemptTimeoutMs);
      try {
        const res = await fn(m, attemptDeadline);
        this.observe(m, method, started);
        this.seen((res as { header?: { revision?: string } } | undefined)?.header);
        return res;
      } catch (e) {
        if (this.closed) throw this.closedError();
        const c = classify(e);
        this.observe(m, method, started, c.code);
        if (c.failure === 'final') throw new EtcdRequestError(c, e);
        this.demote(m);
        if (c.failure === 'unknown' && mode === 'write') throw storeUnavailable(this.label, `${m.endpoint.address}: ${c.detail}`, true, e);
        const left = deadline - Date.now();
        if (left <= 0) throw storeUnavailable(this.label, `${m.endpoint.address}: ${c.detail}`, false, e);
        // After a round over every member, back off a little (a quorum may be electing).
        if (attempt % this.members.length === 0) await sleep(Math.min(left, 25 * 2 ** Math.min(5, attempt / this.members.length)));
      }
    }
  }

  /** The deadline option for an etcd3 call. */
  static deadline(d: number): { deadline: Date } {
    return { deadline: new Date(d) };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const m of this.members) m.close();
  }
}

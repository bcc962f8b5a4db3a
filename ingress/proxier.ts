/**
 * A proxier drives ONE LoadBalancer (one sandbox's dataplane) toward a desired state:
 * calls are serialized (never two transactions at once on one dataplane), a call with nothing
 * changed costs no kernel work, a changed state costs one `apply` naming only what differs, and
 * the first call (or a forced resync) is a `syncAll` that also removes leftovers.
 * Failures propagate to the caller's runner, which retries and counts them (DESIGN.md).
 */
import { diffVirtualServices } from './desired.js';
import type { LoadBalancer, VirtualService } from './types.js';

export class Proxier {
  private chain: Promise<unknown> = Promise.resolve();
  private synced = false;

  constructor(readonly lb: LoadBalancer) {}

  /** Brings the dataplane to `desired`; resolves with how many services were touched. */
  sync(desired: readonly VirtualService[], full = false): Promise<number> {
    const run = async (): Promise<number> => {
      if (!this.synced || full) {
        await this.lb.syncAll(desired);
        this.synced = true;
        return desired.length;
      }
      const { upsert, remove } = diffVirtualServices(this.lb.applied(), desired);
      if (upsert.length === 0 && remove.length === 0) return 0;
      try {
        await this.lb.apply(upsert, remove);
      } catch (e) {
        this.synced = false; // next time: a full resync from whatever the kernel holds
        throw e;
      }
      return upsert.length + remove.length;
    };
    const p = this.chain.then(run, run);
    this.chain = p.catch(() => undefined);
    return p;
  }

  /**
   * Applies a change the caller computed itself (it knows which services changed: O(change),
   * no diff over all services). Before the first sync, or after a failure, it is a full
   * `syncAll` of `full()` instead.
   */
  change(upsert: readonly VirtualService[], remove: readonly string[], full: () => readonly VirtualService[]): Promise<number> {
    const run = async (): Promise<number> => {
      if (!this.synced) {
        const all = full();
        await this.lb.syncAll(all);
        this.synced = true;
        return all.length;
      }
      if (upsert.length === 0 && remove.length === 0) return 0;
      try {
        await this.lb.apply(upsert, remove);
      } catch (e) {
        this.synced = false;
        throw e;
      }
      return upsert.length + remove.length;
    };
    return this.queued(run);
  }

  /**
   * Drift repair: the dataplane re-reads the kernel and puts back what differs from what it
   * applied (see {@link LoadBalancer.resync}); resolves with the objects repaired. Before the
   * first sync there is nothing to compare with: 0.
   */
  resync(): Promise<number> {
    return this.queued(async () => (this.synced && this.lb.resync ? this.lb.resync() : 0));
  }

  private queued<T>(run: () => Promise<T>): Promise<T> {
    const p = this.chain.then(run, run);
    this.chain = p.catch(() => undefined);
    return p;
  }

  /** Waits for calls in flight, then removes everything the dataplane owns. */
  async cleanup(): Promise<void> {
    await this.chain;
    await this.lb.cleanup();
  }

  async close(): Promise<void> {
    await this.chain;
    await this.lb.close();
  }
}

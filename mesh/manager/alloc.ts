/**
 * The manager's use of IPAM (src/ipam): claims that compose into the manager's own
 * transactions, and the commit loop with the manager's rules for which failed compares mean
 * "retry" (a concurrent allocation or object update: rebuild from fresh reads) and which are
 * final (a name taken: tell the user).
 */
import { conflict } from '../../src/errors.js';
import {
  claimAddress, claimGateway, claimPort, claimSubnet, claimVni, commitClaims,
  releaseAddress, releaseNetworkAddresses, releasePort, releaseSubnet, releaseVni, type Claim, type TxnPlan,
} from '../../src/ipam/index.js';
import { DEFAULT_POOLS, type PoolConfig } from '../../src/ipam/pools.js';
import { ROOT } from '../../src/model/keys.js';
import type { NetworkDriver, Protocol } from '../../src/model/types.js';
import type { Store } from '../../src/store/types.js';

export type { Claim };

/** The default pools of `driver`/`family` carved into /`prefix` blocks (never smaller than the pool's own). */
function sizedPools(driver: NetworkDriver, family: 4 | 6, prefix: number): Partial<PoolConfig> {
  const resize = (ps: ReadonlyArray<{ base: string; size: number }>): Array<{ base: string; size: number }> =>
    ps.map((p) => ({ base: p.base, size: Math.max(prefix, Number(p.base.split('/')[1])) }));
  if (family === 6) return { v6: resize(DEFAULT_POOLS.v6) };
  return driver === 'overlay' ? { global: resize(DEFAULT_POOLS.global) } : { local: resize(DEFAULT_POOLS.local) };
}

const isNameKey = (key: string): boolean => key.startsWith(`${ROOT}names/`);

export const alloc = {
  /**
   * Runs `build` in a transaction until it commits. A failed compare on a name key is final and
   * reported with `nameConflict`; any other failed compare is retried with a fresh build.
   */
  commit(store: Store, build: () => Promise<TxnPlan>, nameConflict?: string): Promise<unknown> {
    return commitClaims(store, build, {
      retryable: (c) => !isNameKey(c.key),
      onConflict: () => conflict(nameConflict ?? 'a name this request needs was taken meanwhile; try again', 'NAME_IN_USE'),
    });
  },
  /** A subnet for a network; `prefix` asks the driver's pools for blocks of that size instead of their own. */
  subnet(store: Store, r: { driver: NetworkDriver; family: 4 | 6; requested: string | undefined; owner: string; networkId: string; prefix?: number }): Promise<Claim<string>> {
    const pools = r.prefix === undefined ? undefined : sizedPools(r.driver, r.family, r.prefix);
    return claimSubnet(store, {
      driver: r.driver, family: r.family, ...(r.requested !== undefined ? { requested: r.requested } : {}), network: r.owner, networkId: r.networkId,
      ...(pools ? { pools } : {}),
    });
  },
  gateway(store: Store, networkId: string, subnet: string, requested: string | undefined): Promise<Claim<string>> {
    return claimGateway(store, networkId, subnet, requested);
  },
  /** An address for a VIP or a task; `gateway` is the network's (never handed out). */
  address(store: Store, r: { networkId: string; subnet: string; gateway: string; owner: string; networkName: string }): Promise<Claim<string>> {
    return claimAddress(store, r.networkId, r.subnet, { owner: r.owner, gateway: r.gateway, networkName: r.networkName });
  },
  vni(store: Store, owner: string): Promise<Claim<number>> {
    return claimVni(store, undefined, { owner });
  },
  port(store: Store, r: { protocol: Protocol; requested: number | undefined; owner: string; label: string; pending: Array<Claim<unknown>>; avoid?: (port: number) => boolean }): Promise<Claim<number>> {
    return claimPort(store, r.protocol, r.requested, { owner: r.owner, label: r.label, pending: r.pending, ...(r.avoid ? { avoid: r.avoid } : {}) });
  },
  releaseSubnet, releaseAddress, releaseNetworkAddresses, releaseVni, releasePort,
};

/**
 * LocalnetGuard (ingress/localnet.ts): the guard table goes in before route_localnet is turned
 * on; a second ensure with both in place changes nothing; a deleted table or a reset sysctl is
 * put back and counted. The kernel behaviour (a neighbour kept away from 127.0.0.0/8) is
 * tested in test/integration/ingress-mesh.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { LocalnetGuard, localnetScript, ROUTE_LOCALNET } from '../../ingress/localnet.js';
import { KernelError } from '../../src/errors.js';
import { FakeSysctl } from '../../src/kernel/sysctl.js';
import type { Nft, NftJson } from '../../src/kernel/nft.js';

/** An nft that keeps whole tables by name, with one rule per `drop` line of the applied script. */
class TableNft implements Nft {
  readonly tables = new Map<string, number>();
  readonly log: string[] = [];
  async apply(script: string): Promise<void> {
    const name = /^table inet (\S+) \{/m.exec(script)?.[1] as string;
    this.tables.set(name, (script.match(/ drop$/gm) ?? []).length);
    this.log.push(`apply ${name}`);
  }
  async list(table: string): Promise<NftJson> {
    const rules = this.tables.get(table);
    if (rules === undefined) throw new KernelError('nft.list', 'ENOENT', 'No such file or directory');
    return { nftables: [{ table: { name: table } }, ...Array.from({ length: rules }, () => ({ rule: { table } }))] };
  }
}

describe('LocalnetGuard', () => {
  it('puts the guard in place before route_localnet, then changes nothing while both hold', async () => {
    const nft = new TableNft();
    const sysctl = new FakeSysctl({ [ROUTE_LOCALNET]: 0 });
    const order: string[] = [];
    const set = sysctl.set.bind(sysctl);
    sysctl.set = async (k, v) => { order.push(`sysctl ${k}=${v} (guard ${nft.tables.has('sx1a_localnet') ? 'present' : 'absent'})`); await set(k, v); };
    const g = new LocalnetGuard(nft, sysctl, 'sx1a_localnet');
    expect(await g.ensure()).toBe(2);
    expect(order).toEqual([`sysctl ${ROUTE_LOCALNET}=1 (guard present)`]);
    expect(await g.ensure()).toBe(0);
    expect(nft.log).toEqual(['apply sx1a_localnet']);
  });

  it('repairs a deleted table and a reset sysctl, counting each', async () => {
    const nft = new TableNft();
    const sysctl = new FakeSysctl({ [ROUTE_LOCALNET]: 0 });
    const g = new LocalnetGuard(nft, sysctl, 'sx1a_localnet');
    await g.ensure();
    nft.tables.delete('sx1a_localnet');
    expect(await g.ensure()).toBe(1);
    await sysctl.set(ROUTE_LOCALNET, 0);
    expect(await g.ensure()).toBe(1);
    expect(await sysctl.get(ROUTE_LOCALNET)).toBe('1');
  });

  it('drops what comes to loopback from another interface unless it is a known or DNATed flow', () => {
    expect(localnetScript('t')).toContain('iifname != "lo" ip daddr 127.0.0.0/8 ct state != { established, related } ct status & dnat == 0 drop');
    expect(localnetScript('t')).toMatch(/^add table inet t\ndelete table inet t\ntable inet t \{/);
  });
});

/**
 * Pure parts of the drivers: interface names (<= 15 bytes, recognisable by cleanupLeftovers),
 * Docker-style MACs, and the NAT/isolation script (golden text, one transaction).
 */
import { describe, expect, it } from 'vitest';
import { isKind } from '../../src/errors.js';
import { FakeNft } from '../../src/kernel/nft.js';
import { bridgeMac, macFromIPv4, natRules } from '../../src/drivers/index.js';
import {
  bridgeName, checkPrefix, endpointTag, macvlanTempName, natTableName, networkTag, ownedKind, vethHostName, vethPeerName, vxlanName,
} from '../../src/drivers/names.js';

describe('names', () => {
  const ids = ['a1b2c3d4e5f60718', 'x', 'network-with-a-very-long-non-hex-id-0123456789', 'ABCDEF0123456789'];
  const prefixes = ['s', 'sh', 'sho', 'shoa', 'z9z9'];

  it('every owned link name fits in 15 bytes and is recognised by its kind letter', () => {
    for (const p of prefixes) {
      for (const id of ids) {
        const cases = [
          [bridgeName(p, id), 'bridge'], [vxlanName(p, id), 'vxlan'], [vethHostName(p, id, 'task1'), 'veth'],
          [vethPeerName(p, id, 'task1'), 'peer'], [macvlanTempName(p, id, 'task1'), 'macvlan'],
        ] as const;
        for (const [name, kind] of cases) {
          expect(Buffer.byteLength(name), name).toBeLessThanOrEqual(15);
          expect(ownedKind(p, name), name).toBe(kind);
        }
      }
    }
  });

  it('uses the start of a hex network id (what an operator sees in `ip link`) and hashes anything else', () => {
    expect(bridgeName('sh', 'a1b2c3d4e5f60718')).toBe('shba1b2c3d4e5');
    expect(vxlanName('sh', 'a1b2c3d4e5f60718')).toBe('shxa1b2c3d4e5');
    expect(networkTag('not-hex')).toMatch(/^[0-9a-f]{10}$/);
    expect(networkTag('not-hex')).toBe(networkTag('not-hex'));
  });

  it('gives one task on two networks two different endpoint names', () => {
    expect(endpointTag('n1', 't1')).not.toBe(endpointTag('n2', 't1'));
    expect(vethHostName('sh', 'n1', 't1')).not.toBe(vethHostName('sh', 'n1', 't2'));
  });

  it('does not claim links of another shape', () => {
    expect(ownedKind('sh', 'eth0')).toBeUndefined();
    expect(ownedKind('sh', 'shb123')).toBeUndefined();
    expect(ownedKind('sh', 'shqa1b2c3d4e5')).toBeUndefined();
    expect(ownedKind('sh', 'shbzzzzzzzzzz')).toBeUndefined();
  });

  it('refuses prefixes that would not leave room or are not plain', () => {
    for (const bad of ['', 'shoal', 'Sh', '1a', 's-h', 'sh ']) {
      expect(() => checkPrefix(bad), bad).toThrow(/1-4 characters/);
    }
    expect(() => checkPrefix('sh')).not.toThrow();
    expect(natTableName('sh')).toBe('sh_net');
  });
});

describe('MAC addresses', () => {
  it('derives an endpoint MAC from its IPv4 like Docker', () => {
    expect(macFromIPv4('10.0.1.5')).toBe('02:42:0a:00:01:05');
    expect(macFromIPv4('172.17.0.2')).toBe('02:42:ac:11:00:02');
    expect(macFromIPv4('255.255.255.255')).toBe('02:42:ff:ff:ff:ff');
  });

  it('refuses non-IPv4 input with InvalidParameter', () => {
    for (const bad of ['fd00::1', '10.0.1', 'x']) {
      let err: unknown;
      try {
        macFromIPv4(bad);
      } catch (e) {
        err = e;
      }
      expect(isKind(err, 'InvalidParameter'), bad).toBe(true);
    }
  });

  it('gives bridges a stable, per-node, locally administered MAC outside the 02:42 task space', () => {
    const a = bridgeMac('net1', '192.0.2.1');
    expect(a).toMatch(/^06(:[0-9a-f]{2}){5}$/);
    expect(bridgeMac('net1', '192.0.2.1')).toBe(a);
    expect(bridgeMac('net1', '192.0.2.2')).not.toBe(a);
    expect(bridgeMac('net2', '192.0.2.1')).not.toBe(a);
  });
});

describe('natRules', () => {
  it('renders the whole owned table as one replace transaction (golden)', () => {
    const script = natRules('sh', [
      { bridge: 'shbbbbbbbbbbb', subnets: ['10.0.2.0/24'] },
      { bridge: 'shba1b2c3d4e5', subnets: ['10.0.1.0/24', 'fd00:1::/64'] },
    ]);
    expect(script).toBe(`add table inet sh_net
delete table inet sh_net
table inet sh_net {
\tchain postrouting {
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\tip saddr 10.0.1.0/24 oifname != "shba1b2c3d4e5" masquerade
\t\tip6 saddr fd00:1::/64 oifname != "shba1b2c3d4e5" masquerade
\t\tip saddr 10.0.2.0/24 oifname != "shbbbbbbbbbbb" masquerade
\t}
\tchain forward {
\t\ttype filter hook forward priority filter; policy accept;
\t\tiifname "shba1b2c3d4e5" oifname "shb*" oifname != "shba1b2c3d4e5" counter drop
\t\tiifname "shbbbbbbbbbbb" oifname "shb*" oifname != "shbbbbbbbbbbb" counter drop
\t}
}
`);
  });

  it('renders internal networks without masquerade, cut off both ways, listed in the set it is read back from (golden)', () => {
    const script = natRules('sh', [
      { bridge: 'shbbbbbbbbbbb', subnets: ['10.0.2.0/24'] },
      { bridge: 'shba1b2c3d4e5', subnets: ['10.0.1.0/24'], internal: true },
    ]);
    expect(script).toBe(`add table inet sh_net
delete table inet sh_net
table inet sh_net {
\tset internal {
\t\ttype ifname
\t\telements = { "shba1b2c3d4e5" }
\t}
\tchain postrouting {
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\tip saddr 10.0.2.0/24 oifname != "shbbbbbbbbbbb" masquerade
\t}
\tchain forward {
\t\ttype filter hook forward priority filter; policy accept;
\t\tiifname "shba1b2c3d4e5" oifname != "shba1b2c3d4e5" counter drop
\t\toifname "shba1b2c3d4e5" iifname != "shba1b2c3d4e5" counter drop
\t\tiifname "shbbbbbbbbbbb" oifname "shb*" oifname != "shbbbbbbbbbbb" counter drop
\t}
}
`);
  });

  it('is independent of input order and deletes the table when no network is left', () => {
    const a = { bridge: 'shb0000000001', subnets: ['10.0.1.0/24'] };
    const b = { bridge: 'shb0000000002', subnets: ['10.0.2.0/24'] };
    expect(natRules('sh', [a, b])).toBe(natRules('sh', [b, a]));
    expect(natRules('sh', [])).toBe('add table inet sh_net\ndelete table inet sh_net\n');
  });

  it('refuses names and subnets that could change the script', () => {
    expect(() => natRules('sh', [{ bridge: 'x" accept; #', subnets: [] }])).toThrow(/not an interface name/);
    expect(() => natRules('sh', [{ bridge: 'shb0000000001', subnets: ['10.0.0.0/24 accept'] }])).toThrow();
  });

  it('applies atomically with nft semantics: replace when present, delete when absent both succeed', async () => {
    const nft = new FakeNft();
    await nft.apply(natRules('sh', []));
    await nft.apply(natRules('sh', [{ bridge: 'shb0000000001', subnets: ['10.0.1.0/24'] }]));
    expect(nft.listTables()).toEqual(['inet sh_net']);
    await nft.apply(natRules('sh', [{ bridge: 'shb0000000001', subnets: ['10.0.1.0/24'] }]));
    await nft.apply(natRules('sh', []));
    expect(nft.listTables()).toEqual([]);
  });
});

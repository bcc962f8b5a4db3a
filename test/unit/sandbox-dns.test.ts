/** The sandbox side of the 127.0.0.11 resolver: resolv.conf text and the redirect's nft script. */
import { describe, expect, it } from 'vitest';
import { FakeNft, FakeSysctl } from '../../src/kernel/index.js';
import { ensureSandboxDns, resolvConf, sandboxDnsScript } from '../../mesh/agent/sandbox-dns.js';

describe('resolvConf', () => {
  it('adds ndots:0 unless the service sets ndots', () => {
    expect(resolvConf(['127.0.0.11'], [])).toBe('nameserver 127.0.0.11\noptions ndots:0\n');
    expect(resolvConf(['127.0.0.11'], ['timeout:1'])).toBe('nameserver 127.0.0.11\noptions ndots:0 timeout:1\n');
    expect(resolvConf(['127.0.0.11'], ['ndots:5', 'rotate'])).toBe('nameserver 127.0.0.11\noptions ndots:5 rotate\n');
  });
});

describe('sandboxDnsScript', () => {
  it('replaces its table atomically and sends only port 53 of 127.0.0.11 to the gateway', () => {
    const s = sandboxDnsScript('10.0.9.1');
    expect(s.split('\n').slice(0, 2)).toEqual(['add table ip shoal_dns', 'delete table ip shoal_dns']);
    expect(s).toContain('ip daddr 127.0.0.11 udp dport 53 dnat to 10.0.9.1:53');
    expect(s).toContain('ip daddr 127.0.0.11 tcp dport 53 dnat to 10.0.9.1:53');
    expect(s).toContain('ip saddr 127.0.0.0/8 ip daddr 10.0.9.1 th dport 53 masquerade');
    expect(s).toContain('type nat hook output priority -100');
  });

  it('sets route_localnet before it applies the table', async () => {
    const nft = new FakeNft();
    const sysctl = new FakeSysctl({ 'net.ipv4.conf.all.route_localnet': 0 });
    await ensureSandboxDns(nft, sysctl, '10.0.9.1');
    expect(await sysctl.get('net.ipv4.conf.all.route_localnet')).toBe('1');
    expect(nft.applied).toEqual([sandboxDnsScript('10.0.9.1')]);
  });
});

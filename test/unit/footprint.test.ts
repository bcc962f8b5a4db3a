/**
 * The agent's footprint (what `shoal down` takes back): prefixes per start, and each node
 * sysctl's value from before Shoal first changed it, kept across restarts.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { readFootprint, recordFootprint, RecordingSysctl } from '../../mesh/daemon/footprint.js';
import { FakeSysctl } from '../../src/kernel/sysctl.js';

const dirs: string[] = [];
const fresh = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'shoal-fp-'));
  dirs.push(d);
  return d;
};
afterEach(() => { for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true }); });

const base = { isolation: 'netns' as const, linkPrefix: 'sh', netnsPrefix: 'shoal-n1-', etcNetnsDir: '/etc/netns' };

describe('footprint', () => {
  it('records a sysctl\'s original once, before the first change; a restart keeps it', async () => {
    const dir = fresh();
    const kernel = new FakeSysctl({ 'net.ipv4.ip_forward': 0, 'net.ipv6.conf.all.forwarding': 1 });
    const s = new RecordingSysctl(kernel, dir, recordFootprint(dir, base));
    await s.set('net.ipv4.ip_forward', 1);
    await s.set('net.ipv4.ip_forward', 1);
    await s.set('net.ipv6.conf.all.forwarding', 1); // already so: not Shoal's change, nothing to restore
    expect(kernel.dump()['net.ipv4.ip_forward']).toBe('1');
    expect(readFootprint(dir)?.sysctls).toEqual({ 'net.ipv4.ip_forward': '0' });
    // The agent restarts: the 1 it now finds is Shoal's own, the original stays 0.
    const again = new RecordingSysctl(kernel, dir, recordFootprint(dir, base));
    await again.set('net.ipv4.ip_forward', 1);
    expect(readFootprint(dir)?.sysctls).toEqual({ 'net.ipv4.ip_forward': '0' });
  });

  it('another prefix is another footprint: earlier originals do not carry over', async () => {
    const dir = fresh();
    const kernel = new FakeSysctl({ 'net.ipv4.ip_forward': 0 });
    await new RecordingSysctl(kernel, dir, recordFootprint(dir, base)).set('net.ipv4.ip_forward', 1);
    expect(recordFootprint(dir, { ...base, linkPrefix: 'zz' }).sysctls).toEqual({});
    expect(readFootprint(dir)).toEqual({ ...base, linkPrefix: 'zz', sysctls: {} });
  });

  it('a failing set records the original but changes nothing else, and fails', async () => {
    const dir = fresh();
    const s = new RecordingSysctl(new FakeSysctl({}), dir, recordFootprint(dir, base));
    await expect(s.set('net.ipv4.nope', 1)).rejects.toMatchObject({ errno: 'ENOENT' });
    expect(readFootprint(dir)?.sysctls).toEqual({});
  });
});

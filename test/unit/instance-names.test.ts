/**
 * Names two Shoal instances on one host never share (mesh/daemon/instance.ts,
 * src/drivers/names.ts): a tag made once per data dir and kept, default link and namespace
 * prefixes derived from it (link names still fit in 15 bytes), claims that refuse a kept or
 * explicit prefix another live instance uses (stale claims of removed data dirs are dropped),
 * and the old defaults kept for a data dir an older Shoal used.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { INSTANCE_FILE, instanceNames } from '../../mesh/daemon/instance.js';
import { bridgeName, isInstanceTag, linkPrefixOf, netnsPrefixOf, newInstanceTag, ownedKind, vethHostName } from '../../src/drivers/names.js';
import { isKind } from '../../src/errors.js';

const dirs: string[] = [];
afterEach(() => { for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true }); });
const tmp = (): string => { const d = mkdtempSync(join(tmpdir(), 'shoal-inst-')); dirs.push(d); return d; };

describe('instance tags and the prefixes they make', () => {
  it('tags are 8 of [a-z0-9] starting with a letter; prefixes fit the drivers\' name rules', () => {
    const tags = new Set(Array.from({ length: 200 }, () => newInstanceTag()));
    expect(tags.size).toBe(200);
    for (const tag of tags) {
      expect(isInstanceTag(tag)).toBe(true);
      const p = linkPrefixOf(tag);
      expect(p).toMatch(/^s[a-z][a-z0-9]{2}$/);
      const name = vethHostName(p, 'a1b2c3d4e5f60718', 'task');
      expect(name.length).toBeLessThanOrEqual(15);
      expect(ownedKind(p, bridgeName(p, 'a1b2c3d4e5f60718'))).toBe('bridge');
      expect(netnsPrefixOf(tag)).toBe(`shoal-${tag}-`);
    }
    expect(() => linkPrefixOf('NOPE')).toThrow(/not an instance tag/);
  });
});

describe('instanceNames', () => {
  const names = (dataDir: string, claimsDir: string, extra: { linkPrefix?: string; netnsPrefix?: string; netnsId?: string } = {}): ReturnType<typeof instanceNames> =>
    instanceNames({ dataDir, name: 'vm', claimsDir, netnsId: extra.netnsId ?? 'ns1', ...extra });

  it('makes a tag once and keeps it; two data dirs on one host get different names', () => {
    const claims = tmp();
    const a = tmp();
    const b = tmp();
    const first = names(a, claims);
    expect(first.linkPrefix).toBe(linkPrefixOf(first.tag));
    expect(first.netnsPrefix).toBe(`shoal-${first.tag}-`);
    expect(JSON.parse(readFileSync(join(a, INSTANCE_FILE), 'utf8'))).toEqual({ tag: first.tag });
    expect(names(a, claims)).toEqual(first);
    const other = names(b, claims);
    expect(other.netnsPrefix).not.toBe(first.netnsPrefix);
    expect(other.linkPrefix).not.toBe(first.linkPrefix);
    expect(readdirSync(claims).length).toBe(2);
  });

  it('refuses a kept or explicit prefix another live instance uses, naming it; changes nothing then', () => {
    const claims = tmp();
    const a = tmp();
    const b = tmp();
    const first = names(a, claims);
    const clash = (f: () => unknown): string => {
      try {
        f();
      } catch (e) {
        expect(isKind(e, 'Conflict')).toBe(true);
        return (e as Error).message;
      }
      throw new Error('no conflict');
    };
    expect(clash(() => names(b, claims, { linkPrefix: first.linkPrefix }))).toContain(`link prefix '${first.linkPrefix}' is used in this network namespace by the Shoal instance with data dir ${a}`);
    expect(existsSync(join(b, INSTANCE_FILE))).toBe(false);
    // Links live per network namespace: the same link prefix elsewhere is fine.
    expect(names(b, claims, { linkPrefix: first.linkPrefix, netnsId: 'ns2' }).linkPrefix).toBe(first.linkPrefix);
    // Namespaces are host-wide: an overlapping prefix would let one cleanup delete the other's.
    const c = tmp();
    expect(clash(() => names(c, claims, { netnsPrefix: 'shoal-' }))).toMatch(/namespace prefix 'shoal-' overlaps 'shoal-[a-z0-9]{8}-' of the Shoal instance with data dir /);
    expect(clash(() => names(c, claims, { netnsPrefix: `${first.netnsPrefix}x` }))).toContain('overlaps');
  });

  it('drops claims of data dirs that are gone', () => {
    const claims = tmp();
    const a = tmp();
    const first = names(a, claims, { linkPrefix: 'zz' });
    rmSync(a, { recursive: true, force: true });
    const b = tmp();
    expect(names(b, claims, { linkPrefix: 'zz' }).linkPrefix).toBe('zz');
    expect(readdirSync(claims).map((f) => JSON.parse(readFileSync(join(claims, f), 'utf8')).dataDir)).toEqual([b]);
    expect(first.tag).not.toBe('');
  });

  it('keeps the old defaults for a data dir an older Shoal used (task records, no instance.json)', () => {
    const claims = tmp();
    const old = tmp();
    mkdirSync(join(old, 'tasks'));
    writeFileSync(join(old, 'tasks', 'abc.json'), '{}');
    expect(names(old, claims)).toMatchObject({ tag: 'legacy', linkPrefix: 'sh', netnsPrefix: 'shoal-vm-', claimFile: join(claims, 'legacy-ns1.json') });
    expect(names(old, claims)).toMatchObject({ tag: 'legacy', linkPrefix: 'sh', netnsPrefix: 'shoal-vm-', claimFile: join(claims, 'legacy-ns1.json') });
  });

  it('refuses unusable explicit prefixes with a sentence', () => {
    const claims = tmp();
    expect(() => names(tmp(), claims, { linkPrefix: 'toolong' })).toThrow(/1-4 characters/);
    expect(() => names(tmp(), claims, { netnsPrefix: '../x' })).toThrow(/--netns-prefix/);
  });
});

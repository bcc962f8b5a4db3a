/**
 * Real nftables (root, `nft` installed), always inside a namespace this file created: the
 * host's ruleset is never touched (checked at the end).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isExists, isNotFound } from '../../src/errors.js';
import { execTool } from '../../src/kernel/exec.js';
import { closeNetnsHelper, ensureNetns } from '../../src/kernel/netns.js';
import { ExecNft, type NftJson } from '../../src/kernel/nft.js';
import { cleanupPrefix, kernelError, leftovers, makeTestPrefix } from '../helpers/netns.js';

const prefix = makeTestPrefix();
const ns = `${prefix}-nft`;
const table = `${prefix}_lb`;
let nft: ExecNft;
let hostTablesBefore = '';

// The replace idiom: add (so delete cannot fail), delete, re-declare: one transaction.
const script = (backends: string[]): string => `
add table inet ${table}
delete table inet ${table}
table inet ${table} {
  map vip_tcp {
    type ipv4_addr . inet_service : verdict
    elements = { 10.96.0.10 . 80 : jump svc_web }
  }
  chain svc_web {
    numgen random mod ${backends.length} vmap { ${backends.map((b, i) => `${i} : jump ep_${i}`).join(', ')} }
  }
${backends.map((b, i) => `  chain ep_${i} {\n    meta l4proto tcp dnat ip to ${b}\n  }`).join('\n')}
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    ip daddr . tcp dport vmap @vip_tcp
  }
  chain output {
    type nat hook output priority -100; policy accept;
    ip daddr . tcp dport vmap @vip_tcp
  }
}
`;

/** The parts of a listing that matter: kinds and names (handles change on every replace). */
function shape(j: NftJson): string[] {
  return j.nftables.flatMap((o) => {
    const [kind, body] = Object.entries(o)[0] ?? [];
    if (kind === 'metainfo' || typeof body !== 'object' || body === null) return [];
    const b = body as { name?: string; chain?: string; expr?: unknown };
    return [`${kind} ${b.name ?? b.chain ?? ''}${kind === 'rule' ? ` ${JSON.stringify(b.expr)}` : ''}`];
  });
}


beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error('nft integration tests need root');
  hostTablesBefore = (await execTool('test', 'nft', ['list', 'tables'])).stdout;
  await ensureNetns(ns);
  nft = new ExecNft({ netns: ns });
});

afterAll(async () => {
  await cleanupPrefix(prefix);
  await closeNetnsHelper();
  expect(await leftovers(prefix)).toEqual({ netns: [], links: [] });
  expect((await execTool('test', 'nft', ['list', 'tables'])).stdout).toBe(hostTablesBefore);
});

describe('ExecNft inside a netns', () => {
  it('applies a table atomically and lists it as JSON', async () => {
    await nft.apply(script(['10.0.1.2:80', '10.0.1.3:80']));
    const listed = await nft.list(table);
    expect(shape(listed)).toEqual(expect.arrayContaining([
      `table ${table}`, 'map vip_tcp', 'chain svc_web', 'chain ep_0', 'chain ep_1', 'chain prerouting', 'chain output',
    ]));
    // Re-applying the same script is a no-op in effect (replace idiom).
    await nft.apply(script(['10.0.1.2:80', '10.0.1.3:80']));
    expect(shape(await nft.list(table))).toEqual(shape(listed));
    // The table exists in the namespace, not in the host.
    expect((await execTool('test', 'nft', ['list', 'tables'])).stdout).not.toContain(table);
  });

  it('a failing script changes nothing, and the error carries nft stderr', async () => {
    await nft.apply(script(['10.0.1.2:80']));
    const before = shape(await nft.list(table));
    // Valid statements first (they would change the table), then one the kernel rejects.
    const bad = `${script(['10.0.1.7:80', '10.0.1.8:80', '10.0.1.9:80'])}\ndelete chain inet ${table} no_such_chain\n`;
    const e = await kernelError(nft.apply(bad));
    expect([e.op, e.errno, isNotFound(e)]).toEqual(['nft.apply', 'ENOENT', true]);
    expect(e.stderr).toMatch(/Error: .*No such file or directory/);
    expect(shape(await nft.list(table))).toEqual(before);

    const syntax = await kernelError(nft.apply(`add table inet ${table}\nthis is not nft\n`));
    expect(syntax.errno).toBe('EINVAL');
    expect(syntax.stderr).toContain('syntax error');
    expect(shape(await nft.list(table))).toEqual(before);
  });

  it('create of an existing table is EEXIST; listing a missing table is ENOENT', async () => {
    await nft.apply(`add table inet ${table}`);
    expect(isExists(await kernelError(nft.apply(`create table inet ${table}`)))).toBe(true);
    const missing = await kernelError(nft.list(`${prefix}_none`));
    expect([missing.op, missing.errno]).toEqual(['nft.list', 'ENOENT']);
  });
});

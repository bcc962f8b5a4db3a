import { describe, expect, it } from 'vitest';
import { base32, formatToken, newSecret, parseToken, sameSecret } from '../../mesh/security/tokens.js';

describe('base32 (RFC 4648 test vectors, lowercase, no padding)', () => {
  it.each([
    ['', ''], ['f', 'my'], ['fo', 'mzxq'], ['foo', 'mzxw6'], ['foob', 'mzxw6yq'], ['fooba', 'mzxw6ytb'], ['foobar', 'mzxw6ytboi'],
  ])('%j -> %j', (input, want) => {
    expect(base32(Buffer.from(input))).toBe(want);
  });

  it('a SHA-256 is 52 characters, a 128-bit secret 26', () => {
    expect(base32(Buffer.alloc(32, 0xff))).toHaveLength(52);
    expect(newSecret()).toMatch(/^[a-z2-7]{26}$/);
  });
});

describe('tokens', () => {
  const fp = Buffer.alloc(32, 7);
  it('format and parse round-trip', () => {
    const secret = newSecret();
    const t = formatToken(fp, secret);
    expect(t).toMatch(/^SHOAL-1-[a-z2-7]{52}-[a-z2-7]{26}$/);
    expect(parseToken(t)).toEqual({ fingerprint: base32(fp), secret });
    expect(parseToken(` ${t}\n`)).toEqual({ fingerprint: base32(fp), secret });
  });

  it.each([
    'SHOALMGR-abc', 'SHOAL-2-' + 'a'.repeat(52) + '-' + 'b'.repeat(26), 'SHOAL-1-' + 'a'.repeat(51) + '-' + 'b'.repeat(26),
    'SHOAL-1-' + 'A'.repeat(52) + '-' + 'b'.repeat(26), 'SHOAL-1-' + 'a'.repeat(52) + '-' + '1'.repeat(26), '',
  ])('refuses %j', (t) => {
    expect(parseToken(t)).toBeUndefined();
  });

  it('two secrets never collide and compare in constant time by value', () => {
    const a = newSecret();
    expect(newSecret()).not.toBe(a);
    expect(sameSecret(a, a)).toBe(true);
    expect(sameSecret(a, a.slice(1))).toBe(false);
  });
});

/**
 * Cluster tokens, Swarm-style: `SHOAL-1-<fingerprint>-<secret>`, where the fingerprint is the
 * SHA-256 of the cluster CA certificate (DER) in lowercase base32 (RFC 4648, no padding: 52
 * characters) and the secret is 128 random bits in the same alphabet (26 characters). The
 * fingerprint lets an agent or the CLI, given only a URL and a token, check that the server
 * it reached holds a certificate from that CA (pinning; no system trust store); the secret is
 * what the manager checks. Join and manager tokens have different secrets.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567';
const TOKEN_RE = /^SHOAL-1-([a-z2-7]{52})-([a-z2-7]{26})$/;

/** RFC 4648 base32, lowercase, without padding. */
export function base32(buf: Uint8Array): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const b of buf) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += ALPHABET[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
    value &= (1 << bits) - 1;
  }
  if (bits > 0) out += ALPHABET[(value << (5 - bits)) & 31];
  return out;
}

/** A token's two parts. */
export interface ParsedToken { fingerprint: string; secret: string }

/** Splits a token; undefined when it does not have the `SHOAL-1-...` shape. */
export function parseToken(token: string): ParsedToken | undefined {
  const m = TOKEN_RE.exec(token.trim());
  return m ? { fingerprint: m[1] as string, secret: m[2] as string } : undefined;
}

/** A fresh 128-bit secret. */
export const newSecret = (): string => base32(randomBytes(16));

/** The token for a CA fingerprint (raw SHA-256 or its base32) and a secret. */
export function formatToken(fingerprint: Uint8Array | string, secret: string): string {
  return `SHOAL-1-${typeof fingerprint === 'string' ? fingerprint : base32(fingerprint)}-${secret}`;
}

/** Constant-time string equality. */
export function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** Why a presented token is refused, or undefined when it is the expected one. */
export function tokenMismatch(given: string | undefined, expected: string, acceptedFingerprints: readonly string[]): string | undefined {
  if (!given) return 'no token';
  const g = parseToken(given);
  const e = parseToken(expected);
  if (!g || !e) return sameSecret(given, expected) ? undefined : 'not a Shoal token (SHOAL-1-<CA fingerprint>-<secret>)';
  if (!sameSecret(g.secret, e.secret)) return 'wrong token';
  if (!acceptedFingerprints.includes(g.fingerprint)) return `the token pins CA ${g.fingerprint.slice(0, 12)}…, not this cluster's CA ${e.fingerprint.slice(0, 12)}…`;
  return undefined;
}

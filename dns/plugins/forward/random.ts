/**
 * Unpredictable 16-bit query ids (anti-spoofing, RFC 5452), drawn from the OS CSPRNG in
 * batches so the forwarding path does not make a syscall per query.
 */
import { randomFillSync } from 'node:crypto';

const pool = new Uint16Array(4096);
let next = pool.length;

/** A cryptographically random 16-bit id. */
export function randomId(): number {
  if (next >= pool.length) {
    randomFillSync(pool);
    next = 0;
  }
  return pool[next++] as number;
}

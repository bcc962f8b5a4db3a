import { randomBytes } from 'node:crypto';

/** A new random object id: 16 lowercase hex characters (64 bits), like a short Docker id. */
export const newId = (): string => randomBytes(8).toString('hex');

/** A new secret token (for bearer auth and agent join): 32 bytes, base64url. */
export const newToken = (prefix: string): string => `${prefix}-${randomBytes(32).toString('base64url')}`;

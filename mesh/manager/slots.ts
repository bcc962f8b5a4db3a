/**
 * Slot claims: `slots/<service id>/<slot>` holds the id of the task last created for that slot
 * (a replicated service's slot number; `node-<node id>` for a global service's task on a node).
 * Creating a task for a slot commits, in the same transaction, a compare on the claim's
 * mod revision as the scheduler read it (0: no claim yet) and the new claim. A scheduler only
 * replaces a claim whose task it saw ended or told to shut down (states a task never leaves),
 * so two schedulers (a leader that has not noticed it was replaced, and its successor) can
 * never both create a running task for one slot: the second compare fails.
 */
import { ROOT } from '../../src/model/keys.js';
import type { Service } from '../../src/model/types.js';
import type { Compare, Store, TxnOp } from '../../src/store/types.js';

export const SLOTS_PREFIX = `${ROOT}slots/`;
export const slotKey = (serviceId: string, slot: string): string => `${SLOTS_PREFIX}${serviceId}/${slot}`;

/** The claimed slot of a task: its slot number, or for a global service's task (slot 0) its node. */
export const slotIdOf = (slot: number, nodeId: string): string => (slot === 0 && nodeId ? `node-${nodeId}` : String(slot));

export interface SlotClaim { taskId: string; modRevision: number }

/** Every claim, by key. */
export async function listSlotClaims(store: Store): Promise<Map<string, SlotClaim>> {
  const { kvs } = await store.range(SLOTS_PREFIX);
  return new Map(kvs.map((kv) => [kv.key, { taskId: kv.value, modRevision: kv.modRevision }]));
}

/** The compare and put that move the claim of `(serviceId, slot)` from what was read to `taskId`. */
export function claimSlot(claims: ReadonlyMap<string, SlotClaim>, serviceId: string, slot: string, taskId: string): { compares: Compare[]; ops: TxnOp[] } {
  const key = slotKey(serviceId, slot);
  return {
    compares: [{ key, target: 'modRevision', op: '=', value: claims.get(key)?.modRevision ?? 0 }],
    ops: [{ type: 'put', key, value: taskId }],
  };
}

/** Removes the claims of services that no longer exist (each only if unchanged since read). */
export async function dropStaleClaims(store: Store, claims: ReadonlyMap<string, SlotClaim>, services: ReadonlyArray<Pick<Service, 'id'>>): Promise<void> {
  const live = new Set(services.map((s) => s.id));
  for (const [key, c] of claims) {
    const serviceId = key.slice(SLOTS_PREFIX.length).split('/')[0] ?? '';
    if (live.has(serviceId)) continue;
    await store.txn({ compare: [{ key, target: 'modRevision', op: '=', value: c.modRevision }], success: [{ type: 'delete', key }] });
  }
}

/** Throws when the claim of `(serviceId, slot)` moved since `claims` was read (no retry can help then). */
export async function assertClaimUnchanged(store: Store, claims: ReadonlyMap<string, SlotClaim>, serviceId: string, slot: string): Promise<void> {
  const key = slotKey(serviceId, slot);
  const now = await store.get(key);
  if ((now?.modRevision ?? 0) !== (claims.get(key)?.modRevision ?? 0)) {
    throw new Error(`slot ${slot} of service ${serviceId} was claimed by task ${now?.value ?? '(released)'} meanwhile; re-planning`);
  }
}

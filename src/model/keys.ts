/**
 * The layout of cluster state in the store. Every key Shoal writes starts with {@link ROOT};
 * only the functions here build keys, so the layout can be read in one place.
 *
 * Objects are JSON under `<kind>/<id>`; unique names are claimed with a CAS on
 * `names/<kind>/<name>` (value: the id). Allocations (IPAM) live under `ipam/`.
 */
export const ROOT = '/shoal/';

export type ObjectKind = 'networks' | 'services' | 'tasks' | 'nodes';

export const objectPrefix = (kind: ObjectKind): string => `${ROOT}${kind}/`;
export const objectKey = (kind: ObjectKind, id: string): string => `${ROOT}${kind}/${id}`;
export const namePrefix = (kind: ObjectKind): string => `${ROOT}names/${kind}/`;
export const nameKey = (kind: ObjectKind, name: string): string => `${ROOT}names/${kind}/${name}`;
/** Held with the node's lease: deleted by the store when the agent stops heart-beating. */
export const aliveKey = (nodeId: string): string => `${ROOT}alive/${nodeId}`;
export const alivePrefix = `${ROOT}alive/`;
/** Prefix under which all IPAM allocations are kept (see src/ipam). */
export const IPAM_ROOT = `${ROOT}ipam/`;
/** Cluster-wide settings: id, ingress network, pools. */
export const clusterKey = `${ROOT}cluster`;

/** Which kind of object a key names, and its id; undefined for keys that are not objects. */
export function parseObjectKey(key: string): { kind: ObjectKind; id: string } | undefined {
  if (!key.startsWith(ROOT)) return undefined;
  const rest = key.slice(ROOT.length);
  const slash = rest.indexOf('/');
  if (slash < 0) return undefined;
  const kind = rest.slice(0, slash);
  const id = rest.slice(slash + 1);
  if (id === '' || id.includes('/')) return undefined;
  if (kind === 'networks' || kind === 'services' || kind === 'tasks' || kind === 'nodes') return { kind, id };
  return undefined;
}

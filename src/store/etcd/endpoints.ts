/**
 * Store locations, parsed in one place. `--store` takes `embedded` (the default) or
 * `etcd://HOST:PORT[,HOST:PORT...]`. The scheme names the store, not the transport: the etcd
 * client speaks gRPC, plaintext today; a TLS scheme (with client certificates) plugs in here
 * without touching the callers, which only ever see {@link StoreLocation}.
 */
import { isIP } from 'node:net';
import { invalid } from '../../errors.js';

/** One etcd member's client endpoint. */
export interface EtcdEndpoint {
  host: string;
  port: number;
  /** `host:port` (IPv6 in brackets): the label in logs and metrics, and what the client dials. */
  address: string;
}

export type StoreLocation =
  | { kind: 'embedded' }
  | { kind: 'etcd'; endpoints: EtcdEndpoint[]; tls: false };

const HOSTNAME = /^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$/;

/** Parses one `HOST:PORT` (IPv6 as `[::1]:2379`); throws InvalidParameter naming `what`. */
export function parseEndpoint(s: string, what = '--store'): EtcdEndpoint {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(s.trim());
  const host = m?.[1] ?? m?.[2] ?? '';
  const port = Number(m?.[3]);
  if (!m || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw invalid(`${what}: '${s}' is not HOST:PORT (e.g. 10.0.0.5:2379 or [fd00::5]:2379)`, 'BAD_STORE');
  }
  if (m[1] !== undefined ? isIP(host) !== 6 : !(isIP(host) === 4 || HOSTNAME.test(host))) {
    throw invalid(`${what}: '${host}' in '${s}' is not an IP address or host name`, 'BAD_STORE');
  }
  return { host, port, address: isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}` };
}

/** Parses a `--store` value. Empty or `embedded` is the embedded store. */
export function parseStoreLocation(s: string | undefined): StoreLocation {
  const v = (s ?? '').trim();
  if (v === '' || v === 'embedded') return { kind: 'embedded' };
  const m = /^([a-z][a-z0-9+.-]*):\/\/(.*)$/.exec(v);
  if (!m) throw invalid(`--store '${v}' must be 'embedded' or etcd://HOST:PORT[,HOST:PORT...]`, 'BAD_STORE');
  if (m[1] !== 'etcd') throw invalid(`--store '${v}': unknown scheme '${m[1]}://' (supported: etcd://HOST:PORT[,HOST:PORT...])`, 'BAD_STORE');
  const list = (m[2] ?? '').replace(/\/+$/, '').split(',').map((x) => x.trim()).filter((x) => x !== '');
  if (list.length === 0) throw invalid(`--store '${v}' names no etcd endpoint (etcd://HOST:PORT[,HOST:PORT...])`, 'BAD_STORE');
  const endpoints = list.map((e) => parseEndpoint(e));
  const seen = new Set<string>();
  for (const e of endpoints) {
    if (seen.has(e.address)) throw invalid(`--store '${v}' names ${e.address} twice`, 'BAD_STORE');
    seen.add(e.address);
  }
  return { kind: 'etcd', endpoints, tls: false };
}

/** The location as the user would write it again (logs, `shoal manager` banner). */
export function formatStoreLocation(l: StoreLocation): string {
  return l.kind === 'embedded' ? 'embedded' : `etcd://${l.endpoints.map((e) => e.address).join(',')}`;
}

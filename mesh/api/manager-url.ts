/**
 * Manager addresses, parsed in one place for the agent (`--join`), the CLI (`--host`,
 * `SHOAL_HOST`) and the daemons: a comma-separated list of `https://HOST:PORT` or
 * `unix:///path/to/shoal.sock`. A manager's TCP listener speaks TLS only, so `http://` is
 * refused here with the https:// spelling. Everything else asks this module how to reach a
 * manager (the HTTP request target, the WebSocket URL) instead of looking at schemes.
 */
import { invalid } from '../../src/errors.js';

/** One manager endpoint. `text` is what the user wrote (messages). */
export type ManagerUrl =
  | { kind: 'unix'; path: string; text: string }
  | { kind: 'tcp'; url: URL; secure: boolean; text: string };

/** Parses one manager URL; throws InvalidParameter naming `flag`. */
export function parseManagerUrl(s: string, flag = '--host'): ManagerUrl {
  const text = s.trim();
  if (text.startsWith('unix://')) {
    const path = text.slice('unix://'.length);
    if (!path.startsWith('/')) throw invalid(`${flag} '${text}': a unix socket URL needs an absolute path (unix:///var/lib/shoal/shoal.sock)`, 'BAD_HOST');
    return { kind: 'unix', path, text };
  }
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw invalid(`${flag} '${text}' must be an https:// URL or a unix:// socket path`, 'BAD_HOST');
  }
  if (url.protocol === 'http:') throw invalid(`${flag} '${text}': managers serve TLS only: use https://${url.host}`, 'BAD_HOST');
  if (url.protocol !== 'https:') throw invalid(`${flag} '${text}' must be an https:// URL or a unix:// socket path`, 'BAD_HOST');
  if (url.pathname !== '/' || url.search || url.hash) throw invalid(`${flag} '${text}' must name only a manager (scheme, host and port, no path)`, 'BAD_HOST');
  return { kind: 'tcp', url, secure: url.protocol === 'https:', text };
}

/** Parses `URL1,URL2,...` (at least one; no duplicates). */
export function parseManagerUrls(s: string, flag = '--host'): ManagerUrl[] {
  const parts = s.split(',').map((x) => x.trim()).filter((x) => x !== '');
  if (parts.length === 0) throw invalid(`${flag} names no manager (URL or URL1,URL2,...)`, 'BAD_HOST');
  const out = parts.map((p) => parseManagerUrl(p, flag));
  const seen = new Set<string>();
  for (const u of out) {
    const k = u.kind === 'unix' ? u.path : u.url.origin;
    if (seen.has(k)) throw invalid(`${flag} names ${u.text} twice`, 'BAD_HOST');
    seen.add(k);
  }
  return out;
}

/** The WebSocket URL of `path` on a manager (ws+unix for sockets, wss for https). */
export function wsUrlOf(u: ManagerUrl, path: string): string {
  if (u.kind === 'unix') return `ws+unix://${u.path}:${path}`;
  return `${u.secure ? 'wss' : 'ws'}://${u.url.host}${path}`;
}

/** Options for node:http(s) `request` reaching `path` on a manager. */
export function httpTargetOf(u: ManagerUrl, path: string): { socketPath: string; path: string } | { host: string; port: string; path: string } {
  if (u.kind === 'unix') return { socketPath: u.path, path };
  const t = new URL(path, u.url);
  return { host: u.url.hostname.replace(/^\[|\]$/g, ''), port: u.url.port, path: t.pathname + t.search };
}

/** The URL a manager listening on TCP `host:port` announces (IPv6 in brackets). */
export function tcpManagerUrl(host: string, port: number): string {
  return `https://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

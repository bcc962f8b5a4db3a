/**
 * resolv.conf(5), the parts a forwarder needs: `nameserver` lines (IPv4, IPv6 with optional
 * `%zone`), `search`/`domain`, and `options timeout:N attempts:N rotate`. Unknown lines are
 * ignored, as glibc does.
 */
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';

/** An upstream server. */
export interface UpstreamAddress {
  address: string;
  port: number;
}

/** What resolv.conf says. */
export interface ResolvConf {
  nameservers: string[];
  search: string[];
  /** Per-try timeout in seconds (glibc default 5; Shoal uses its own 2 s unless told). */
  timeout?: number;
  attempts?: number;
  rotate: boolean;
}

/** Parses resolv.conf text. Never throws: garbage lines are skipped. */
export function parseResolvConf(text: string): ResolvConf {
  const conf: ResolvConf = { nameservers: [], search: [], rotate: false };
  for (const raw of text.split('\n')) {
    const line = raw.replace(/[#;].*$/, '').trim();
    if (line === '') continue;
    const [key, ...args] = line.split(/\s+/);
    switch (key) {
      case 'nameserver': {
        const a = args[0];
        if (a !== undefined && isIP(a.split('%')[0] ?? '') !== 0) conf.nameservers.push(a);
        break;
      }
      case 'search':
      case 'domain':
        conf.search = args;
        break;
      case 'options':
        for (const o of args) {
          const [name, value] = o.split(':');
          const n = Number(value);
          if (name === 'timeout' && Number.isInteger(n) && n > 0) conf.timeout = n;
          else if (name === 'attempts' && Number.isInteger(n) && n > 0) conf.attempts = n;
          else if (name === 'rotate') conf.rotate = true;
        }
        break;
      default:
        break;
    }
  }
  return conf;
}

/**
 * The upstreams of a resolv.conf, port 53, minus `exclude` (the resolver's own listen
 * addresses: forwarding to ourselves would loop).
 */
export function upstreamsOf(conf: ResolvConf, exclude: readonly string[] = []): UpstreamAddress[] {
  return conf.nameservers.filter((a) => !exclude.includes(a)).map((address) => ({ address, port: 53 }));
}

/** Reads and parses a resolv.conf file (default `/etc/resolv.conf`); a missing file has no servers. */
export async function readResolvConf(path = '/etc/resolv.conf'): Promise<ResolvConf> {
  try {
    return parseResolvConf(await readFile(path, 'utf8'));
  } catch {
    return parseResolvConf('');
  }
}

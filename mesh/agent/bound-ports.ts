/**
 * The ports processes on this node listen on, from the kernel's socket tables of the agent's
 * own network namespace (`/proc/net/{tcp,tcp6,udp,udp6}`): TCP sockets in LISTEN, UDP sockets
 * bound and unconnected. Only sockets a published port would collide with count: bound to the
 * wildcard address or to `nodeAddress` (a socket on 127.0.0.1 or on a network gateway does
 * not see traffic to the node's address). Sorted `PORT/tcp|udp` strings.
 */
import { readFileSync } from 'node:fs';

const TCP_LISTEN = '0A';
const UDP_UNCONNECTED = '07';

/** `0100007F` -> `127.0.0.1`; 32-hex-digit IPv6 -> only "wildcard or not" matters here. */
function v4FromProc(hex: string): string {
  const n = Number.parseInt(hex, 16);
  return [n & 255, (n >>> 8) & 255, (n >>> 16) & 255, n >>> 24].join('.');
}

/** Entries of one /proc/net table that match: `port` numbers. Pure (unit-tested with fixtures). */
export function parseSocketTable(text: string, state: string, v6: boolean, nodeAddress: string): number[] {
  const out: number[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    const local = f[1];
    if (!local || f[3] !== state) continue;
    const [addr = '', portHex = ''] = local.split(':');
    const port = Number.parseInt(portHex, 16);
    if (!(port > 0)) continue;
    const wildcard = /^0+$/.test(addr);
    if (wildcard || (!v6 && v4FromProc(addr) === nodeAddress)) out.push(port);
  }
  return out;
}

export function boundPorts(nodeAddress: string, procNet = '/proc/net'): string[] {
  const read = (name: string): string => {
    try {
      return readFileSync(`${procNet}/${name}`, 'utf8');
    } catch {
      return ''; // no IPv6 in this kernel
    }
  };
  const out = new Set<string>();
  for (const [file, state, proto, v6] of [
    ['tcp', TCP_LISTEN, 'tcp', false], ['tcp6', TCP_LISTEN, 'tcp', true],
    ['udp', UDP_UNCONNECTED, 'udp', false], ['udp6', UDP_UNCONNECTED, 'udp', true],
  ] as const) {
    for (const p of parseSocketTable(read(file), state, v6, nodeAddress)) out.add(`${p}/${proto}`);
  }
  return [...out].sort();
}

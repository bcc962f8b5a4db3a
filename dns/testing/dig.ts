/**
 * Runs the real `dig` (Debian `dnsutils` / `bind9-dnsutils`) and parses what tests need:
 * status, flags, section counts, EDNS payload size, and answer lines as normalised zone lines.
 */
import { execFile } from 'node:child_process';

/** Parsed `dig` output. */
export interface DigResult {
  status: string;
  flags: string[];
  counts: { query: number; answer: number; authority: number; additional: number };
  /** Answer records as `name ttl class type rdata`, single-spaced. */
  answer: string[];
  /** EDNS UDP payload size in the response's OPT, if any. */
  ednsUdp: number | undefined;
  /** True when dig reported truncation and retried over TCP. */
  retriedTcp: boolean;
  raw: string;
}

/** Runs `dig @server -p port ...args +tries=1 +time=3`; rejects if dig fails to get any answer. */
export function dig(server: string, port: number, args: string[]): Promise<DigResult> {
  return new Promise((resolve, reject) => {
    execFile('dig', [`@${server}`, '-p', String(port), '+tries=1', '+time=3', ...args], { timeout: 15_000 }, (err, stdout) => {
      if (err && !stdout) return reject(err);
      const raw = stdout;
      const status = /status: (\w+)/.exec(raw)?.[1];
      const flagLine = /;; flags: ([^;]*); QUERY: (\d+), ANSWER: (\d+), AUTHORITY: (\d+), ADDITIONAL: (\d+)/.exec(raw);
      if (!status || !flagLine) return reject(new Error(`dig gave no answer:\n${raw}`));
      const answer: string[] = [];
      const m = /;; ANSWER SECTION:\n([\s\S]*?)(?:\n\n|$)/.exec(raw);
      for (const line of (m?.[1] ?? '').split('\n')) if (line.trim() !== '') answer.push(line.trim().split(/\s+/).join(' '));
      const udp = /; EDNS: version: \d+, flags:[^;]*; udp: (\d+)/.exec(raw)?.[1];
      resolve({
        status,
        flags: (flagLine[1] ?? '').trim().split(/\s+/),
        counts: { query: Number(flagLine[2]), answer: Number(flagLine[3]), authority: Number(flagLine[4]), additional: Number(flagLine[5]) },
        answer,
        ednsUdp: udp === undefined ? undefined : Number(udp),
        retriedTcp: raw.includes('Truncated, retrying in TCP mode'),
        raw,
      });
    });
  });
}

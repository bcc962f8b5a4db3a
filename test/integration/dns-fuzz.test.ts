/**
 * Fuzzing the resolver over the network: at least 1,000,000 malformed or random UDP packets
 * (mostly mutations of valid queries, which reach deeper than pure noise), then hostile TCP
 * clients (random frames, truncated frames, oversize lengths, byte-by-byte writes, resets).
 * The resolver runs in a child process (`dns/testing/fuzz-target.ts`): a crash is the child
 * exiting, a hang is a probe query going unanswered. Afterwards valid queries must still be
 * answered and no plugin may ever have thrown.
 *
 * Reproduce a run with FUZZ_SEED=<seed printed on failure>.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildQuery, tcpExchange, udpExchange } from '../../dns/testing/client.js';
import type { FuzzStats } from '../../dns/testing/fuzz-target.js';
import { decodeMessage, MessageBuilder, parseZoneLine, reverseName, RRType } from '../../dns/wire/index.js';

const HOST = '127.0.0.1';
const UDP_PACKETS = 1_000_000;
const BURST = 128;

/** xorshift32: fast, deterministic, good enough to pick mutations. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

function seeds(): Buffer[] {
  const withRecords = new MessageBuilder().header(7, 0x0100).question('web.app', RRType.A);
  withRecords.add('answer', parseZoneLine('web.app. 5 IN A 10.0.0.1'));
  withRecords.add('authority', parseZoneLine('app. 5 IN NS ns.app.'));
  withRecords.add('additional', parseZoneLine('ns.app. 5 IN AAAA fd00::1'));
  withRecords.opt(1232);
  return [
    buildQuery('web', 'A'),
    buildQuery('WEB.app', 'AAAA', { edns: 1232 }),
    buildQuery('tasks.api', 'A'),
    buildQuery('api', 'A', { edns: 4096 }),
    buildQuery('_http._tcp.web', 'SRV'),
    buildQuery(reverseName('10.0.3.5') as string, 'PTR'),
    buildQuery(reverseName('fd00:1::2') as string, 'PTR', { edns: 512 }),
    buildQuery('ext.test', 'A', { edns: 1232 }),
    buildQuery('big.test', 'A'),
    buildQuery('nope.test', 'AAAA'),
    buildQuery('web', 'ANY'),
    buildQuery('', 'NS'),
    withRecords.finish(),
  ];
}

/** One hostile packet: usually a mutated seed, sometimes noise. */
function mutant(next: () => number, pool: Buffer[]): Buffer {
  const r = next();
  if (r % 10 === 0) {
    const n = next() % 600;
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = next() & 0xff;
    return b;
  }
  const seed = pool[next() % pool.length] as Buffer;
  let b = Buffer.from(seed);
  const edits = 1 + (next() % 4);
  for (let e = 0; e < edits; e++) {
    switch (next() % 9) {
      case 0: // flip a byte
        b[next() % b.length] = next() & 0xff;
        break;
      case 1: // truncate
        b = b.subarray(0, next() % (b.length + 1));
        break;
      case 2: // append junk
        b = Buffer.concat([b, Buffer.from(Array.from({ length: next() % 40 }, () => next() & 0xff))]);
        break;
      case 3: // header counts
        if (b.length >= 12) b.writeUInt16BE(next() & 0xffff, 4 + 2 * (next() % 4));
        break;
      case 4: // compression pointer somewhere, often into the header or forward
        if (b.length > 13) {
          const at = 12 + (next() % (b.length - 13));
          b[at] = 0xc0 | (next() & 0x3f);
          b[at + 1] = next() & 0xff;
        }
        break;
      case 5: // a label length that lies
        if (b.length > 12) b[12 + (next() % (b.length - 12))] = next() % 70;
        break;
      case 6: // flags: QR, opcode, TC, rcode bits
        if (b.length >= 4) b.writeUInt16BE(next() & 0xffff, 2);
        break;
      case 7: // qtype/qclass near the end of the question
        if (b.length >= 16) b.writeUInt16BE(next() & 0xffff, b.length - 2 - 2 * (next() % 4));
        break;
      default: // duplicate a slice (repeated OPT, repeated labels)
        if (b.length > 12) {
          const from = 12 + (next() % (b.length - 12));
          b = Buffer.concat([b, b.subarray(from, Math.min(b.length, from + 1 + (next() % 30)))]);
        }
    }
  }
  return b;
}

let child: ChildProcess;
let port: number;
let exitCode: number | null | undefined;
const fromChild: Array<(m: unknown) => void> = [];

function stats(): Promise<FuzzStats> {
  return new Promise((resolve) => {
    fromChild.push((m) => resolve((m as { stats: FuzzStats }).stats));
    child.send('stats');
  });
}

beforeAll(async () => {
  child = fork(fileURLToPath(new URL('../../dns/testing/fuzz-target.ts', import.meta.url)), [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  child.on('exit', (code) => (exitCode = code));
  port = await new Promise<number>((resolve, reject) => {
    child.once('message', (m) => resolve((m as { port: number }).port));
    child.once('exit', (code) => reject(new Error(`fuzz target exited early (${String(code)})`)));
  });
  child.on('message', (m) => {
    if (typeof m === 'object' && m !== null && 'stats' in m) fromChild.shift()?.(m);
  });
});

afterAll(async () => {
  if (child && exitCode === undefined) {
    const gone = new Promise((r) => child.once('exit', r));
    child.send('stop');
    const t = setTimeout(() => child.pid !== undefined && process.kill(child.pid, 'SIGKILL'), 5000);
    await gone;
    clearTimeout(t);
  }
});

/** A valid query on its own socket; resolves true when answered correctly. */
async function probe(sock: UdpSocket, id: number, inbox: Map<number, () => void>): Promise<boolean> {
  const q = buildQuery('web', 'A', { id });
  for (let attempt = 0; attempt < 3; attempt++) {
    const answered = new Promise<boolean>((resolve) => {
      const t = setTimeout(() => resolve(false), 2000);
      inbox.set(id, () => {
        clearTimeout(t);
        resolve(true);
      });
    });
    sock.send(q, port, HOST);
    if (await answered) return true;
  }
  return false;
}

describe('fuzzing the resolver', () => {
  it(`survives ${UDP_PACKETS.toLocaleString('en')} hostile UDP packets and hostile TCP clients`, { timeout: 180_000 }, async () => {
    const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 0xffffffff);
    const next = rng(seed);
    const pool = seeds();
    const started = Date.now();

    const fuzz = createSocket('udp4');
    let responses = 0;
    fuzz.on('message', () => responses++);
    fuzz.on('error', () => undefined);
    await new Promise<void>((r) => fuzz.bind(0, HOST, () => r()));
    const prober = createSocket('udp4');
    const inbox = new Map<number, () => void>();
    prober.on('message', (m) => {
      const d = decodeMessage(m);
      if (d && d.answer.length === 1) inbox.get(d.id)?.();
    });
    await new Promise<void>((r) => prober.bind(0, HOST, () => r()));

    // UDP: bursts, each closed by a probe; the probe's answer is the backpressure.
    let sent = 0;
    let probes = 0;
    const before = (await stats()).received;
    while (sent < UDP_PACKETS) {
      for (let chunk = 0; chunk < 200; chunk++) {
        for (let i = 0; i < BURST; i++) {
          fuzz.send(mutant(next, pool), port, HOST);
          sent++;
        }
        probes++;
        const ok = await probe(prober, probes & 0xffff, inbox);
        if (!ok) throw new Error(`resolver stopped answering after ${sent} packets (FUZZ_SEED=${seed}, exit=${String(exitCode)})`);
      }
      expect(exitCode, `resolver exited (FUZZ_SEED=${seed})`).toBeUndefined();
    }
    const udpDone = Date.now();

    // TCP: hostile clients, 32 at a time.
    let tcpFrames = 0;
    const hostile = async (kind: number): Promise<void> => {
      await new Promise<void>((resolve) => {
        const sock = connect({ host: HOST, port });
        const finish = (): void => {
          sock.destroy();
          resolve();
        };
        const t = setTimeout(finish, 3000);
        sock.on('close', () => {
          clearTimeout(t);
          resolve();
        });
        sock.on('error', () => undefined);
        sock.on('data', () => undefined);
        sock.on('connect', () => {
          const frame = (b: Buffer): Buffer => {
            tcpFrames++;
            const len = Buffer.alloc(2);
            len.writeUInt16BE(b.length);
            return Buffer.concat([len, b]);
          };
          switch (kind % 6) {
            case 0: // pipelined random frames
              sock.end(Buffer.concat(Array.from({ length: 50 }, () => frame(mutant(next, pool)))));
              break;
            case 1: // a frame cut short, then hang up
              sock.end(frame(mutant(next, pool)).subarray(0, 7));
              break;
            case 2: // a length no query has
              sock.write(Buffer.from([0xff, 0xff, 1, 2, 3]));
              break;
            case 3: {
              // a valid query one byte at a time
              const bytes = frame(buildQuery('web', 'A'));
              let i = 0;
              const drip = setInterval(() => {
                if (sock.destroyed) return clearInterval(drip);
                sock.write(bytes.subarray(i, ++i));
                if (i >= bytes.length) {
                  clearInterval(drip);
                  sock.end(); // half-close: the server answers, then closes its side
                }
              }, 2);
              break;
            }
            case 4: // noise with zero-length and tiny frames
              sock.end(Buffer.concat([Buffer.from([0, 0, 0, 1, 0xab]), Buffer.from(Array.from({ length: 300 }, () => next() & 0xff))]));
              break;
            default: // reset right away
              sock.resetAndDestroy();
          }
        });
      });
    };
    for (let round = 0; round < 40; round++) {
      await Promise.all(Array.from({ length: 32 }, (_, i) => hostile(round * 32 + i)));
    }
    const tcpDone = Date.now();

    // Still alive, still correct, nothing thrown inside.
    const udp = decodeMessage((await udpExchange(port, buildQuery('tasks.api', 'A', { edns: 1232 })))!);
    expect(udp?.answer.length).toBeGreaterThan(0);
    const tcp = decodeMessage((await tcpExchange(port, [buildQuery('web', 'AAAA')]))[0]!);
    expect(tcp?.answer).toHaveLength(1);
    const s = await stats();
    expect(exitCode).toBeUndefined();
    // Every packet reached the chain (none lost in a kernel buffer): received counts UDP
    // packets, probes and TCP frames.
    expect(s.received - before - probes).toBeGreaterThanOrEqual(UDP_PACKETS);
    expect(s.errors.handler ?? 0, `a plugin threw (FUZZ_SEED=${seed})`).toBe(0);
    expect(s.errors.encode ?? 0).toBe(0);
    expect(s.rssBytes).toBeLessThan(1024 * 1024 * 1024);
    console.log(
      `dns fuzz: seed ${seed}; UDP ${sent} sent, ${s.received - before} processed, ${responses} responses, ` +
        `${probes} probes in ${((udpDone - started) / 1000).toFixed(1)} s; TCP ${tcpFrames} frames over 1280 connections in ` +
        `${((tcpDone - udpDone) / 1000).toFixed(1)} s; rss ${(s.rssBytes / 2 ** 20).toFixed(0)} MiB; errors ${JSON.stringify(s.errors)}`,
    );
    fuzz.close();
    prober.close();
  });
});

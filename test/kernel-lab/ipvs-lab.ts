/**
 * IPVS end to end in a real kernel, run INSIDE the kernel lab (plain node, no vitest):
 *
 *     npx tsc -p tsconfig.build.json
 *     ../shared/kernel-lab/run-in-kernel.sh -- node dist/test/kernel-lab/ipvs-lab.js
 *
 * Topology (every netns created here, prefix `kl` + random, removed at the end): a switch netns
 * with bridge br0; on it a client netns `c` (10.77.0.2), a director netns `lb` (10.77.0.3, VIP
 * 10.77.200.1 on lo) and three backends b1..b3 (10.77.0.11-13) serving TCP :8080 and UDP :5353.
 * IPVS is per netns: the client's own IPVS balances VIP 10.77.100.1 for its locally originated
 * traffic (as Docker before 19.03 did inside each container), reached from this main thread
 * through `ipvsIn(netns)` (the roaming thread opens the IPVS socket inside the target). The `lb`
 * netns is an ingress-style director whose service masquerades (nft SNAT after IPVS).
 *
 * Prints one line per check (`ok - <id>: ...` / `not ok - <id>: ...`) and exits 1 on any
 * failure. This module is also the handler module of the NetnsWorkers in the backend and client
 * netns (`handlers`, `shutdown`): `main()` only runs on the main thread.
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { isMainThread } from 'node:worker_threads';
import { hasIpvs } from '../../src/kernel/ipvs-genl.js';
import { assert, check, failedChecks, ipvsadm, run, secs } from './checks.js';
import { ExecNft } from '../../src/kernel/nft.js';
import { deleteNetns, NetnsWorker } from '../../src/kernel/netns.js';
import { closeSharedNetnsRoamer, ipvsIn, netnsSysctl, sharedNetnsRoamer } from '../../src/kernel/netns-roamer.js';
import { IpvsLoadBalancer } from '../../ingress/ipvs/index.js';
import { vsKey, type LbBackend, type VirtualService } from '../../ingress/types.js';

const TIMEOUT_MS = 8000; // generous: JS runs ~10x slower under TCG

// ---- worker side: servers in the backends, clients in the client netns ------------------------

const closers: Array<() => void> = [];
const held = new Map<number, Socket>();
let accepted = 0;
let nextHeld = 1;

/** First line a TCP connection to host:port receives; the socket is left open (returned). */
function firstLine(host: string, port: number, timeoutMs = TIMEOUT_MS): Promise<{ line: string; sock: Socket }> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const sock = connect({ host, port });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no answer from ${host}:${port} within ${timeoutMs} ms`));
    }, timeoutMs);
    sock.on('data', (d: Buffer) => {
      buf += d.toString();
      const i = buf.indexOf('\n');
      if (i < 0) return;
      clearTimeout(timer);
      sock.removeAllListeners('data');
      resolve({ line: buf.slice(0, i), sock });
    });
    sock.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

/** Handlers run inside a NetnsWorker (`lab.<name>`). */
export const handlers = {
  /** Serve TCP :8080 (greets `<name> <client address>`, then echoes) and UDP :5353 (answers the same greeting). */
  async serve(name: unknown): Promise<void> {
    const srv: Server = createServer((c) => {
      accepted++;
      c.write(`${String(name)} ${c.remoteAddress ?? '?'}\n`);
      c.on('data', (d) => c.write(d));
      c.on('error', () => undefined);
    });
    await new Promise<void>((resolve, reject) => srv.once('error', reject).listen(8080, '0.0.0.0', () => resolve()));
    const udp: UdpSocket = createSocket('udp4');
    udp.on('message', (_m, r) => udp.send(`${String(name)} ${r.address}\n`, r.port, r.address));
    await new Promise<void>((resolve) => udp.bind(5353, '0.0.0.0', () => resolve()));
    closers.push(() => srv.close(), () => udp.close());
  },

  /** TCP connections accepted so far. */
  accepted: (): number => accepted,

  /** `n` TCP connections one after the other; the greeting of each. */
  async hello(host: unknown, port: unknown, n: unknown = 1, timeoutMs: unknown = TIMEOUT_MS): Promise<string[]> {
    const lines: string[] = [];
    for (let i = 0; i < Number(n); i++) {
      const { line, sock } = await firstLine(String(host), Number(port), Number(timeoutMs));
      sock.end();
      lines.push(line);
    }
    return lines;
  },

  /** A connection kept open: its id and greeting. */
  async hold(host: unknown, port: unknown): Promise<{ id: number; line: string }> {
    const { line, sock } = await firstLine(String(host), Number(port));
    const id = nextHeld++;
    held.set(id, sock);
    return { id, line };
  },

  /** Send `text` on a held connection and resolve what comes back. */
  echo(id: unknown, text: unknown): Promise<string> {
    const sock = held.get(Number(id));
    if (!sock) return Promise.reject(new Error(`no held connection ${String(id)}`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no echo')), TIMEOUT_MS);
      sock.once('data', (d: Buffer) => {
        clearTimeout(timer);
        resolve(d.toString());
      });
      sock.once('error', reject);
      sock.write(String(text));
    });
  },

  /** How a connect to host:port ends: `connected`, an errno code, or `timeout`. */
  refused(host: unknown, port: unknown): Promise<string> {
    return new Promise((resolve) => {
      const sock = connect({ host: String(host), port: Number(port) });
      const timer = setTimeout(() => {
        sock.destroy();
        resolve('timeout');
      }, TIMEOUT_MS);
      sock.on('connect', () => {
        clearTimeout(timer);
        sock.destroy();
        resolve('connected');
      });
      sock.on('error', (e: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        resolve(e.code ?? e.message);
      });
    });
  },

  /** `n` UDP datagrams, each from a fresh socket: `{ line, from }` of each answer. */
  async udp(host: unknown, port: unknown, n: unknown = 1): Promise<Array<{ line: string; from: string }>> {
    const out: Array<{ line: string; from: string }> = [];
    for (let i = 0; i < Number(n); i++) {
      out.push(await new Promise((resolve, reject) => {
        const s = createSocket('udp4');
        const timer = setTimeout(() => {
          s.close();
          reject(new Error(`no UDP answer from ${String(host)}:${String(port)}`));
        }, TIMEOUT_MS);
        s.once('message', (m, r) => {
          clearTimeout(timer);
          s.close();
          resolve({ line: m.toString().trim(), from: r.address });
        });
        s.send('hi', Number(port), String(host));
      }));
    }
    return out;
  },
};

/** Run by NetnsWorker.close(): close every socket this module opened. */
export function shutdown(): void {
  for (const s of held.values()) s.destroy();
  held.clear();
  for (const c of closers.splice(0)) c();
}

// ---- main thread: topology, load balancers, checks --------------------------------------------

const VIP = '10.77.100.1';
const VIP_LB = '10.77.200.1';
/** A VIP that carries every port (fwmark services), beside one declared port. */
const VIP_ALL = '10.77.100.2';
const BACKENDS = { b1: '10.77.0.11', b2: '10.77.0.12', b3: '10.77.0.13' } as const;
type Backend = keyof typeof BACKENDS;


const count = (lines: string[]): Record<string, number> => {
  const c: Record<string, number> = {};
  for (const l of lines) {
    const name = l.split(' ')[0] ?? '?';
    c[name] = (c[name] ?? 0) + 1;
  }
  return c;
};

const backends = (port: number, weights: Partial<Record<Backend, number>> = {}, only: Backend[] = ['b1', 'b2', 'b3']): LbBackend[] =>
  only.map((b) => ({ address: BACKENDS[b], port, weight: weights[b] ?? 1 }));

async function main(): Promise<void> {
  const p = `kl${Math.floor(Math.random() * 36 ** 4).toString(36).padStart(4, '0')}`;
  const ns = { sw: `${p}-sw`, c: `${p}-c`, lb: `${p}-lb`, b1: `${p}-b1`, b2: `${p}-b2`, b3: `${p}-b3` };
  const workers: NetnsWorker[] = [];
  let client: NetnsWorker | undefined;
  const lbs: IpvsLoadBalancer[] = [];
  const peer: Record<Backend, NetnsWorker | undefined> = { b1: undefined, b2: undefined, b3: undefined };
  const call = async <T>(w: NetnsWorker | undefined, method: string, ...args: unknown[]): Promise<T> => {
    assert(w, `no worker for ${method}`);
    return (await w.call(`lab.${method}`, ...args)) as T;
  };
  console.log(`kernel ${(await run('uname', ['-r'])).trim()}, prefix ${p}`);

  try {
    await check('has-ipvs', async () => {
      assert(await hasIpvs(), 'hasIpvs() is false: the IPVS generic-netlink family does not resolve');
      return 'the IPVS generic-netlink family resolves';
    });

    await check('topology', async () => {
      const roamer = await sharedNetnsRoamer();
      await roamer.ensureNetns(ns.sw, [['ensureBridge', 'br0'], ['setUp', 'br0'], ['setUp', 'lo']]);
      const hosts: Array<[string, string, string]> = [
        [ns.c, 'c', '10.77.0.2'], [ns.lb, 'lb', '10.77.0.3'],
        ...(Object.entries(BACKENDS) as Array<[Backend, string]>).map(([b, a]) => [ns[b], b, a] as [string, string, string]),
      ];
      for (const [name, short, addr] of hosts) {
        await roamer.ensureNetns(name, [['setUp', 'lo']]);
        await roamer.run(ns.sw, [
          ['ensureVeth', { name: `v-${short}`, peer: 'eth0', peerNetns: name }], ['setMaster', `v-${short}`, 'br0'], ['setUp', `v-${short}`],
        ]);
        await roamer.run(name, [['ensureAddress', 'eth0', `${addr}/24`], ['setUp', 'eth0']]);
      }
      // The client reaches its VIP through its own IPVS (a route is needed for the source
      // address choice; nothing answers at 10.77.0.1), and the director's VIP through `lb`.
      await roamer.run(ns.c, [
        ['ensureRoute', { dst: `${VIP}/32`, via: '10.77.0.1' }], ['ensureRoute', { dst: `${VIP_ALL}/32`, via: '10.77.0.1' }],
        ['ensureRoute', { dst: `${VIP_LB}/32`, via: '10.77.0.3' }],
      ]);
      await roamer.run(ns.lb, [['ensureAddress', 'lo', `${VIP_LB}/32`]]);
      for (const b of Object.keys(BACKENDS) as Backend[]) {
        const w = await NetnsWorker.start({ netns: ns[b], modules: { lab: import.meta.url } });
        workers.push(w);
        peer[b] = w;
        await call(w, 'serve', b);
      }
      client = await NetnsWorker.start({ netns: ns.c, modules: { lab: import.meta.url } });
      workers.push(client);
      return `switch + client + director + 3 backends (${Object.values(ns).join(' ')})`;
    });

    const lb = new IpvsLoadBalancer({ ipvs: ipvsIn(ns.c), sysctl: netnsSysctl(ns.c), nft: new ExecNft({ netns: ns.c }) });
    lbs.push(lb);
    const web = (over: Partial<VirtualService> = {}): VirtualService => ({
      service: 'web', address: VIP, port: 80, protocol: 'tcp', scheduler: 'rr', backends: backends(8080), ...over,
    });
    const dns: VirtualService = { service: 'dns', address: VIP, port: 53, protocol: 'udp', scheduler: 'rr', backends: backends(5353) };
    const empty: VirtualService = { service: 'empty', address: VIP, port: 81, protocol: 'tcp', scheduler: 'rr', backends: [] };

    await check('program', async () => {
      // A leftover of "an earlier process": syncAll must remove it.
      const stale = ipvsIn(ns.c);
      const left = { protocol: 'tcp' as const, address: '10.77.100.9', port: 80, scheduler: 'wrr', flags: {}, timeout: 0, netmask: '255.255.255.255' };
      await stale.newService(left);
      await stale.newDest(left, { address: '10.77.0.99', port: 80, weight: 1, forward: 'masq', upperThreshold: 0, lowerThreshold: 0 });
      const t = performance.now();
      await lb.syncAll([web(), dns, empty]);
      const ms = performance.now() - t;
      const left2 = (await stale.getServices()).filter((s) => s.address === '10.77.100.9');
      assert(left2.length === 0, 'the leftover service survived syncAll');
      return `syncAll of 3 services / 6 real servers in ${ms.toFixed(0)} ms (leftover removed)`;
    });

    let spread: string[] = [];
    await check('spread', async () => {
      spread = await call<string[]>(client, 'hello', VIP, 80, 100);
      const c = count(spread);
      assert(Object.keys(c).sort().join() === 'b1,b2,b3', `100 connections reached ${JSON.stringify(c)}`);
      return `100 connections to ${VIP}:80 -> ${JSON.stringify(c)}`;
    });

    await check('client-address', async () => {
      const seen = new Set(spread.map((l) => l.split(' ')[1]));
      assert(seen.size === 1 && seen.has('10.77.0.2'), `backends saw ${[...seen].join(', ')}`);
      return 'every backend saw the client address 10.77.0.2';
    });

    let drained: Backend = 'b1';
    let heldId = 0;
    await check('drain', async () => {
      const h = await call<{ id: number; line: string }>(client, 'hold', VIP, 80);
      heldId = h.id;
      drained = h.line.split(' ')[0] as Backend;
      assert(drained in BACKENDS, `held connection greeted '${h.line}'`);
      await lb.apply([web({ backends: backends(8080, { [drained]: 0 }) })], []);
      const before = await call<number>(peer[drained], 'accepted');
      const lines = await call<string[]>(client, 'hello', VIP, 80, 30);
      const after = await call<number>(peer[drained], 'accepted');
      assert(after === before, `${drained} (weight 0) accepted ${after - before} new connections`);
      assert(!lines.some((l) => l.startsWith(`${drained} `)), `${drained} greeted after draining`);
      const echo = await call<string>(client, 'echo', heldId, 'still-open');
      assert(echo === 'still-open', `the held connection answered '${echo}'`);
      return `${drained} at weight 0: 0 of 30 new connections, its open connection still echoes (${JSON.stringify(count(lines))})`;
    });

    let removed: Backend = 'b2';
    await check('remove', async () => {
      const live = (Object.keys(BACKENDS) as Backend[]).filter((b) => b !== drained);
      removed = live[0] as Backend;
      const kept = (Object.keys(BACKENDS) as Backend[]).filter((b) => b !== removed);
      await lb.apply([web({ backends: backends(8080, { [drained]: 0 }, kept) })], []);
      const before = await call<number>(peer[removed], 'accepted');
      const lines = await call<string[]>(client, 'hello', VIP, 80, 30);
      const after = await call<number>(peer[removed], 'accepted');
      assert(after === before, `${removed} (removed) accepted ${after - before} new connections`);
      const c = count(lines);
      assert(Object.keys(c).join() === live[1], `30 connections reached ${JSON.stringify(c)}`);
      return `${removed} removed: 0 of 30 new connections; all went to ${live[1]}`;
    });

    await check('udp', async () => {
      const answers = await call<Array<{ line: string; from: string }>>(client, 'udp', VIP, 53, 6);
      assert(answers.every((a) => a.from === VIP), `answers came from ${answers.map((a) => a.from).join(', ')}`);
      assert(answers.every((a) => a.line.endsWith(' 10.77.0.2')), `backends saw ${answers.map((a) => a.line).join(', ')}`);
      const c = count(answers.map((a) => a.line));
      assert(Object.keys(c).length === 3, `6 datagrams reached ${JSON.stringify(c)}`);
      return `6 datagrams to ${VIP}:53 -> ${JSON.stringify(c)}, answered from the VIP`;
    });

    await check('refuse-empty', async () => {
      const how = await call<string>(client, 'refused', VIP, 81);
      assert(how === 'ECONNREFUSED', `a connection to a service without backends ended with ${how}`);
      return `${VIP}:81 (no backends) refuses: ${how}`;
    });

    await check('ipvsadm', async () => {
      const got = await ipvsadm(ns.c);
      const kept = (Object.keys(BACKENDS) as Backend[]).filter((b) => b !== removed);
      const want = [
        `TCP ${VIP}:80 rr`, `TCP ${VIP}:81 rr`, `UDP ${VIP}:53 rr`,
        ...kept.map((b) => `TCP ${VIP}:80 rr -> ${BACKENDS[b]}:8080 Masq ${b === drained ? 0 : 1}`),
        ...(Object.values(BACKENDS)).map((a) => `UDP ${VIP}:53 rr -> ${a}:5353 Masq 1`),
      ].sort();
      assert(JSON.stringify(got) === JSON.stringify(want), `ipvsadm -Ln shows\n${got.join('\n')}\nwanted\n${want.join('\n')}`);
      return `ipvsadm -Ln shows exactly ${want.length} lines: 3 services and their real servers`;
    });

    await check('every-port', async () => {
      // Swarm's way: nft marks packets to the VIP, a fwmark service per protocol balances them
      // and the real servers (port 0) keep the destination port; a declared port (80 -> 8080)
      // keeps its own service and is not marked.
      const all = (protocol: 'tcp' | 'udp'): VirtualService => ({ service: 'all', address: VIP_ALL, port: 0, protocol, scheduler: 'rr', backends: backends(0) });
      const declared: VirtualService = { service: 'all', address: VIP_ALL, port: 80, protocol: 'tcp', scheduler: 'rr', backends: backends(8080, {}, ['b1']) };
      await lb.apply([all('tcp'), all('udp'), declared], []);
      const tcp = count(await call<string[]>(client, 'hello', VIP_ALL, 8080, 30));
      assert(Object.keys(tcp).sort().join() === 'b1,b2,b3', `30 connections to ${VIP_ALL}:8080 reached ${JSON.stringify(tcp)}`);
      const udp = await call<Array<{ line: string; from: string }>>(client, 'udp', VIP_ALL, 5353, 6);
      assert(udp.every((a) => a.from === VIP_ALL), `UDP answers came from ${udp.map((a) => a.from).join(', ')}`);
      const viaDeclared = count(await call<string[]>(client, 'hello', VIP_ALL, 80, 6));
      assert(JSON.stringify(viaDeclared) === '{"b1":6}', `the declared port 80 reached ${JSON.stringify(viaDeclared)}`);
      const fwm = (await ipvsadm(ns.c)).filter((l) => l.startsWith('FWM '));
      assert(fwm.filter((l) => !l.includes('->')).length === 2, `ipvsadm shows fwmark services:\n${fwm.join('\n')}`);
      const marks = await run('nsenter', [`--net=/run/netns/${ns.c}`, 'nft', 'list', 'table', 'inet', 'shoal-ipvs-mark']);
      assert(marks.includes(VIP_ALL), `the mark table does not name ${VIP_ALL}:\n${marks}`);
      await lb.apply([], [vsKey(all('tcp')), vsKey(all('udp')), vsKey(declared)]);
      const left = (await ipvsadm(ns.c)).filter((l) => l.startsWith('FWM ') || l.includes(VIP_ALL));
      assert(left.length === 0, `after removal ipvsadm still shows ${left.join('; ')}`);
      const how = await call<string>(client, 'refused', VIP_ALL, 8080);
      assert(how !== 'connected', 'the removed every-port VIP still connects');
      return `${VIP_ALL}: any TCP port -> ${JSON.stringify(tcp)} (port kept), UDP :5353 answered from the VIP, declared :80 -> b1 only; `
        + `2 FWM services in ipvsadm; removed: gone from IPVS, ${VIP_ALL}:8080 ${how}`;
    });

    await check('timeouts-sysctls', async () => {
      const t = (await run('nsenter', [`--net=/run/netns/${ns.c}`, 'ipvsadm', '-L', '--timeout'])).trim();
      assert(t === 'Timeout (tcp tcpfin udp): 7500 120 300', `ipvsadm says '${t}'`);
      const s = netnsSysctl(ns.c);
      const vals = await Promise.all(['conntrack', 'expire_nodest_conn', 'expire_quiescent_template'].map((k) => s.get(`net.ipv4.vs.${k}`)));
      assert(vals.every((v) => v === '1'), `vs sysctls are ${vals.join(',')}`);
      return `${t}; vs.conntrack, expire_nodest_conn, expire_quiescent_template = 1`;
    });

    const director = new IpvsLoadBalancer({ ipvs: ipvsIn(ns.lb), sysctl: netnsSysctl(ns.lb), nft: new ExecNft({ netns: ns.lb }) });
    lbs.push(director);
    const ingress = (masquerade: boolean): VirtualService => ({
      service: 'ingress', address: VIP_LB, port: 80, protocol: 'tcp', scheduler: 'rr', masquerade, backends: backends(8080),
    });

    await check('masquerade', async () => {
      await director.syncAll([ingress(true)]);
      const lines = await call<string[]>(client, 'hello', VIP_LB, 80, 6);
      const seen = new Set(lines.map((l) => l.split(' ')[1]));
      assert(seen.size === 1 && seen.has('10.77.0.3'), `backends saw ${[...seen].join(', ')} through the director`);
      return `client -> ${VIP_LB}:80 via the director: backends saw the director 10.77.0.3 (${JSON.stringify(count(lines))})`;
    });

    await check('masquerade-needed', async () => {
      await director.apply([ingress(false)], []);
      const how = await call<string[]>(client, 'hello', VIP_LB, 80, 1, 3000).then(() => 'connected', (e: unknown) => (e instanceof Error ? e.message : String(e)));
      assert(how !== 'connected', 'without SNAT the connection worked: the check proves nothing');
      await director.apply([ingress(true)], []); // the incremental path: one element added
      const lines = await call<string[]>(client, 'hello', VIP_LB, 80, 3);
      assert(lines.every((l) => l.endsWith(' 10.77.0.3')), `after re-enabling: ${lines.join(', ')}`);
      return `without SNAT the backend answers the client directly and the connection fails (${how}); re-enabled, it works`;
    });

    await check('cleanup', async () => {
      await director.cleanup();
      const left = await ipvsadm(ns.lb);
      const tables = await run('nsenter', [`--net=/run/netns/${ns.lb}`, 'nft', 'list', 'tables']);
      assert(left.length === 0, `ipvsadm in the director still shows ${left.join('; ')}`);
      assert(!tables.includes('shoal-ipvs'), `nft still has ${tables.trim()}`);
      await lb.cleanup();
      assert((await ipvsadm(ns.c)).length === 0, 'the client netns still has services');
      return 'both load balancers removed their services and the nft table';
    });
  } finally {
    for (const l of lbs) await l.close().catch(() => undefined);
    for (const w of workers) await w.close().catch(() => undefined);
    await closeSharedNetnsRoamer();
    for (const name of Object.values(ns)) await deleteNetns(name).catch(() => undefined);
  }
  console.log(failedChecks() ? `FAILED ${failedChecks()} check(s) [${secs()}s]` : `ALL OK [${secs()}s]`);
  process.exit(failedChecks() ? 1 : 0);
}

if (isMainThread) {
  main().catch((e: unknown) => {
    console.log(`not ok - lab: ${e instanceof Error ? e.stack ?? e.message : String(e)}`);
    process.exit(1);
  });
}

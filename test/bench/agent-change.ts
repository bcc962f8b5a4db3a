/**
 * What one endpoint change costs the AGENT (its own CPU, not only nft's), at 100 and at 10,000
 * services: the watch event lands in the LocalIndex, NodeLb's change tracker marks the one
 * service, recomputes its virtual services, diffs them and renders the nft script for the
 * sandbox. Not a test; never part of the pass/fail gate.
 *
 *   node --import tsx test/bench/agent-change.ts
 *   BENCH_SIZES=100,10000 BENCH_CHANGES=300 node --import tsx test/bench/agent-change.ts
 *
 * Two measurements per size, sizes taking turns over BENCH_ROUNDS (3) rounds, medians printed:
 * - `agent`: the nftables dataplane over an Nft that only keeps the scripts (no kernel): the
 *   agent's CPU per change (`process.cpuUsage`), the target of the issue: ratio <= 1.5.
 * - `agent + nft`: the same with real `nft` in a namespace of this run: the agent's CPU plus
 *   the CPU of the nft processes it spawned (/proc/self/stat cutime + cstime, 10 ms ticks,
 *   averaged over the changes), i.e. the whole node-side cost of a change.
 * Each change flips one random task's health (out of, then back into, its service): one
 * service dirty, one apply. BENCH_WARMUP (100) changes run first, unmeasured, so the set-up's
 * garbage is not charged to the changes. 10 replicas per service, 5 of them on this node. Writes
 * docs/bench-agent.md (one section per machine).
 */
import { readFileSync } from 'node:fs';
import { cpus, hostname, release } from 'node:os';
import { NftLoadBalancer } from '../../ingress/nft/index.js';
import { NodeLb } from '../../mesh/agent/lb.js';
import { LocalIndex } from '../../mesh/agent/local-index.js';
import type { WireKv } from '../../mesh/api/watch.js';
import { ensureNetns } from '../../src/kernel/netns.js';
import { ExecNft, type Nft, type NftJson } from '../../src/kernel/nft.js';
import { objectKey } from '../../src/model/keys.js';
import type { Network, Node, Service, Task } from '../../src/model/types.js';
import { finalCleanup, makeTestPrefix } from '../helpers/netns.js';
import { writeSection } from './doc.js';

const SIZES = (process.env.BENCH_SIZES ?? '100,10000').split(',').map(Number);
const CHANGES = Number(process.env.BENCH_CHANGES ?? 300);
const REAL_CHANGES = Number(process.env.BENCH_REAL_CHANGES ?? 60);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const WARMUP = Number(process.env.BENCH_WARMUP ?? 100);
const REPLICAS = 10;
const DOC = 'docs/bench-agent.md';

/** An Nft that keeps nothing but a count: the kernel's share is left out. */
class NullNft implements Nft {
  bytes = 0;
  async apply(script: string): Promise<void> { this.bytes += script.length; }
  async list(): Promise<NftJson> { return { nftables: [] }; }
}

const ip = (i: number, a: number): string => `10.${a + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
const now = new Date().toISOString();
const net: Network = { id: 'net', name: 'app', driver: 'overlay', scope: 'swarm', ipam: { v4: { subnet: '10.0.0.0/8', gateway: '10.0.0.1' } }, options: {}, labels: {}, createdAt: now };
const node = (id: string): Node => ({ id, name: id, address: id === 'self' ? '192.0.2.1' : '192.0.2.2', state: 'ready', availability: 'active', lease: 0, labels: {}, createdAt: now, updatedAt: now });
function service(i: number): Service {
  return {
    id: `s${i}`, version: 1, createdAt: now, updatedAt: now, vips: { net: { v4: ip(i, 100) } },
    spec: { name: `svc${i}`, endpointMode: 'vip', replicas: REPLICAS, ports: [{ target: 80, published: 0, protocol: 'tcp', mode: 'ingress' }], networks: [{ network: 'net', aliases: [] }], command: ['x'], env: {}, labels: {} },
  };
}
function task(i: number, r: number, healthy = true): Task {
  return {
    id: `t${i}-${r}`, serviceId: `s${i}`, serviceName: `svc${i}`, slot: r + 1, nodeId: r % 2 ? 'self' : 'other', desiredState: 'running',
    status: { state: 'running', message: 'running', since: now, healthy }, addresses: { net: { v4: ip(i * REPLICAS + r, 150) } },
    serviceVersion: 1, specHash: 'h', createdAt: now,
  };
}
const kv = (kind: 'services' | 'tasks' | 'nodes' | 'networks', o: { id: string }): WireKv => ({ key: objectKey(kind, o.id), value: JSON.stringify(o), modRevision: 1 });

/** Agent CPU (µs) per change, and the nft children's CPU (ms of ticks) per change. */
interface Sample { agentUs: number; childUs: number }

/** clock ticks of waited-for children (cutime + cstime), in µs (USER_HZ is 100 on Linux). */
function childCpuUs(): number {
  const f = readFileSync('/proc/self/stat', 'utf8');
  const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[13]) + Number(fields[14])) * 10_000;
}

/** The state of one size: an index of `size` services, a NodeLb with one sandbox programmed. */
export interface Prepared { index: LocalIndex; lb: NodeLb; size: number; rev: number; flipped: Map<string, boolean> }

export async function prepare(size: number, nft: Nft = new NullNft()): Promise<Prepared> {
  const index = new LocalIndex();
  const list: WireKv[] = [kv('networks', net), kv('nodes', node('self')), kv('nodes', node('other'))];
  for (let i = 0; i < size; i++) {
    list.push(kv('services', service(i)));
    for (let r = 0; r < REPLICAS; r++) list.push(kv('tasks', task(i, r)));
  }
  const rev = 2;
  index.applyList(list, rev);
  const lb = new NodeLb(index, { kind: 'nftables', make: () => new NftLoadBalancer({ nft, table: 'shb_lb' }) });
  index.onChange((c) => lb.changed(c));
  await lb.ensureSandbox('client', 'sandbox', ['net']);
  lb.start();
  return { index, lb, size, rev, flipped: new Map() };
}

/** `n` endpoint changes, each waited for (one random task's health flipped). */
export async function changes(p: Prepared, n: number): Promise<void> {
  for (let k = 0; k < n; k++) {
    const i = Math.floor(Math.random() * p.size);
    const r = Math.floor(Math.random() * REPLICAS);
    const id = `t${i}-${r}`;
    const healthy = p.flipped.get(id) ?? false;
    p.flipped.set(id, !healthy);
    p.rev++;
    p.index.applyEvents([{ type: 'put', key: objectKey('tasks', id), value: JSON.stringify(task(i, r, healthy)), modRevision: p.rev }], p.rev);
    await p.lb.idle();
  }
}

async function measure(size: number, nft: Nft, n: number): Promise<Sample> {
  const p = await prepare(size, nft);
  // Warm up: the set-up's garbage (a whole index and a full sync) is collected before measuring.
  await changes(p, WARMUP);
  const cpu0 = process.cpuUsage();
  const child0 = childCpuUs();
  await changes(p, n);
  const cpu = process.cpuUsage(cpu0);
  const child = childCpuUs() - child0;
  await p.lb.stop();
  return { agentUs: (cpu.user + cpu.system) / n, childUs: child / n };
}

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? (s[(s.length - 1) / 2] ?? 0) : ((s[s.length / 2 - 1] ?? 0) + (s[s.length / 2] ?? 0)) / 2;
};

async function main(): Promise<void> {
  // The agent's runners use unref'd timers (they must not keep an agent alive): hold the loop.
  const hold = setInterval(() => undefined, 1000);
  const prefix = makeTestPrefix();
  const fake: Record<number, number[]> = {};
  const real: Record<number, { agent: number[]; child: number[] }> = {};
  try {
    for (let round = 0; round < ROUNDS; round++) {
      for (const size of SIZES) {
        const a = await measure(size, new NullNft(), CHANGES);
        (fake[size] ??= []).push(a.agentUs);
        const ns = `${prefix}-a${size}`;
        await ensureNetns(ns);
        const b = await measure(size, new ExecNft({ netns: ns, timeoutMs: 600_000 }), REAL_CHANGES);
        const rr = (real[size] ??= { agent: [], child: [] });
        rr.agent.push(b.agentUs);
        rr.child.push(b.childUs);
        console.log(`round ${round + 1} size ${size}: agent ${(a.agentUs / 1000).toFixed(3)} ms/change (no kernel); with nft: agent ${(b.agentUs / 1000).toFixed(2)} + nft ${(b.childUs / 1000).toFixed(2)} ms/change`);
      }
    }
  } finally {
    clearInterval(hold);
    await finalCleanup(prefix);
  }
  const lo = SIZES[0] as number;
  const hi = SIZES[SIZES.length - 1] as number;
  const row = (s: number): string => {
    const r = real[s] as { agent: number[]; child: number[] };
    return `| ${s.toLocaleString('en')} | ${(median(fake[s] ?? []) / 1000).toFixed(3)} | ${(median(r.agent) / 1000).toFixed(2)} | ${(median(r.child) / 1000).toFixed(2)} | ${((median(r.agent) + median(r.child)) / 1000).toFixed(2)} |`;
  };
  const ratio = median(fake[hi] ?? []) / median(fake[lo] ?? []);
  const ratioAll = (median(real[hi]?.agent ?? []) + median(real[hi]?.child ?? [])) / (median(real[lo]?.agent ?? []) + median(real[lo]?.child ?? []));
  const machine = `${cpus()[0]?.model.trim() ?? 'unknown CPU'} x${cpus().length}`;
  const key = `<!-- MARK:bench-agent:${hostname()} -->`;
  const section = [
    key,
    `## ${machine}, Linux ${release()}, ${new Date().toISOString().slice(0, 10)}`,
    '',
    `CPU per endpoint change (one task's health flipped; medians of ${ROUNDS} rounds; ${CHANGES} changes per round without a kernel, ${REAL_CHANGES} with nft):`,
    '',
    '| services | agent only, ms | agent (with nft), ms | nft processes, ms | agent + nft, ms |',
    '|---:|---:|---:|---:|---:|',
    ...SIZES.map(row),
    '',
    `**Agent CPU per change, ${hi.toLocaleString('en')} / ${lo.toLocaleString('en')} services: ${ratio.toFixed(2)}** (target <= 1.5); agent + nft: ${ratioAll.toFixed(2)}.`,
    '<!-- /MARK -->',
  ].join('\n');
  console.log(`\n${section}`);
  await writeSection(DOC, key, '<!-- /MARK -->', section,
    '# Agent CPU per endpoint change\n\nWritten by `node --import tsx test/bench/agent-change.ts` (see its doc comment). One section per machine.\n');
}

if (process.argv[1]?.endsWith('agent-change.ts')) {
  main().catch((e: unknown) => {
    console.error(e);
    process.exitCode = 1;
  });
}

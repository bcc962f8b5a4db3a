/**
 * The ingress routing mesh on the IPVS dataplane, end to end in a real kernel, run INSIDE the
 * kernel lab (plain node, no vitest):
 *
 *     npx tsc -p tsconfig.build.json
 *     ../shared/kernel-lab/run-in-kernel.sh -- node dist/test/kernel-lab/ingress-lab.js
 *
 * The real multi-node harness (test/harness/cluster.ts: a manager and two `shoal agent
 * --lb-dataplane ipvs` in their own netns on an underlay bridge, a client netns outside the
 * cluster) runs in the guest. Two services publish ports in ingress mode (cluster policy):
 * `web` (2 replicas, 8080 -> 80) and `solo` (1 replica, 8090 -> 80). On every node the host hop
 * (nftables table `<link prefix>_publish` in the node's netns) DNATs `<any local address>:P`
 * (127.0.0.1 from the node itself too) to the node's
 * ingress sandbox, where IPVS balances to every replica's ingress-network address, masquerading
 * (nftables test/integration/ingress-mesh.test.ts is the same mesh on this machine's kernel).
 *
 * Checks (one `ok - <id>: ...` / `not ok - <id>: ...` line each, then `ALL OK` or `FAILED`;
 * exit 1 on any failure): every node's published port answers from the client netns; requests
 * through each node reach every replica and the replicas see that node's sandbox address; the
 * 1-replica service answers through the node without its replica; `ipvsadm -Ln` in each
 * sandbox shows exactly the virtual services at the sandbox address with the replicas'
 * ingress addresses (and the node's own netns none); removing a service removes its IPVS
 * service and its DNAT everywhere and the port refuses; the harness leaves nothing behind.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { hasIpvs } from '../../src/kernel/ipvs-genl.js';
import { assert, check, failedChecks, ipvsadm, run, secs } from './checks.js';
import { listNetns } from '../../src/kernel/netns.js';
import type { Network, Node, Task } from '../../src/model/types.js';
import { startHarness, type Harness, type HarnessNode } from '../harness/cluster.js';

/** The replica fixture: tsc does not copy .mjs files, so from dist/ it is the source's. */
const BACKEND = [new URL('../fixtures/lb-backend.mjs', import.meta.url), new URL('../../../test/fixtures/lb-backend.mjs', import.meta.url)]
  .map((u) => fileURLToPath(u)).find((p) => existsSync(p));
/** Deadlines are generous: JS (manager, agents, replicas, this script) runs ~10x slower under TCG. */
const SYNC_MS = 60_000;
/** The host hop's table in a node's netns: `<the agent's link prefix>_publish` (its instance tag, mesh/daemon/instance.ts). */
const hostTable = (n: HarnessNode): string => `${n.linkPrefix()}_publish`;


/** Poll `fn` until it returns something other than undefined/false; at the deadline throw, with the last attempt's error. */
async function until<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = SYNC_MS, everyMs = 500): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const last = await fn().then((v) => ({ v, error: '' }), (e: unknown) => ({ v: undefined, error: e instanceof Error ? e.message : String(e) }));
    if (last.v !== undefined && last.v !== false) return last.v;
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}${last.error ? `: ${last.error}` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/**
 * `n` HTTP requests from the client netns to `address:port`, each on a fresh connection
 * (`Connection: close`), in one curl: the answers, `<task name> <address the replica saw>`.
 */
async function fromClient(h: Harness, address: string, port: number, n: number): Promise<string[]> {
  const url = `http://${address}:${port}/`;
  const r = await h.client.exec(['curl', '-sS', '-m', '10', '-H', 'Connection: close', ...Array<string>(n).fill(url)], { timeoutMs: 30_000 + n * 10_000 });
  const lines = r.stdout.split('\n').filter((l) => l.trim());
  if (r.code !== 0 || lines.length !== n) throw new Error(`curl ${url} x${n}: exit ${r.code}, ${lines.length} answers: ${r.stderr.trim() || r.stdout.trim()}`);
  return lines;
}

const nameOf = (answer: string): string => answer.split(' ')[0] ?? '';
const taskName = (t: Task): string => `${t.serviceName}.${t.slot}.${t.id}`;
const tally = (names: string[]): Record<string, number> => {
  const c: Record<string, number> = {};
  for (const n of names) c[n] = (c[n] ?? 0) + 1;
  return c;
};

const same = (a: string[], b: string[]): boolean => JSON.stringify([...a].sort()) === JSON.stringify([...b].sort());

async function main(): Promise<void> {
  console.log(`kernel ${(await run('uname', ['-r'])).trim()}`);
  let h: Harness | undefined;
  let prefix = '';
  try {
    await check('has-ipvs', async () => {
      assert(await hasIpvs(), 'hasIpvs() is false: the IPVS generic-netlink family does not resolve');
      assert(BACKEND, 'test/fixtures/lb-backend.mjs not found');
      return 'the IPVS generic-netlink family resolves';
    });

    await check('harness', async () => {
      const t = performance.now();
      h = await startHarness({ nodes: 2, agentArgs: ['--lb-dataplane', 'ipvs', '--resync-interval', '2s'], readyTimeoutMs: 120_000 });
      prefix = h.prefix;
      return `manager + 2 agents (--lb-dataplane ipvs) + client, prefix ${h.prefix}, up in ${((performance.now() - t) / 1000).toFixed(1)} s`;
    });
    if (!h) throw new Error('no harness: nothing else can be checked');
    const hh: Harness = h;

    let ingress: Network | undefined;
    let nodes: Node[] = [];
    const nodeOf = (n: HarnessNode): Node => {
      const x = nodes.find((m) => m.name === n.name);
      assert(x, `node ${n.name} is not listed`);
      return x;
    };
    const sboxOf = (n: HarnessNode): string => {
      const v4 = nodeOf(n).ingress?.v4;
      assert(v4, `node ${n.name} has no ingress sandbox address`);
      return v4;
    };
    const sboxNetns = (n: HarnessNode): string => `${n.netns}-ingress-sbox`;

    await check('ingress-sandboxes', async () => {
      ingress = (await hh.json<Network[]>('network', 'ls')).find((n) => n.ingress);
      assert(ingress && ingress.driver === 'overlay', `no ingress overlay network: ${JSON.stringify(ingress)}`);
      const net = ingress;
      nodes = await until('every node to have its ingress sandbox address', async () => {
        const ns = await hh.json<Node[]>('node', 'ls');
        return ns.length === hh.nodes.length && ns.every((n) => n.ingress?.network === net.id && n.ingress.v4) ? ns : undefined;
      });
      for (const n of hh.nodes) {
        await until(`${sboxNetns(n)} to carry ${sboxOf(n)}`, async () => {
          const r = await n.exec(['ip', '-n', sboxNetns(n), '-4', '-o', 'addr', 'show']);
          return r.code === 0 && r.stdout.includes(`inet ${sboxOf(n)}/`);
        });
      }
      return `ingress overlay ${net.ipam.v4.subnet} (vni ${net.vni ?? "?"}); ${hh.nodes.map((n) => `${sboxNetns(n)} at ${sboxOf(n)}`).join(', ')}`;
    });

    let web: Task[] = [];
    let solo: Task | undefined;
    const serving = (service: string, n: number): Promise<Task[]> => until(`${n} running tasks of ${service}`, async () => {
      const ts = (await hh.json<Task[]>('service', 'ps', service)).filter((t) => t.desiredState === 'running' && t.status.state === 'running');
      return ts.length === n ? ts : undefined;
    }, 120_000);
    const homeOf = (t: Task): HarnessNode => {
      const name = nodes.find((n) => n.id === t.nodeId)?.name;
      const home = hh.nodes.find((n) => n.name === name);
      assert(home, `task ${taskName(t)} is on an unknown node ${t.nodeId}`);
      return home;
    };
    const ingressAddr = (t: Task): string => {
      const v4 = ingress ? t.addresses[ingress.id]?.v4 : undefined;
      assert(v4, `task ${taskName(t)} has no address on the ingress network`);
      return v4;
    };

    await check('services', async () => {
      const mk = async (...args: string[]): Promise<void> => {
        const r = await hh.shoal('service', 'create', ...args);
        assert(r.code === 0, `service create ${args.join(' ')}: ${r.err.trim()}`);
      };
      const net = await hh.shoal('network', 'create', '--subnet', '10.72.0.0/24', 'app');
      assert(net.code === 0, `network create: ${net.err.trim()}`);
      await mk('--name', 'web', '--replicas', '2', '--network', 'app', '-p', '8080:80', '-e', 'PORT=80', '--', process.execPath, BACKEND as string);
      await mk('--name', 'solo', '--network', 'app', '-p', '8090:80', '-e', 'PORT=80', '--', process.execPath, BACKEND as string);
      web = await serving('web', 2);
      [solo] = await serving('solo', 1);
      const where = (t: Task): string => `${taskName(t)} on ${homeOf(t).name} (ingress ${ingressAddr(t)})`;
      return `web: ${web.map(where).join(', ')}; solo: ${solo ? where(solo) : '?'}`;
    });

    await check('every-node', async () => {
      const first: string[] = [];
      for (const n of hh.nodes) {
        const [a] = await until(`${n.address}:8080 to answer`, () => fromClient(hh, n.address, 8080, 1));
        first.push(`${n.address}:8080 -> ${a ?? '?'}`);
      }
      return `from the client netns ${hh.client.address}: ${first.join('; ')}`;
    });

    await check('all-replicas', async () => {
      const want = web.map(taskName).sort();
      const per: string[] = [];
      for (const n of hh.nodes) {
        const answers = await fromClient(hh, n.address, 8080, 10);
        const names = answers.map(nameOf);
        assert(same([...new Set(names)], want), `10 requests via ${n.name} reached ${JSON.stringify(tally(names))}, want ${want.join(', ')}`);
        const seen = new Set(answers.map((a) => a.split(' ')[1]));
        assert(seen.size === 1 && seen.has(sboxOf(n)), `via ${n.name} the replicas saw ${[...seen].join(', ')}, want its sandbox ${sboxOf(n)} (masquerade)`);
        per.push(`${n.name} ${JSON.stringify(tally(names))}`);
      }
      return `10 requests per node reached both replicas, which saw the receiving node's sandbox address: ${per.join('; ')}`;
    });

    await check('no-local-replica', async () => {
      assert(solo, 'no solo task');
      const s = solo;
      const home = homeOf(s);
      const others = hh.nodes.filter((n) => n !== home);
      assert(others.length >= 1, 'every node runs solo');
      const out: string[] = [];
      for (const n of [...others, home]) {
        const answers = await fromClient(hh, n.address, 8090, 3);
        assert(answers.every((a) => nameOf(a) === taskName(s)), `via ${n.name}: ${answers.join(', ')}`);
        out.push(`${n.name}${n === home ? ' (its own node)' : ' (no replica)'} 3/3`);
      }
      return `solo answers through ${out.join(', ')}`;
    });

    await check('vip-every-port', async () => {
      // A task calling another service's VIP: IPVS in the caller's own sandbox, a fwmark service
      // per VIP and protocol (marked by the agent's nft table), the destination port kept and
      // the caller's own address seen by the replica.
      assert(solo, 'no solo task');
      const s = solo;
      const caller = web[0] as Task;
      const callerNs = `${homeOf(caller).netns}-${caller.id}`;
      const svc = (await hh.json<Array<{ vips: Record<string, { v4: string }> }>>('service', 'inspect', 'solo'))[0];
      const vip = Object.values(svc?.vips ?? {})[0]?.v4;
      assert(vip, 'solo has no VIP');
      const r = await until(`curl ${vip}:80 from ${callerNs}`, async () => {
        const c = await run('ip', ['netns', 'exec', callerNs, 'curl', '-sS', '-m', '10', `http://${vip}:80/`]).catch(() => '');
        return c.trim() ? c.trim() : undefined;
      });
      assert(nameOf(r) === taskName(s), `the VIP answered '${r}', not ${taskName(s)}`);
      const appAddr = Object.entries(caller.addresses).find(([id]) => id !== ingress?.id)?.[1]?.v4;
      assert(r.endsWith(` ${appAddr ?? '?'}`), `solo saw '${r}', not the caller's own address ${appAddr ?? '?'}`);
      const fwm = (await ipvsadm(callerNs)).filter((l) => l.startsWith('FWM ') && !l.includes('->'));
      assert(fwm.length === 4, `ipvsadm in ${callerNs}: ${fwm.length} fwmark services, want 4 (web and solo, TCP and UDP):\n${fwm.join('\n')}`);
      return `${taskName(caller)} -> solo's VIP ${vip}:80 through IPVS in its own sandbox: '${r}' (its own address kept); ${fwm.length} FWM services there`;
    });

    await check('ipvsadm', async () => {
      assert(solo, 'no solo task');
      const s = solo;
      const lines: string[] = [];
      for (const n of hh.nodes) {
        const sb = sboxOf(n);
        const want = [
          `TCP ${sb}:8080 rr`, ...web.map((t) => `TCP ${sb}:8080 rr -> ${ingressAddr(t)}:80 Masq 1`),
          `TCP ${sb}:8090 rr`, `TCP ${sb}:8090 rr -> ${ingressAddr(s)}:80 Masq 1`,
        ].sort();
        const got = await until(`ipvsadm in ${sboxNetns(n)}`, async () => {
          const g = await ipvsadm(sboxNetns(n));
          return same(g, want) ? g : undefined;
        }, 10_000).catch(async () => ipvsadm(sboxNetns(n)));
        assert(same(got, want), `ipvsadm -Ln in ${sboxNetns(n)} shows\n${got.join('\n')}\nwanted\n${want.join('\n')}`);
        const own = await ipvsadm(n.netns);
        assert(own.length === 0, `the node's own netns ${n.netns} has IPVS services: ${own.join('; ')}`);
        lines.push(`${sboxNetns(n)}: ${got.length} lines`);
      }
      return `each sandbox has exactly TCP <sandbox>:8080 -> both web replicas and :8090 -> solo, Masq weight 1 (${lines.join(', ')}); the nodes' own netns none`;
    });

    await check('host-hop', async () => {
      const out: string[] = [];
      for (const n of hh.nodes) {
        const table = hostTable(n);
        const r = await n.exec(['nft', 'list', 'table', 'inet', table]);
        assert(r.code === 0, `nft list table inet ${table} in ${n.netns}: ${r.stderr.trim()}`);
        assert(r.stdout.includes('fib daddr type local'), `${table} in ${n.netns} does not match every local address:\n${r.stdout}`);
        for (const port of [8080, 8090]) {
          assert(r.stdout.includes(`tcp . ${port} : goto`), `${table} in ${n.netns} has no frontend for port ${port} on every local address:\n${r.stdout}`);
          assert(r.stdout.includes(`${sboxOf(n)} . ${port}`), `${table} in ${n.netns} does not DNAT to ${sboxOf(n)}:${port}:\n${r.stdout}`);
        }
        // From the node itself through 127.0.0.1 (masqueraded out of loopback, route_localnet on).
        const local = await until(`127.0.0.1:8080 from ${n.netns}`, async () => {
          const c = await n.exec(['curl', '-sS', '-m', '10', 'http://127.0.0.1:8080/']);
          return c.code === 0 && /^web\./.test(c.stdout.trim()) ? c.stdout.trim() : undefined;
        });
        out.push(`${n.address}:8080,8090 -> ${sboxOf(n)}, 127.0.0.1:8080 -> ${nameOf(local)}`);
      }
      return `nft <prefix>_publish in each node netns DNATs every local address to its sandbox: ${out.join('; ')}`;
    });

    await check('ipvsadm-clear-repaired', async () => {
      // Drift: someone clears IPVS in a node's ingress sandbox; the periodic resync puts it back.
      assert(solo, 'no solo task');
      const s = solo;
      const n = hh.nodes[0] as HarnessNode;
      const sb = sboxOf(n);
      const want = [
        `TCP ${sb}:8080 rr`, ...web.map((t) => `TCP ${sb}:8080 rr -> ${ingressAddr(t)}:80 Masq 1`),
        `TCP ${sb}:8090 rr`, `TCP ${sb}:8090 rr -> ${ingressAddr(s)}:80 Masq 1`,
      ].sort();
      const repairs = async (): Promise<number> => {
        const m = await n.exec(['curl', '-sS', '-m', '10', 'http://127.0.0.1:9323/metrics']);
        return Number(/^shoal_agent_repairs_total\{kind="ingress-sandbox"\} (\d+)/m.exec(m.stdout)?.[1] ?? 0);
      };
      const before = await repairs();
      await run('ip', ['netns', 'exec', sboxNetns(n), 'ipvsadm', '-C']);
      assert((await ipvsadm(sboxNetns(n))).length === 0, 'ipvsadm -C left services behind');
      const t = performance.now();
      await until(`IPVS in ${sboxNetns(n)} repaired`, async () => same(await ipvsadm(sboxNetns(n)), want));
      const took = ((performance.now() - t) / 1000).toFixed(1);
      const answers = await fromClient(hh, n.address, 8080, 4);
      assert(answers.length === 4, 'no answers through the repaired node');
      const after = await until('the repair to be counted', async () => ((await repairs()) > before ? repairs() : undefined));
      return `ipvsadm -C in ${sboxNetns(n)}: services back after ${took} s (resync every 2 s), ${n.address}:8080 answers again, shoal_agent_repairs_total{kind="ingress-sandbox"} ${before} -> ${after}`;
    });

    await check('remove', async () => {
      const r = await hh.shoal('service', 'rm', 'web');
      assert(r.code === 0, `service rm web: ${r.err.trim()}`);
      assert(solo, 'no solo task');
      const s = solo;
      for (const n of hh.nodes) {
        const sb = sboxOf(n);
        const want = [`TCP ${sb}:8090 rr`, `TCP ${sb}:8090 rr -> ${ingressAddr(s)}:80 Masq 1`];
        await until(`the 8080 IPVS service to leave ${sboxNetns(n)}`, async () => same(await ipvsadm(sboxNetns(n)), want));
        await until(`${n.address}:8080 to refuse`, async () => {
          // -v: curl 7.88 says only "Couldn't connect" in its error line; the verbose trace has the errno.
          const c = await hh.client.exec(['curl', '-sSv', '-m', '10', `http://${n.address}:8080/`]);
          if (c.code === 7 && /Connection refused/.test(c.stderr)) return true;
          throw new Error(`curl exit ${c.code}: ${(c.stderr.trim().split('\n').pop() ?? c.stdout.trim()).slice(0, 200)}`);
        });
        const nft = await n.exec(['nft', 'list', 'table', 'inet', hostTable(n)]);
        assert(!/\b8080\b/.test(nft.stdout), `${hostTable(n)} in ${n.netns} still mentions 8080:\n${nft.stdout}`);
        const a = await fromClient(hh, n.address, 8090, 1);
        assert(nameOf(a[0] ?? '') === taskName(s), `solo via ${n.name} answered ${a.join()}`);
      }
      return 'web removed: its IPVS service left every sandbox (solo\'s stayed), its DNAT left every node, 8080 refuses, 8090 still answers';
    });
  } finally {
    if (failedChecks() && h) console.log(h.logs().split('\n').slice(-60).map((l) => `# ${l}`).join('\n'));
    if (h) {
      const hd = h;
      await check('cleanup', async () => {
        const t = performance.now();
        await hd.destroy();
        const left = await listNetns(prefix);
        assert(left.length === 0, `netns left behind: ${left.join(', ')}`);
        return `harness destroyed in ${((performance.now() - t) / 1000).toFixed(1)} s, no ${prefix}* netns left`;
      });
    }
  }
  console.log(failedChecks() ? `FAILED ${failedChecks()} check(s) [${secs()}s]` : `ALL OK [${secs()}s]`);
  process.exit(failedChecks() ? 1 : 0);
}

main().catch((e: unknown) => {
  console.log(`not ok - lab: ${e instanceof Error ? e.stack ?? e.message : String(e)}`);
  process.exit(1);
});

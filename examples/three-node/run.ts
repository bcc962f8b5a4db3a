/**
 * The Shoal demo: three nodes on one machine (network namespaces on an underlay bridge, each
 * with its own agent, one manager on the embedded store; test/harness/cluster.ts builds it),
 * an overlay network, a 6-replica `web` service published on 8080 and a UDP echo service
 * published on 5353/udp. Then, as a client OUTSIDE the cluster, it requests node1/2/3:8080
 * many times and shows which replicas answered (through the ingress routing mesh, wherever the
 * replica runs), sends datagrams to every node's 5353, resolves `web` and `tasks.web` from
 * inside a task, and prints a few lines of a node's /metrics. Exits 0 only if every check
 * passed; removes everything it made (also on failure or Ctrl-C).
 *
 *   npm ci && npm run demo                       # builds, then runs dist/examples/three-node/run.js
 *   sudo node --import tsx examples/three-node/run.ts
 */
import type { Node, Service, Task } from '../../src/model/types.js';
import { destroyAllHarnesses, startHarness, type Harness } from '../../test/harness/cluster.js';
import { waitFor } from '../../test/helpers/netns.js';

const REPLICAS = 6;
const REQUESTS_PER_NODE = 100;

/** A replica of `web`: answers with its task name and the client address it saw; /health for the checks. */
const WEB = `require('node:http').createServer((q, r) => r.end(q.url === '/health' ? 'ok\\n'
  : process.env.SHOAL_TASK_NAME + ' ' + q.socket.remoteAddress.replace(/^::ffff:/, '') + '\\n')).listen(80);`;

/** A replica of `echo`: answers each datagram with its task name and the datagram. */
const ECHO = `const s = require('node:dgram').createSocket('udp4');
s.on('message', (m, from) => s.send(process.env.SHOAL_TASK_NAME + ' ' + m, from.port, from.address)).bind(5353);`;

/** The outside client: N GETs (a new connection each) to each URL; prints {url: [bodies]} as JSON. */
const HTTP_CLIENT = `
const [n, ...urls] = process.argv.slice(1);
const get = (u) => new Promise((resolve) => {
  const req = require('node:http').get(u, { timeout: 3000, agent: false }, (res) => {
    let body = '';
    res.on('data', (d) => { body += d; });
    res.on('end', () => resolve(body.trim()));
  });
  req.on('timeout', () => req.destroy(new Error('timed out')));
  req.on('error', (e) => resolve('ERROR ' + (e.code || e.message)));
});
(async () => {
  const out = {};
  await Promise.all(urls.map(async (u) => { out[u] = []; for (let i = 0; i < Number(n); i++) out[u].push(await get(u)); }));
  console.log(JSON.stringify(out));
})();
`;

/** The outside UDP client: one datagram to each HOST:PORT, prints {target: answer} as JSON. */
const UDP_CLIENT = `
const dgram = require('node:dgram');
const ask = (t) => new Promise((resolve) => {
  const [host, port] = t.split(':');
  const s = dgram.createSocket('udp4');
  const timer = setTimeout(() => { s.close(); resolve('TIMEOUT'); }, 2000);
  s.on('message', (m) => { clearTimeout(timer); s.close(); resolve(m.toString()); });
  s.send('hello', Number(port), host);
});
Promise.all(process.argv.slice(1).map(ask)).then((a) => console.log(JSON.stringify(Object.fromEntries(process.argv.slice(1).map((t, i) => [t, a[i]])))));
`;

const say = (s: string): void => { process.stdout.write(s); };

/** Run a shoal command as an operator would, echoing it and its output; throws if it fails. */
async function shoal(h: Harness, ...args: string[]): Promise<string> {
  say(`\n$ shoal ${args.map((a) => (/[\s"'\\]/.test(a) ? JSON.stringify(a) : a)).join(' ')}\n`);
  const r = await h.shoal(...args);
  say(r.out);
  if (r.code !== 0) throw new Error(`shoal ${args.join(' ')} failed: ${r.err.trim()}`);
  return r.out;
}

let failures = 0;
function check(ok: boolean, what: string): void {
  say(`${ok ? 'ok' : 'FAILED'}: ${what}\n`);
  if (!ok) failures++;
}

async function serving(h: Harness, service: string, n: number): Promise<Task[]> {
  return waitFor(`${n} serving replicas of ${service}`, async () => {
    const all = await h.json<Task[]>('service', 'ps', service);
    const up = all.filter((t) => t.desiredState === 'running' && t.status.state === 'running' && t.status.healthy !== false);
    return up.length === n && up;
  }, 60_000, 200);
}

async function demo(h: Harness): Promise<void> {
  say(`underlay ${h.subnet} (bridge in netns ${h.underlayNetns}): manager ${h.manager.address}, client ${h.client.address}, `
    + `nodes ${h.nodes.map((n) => `${n.name}=${n.address}`).join(' ')}\n`);
  await shoal(h, 'node', 'ls');
  await shoal(h, 'network', 'create', '-d', 'overlay', '--subnet', '10.210.0.0/24', 'app');
  await shoal(h, 'service', 'create', '--name', 'web', '--replicas', String(REPLICAS), '--network', 'app', '-p', '8080:80',
    '--health-type', 'http', '--health-port', '80', '--health-path', '/health', '--health-interval', '500', '--', process.execPath, '-e', WEB);
  await shoal(h, 'service', 'create', '--name', 'echo', '--replicas', '2', '--network', 'app', '-p', '5353:5353/udp', '--', process.execPath, '-e', ECHO);
  const web = await serving(h, 'web', REPLICAS);
  await serving(h, 'echo', 2);
  await shoal(h, 'service', 'ls');
  await shoal(h, 'service', 'ps', 'web');
  await shoal(h, 'network', 'ls');

  const nodes = await h.json<Node[]>('node', 'ls');
  const names = new Set(web.map((t) => `${t.serviceName}.${t.slot}.${t.id}`));
  for (const n of h.nodes) {
    const here = web.filter((t) => nodes.find((x) => x.id === t.nodeId)?.name === n.name).length;
    say(`${n.name} runs ${here} replica(s) of web\n`);
  }

  // 1. The published port on every node, from outside the cluster.
  const urls = h.nodes.map((n) => `http://${n.address}:8080/`);
  say(`\n$ (in the client netns ${h.client.netns}, outside the cluster) ${REQUESTS_PER_NODE} x GET on each of ${urls.join(' ')}\n`);
  const r = await h.client.exec([process.execPath, '-e', HTTP_CLIENT, String(REQUESTS_PER_NODE), ...urls], { timeoutMs: 120_000 });
  if (r.code !== 0) throw new Error(`client failed: ${r.stderr.trim()}`);
  const got = JSON.parse(r.stdout) as Record<string, string[]>;
  const seen = new Set<string>();
  for (const [url, bodies] of Object.entries(got)) {
    const counts = new Map<string, number>();
    for (const b of bodies) counts.set(b.split(' ')[0] ?? b, (counts.get(b.split(' ')[0] ?? b) ?? 0) + 1);
    say(`${url}\n${[...counts].sort().map(([k, v]) => `    ${String(v).padStart(3)} x ${k}`).join('\n')}\n`);
    for (const k of counts.keys()) seen.add(k);
    check(bodies.every((b) => names.has(b.split(' ')[0] ?? '')), `${url}: all ${bodies.length} requests answered by a web replica`);
  }
  check([...names].every((n) => seen.has(n)), `every one of the ${REPLICAS} replicas answered (${seen.size} distinct)`);
  const sample = Object.values(got)[0]?.[0] ?? '';
  say(`(a replica sees the address of the receiving node's ingress sandbox, e.g. "${sample}": cluster policy masquerades;\n`
    + ` --traffic-policy local or -p mode=host keep the client's ${h.client.address})\n`);

  // 2. The UDP service on every node.
  const targets = h.nodes.map((n) => `${n.address}:5353`);
  say(`\n$ (client netns) one datagram to each of ${targets.join(' ')}\n`);
  const u = await h.client.exec([process.execPath, '-e', UDP_CLIENT, ...targets], { timeoutMs: 30_000 });
  const answers = JSON.parse(u.stdout || '{}') as Record<string, string>;
  for (const [t, a] of Object.entries(answers)) say(`${t} -> ${a}\n`);
  check(targets.every((t) => /^echo\.\d+\.\w+ hello$/.test(answers[t] ?? '')), 'the UDP echo service answers on every node');

  // 3. DNS from inside a task.
  const task = web[0] as Task;
  const node = h.nodes.find((n) => n.name === nodes.find((x) => x.id === task.nodeId)?.name);
  const ns = `${node?.netns}-${task.id}`;
  const svc = (await h.json<Service[]>('service', 'inspect', 'web'))[0] as Service;
  const appId = (await h.json<Array<{ id: string }>>('network', 'inspect', 'app'))[0]?.id ?? '';
  for (const name of ['web', 'tasks.web']) {
    say(`\n$ ip netns exec ${ns} dig +short ${name}     # inside task web.${task.slot}\n`);
    const d = await node!.exec(['ip', 'netns', 'exec', ns, 'dig', '+short', '+time=2', '+tries=2', name]);
    say(d.stdout);
    const got2 = d.stdout.split('\n').filter(Boolean).sort();
    const want = name === 'web' ? [svc.vips[appId]?.v4 ?? '?'] : web.map((t) => t.addresses[appId]?.v4 ?? '?').sort();
    check(JSON.stringify(got2) === JSON.stringify(want), `${name} resolves to ${name === 'web' ? 'the VIP' : `the ${REPLICAS} replicas`} (${want.join(' ')})`);
  }

  // 4. What Prometheus scrapes on a node.
  const m = await h.nodes[0]!.exec(['curl', '-s', 'http://127.0.0.1:9323/metrics']);
  const lines = m.stdout.split('\n').filter((l) => /^shoal_(ingress_published_backends|lb_backends|dns_queries_total)\{/.test(l));
  say(`\n$ curl -s http://127.0.0.1:9323/metrics     # on ${h.nodes[0]!.name} (a few lines)\n${lines.slice(0, 12).join('\n')}\n`);
  check(lines.some((l) => l.startsWith('shoal_ingress_published_backends{service="web",port="8080",protocol="tcp",mode="ingress"} 6')), '/metrics shows web:8080 with 6 serving backends');

  await shoal(h, 'service', 'rm', 'web', 'echo');
  await shoal(h, 'network', 'rm', 'app');
}

async function main(): Promise<number> {
  // Before the harness exists: a Ctrl-C while it is being built must remove it too.
  const interrupted = (): void => {
    say('\ninterrupted: removing everything\n');
    void destroyAllHarnesses().finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  say('building 3 nodes (namespaces on an underlay bridge, an agent in each, one manager)...\n');
  const h = await startHarness({ nodes: 3 });
  let code = 0;
  try {
    await demo(h);
    if (failures > 0) code = 1;
  } catch (e) {
    process.stderr.write(`three-node FAILED: ${e instanceof Error ? e.message : String(e)}\n${h.logs()}\n`);
    code = 1;
  } finally {
    await h.destroy();
  }
  process.off('SIGINT', interrupted);
  process.off('SIGTERM', interrupted);
  say(`\nremoved netns ${h.prefix}* and ${h.dir}\n${code === 0 ? 'three-node OK\n' : `three-node FAILED (${failures} check(s))\n`}`);
  return code;
}

main().then((code) => { process.exitCode = code; }, (e: unknown) => {
  process.stderr.write(`three-node FAILED: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
});

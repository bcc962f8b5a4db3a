/**
 * Three Shoal nodes on one machine (first version): each node is a network namespace on an
 * underlay bridge with its own agent, joined to one manager (test/harness/cluster.ts builds
 * it). Creates an overlay network, deploys 6 replicas of a tiny HTTP server that answers with
 * its task name, checks from a client namespace outside the cluster that every replica
 * answers on its node's underlay address, prints what an operator would look at, and removes
 * everything. Exits 0 only if every check passed.
 *
 *   sudo node --import tsx examples/three-node/run.ts
 *   npm run build && sudo node dist/examples/three-node/run.js
 *
 * Each task runs in its own network namespace with an endpoint on the overlay, so every
 * replica listens on :8000. Until ingress exists (a later issue: one published port on every
 * node), the requests come from a probe task on the same overlay network, over VXLAN between
 * the nodes; DNS will later let it ask for `whoami` by name.
 */
import type { Node, Task } from '../../src/model/types.js';
import { destroyAllHarnesses, startHarness, type Harness, type HarnessNode } from '../../test/harness/cluster.js';
import { waitFor } from '../../test/helpers/netns.js';

const REPLICAS = 6;
const BASE_PORT = 8000;

/** The replica: answers every request with its task name (the agent sets SHOAL_TASK_NAME). */
const SERVER = `require('node:http').createServer((q, r) => r.end(process.env.SHOAL_TASK_NAME + '\\n')).listen(${BASE_PORT});`;

/** The outside client: GET each URL once; prints {url: body} or {url: "ERROR ..."} as JSON. */
const CLIENT = `
const urls = process.argv.slice(1);
const get = (u) => new Promise((resolve) => {
  const req = require('node:http').get(u, { timeout: 2000 }, (res) => {
    let body = '';
    res.on('data', (d) => { body += d; });
    res.on('end', () => resolve(body.trim()));
  });
  req.on('timeout', () => req.destroy(new Error('timed out')));
  req.on('error', (e) => resolve('ERROR ' + e.message));
});
Promise.all(urls.map(get)).then((bodies) => console.log(JSON.stringify(Object.fromEntries(urls.map((u, i) => [u, bodies[i]])))));
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

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`check failed: ${what}`);
  say(`ok: ${what}\n`);
}

async function demo(h: Harness): Promise<void> {
  say(`underlay ${h.subnet} (bridge in netns ${h.underlayNetns}): manager ${h.manager.address}, client ${h.client.address}, `
    + `nodes ${h.nodes.map((n) => `${n.name}=${n.address}`).join(' ')}\n`);
  await shoal(h, 'node', 'ls');
  await shoal(h, 'network', 'create', '-d', 'overlay', '--subnet', '10.210.0.0/24', 'app');
  await shoal(h, 'service', 'create', '--name', 'whoami', '--replicas', String(REPLICAS), '--network', 'app', '--', process.execPath, '-e', SERVER);

  const tasks = await waitFor(`${REPLICAS} running replicas`, async () => {
    const all = await h.json<Task[]>('service', 'ps', 'whoami');
    const running = all.filter((t) => t.desiredState === 'running' && t.status.state === 'running');
    return running.length === REPLICAS && running;
  }, 30_000, 200);
  await shoal(h, 'service', 'ps', 'whoami');

  const nodes = await h.json<Node[]>('node', 'ls');
  const nodeOf = (t: Task): HarnessNode | undefined => h.nodes.find((n) => n.name === nodes.find((x) => x.id === t.nodeId)?.name);
  for (const n of h.nodes) {
    const here = tasks.filter((t) => nodeOf(t) === n).length;
    check(here === REPLICAS / h.nodes.length, `${n.name} runs ${REPLICAS / h.nodes.length} replicas (has ${here})`);
  }
  for (const t of tasks) {
    const ns = h.netnsOf(t.status.pid ?? 0);
    const node = nodeOf(t);
    check(!!node && (ns === node.netns || !!ns?.startsWith(`${node.netns}-`)), `${t.serviceName}.${t.slot} (pid ${t.status.pid}) runs inside ${node?.netns} (found in ${ns})`);
  }

  // From a probe task on the same overlay: every replica answers with its own name at its
  // overlay address, wherever it runs.
  await shoal(h, 'service', 'create', '--name', 'probe', '--network', 'app', '--', 'sleep', '3600');
  const [probe] = await waitFor('the probe task', async () => {
    const ps = (await h.json<Task[]>('service', 'ps', 'probe')).filter((t) => t.status.state === 'running');
    return ps.length === 1 && ps;
  }, 30_000, 200);
  const app = (await h.json<Array<{ id: string }>>('network', 'inspect', 'app'))[0]?.id ?? '';
  const probeNs = `${nodeOf(probe as Task)?.netns}-${probe?.id}`;
  const expected = new Map(tasks.map((t) => [`http://${t.addresses[app]?.v4}:${BASE_PORT}/`, `${t.serviceName}.${t.slot}.${t.id}`]));
  say(`\n$ (in the probe task's netns ${probeNs}) GET each replica at <overlay address>:${BASE_PORT}\n`);
  const answers = await waitFor('every replica to answer', async () => {
    const r = await h.nodes[0]!.exec(['nsenter', `--net=/run/netns/${probeNs}`, process.execPath, '-e', CLIENT, ...expected.keys()], { timeoutMs: 10_000 });
    if (r.code !== 0) throw new Error(`client failed: ${r.stderr.trim()}`);
    const got = JSON.parse(r.stdout) as Record<string, string>;
    return [...expected].every(([url, name]) => got[url] === name) && got;
  }, 15_000, 200);
  for (const [url, body] of Object.entries(answers)) say(`${url} -> ${body}\n`);
  check(new Set(Object.values(answers)).size === REPLICAS, `${REPLICAS} distinct replicas answered`);

  await shoal(h, 'service', 'rm', 'whoami', 'probe');
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
  } catch (e) {
    process.stderr.write(`three-node FAILED: ${e instanceof Error ? e.message : String(e)}\n${h.logs()}\n`);
    code = 1;
  } finally {
    await h.destroy();
  }
  process.off('SIGINT', interrupted);
  process.off('SIGTERM', interrupted);
  say(`\nremoved netns ${h.prefix}* and ${h.dir}\n${code === 0 ? 'three-node OK\n' : ''}`);
  return code;
}

main().then((code) => { process.exitCode = code; }, (e: unknown) => {
  process.stderr.write(`three-node FAILED: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
});

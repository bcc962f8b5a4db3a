/**
 * Half-open agent <-> manager connections, for real: a one-node harness whose node's port on
 * the underlay switch is set down (`ip link set ... down` in the switch netns). Neither end
 * gets a FIN or RST; packets just vanish, as when a cable or a path dies. Both ends must
 * notice within 3 heartbeat intervals (the TTL is 2 s, so the interval is 500 ms), the agent
 * must say it is disconnected (`shoal_agent_connected 0`) while cut, and once the port is up
 * again it re-joins by itself: the node is ready again, `shoal_agent_connected 1`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Node } from '../../src/model/types.js';
import { execTool } from '../../src/kernel/exec.js';
import { destroyAllHarnesses, startHarness, type Harness, type HarnessNode } from '../harness/cluster.js';
import { waitFor } from '../helpers/netns.js';

const TTL_SECONDS = 2;
const INTERVAL_MS = (TTL_SECONDS * 1000) / 4;
// Process scheduling on a shared 2-core machine: the deadline is 3 intervals plus this.
const SLACK_MS = 1000;

let h: Harness;
beforeAll(async () => { h = await startHarness({ nodes: 1, nodeTtlSeconds: TTL_SECONDS }); }, 60_000);
afterAll(() => destroyAllHarnesses());

const SCRAPE = `
require('node:http').get('http://127.0.0.1:9323/metrics', (r) => { let b = ''; r.on('data', (d) => { b += d; }); r.on('end', () => process.stdout.write(b)); })
  .on('error', (e) => { console.error(e.message); process.exit(1); });
`;

/** `shoal_agent_connected` as the agent inside `node` exports it. */
async function connectedGauge(node: HarnessNode): Promise<string | undefined> {
  const r = await node.exec([process.execPath, '-e', SCRAPE], { timeoutMs: 5000 });
  return /^shoal_agent_connected (\d)$/m.exec(r.stdout)?.[1];
}

/** Time (ms since the epoch) of the first line of `output` after `from` (ISO-stamped) matching `re`. */
function loggedAt(output: string, re: RegExp, from: number): number | undefined {
  for (const line of output.split('\n')) {
    const t = Date.parse(line.slice(0, 24));
    if (Number.isFinite(t) && t >= from && re.test(line)) return t;
  }
  return undefined;
}

async function setPort(node: HarnessNode, state: 'up' | 'down'): Promise<void> {
  // The switch-side end of the node's veth: `<prefix>-n1` in the underlay netns.
  await execTool('test.cut', 'ip', ['-n', h.underlayNetns, 'link', 'set', `${h.prefix}-n1`, state]);
  expect(node.name).toBe(`${h.prefix}n1`);
}

describe('agent session over a half-open connection', () => {
  it('is given up by both ends within 3 intervals while cut, and re-joined once the path is back', async () => {
    const node = h.nodes[0]!;
    expect(await connectedGauge(node)).toBe('1');
    const cutAt = Date.now();
    await setPort(node, 'down');
    try {
      const agentSaw = await waitFor('the agent to drop the silent connection', () =>
        loggedAt(node.agentProcess.output(), /manager silent for \d+ heartbeat intervals/, cutAt), 3 * INTERVAL_MS + SLACK_MS + 2000, 50);
      const managerSaw = await waitFor('the manager to drop the silent session', () =>
        loggedAt(h.manager.process.output(), /agent silent for \d+ intervals/, cutAt), 3 * INTERVAL_MS + SLACK_MS + 2000, 50);
      // Log stamps have millisecond resolution and come from the same clock as cutAt.
      expect(agentSaw - cutAt).toBeLessThanOrEqual(3 * INTERVAL_MS + SLACK_MS);
      expect(managerSaw - cutAt).toBeLessThanOrEqual(3 * INTERVAL_MS + SLACK_MS);
      expect(await connectedGauge(node)).toBe('0');
      await waitFor('the node to be down', async () => (await h.json<Node[]>('node', 'ls')).find((n) => n.name === node.name)?.state === 'down', 10_000, 100);
    } finally {
      await setPort(node, 'up');
    }
    const restoredAt = Date.now();
    // Reconnect attempts made while cut hang until their 5 s handshake timeout; then back-off (<= 2 s).
    await waitFor('the node to be ready again', async () => {
      const n = (await h.json<Node[]>('node', 'ls')).find((x) => x.name === node.name);
      return n?.state === 'ready' && Date.parse(n.updatedAt) >= restoredAt - 1000;
    }, 15_000, 100);
    expect(await connectedGauge(node)).toBe('1');
    expect(node.agentProcess.running()).toBe(true);
  }, 60_000);
});

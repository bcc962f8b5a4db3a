/**
 * Help for the daemons (`shoal up`, `manager`, `agent`). Their flags live in main.ts (the daemon
 * composition owns them); the one-line descriptions live here so that list stays a plain list.
 * A daemon flag without a line here shows up in `--help` without a description (and
 * test/unit/cli-help.test.ts fails until it has one).
 */
import type { FlagSpec } from './args.js';
import type { CommandInfo } from './help.js';

export const DAEMON_FLAG_HELP: Record<string, Pick<FlagSpec, 'help' | 'value' | 'choices'>> = {
  'data-dir': { value: 'DIR', help: 'state, socket and tokens (or SHOAL_DATA_DIR; default /var/lib/shoal)' },
  listen: { value: 'HOST:PORT', help: 'also serve the API on TCP, TLS only (agents of other machines join here)' },
  name: { value: 'NAME', help: 'node name (agent), or this manager\'s name among several (default: the hostname)' },
  address: { value: 'IP', help: 'the node\'s underlay address: VXLAN endpoint and published ports (default 127.0.0.1)' },
  join: { value: 'URL[,URL...]', help: 'managers to join (the next one is tried when one fails): https://HOST:PORT or unix:///PATH' },
  token: { value: 'JOIN_TOKEN', help: 'the join token printed by shoal manager (or SHOAL_JOIN_TOKEN); it pins the cluster CA' },
  'node-cert-ttl': { value: 'DURATION', help: 'lifetime of the node certificates this manager issues: 24h (default), 30m, 90s; renewed at 2/3' },
  'node-ttl': { value: 'SECONDS', help: 'a node is down this long after its last heartbeat (default 10)' },
  'metrics-addr': { value: 'HOST:PORT', help: "Prometheus metrics listener ('' = off; up and agent default 127.0.0.1:9323)" },
  isolation: { value: 'MODE', choices: ['netns', 'none'], help: 'netns: each task in its own network namespace (root); none: tasks share the agent\'s' },
  'link-prefix': { value: 'PREFIX', help: 'prefix of the links and nft tables this agent owns (1-4 chars; default s + 3 characters of the data dir\'s instance tag)' },
  'netns-prefix': { value: 'PREFIX', help: 'prefix of the task namespaces\' names (default shoal-TAG-, TAG the data dir\'s instance tag)' },
  'dns-upstream': { value: 'IP[:PORT]', help: 'upstream resolver of the embedded DNS (default: /etc/resolv.conf\'s)' },
  'vxlan-port': { value: 'PORT', help: 'UDP port of overlay networks, the same on every node (default 4789)' },
  'lb-dataplane': { value: 'DP', choices: ['auto', 'ipvs', 'nftables', 'none'], help: 'VIP load balancing in task sandboxes (auto: ipvs, else nftables)' },
  'resync-interval': { value: 'DURATION', help: 'full resync (drift repair) period: 30s, 2m, 500ms (default 30s)' },
  store: { value: 'STORE', help: 'cluster state: embedded (default, in the data dir) or etcd://HOST:PORT[,HOST:PORT...] (several managers, one cluster)' },
  'leader-ttl': { value: 'SECONDS', help: 'lease of the leader election on etcd: a dead leader is replaced about this fast (default 1)' },
  'heartbeat-interval': { value: 'DURATION', help: 'how often the agent renews its node lease (default: a third of the manager\'s node TTL)' },
  'ingress-subnet': { value: 'CIDR', help: 'subnet of the ingress network when this manager creates the cluster (default a /16 from 10.0.0.0/8)' },
};

/** `shoal up|manager|agent` for help and completion, their flags described from the map above. */
export function daemonCommands(flags: readonly FlagSpec[]): CommandInfo[] {
  const described = flags.map((f) => ({ ...DAEMON_FLAG_HELP[f.name], ...f }));
  return [
    { name: 'up', usage: 'shoal up [OPTIONS]', summary: 'Run a manager, an agent and the embedded store in one process', flags: described },
    { name: 'manager', usage: 'shoal manager [OPTIONS]', summary: 'Run a manager (prints the join token agents need)', flags: described },
    { name: 'agent', usage: 'shoal agent --join URL --token JOIN_TOKEN [OPTIONS]', summary: 'Run an agent that joins a manager and runs tasks', flags: described },
  ];
}

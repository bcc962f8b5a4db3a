/**
 * How each list shows its objects: the row fields (Docker's names, for `--format`), the default
 * table, and the `--filter` keys with Docker's matching rules.
 */
import { taskName, type Network, type Node, type Service, type Task } from '../../src/model/types.js';
import { matchIdPrefix, matchLabel, type FilterSpec } from './filters.js';
import { ago } from './format.js';
import type { ListView } from './output.js';

const cap = (s: string): string => (s ? s[0]?.toUpperCase() + s.slice(1) : s);

/** A field of a spec that other parts of Shoal may add (mode, image): read without assuming it exists. */
const specField = (s: Service, k: string): unknown => (s.spec as unknown as Record<string, unknown>)[k];

/** `replicated` unless the service says otherwise (global services come with the scheduler work). */
export const serviceMode = (s: Service): string => (typeof specField(s, 'mode') === 'string' ? specField(s, 'mode') as string : 'replicated');

/** The image, or for a process service its command after `--`, as `service create` took it. */
export function serviceImage(s: Service): string {
  const image = specField(s, 'image');
  if (typeof image === 'string' && image) return image;
  const cmd = s.spec.command.join(' ');
  return `-- ${cmd.length > 40 ? `${cmd.slice(0, 39)}…` : cmd}`;
}

export function servicePorts(s: Service): string {
  return s.spec.ports.map((p) => `${p.mode === 'host' ? 'host:' : '*:'}${p.published}->${p.target}/${p.protocol}`).join(', ');
}

/** `service ls`: needs the tasks to count running replicas. */
export function serviceView(tasks: readonly Task[]): ListView<Service> {
  const running = new Map<string, number>();
  for (const t of tasks) if (t.desiredState === 'running' && t.status.state === 'running') running.set(t.serviceId, (running.get(t.serviceId) ?? 0) + 1);
  return {
    fields: ['ID', 'Name', 'Mode', 'Replicas', 'Image', 'Ports', 'EndpointMode', 'Labels', 'CreatedAt', 'UpdatedAt'],
    table: 'table {{.ID}}\t{{.Name}}\t{{.Mode}}\t{{.Replicas}}\t{{.Image}}\t{{.Ports}}',
    id: (s) => s.id,
    row: (s) => ({
      ID: s.id, Name: s.spec.name, Mode: serviceMode(s),
      Replicas: serviceMode(s) === 'global' ? `${running.get(s.id) ?? 0}/${running.get(s.id) ?? 0}` : `${running.get(s.id) ?? 0}/${s.spec.replicas}`,
      Image: serviceImage(s), Ports: servicePorts(s), EndpointMode: s.spec.endpointMode, Labels: s.spec.labels, CreatedAt: s.createdAt, UpdatedAt: s.updatedAt,
    }),
  };
}

export const SERVICE_FILTERS: FilterSpec<Service> = {
  keys: {
    id: (s, v) => matchIdPrefix(s.id, v),
    name: (s, v) => s.spec.name.startsWith(v),
    label: (s, v) => matchLabel(s.spec.labels, v),
    mode: (s, v) => serviceMode(s) === v,
  },
  choices: { mode: ['replicated', 'global'] },
};

/** `service ps`: tasks with their node's name and their service. */
export function taskView(nodes: readonly Node[], services: readonly Service[]): ListView<Task> {
  const nodeName = new Map(nodes.map((n) => [n.id, n.name]));
  const svc = new Map(services.map((s) => [s.id, s]));
  return {
    fields: ['ID', 'Name', 'Image', 'Node', 'DesiredState', 'CurrentState', 'Error', 'Message', 'Ports', 'Slot', 'ServiceID', 'Addresses', 'Healthy'],
    table: 'table {{.ID}}\t{{.Name}}\t{{.Image}}\t{{.Node}}\t{{.DesiredState}}\t{{.CurrentState}}\t{{.Message}}',
    id: (t) => t.id,
    row: (t) => {
      const s = svc.get(t.serviceId);
      return {
        ID: t.id, Name: taskName(t).replace(`.${t.id}`, ''), Image: s ? serviceImage(s) : '',
        Node: nodeName.get(t.nodeId) ?? t.nodeId, DesiredState: cap(t.desiredState),
        CurrentState: `${cap(t.status.state)} ${ago(t.status.since)}`,
        Error: t.status.state === 'failed' ? t.status.message : '', Message: t.status.message,
        Ports: s ? s.spec.ports.filter((p) => p.mode === 'host').map((p) => `*:${p.published}->${p.target}/${p.protocol}`).join(', ') : '',
        Slot: t.slot, ServiceID: t.serviceId, Addresses: t.addresses, Healthy: t.status.healthy,
      };
    },
  };
}

export function taskFilters(nodes: readonly Node[]): FilterSpec<Task> {
  const byRef = (t: Task, v: string): boolean => t.nodeId === v || nodes.some((n) => n.id === t.nodeId && n.name === v);
  return {
    keys: {
      id: (t, v) => matchIdPrefix(t.id, v),
      name: (t, v) => taskName(t).startsWith(v),
      node: byRef,
      // Docker's "accepted" is a task not yet running that should run.
      'desired-state': (t, v) => (v === 'accepted' ? t.desiredState === 'running' && t.status.state !== 'running' : t.desiredState === v),
    },
    choices: { 'desired-state': ['running', 'shutdown', 'accepted'] },
  };
}

export const networkView: ListView<Network> = {
  fields: ['ID', 'Name', 'Driver', 'Scope', 'Subnet', 'Gateway', 'IPv6', 'Internal', 'Attachable', 'Ingress', 'Labels', 'Options', 'CreatedAt'],
  table: 'table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}\t{{.Subnet}}\t{{.Gateway}}',
  headers: { ID: 'NETWORK ID' },
  id: (n) => n.id,
  row: (n) => ({
    ID: n.id, Name: n.name, Driver: n.driver, Scope: n.scope,
    Subnet: [n.ipam.v4.subnet, n.ipam.v6?.subnet].filter(Boolean).join(','), Gateway: [n.ipam.v4.gateway, n.ipam.v6?.gateway].filter(Boolean).join(','),
    IPv6: Boolean(n.ipam.v6), Internal: Boolean((n as { internal?: boolean }).internal), Attachable: Boolean((n as { attachable?: boolean }).attachable),
    Ingress: Boolean(n.ingress), Labels: n.labels, Options: n.options, CreatedAt: n.createdAt,
  }),
};

export const NETWORK_FILTERS: FilterSpec<Network> = {
  keys: {
    id: (n, v) => matchIdPrefix(n.id, v),
    name: (n, v) => n.name.includes(v),
    driver: (n, v) => n.driver === v,
    label: (n, v) => matchLabel(n.labels, v),
    scope: (n, v) => n.scope === v,
  },
  choices: { driver: ['bridge', 'overlay', 'macvlan'], scope: ['local', 'swarm'] },
};

/** A node's role: `manager` when a manager runs beside its agent (the API says so), else `worker`. */
export const nodeRole = (n: Node): string => ((n as { role?: string }).role === 'manager' ? 'manager' : 'worker');

export const nodeView: ListView<Node> = {
  fields: ['ID', 'Name', 'Hostname', 'Address', 'Status', 'Availability', 'Role', 'Labels', 'CreatedAt'],
  table: 'table {{.ID}}\t{{.Name}}\t{{.Address}}\t{{.Status}}\t{{.Availability}}\t{{.Role}}',
  id: (n) => n.id,
  row: (n) => ({
    ID: n.id, Name: n.name, Hostname: n.name, Address: n.address, Status: cap(n.state), Availability: cap(n.availability),
    Role: nodeRole(n), Labels: n.labels, CreatedAt: n.createdAt,
  }),
};

export const NODE_FILTERS: FilterSpec<Node> = {
  keys: {
    id: (n, v) => matchIdPrefix(n.id, v),
    name: (n, v) => n.name.startsWith(v),
    role: (n, v) => nodeRole(n) === v,
    availability: (n, v) => n.availability === v,
    label: (n, v) => matchLabel(n.labels, v),
    'node.label': (n, v) => matchLabel(n.labels, v),
  },
  choices: { role: ['manager', 'worker'], availability: ['active', 'pause', 'drain'] },
};

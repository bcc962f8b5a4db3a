/**
 * Shoal's domain model (Docker's Container Network Model, kept on purpose).
 * These are the objects stored as JSON in the cluster store; every layer reads them.
 * Validation of user input lives at the API boundary (mesh/api/validate.ts).
 */

export type NetworkDriver = 'bridge' | 'overlay' | 'macvlan';
export type NetworkScope = 'local' | 'swarm';

/** One address family's IPAM configuration of a network. */
export interface IpamConfig {
  /** CIDR, e.g. "10.0.1.0/24" or "fd00:1::/64". */
  subnet: string;
  /** Gateway address inside the subnet (first usable address unless given). */
  gateway: string;
}

export interface Network {
  id: string;
  name: string;
  driver: NetworkDriver;
  scope: NetworkScope;
  ipam: { v4: IpamConfig; v6?: IpamConfig };
  /** VXLAN network identifier, overlay only. */
  vni?: number;
  /** True for the cluster's ingress network (created by the system, not by users). */
  ingress?: boolean;
  /** `--internal`: nothing is routed between the network and anything else (no NAT, no way out). */
  internal?: boolean;
  /** `--attachable`: standalone containers may join it (recorded for the attachment front doors to check). */
  attachable?: boolean;
  /** Driver options (`-o k=v`), e.g. `parent=eth0` for macvlan, `mtu=1400`. */
  options: Record<string, string>;
  labels: Record<string, string>;
  createdAt: string;
}

export type EndpointMode = 'vip' | 'dnsrr';
export type Protocol = 'tcp' | 'udp';
export type PublishMode = 'ingress' | 'host';

export interface PortConfig {
  /** Port inside the task. */
  target: number;
  /** Port on every node (ingress) or on nodes running a replica (host). Auto-assigned if 0 in ingress mode. */
  published: number;
  protocol: Protocol;
  mode: PublishMode;
  /** Optional name, used for DNS SRV records `_name._proto.svc`. */
  name?: string;
}

export interface ServiceNetwork {
  /** Network id. */
  network: string;
  aliases: string[];
}

export interface HealthCheck {
  /** `tcp` connects to `port`; `http` GETs `path` on `port` and wants a 2xx/3xx. */
  type: 'tcp' | 'http' | 'none';
  port?: number;
  path?: string;
  intervalMs: number;
  timeoutMs: number;
  retries: number;
  startPeriodMs: number;
}

/** How a VIP or published port picks a replica (IPVS's names; the nftables and userspace dataplanes map them). */
export type LbScheduler = 'rr' | 'wrr' | 'random' | 'lc' | 'sh' | 'mh';
/** Which replicas a published port reaches: any (`cluster`) or only the receiving node's (`local`, client address kept). */
export type TrafficPolicy = 'cluster' | 'local';

export interface ServiceSpec {
  name: string;
  endpointMode: EndpointMode;
  replicas: number;
  ports: PortConfig[];
  networks: ServiceNetwork[];
  /** Container image (run by a container runtime); absent: `command` runs as a process. */
  image?: string;
  /** The task's command (argv). */
  command: string[];
  env: Record<string, string>;
  healthCheck?: HealthCheck;
  labels: Record<string, string>;
  /** resolv.conf `options` of the tasks (`ndots:0` is added unless one sets ndots). */
  dnsOptions?: string[];
  /** Load-balancing algorithm of the VIP and published ports; default rr. */
  scheduler?: LbScheduler;
  /** Session affinity by client address, kept while the client is idle less than this; absent/0 = none. */
  affinityTimeoutSeconds?: number;
  /** How long a stopping task keeps its established connections (no new ones) before it is stopped; default 10 s. */
  drainTimeoutMs?: number;
  /** Ingress traffic policy of published ports; default cluster. */
  trafficPolicy?: TrafficPolicy;
  // ---- Swarm service features (absent = the default; see mesh/manager/service-defaults.ts) ----
  /** `replicated` (default): `replicas` tasks; `global`: one task per eligible node. Fixed at create. */
  mode?: ServiceMode;
  /** Placement constraints in Docker's syntax (`node.labels.zone==a`, `node.hostname!=n1`); all must hold. */
  constraints?: string[];
  /** What the agent does when a task's process exits; default: always restart, with back-off. */
  restartPolicy?: RestartPolicy;
  /** How a spec change replaces running tasks (Docker's defaults when absent: one at a time, stop-first, pause on failure). */
  updateConfig?: UpdateConfig;
  /** How a rollback replaces them (same defaults). */
  rollbackConfig?: UpdateConfig;
  /** Time between SIGTERM and SIGKILL when a task is stopped; default 10 s. */
  stopGracePeriodMs?: number;
  /** Resource limits of each task (cgroups for processes; a container runtime passes them on). */
  resources?: { limits?: ResourceLimits };
  /** Host name the task sees (its own UTS namespace). */
  hostname?: string;
  /** Working directory of the task's process; must exist on the node. */
  workdir?: string;
  /** User the task runs as: `name`, `uid`, `name:group` or `uid:gid` (Docker's `--user`). */
  user?: string;
  /** Bumped by `service update --force`: replaces every task although nothing else changed. */
  forceUpdate?: number;
}

export type ServiceMode = 'replicated' | 'global';

/** Docker's restart policy, applied by the agent where the task runs. */
export interface RestartPolicy {
  /** `none`: never; `on-failure`: when the exit code is not 0 (or a signal ended it); `any`: always. */
  condition: 'none' | 'on-failure' | 'any';
  /** Wait before a restart; absent: back-off from 1 s doubling to 30 s. */
  delayMs?: number;
  /** Restarts allowed (within `windowMs` when set); absent or 0: unlimited. */
  maxAttempts?: number;
  /** Only restarts within this window count against `maxAttempts`; absent or 0: all count. */
  windowMs?: number;
}

/** Docker's UpdateConfig / RollbackConfig. */
export interface UpdateConfig {
  /** Tasks replaced at once; 0 = all at once. */
  parallelism: number;
  /** Wait between one batch ready and the next started. */
  delayMs: number;
  /** `stop-first`: the old task stops before its replacement starts; `start-first`: the replacement runs first. */
  order: 'stop-first' | 'start-first';
  /** What a failed replacement does to the update. */
  failureAction: 'pause' | 'continue' | 'rollback';
  /** A replacement that fails within this time after it started counts as a failure. */
  monitorMs: number;
  /** Failures tolerated, as a fraction of the tasks updated (0..1). */
  maxFailureRatio: number;
}

/** Limits of one task: Docker's `NanoCPUs` and `MemoryBytes`. */
export interface ResourceLimits {
  /** CPU in units of 1e-9 CPUs (`--limit-cpu 0.5` = 500000000). */
  nanoCpus?: number;
  memoryBytes?: number;
}

/** Progress of the latest rolling update or rollback (Docker's UpdateStatus). */
export interface UpdateStatus {
  state: 'updating' | 'paused' | 'completed' | 'rollback_started' | 'rollback_paused' | 'rollback_completed';
  startedAt: string;
  completedAt?: string;
  message: string;
}

export interface Service {
  id: string;
  /** Incremented on every update of the spec; tasks record the version they run. */
  version: number;
  spec: ServiceSpec;
  /** One VIP per network in vip mode: network id -> address (v4, and v6 when the network has it). */
  vips: Record<string, { v4: string; v6?: string }>;
  /** The spec before the latest update (Docker's PreviousSpec): what `service rollback` goes back to. */
  previousSpec?: ServiceSpec;
  /** The latest rolling update or rollback, absent until the first update that replaces tasks. */
  updateStatus?: UpdateStatus;
  createdAt: string;
  updatedAt: string;
}

export type TaskState =
  | 'new'
  /** Waiting for a node (none is eligible); the status message says why. */
  | 'pending'
  | 'assigned'
  | 'starting'
  | 'running'
  | 'complete'
  | 'failed'
  | 'shutdown'
  | 'orphaned';

export type DesiredTaskState = 'running' | 'shutdown';

export interface TaskStatus {
  state: TaskState;
  message: string;
  /** ISO timestamp of the last state change. */
  since: string;
  pid?: number;
  exitCode?: number;
  /** Health as the agent sees it; absent while unknown. */
  healthy?: boolean;
  /** Times the agent restarted the task's process (restart policy). */
  restarts?: number;
}

export interface Task {
  id: string;
  serviceId: string;
  serviceName: string;
  /** Replica slot, 1-based; 0 for a global service's task (one per node: its node identifies it). */
  slot: number;
  nodeId: string;
  desiredState: DesiredTaskState;
  status: TaskStatus;
  /** One address per network: network id -> { v4, v6? }. */
  addresses: Record<string, { v4: string; v6?: string }>;
  serviceVersion: number;
  /** Hash of the spec fields a running task depends on; a task with a stale hash is replaced. */
  specHash: string;
  /** Set once the task's addresses went back to IPAM (they stay listed for history). */
  addressesReleased?: boolean;
  createdAt: string;
}

export type NodeState = 'ready' | 'down';
export type NodeAvailability = 'active' | 'drain' | 'pause';

export interface Node {
  id: string;
  name: string;
  /** Underlay address used as the VXLAN tunnel endpoint and for published ports. */
  address: string;
  state: NodeState;
  availability: NodeAvailability;
  /** Store lease held by the node's agent; the node is down when it expires. */
  lease: number;
  /** The node's ingress sandbox endpoint on the cluster's ingress network (allocated when it joins). */
  ingress?: { network: string; v4: string };
  /** Ports a process on the node listens on (`8080/tcp`), as its agent last reported: not publishable. */
  boundPorts?: string[];
  labels: Record<string, string>;
  createdAt: string;
  updatedAt: string;
}

/** The optional DNS and load-balancing fields of a spec (set at create, changed by update). */
export type ServiceLbFields = Pick<ServiceSpec, 'dnsOptions' | 'scheduler' | 'affinityTimeoutSeconds' | 'drainTimeoutMs' | 'trafficPolicy'>;

/** The task's display name, Docker-style: `web.1.<id>`, or `web.<node id>.<id>` for a global service. */
export const taskName = (t: Pick<Task, 'serviceName' | 'slot' | 'id'> & { nodeId?: string }): string => `${t.serviceName}.${taskSlotLabel(t)}.${t.id}`;

/** The slot part of a task's name: its slot, or its node id for a global service's task. */
export const taskSlotLabel = (t: Pick<Task, 'slot'> & { nodeId?: string }): string => (t.slot === 0 && t.nodeId ? t.nodeId : String(t.slot));

/**
 * What a task runtime is told about a task beyond its command and environment: where it runs
 * (network namespace, working directory, user, host name), its limits and its restart and stop
 * behaviour. Runtime-agnostic: the process runtime maps these to `ip netns exec`, cgroups,
 * `setpriv` and `unshare`; a container runtime maps them to its own flags.
 */
import type { ResourceLimits, RestartPolicy, ServiceSpec } from '../../src/model/types.js';

export interface TaskRunOptions {
  /** Network namespace (a name under /run/netns) the task runs in; absent: the agent's. */
  netns?: string;
  /** When an exit is followed by a restart (restart-policy.ts decides); absent: always, with back-off. */
  restartPolicy?: RestartPolicy;
  /** Restarts made before this runtime took the task on (an agent restart carries them on). */
  restartsSoFar?: number;
  /** SIGTERM, then SIGKILL after this long, when the task is stopped; default 10 s. */
  stopGraceMs?: number;
  /** Working directory (absolute); must exist. */
  workdir?: string;
  /** `name`, `uid`, `name:group` or `uid:gid`. */
  user?: string;
  /** Host name the task sees (its own UTS namespace). */
  hostname?: string;
  limits?: ResourceLimits;
}

/** The run options a service's spec gives its tasks (the agent adds the namespace). */
export function runOptionsOf(spec: ServiceSpec, restartsSoFar: number | undefined): TaskRunOptions {
  const o: TaskRunOptions = {};
  if (spec.restartPolicy) o.restartPolicy = spec.restartPolicy;
  if (restartsSoFar) o.restartsSoFar = restartsSoFar;
  if (spec.stopGracePeriodMs !== undefined) o.stopGraceMs = spec.stopGracePeriodMs;
  if (spec.workdir !== undefined) o.workdir = spec.workdir;
  if (spec.user !== undefined) o.user = spec.user;
  if (spec.hostname !== undefined) o.hostname = spec.hostname;
  if (spec.resources?.limits) o.limits = spec.resources.limits;
  return o;
}

/**
 * `service inspect --pretty`: a service as Docker's `service inspect --pretty` lays it out
 * (mode, placement, update and rollback configs with their defaults, restart policy, the task's
 * command and environment, limits, endpoint), plus Shoal's networks and VIPs.
 */
import { modeOf, restartPolicyOf, rollbackConfigOf, updateConfigOf, DEFAULT_STOP_GRACE_MS } from '../../src/model/service-defaults.js';
import type { Service, UpdateConfig } from '../../src/model/types.js';

/** `1m30s`-style, as Go prints durations (whole milliseconds). */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  if (ms < 1000) return `${ms}ms`;
  const h = Math.floor(ms / 3_600_000), m = Math.floor((ms % 3_600_000) / 60_000), s = (ms % 60_000) / 1000;
  return `${h ? `${h}h` : ''}${h || m ? `${m}m` : ''}${s ? `${s}s` : h || m ? '' : '0s'}`;
}

function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0, v = n;
  while (v >= 1024 && i < units.length - 1 && v % 1024 === 0) { v /= 1024; i++; }
  return `${v}${units[i]}`;
}

function config(title: string, c: UpdateConfig, orderLabel: string): string[] {
  return [
    `${title}:`,
    ` Parallelism:\t${c.parallelism}`,
    ...(c.delayMs ? [` Delay:\t\t${formatDuration(c.delayMs)}`] : []),
    ` On failure:\t${c.failureAction}`,
    ` Monitoring Period: ${formatDuration(c.monitorMs)}`,
    ` Max failure ratio: ${c.maxFailureRatio}`,
    ` ${`${orderLabel}:`.padEnd(19)}${c.order}`,
  ];
}

export function prettyService(s: Service, networkName: (id: string) => string): string {
  const sp = s.spec;
  const mode = modeOf(sp);
  const rp = restartPolicyOf(sp);
  const lines = [
    `ID:\t\t${s.id}`,
    `Name:\t\t${sp.name}`,
    ...(Object.keys(sp.labels).length ? ['Labels:', ...Object.entries(sp.labels).map(([k, v]) => ` ${k}=${v}`)] : []),
    `Service Mode:\t${mode === 'global' ? 'Global' : 'Replicated'}`,
    ...(mode === 'replicated' ? [` Replicas:\t${sp.replicas}`] : []),
    ...(s.updateStatus ? [
      'UpdateStatus:',
      ` State:\t\t${s.updateStatus.state}`,
      ` Started:\t${s.updateStatus.startedAt}`,
      ...(s.updateStatus.completedAt ? [` Completed:\t${s.updateStatus.completedAt}`] : []),
      ` Message:\t${s.updateStatus.message}`,
    ] : []),
    'Placement:',
    ...(sp.constraints?.length ? [` Constraints:\t[${sp.constraints.join(' ')}]`] : []),
    ...config('UpdateConfig', updateConfigOf(sp), 'Update order'),
    ...config('RollbackConfig', rollbackConfigOf(sp), 'Rollback order'),
    'RestartPolicy:',
    ` Condition:\t${rp.condition}`,
    ` Delay:\t\t${rp.delayMs !== undefined ? formatDuration(rp.delayMs) : 'back-off (1s doubling to 30s)'}`,
    ` Max attempts:\t${rp.maxAttempts ?? 0}`,
    ...(rp.windowMs ? [` Window:\t${formatDuration(rp.windowMs)}`] : []),
    'ContainerSpec:',
    ` Command:\t${sp.command.join(' ')}`,
    ...(Object.keys(sp.env).length ? [' Env:\t\t' + Object.entries(sp.env).map(([k, v]) => `${k}=${v}`).join(' ')] : []),
    ...(sp.workdir ? [` Dir:\t\t${sp.workdir}`] : []),
    ...(sp.user ? [` User:\t\t${sp.user}`] : []),
    ...(sp.hostname ? [` Hostname:\t${sp.hostname}`] : []),
    ` StopGracePeriod: ${formatDuration(sp.stopGracePeriodMs ?? DEFAULT_STOP_GRACE_MS)}`,
    ...(sp.resources?.limits ? [
      'Resources:', ' Limits:',
      ...(sp.resources.limits.nanoCpus !== undefined ? [`  CPU:\t\t${sp.resources.limits.nanoCpus / 1e9}`] : []),
      ...(sp.resources.limits.memoryBytes !== undefined ? [`  Memory:\t${formatBytes(sp.resources.limits.memoryBytes)}`] : []),
    ] : []),
    ...(sp.networks.length ? ['Networks:', ...sp.networks.map((n) => ` ${networkName(n.network)}${s.vips[n.network] ? ` (VIP ${s.vips[n.network]?.v4})` : ''}${n.aliases.length ? ` aliases: ${n.aliases.join(', ')}` : ''}`)] : []),
    `Endpoint Mode:\t${sp.endpointMode}`,
    ...(sp.ports.length ? ['Ports:', ...sp.ports.flatMap((p) => [` PublishedPort = ${p.published}`, `  Protocol = ${p.protocol}`, `  TargetPort = ${p.target}`, `  PublishMode = ${p.mode}`])] : []),
  ];
  return lines.join('\n') + '\n';
}

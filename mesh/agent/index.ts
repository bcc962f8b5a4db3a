/**
 * The agent: joins a manager, keeps the local index in sync, and reconciles the tasks assigned
 * to its node with the task runtime (desired running -> ensureRunning; shutdown -> ensureStopped
 * and report). Nothing is started before the first full list arrived.
 */
import { join } from 'node:path';
import { taskName, type Task } from '../../src/model/types.js';
import { BoundedFrequencyRunner } from '../../src/runner.js';
import { LocalIndex } from './local-index.js';
import { streamLogFiles } from './logs.js';
import { ProcessRuntime, type TaskEvent, type TaskRuntime } from './process-runtime.js';
import { AgentSession } from './session.js';

export interface AgentOptions {
  managerUrl: string;
  joinToken: string;
  name: string;
  address: string;
  dataDir: string;
  runtime?: TaskRuntime;
  log?: (msg: string) => void;
}

export class Agent {
  readonly index = new LocalIndex();
  readonly session: AgentSession;
  readonly runtime: TaskRuntime;
  private readonly runner: BoundedFrequencyRunner;
  /** Last status reported per task, so a status is sent once per change. */
  private readonly reported = new Map<string, string>();
  syncFailures = 0;

  constructor(private readonly opts: AgentOptions) {
    this.runtime = opts.runtime ?? new ProcessRuntime(join(opts.dataDir, 'tasks'));
    this.session = new AgentSession({
      managerUrl: opts.managerUrl, joinToken: opts.joinToken, name: opts.name, address: opts.address,
      index: this.index, log: (m) => opts.log?.(m),
      onWelcome: () => { this.reported.clear(); this.runner.run(); },
      onLogs: (tasks, follow, send, end) => streamLogFiles(tasks.map((t) => ({ taskId: t.id, path: this.runtime.logPath(t.id) })), follow, send, end),
    });
    this.runner = new BoundedFrequencyRunner(() => this.sync(), {
      name: 'agent-tasks', minIntervalMs: 20, maxIntervalMs: 5000, burst: 2, retryAfterMs: 500,
      onError: (e) => { this.syncFailures++; opts.log?.(`task sync failed (will retry): ${String(e)}`); },
    });
    this.index.onChange(() => this.runner.run());
    this.runtime.onEvent((e) => this.onTaskEvent(e));
  }

  get nodeId(): string | undefined { return this.session.node?.id; }


  start(): void {
    this.session.start();
    this.runner.start();
  }

  async stop(): Promise<void> {
    this.session.stop();
    await this.runner.stop();
    await this.runtime.close();
  }

  private report(t: Pick<Task, 'id'>, state: Task['status']['state'], message: string, extra: { pid?: number; exitCode?: number } = {}): void {
    const sig = `${state}|${message}`;
    if (this.reported.get(t.id) === sig) return;
    this.reported.set(t.id, sig);
    this.session.reportStatus(t.id, { state, message, ...extra });
  }

  private async sync(): Promise<void> {
    const nodeId = this.nodeId;
    if (!nodeId || !this.index.synced) return;
    const mine = this.index.tasks().filter((t) => t.nodeId === nodeId);
    const services = new Map(this.index.services().map((s) => [s.id, s]));
    const wanted = new Set<string>();
    const stops: Array<Promise<void>> = [];
    for (const t of mine) {
      if (t.desiredState === 'running' && t.status.state !== 'orphaned') {
        const svc = services.get(t.serviceId);
        if (!svc) continue;
        wanted.add(t.id);
        // Only when the runtime takes the task on: the index may still show "assigned" after the
        // task was reported running, and a second "starting" would overwrite "running".
        if (!this.runtime.list().includes(t.id)) this.report(t, 'starting', 'starting');
        this.runtime.ensureRunning({
          taskId: t.id, command: svc.spec.command,
          env: { ...svc.spec.env, SHOAL_TASK_NAME: taskName(t), SHOAL_TASK_SLOT: String(t.slot), SHOAL_SERVICE_NAME: t.serviceName, SHOAL_TASK_ID: t.id },
        });
      } else if (t.desiredState === 'shutdown' && !['shutdown', 'complete', 'failed', 'orphaned'].includes(t.status.state)) {
        stops.push(this.runtime.ensureStopped(t.id).then(() => this.report(t, 'shutdown', 'stopped by the agent')));
      }
    }
    // Tasks the runtime holds that the cluster no longer assigns here (removed, moved, orphaned).
    for (const id of this.runtime.list()) if (!wanted.has(id)) stops.push(this.runtime.ensureStopped(id));
    // Stops run side by side: each may wait out a task's grace period.
    await Promise.all(stops);
  }

  private onTaskEvent(e: TaskEvent): void {
    const t = { id: e.taskId };
    switch (e.type) {
      case 'running': this.report(t, 'running', e.adopted ? 'running (adopted after agent restart)' : 'running', { pid: e.pid }); break;
      case 'exited': this.report(t, 'starting', `exited (${e.signal ?? `code ${e.exitCode}`}); restarting in ${e.restartInMs} ms`, e.exitCode !== null ? { exitCode: e.exitCode } : {}); break;
      case 'failed': this.report(t, 'starting', e.message); break;
      case 'stopped': break;
    }
  }
}

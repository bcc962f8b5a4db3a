/**
 * GET /v1/services/:ref/logs[?follow=1][&tail=N][&since=UNIX_MS][&timestamps=1]: the output of
 * every task of a service as a plain-text stream, each line prefixed with the task's name
 * (`web.1.<id>@node | ...`, Docker's form; with `timestamps` the RFC 3339 time the line was
 * written follows the bar). The manager asks the agents holding the tasks (log-relay.ts);
 * `tail` and `since` apply per task on the agents. What was already written is merged across
 * tasks and nodes by time before it is sent; with `follow`, new lines then pass as they come
 * and the response lasts until the client disconnects; without, it ends once every node sent
 * what it has.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { invalid } from '../../src/errors.js';
import { taskName } from '../../src/model/types.js';
import type { Manager } from '../manager/index.js';
import { listObjects, resolveObject } from '../manager/objects.js';
import { LogMerger } from './log-merge.js';
import type { LogLine, LogRelay, LogRequest } from './log-relay.js';

/** Reads the query of a logs request; a malformed value is a 400. */
export function logsQuery(q: URLSearchParams): LogRequest & { timestamps: boolean } {
  const out: LogRequest & { timestamps: boolean } = { follow: ['1', 'true'].includes(q.get('follow') ?? ''), timestamps: ['1', 'true'].includes(q.get('timestamps') ?? '') };
  const tail = q.get('tail');
  if (tail !== null && tail !== 'all') {
    if (!/^\d{1,9}$/.test(tail)) throw invalid(`logs tail must be a number of lines (0 or more) or all, got '${tail}'`);
    out.tail = Number(tail);
  }
  const since = q.get('since');
  if (since !== null) {
    if (!/^\d{1,15}$/.test(since)) throw invalid(`logs since must be a time in Unix milliseconds, got '${since}'`);
    out.since = Number(since);
  }
  return out;
}

/** Docker's RFC3339NanoFixed, from milliseconds: `2024-05-01T10:00:00.123000000Z`. */
export const rfc3339Nano = (ms: number): string => new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000000Z');

export async function streamLogs(m: Manager, relay: LogRelay, ref: string, q: ReturnType<typeof logsQuery>, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const svc = (await resolveObject(m.store, 'services', ref)).obj;
  const tasks = (await listObjects(m.store, 'tasks')).map((v) => v.obj).filter((t) => t.serviceId === svc.id);
  const nodes = new Map((await listObjects(m.store, 'nodes')).map((v) => [v.obj.id, v.obj.name]));
  res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
  const format = (l: LogLine): string => `${l.task} | ${q.timestamps ? `${rfc3339Nano(l.time)} ` : ''}${l.text}\n`;
  // The nodes' backlogs are merged by time as they stream in (log-merge.ts).
  const cancel = relay.request(
    tasks.map((t) => ({ id: t.id, name: `${taskName(t)}@${nodes.get(t.nodeId) ?? t.nodeId}`, nodeId: t.nodeId })),
    q,
    (asked) => {
      const merger = new LogMerger(asked, (lines) => res.write(lines.map(format).join('')));
      return {
        lines: (node, lines) => merger.lines(node, lines),
        nodeSynced: (node) => merger.nodeSynced(node),
        end: () => { merger.end(); res.end(); },
      };
    },
    (nodeId) => res.write(`(node ${nodes.get(nodeId) ?? nodeId} is not connected: its tasks' logs are not available)\n`),
  );
  req.once('close', cancel);
}

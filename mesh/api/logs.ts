/**
 * GET /v1/services/:ref/logs[?follow=1]: the output of every task of a service, each line
 * prefixed with the task's name (`web.1.<id> | ...`), as a plain-text stream. The manager asks
 * the agents holding the tasks (log-relay.ts); without `follow` the response ends once every
 * node sent what it has; with it, it lasts until the client disconnects.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { taskName } from '../../src/model/types.js';
import type { Manager } from '../manager/index.js';
import { listObjects, resolveObject } from '../manager/objects.js';
import type { LogRelay } from './log-relay.js';

export async function streamLogs(m: Manager, relay: LogRelay, ref: string, follow: boolean, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const svc = (await resolveObject(m.store, 'services', ref)).obj;
  const tasks = (await listObjects(m.store, 'tasks')).map((v) => v.obj).filter((t) => t.serviceId === svc.id);
  const nodes = new Map((await listObjects(m.store, 'nodes')).map((v) => [v.obj.id, v.obj.name]));
  res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
  // Lines can arrive split across messages: keep each task's unfinished line until its newline.
  const partial = new Map<string, string>();
  const cancel = relay.request(
    tasks.map((t) => ({ id: t.id, name: `${taskName(t)}@${nodes.get(t.nodeId) ?? t.nodeId}`, nodeId: t.nodeId })),
    follow,
    {
      data(name, text) {
        const lines = ((partial.get(name) ?? '') + text).split('\n');
        partial.set(name, lines.pop() ?? '');
        if (lines.length) res.write(lines.map((l) => `${name} | ${l}\n`).join(''));
      },
      end() {
        for (const [name, rest] of partial) if (rest) res.write(`${name} | ${rest}\n`);
        res.end();
      },
    },
    (nodeId) => res.write(`(node ${nodes.get(nodeId) ?? nodeId} is not connected: its tasks' logs are not available)\n`),
  );
  req.once('close', cancel);
}

/**
 * `shoal events`: cluster changes as Docker prints them, one line each —
 * `2024-05-01T10:00:00.123Z service create 3f2a... (name=web)`,
 * `... task update 9c1d... (name=web.1.9c1d..., state=running, was=starting)`.
 * The manager derives the events (`WS /v1/events`, mesh/api/events.ts); here they are filtered
 * and printed. `--since` replays what the manager still has (see its module doc), `--until`
 * stops (after the replay, when it is now or earlier).
 */
import { WebSocket } from 'ws';
import { wsUrl } from '../agent/session.js';
import type { ClusterEvent, EventsFrame } from '../api/events.js';
import { parseManagerUrls, type ManagerUrl } from '../api/manager-url.js';
import { all, one, usageError, type FlagSpec, type Parsed } from './args.js';
import { connectOptions, type Endpoint } from './client.js';
import { applyFilters, matchIdPrefix, parseFilters, type FilterSpec } from './filters.js';
import { FORMAT_FLAG, formatOf } from './output.js';
import { parseSince } from './time.js';

export const EVENTS_FLAGS: FlagSpec[] = [
  { name: 'since', value: 'TIME', help: 'replay events since a time (2024-05-01T10:00:00Z) or a duration ago (10m), as far as the manager kept them' },
  { name: 'until', value: 'TIME', help: 'stop at this time (a duration ago or a time; 0s = now: replay, then exit)' },
  { name: 'filter', short: 'f', repeat: true, value: 'KEY=VALUE', help: 'type, event, name, id, service, node or network (same key twice = either, different keys = both)' },
  FORMAT_FLAG,
];

/** Docker's JSON form of an event (`docker events --format json`), plus Shoal's revision. */
export function dockerEvent(e: ClusterEvent): Record<string, unknown> {
  return {
    Type: e.type, Action: e.action, Actor: { ID: e.id, Attributes: e.attributes },
    scope: 'swarm', time: Math.floor(e.time / 1000), timeNano: e.time * 1_000_000, revision: e.revision,
    // Conveniences for templates: {{.ID}} {{.Name}} {{.Time}}.
    ID: e.id, Name: e.attributes['name'] ?? '', Time: new Date(e.time).toISOString(),
  };
}

/** Docker's line: `TIME TYPE ACTION ID (k=v, ...)`, name first. */
export function eventLine(e: ClusterEvent): string {
  const attrs = Object.entries(e.attributes).map(([k, v]) => `${k}=${v}`).join(', ');
  return `${new Date(e.time).toISOString()} ${e.type} ${e.action} ${e.id}${attrs ? ` (${attrs})` : ''}`;
}

export const EVENT_FILTERS: FilterSpec<ClusterEvent> = {
  keys: {
    type: (e, v) => e.type === v,
    event: (e, v) => e.action === v,
    name: (e, v) => e.attributes['name'] === v,
    id: (e, v) => matchIdPrefix(e.id, v),
    service: (e, v) => (e.type === 'service' && (e.attributes['name'] === v || matchIdPrefix(e.id, v))) || (e.type === 'task' && (e.attributes['service'] === v || e.attributes['serviceId'] === v)),
    node: (e, v) => (e.type === 'node' && (e.attributes['name'] === v || matchIdPrefix(e.id, v))) || (e.type === 'task' && (e.attributes['node'] === v || e.attributes['nodeId'] === v)),
    network: (e, v) => e.type === 'network' && (e.attributes['name'] === v || matchIdPrefix(e.id, v)),
  },
  choices: { type: ['network', 'service', 'task', 'node'], event: ['create', 'update', 'remove'] },
};

/** Streams events until interrupted, `--until`, or the manager goes away. Resolves the exit status. */
export function runEvents(ep: Endpoint, p: Parsed, io: { out: (s: string) => void; err: (s: string) => void }): Promise<number> {
  if (p.positional.length) throw usageError(`shoal events takes no arguments (got '${p.positional[0]}')`);
  const filters = parseFilters(all(p, 'filter'), EVENT_FILTERS, 'events');
  const fmt = formatOf(p);
  const now = Date.now();
  const sinceArg = one(p, 'since');
  const untilArg = one(p, 'until');
  const since = sinceArg === undefined ? undefined : parseSince(sinceArg, '--since', now);
  const until = untilArg === undefined ? undefined : parseSince(untilArg, '--until', now);
  if (fmt.kind === 'template') fmt.t.checkFields(Object.keys(dockerEvent({ time: 0, revision: 0, type: 'node', action: 'create', id: '', attributes: {} })));
  const print = (e: ClusterEvent): void => {
    if (applyFilters([e], filters, EVENT_FILTERS).length === 0) return;
    if (fmt.kind === 'json') io.out(`${JSON.stringify(dockerEvent(e))}\n`);
    else if (fmt.kind === 'template') io.out(`${fmt.t.render(dockerEvent(e))}\n`);
    else io.out(`${eventLine(e)}\n`);
  };
  const path = `/v1/events${since !== undefined ? `?since=${since}` : ''}`;
  return new Promise((resolve) => {
    const ws = new WebSocket(wsUrl(ep.url, path), { headers: { authorization: `Bearer ${ep.token}` }, ...connectOptions(parseManagerUrls(ep.url)[0] as ManagerUrl, ep.token) });
    let timer: NodeJS.Timeout | undefined;
    const stop = (): void => { if (timer) clearTimeout(timer); ws.close(); };
    ws.on('message', (d) => {
      const f = JSON.parse(d.toString()) as EventsFrame;
      if (f.type === 'established') {
        // On stderr, so scripts reading stdout see only events, but know what they get.
        io.err(`watching cluster events from revision ${f.revision}${f.note ? ` (${f.note})` : ''}\n`);
        if (until !== undefined && until > Date.now()) timer = setTimeout(stop, until - Date.now());
      } else if (f.type === 'event') {
        if (until !== undefined && f.event.time > until) { stop(); return; }
        print(f.event);
      } else if (f.type === 'caught-up' && until !== undefined && until <= Date.now()) stop();
    });
    ws.on('unexpected-response', (_req, res) => {
      io.err(`shoal: the manager refused the events stream (HTTP ${res.statusCode}${res.statusCode === 404 ? ': it predates shoal events with verbs; upgrade it' : ''})\n`);
      resolve(1);
    });
    ws.on('error', (e) => { io.err(`shoal: cannot reach the manager at ${ep.url}: ${e.message}\n`); resolve(1); });
    ws.on('close', () => resolve(0));
    process.once('SIGINT', stop);
  });
}

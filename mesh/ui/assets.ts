/**
 * The /ui page: plain HTML, one stylesheet and one script, embedded here so `tsc` builds them
 * into dist with everything else (no copy step). The script builds the page with DOM calls
 * only (`textContent`, never `innerHTML`: names come from users) from the `/ui/events` stream:
 * a `snapshot` event, then `change` events (objects put or deleted) and `lbstats` events (a
 * node's connection summary). The browser's EventSource reconnects by itself; each reconnect
 * starts with a fresh snapshot.
 */

export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Shoal mesh</title>
<link rel="stylesheet" href="/ui/app.css">
<script src="/ui/app.js" defer></script>
</head>
<body>
<header>
  <h1>Shoal mesh</h1>
  <span id="status" class="badge warn">connecting</span>
  <span id="summary"></span>
  <form method="post" action="/ui/logout"><button type="submit">log out</button></form>
</header>
<main>
  <section><h2>Nodes</h2><table id="nodes"><thead><tr><th>node</th><th>address</th><th>state</th><th>availability</th><th>ingress sandbox</th><th>tasks</th></tr></thead><tbody></tbody></table></section>
  <section><h2>Networks</h2><table id="networks"><thead><tr><th>network</th><th>driver</th><th>subnet</th><th>gateway</th><th>VNI</th></tr></thead><tbody></tbody></table></section>
  <section><h2>Services</h2><div id="services"></div></section>
</main>
<footer>Live from the manager's watch stream. Connections per replica: counted by the nodes' load balancers
(VIPs and published ports) and reported by the agents connected to this manager every few seconds while this page is open
("open" where the dataplane counts open connections: IPVS, userspace; "flows": new connections since programmed).
Each node's <code>/metrics</code> has the same counters per backend.</footer>
</body>
</html>
`;

export const LOGIN_HTML = (message: string): string => `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Shoal mesh: log in</title><link rel="stylesheet" href="/ui/app.css"></head>
<body>
<header><h1>Shoal mesh</h1></header>
<main>
<form class="login" method="post" action="/ui/login">
  <p>${message}</p>
  <label>Manager token <input type="password" name="token" autocomplete="current-password" autofocus></label>
  <button type="submit">Log in</button>
  <p class="hint">The token is in the manager's data dir (<code>manager.token</code>), or in <code>SHOAL_TOKEN</code>.
  It is exchanged for a cookie that opens this page only.</p>
</form>
</main>
</body>
</html>
`;

export const APP_CSS = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #1d2330; background: #f5f6f8; }
header { display: flex; gap: 1em; align-items: center; padding: .6em 1.2em; background: #1d2330; color: #fff; }
header h1 { font-size: 1.2em; margin: 0; }
header form { margin-left: auto; }
main { padding: 0 1.2em; }
h2 { font-size: 1.05em; margin: 1.2em 0 .4em; }
table { border-collapse: collapse; background: #fff; min-width: 50%; }
th, td { text-align: left; padding: .25em .8em; border-bottom: 1px solid #e3e5ea; }
th { font-weight: 600; color: #555; }
.badge { display: inline-block; padding: 0 .5em; border-radius: .6em; font-size: .85em; background: #dfe3ea; color: #1d2330; }
.ok { background: #c9f0d3; } .warn { background: #ffe7b3; } .bad { background: #ffc9c9; } .muted { color: #777; }
.service { background: #fff; border: 1px solid #e3e5ea; border-radius: 6px; margin: .6em 0; padding: .6em .9em; }
.service h3 { margin: 0 0 .3em; font-size: 1em; display: flex; gap: .8em; align-items: baseline; }
.meta { color: #555; margin: .1em 0; }
.pernode { display: flex; flex-wrap: wrap; gap: .8em; margin-top: .4em; }
.node { border-left: 3px solid #8aa4d6; padding-left: .5em; }
.node > div:first-child { font-weight: 600; font-size: .9em; }
.task { display: inline-block; margin: .2em .3em .2em 0; padding: .2em .5em; border-radius: 4px; background: #eef1f6; font-size: .85em; }
.task.running { background: #d8f3df; } .task.draining { background: #ffeccc; } .task.unhealthy, .task.failed { background: #ffd6d6; }
footer { color: #666; font-size: .85em; padding: 1.5em 1.2em; }
form.login { background: #fff; padding: 1em 1.5em; margin: 2em 0; border-radius: 6px; max-width: 32em; }
form.login input { display: block; width: 100%; margin: .3em 0 .8em; }
.hint { color: #666; font-size: .85em; }
`;

export const APP_JS = `'use strict';
(() => {
  const state = { revision: 0, nodes: new Map(), networks: new Map(), services: new Map(), tasks: new Map(), stats: new Map() };
  const $ = (id) => document.getElementById(id);
  const el = (tag, attrs, ...kids) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') e.className = v; else e.setAttribute(k, v);
    }
    for (const k of kids) if (k !== undefined && k !== null) e.append(k instanceof Node ? k : String(k));
    return e;
  };
  const badge = (text, cls) => el('span', { class: 'badge ' + (cls || '') }, text);
  const byName = (a, b) => String(a).localeCompare(String(b));

  const draining = (t) => t.desiredState === 'shutdown' && t.status.state === 'running';
  const visible = (t) => t.desiredState === 'running' || draining(t);
  const taskState = (t) => draining(t) ? 'draining' : t.status.state === 'running' && t.status.healthy === false ? 'unhealthy' : t.status.state;

  /** Connections to a task: summed over every node's report, matched on the task's addresses. */
  function connectionsOf(t) {
    const addrs = new Set(Object.values(t.addresses || {}).flatMap((a) => [a.v4, a.v6]).filter(Boolean));
    let open = null, flows = 0, seen = false;
    for (const rows of state.stats.values()) {
      for (const [, backend, o, total] of rows) {
        const addr = backend.startsWith('[') ? backend.slice(1, backend.indexOf(']')) : backend.slice(0, backend.lastIndexOf(':'));
        if (!addrs.has(addr)) continue;
        seen = true;
        flows += total;
        if (o !== null) open = (open || 0) + o;
      }
    }
    return seen ? { open, flows } : undefined;
  }

  function renderNodes() {
    const body = $('nodes').tBodies[0];
    const rows = [...state.nodes.values()].sort((a, b) => byName(a.name, b.name)).map((n) => {
      const running = [...state.tasks.values()].filter((t) => t.nodeId === n.id && t.status.state === 'running').length;
      return el('tr', { 'data-node': n.name },
        el('td', {}, n.name), el('td', {}, n.address),
        el('td', {}, badge(n.state, n.state === 'ready' ? 'ok' : 'bad')),
        el('td', {}, badge(n.availability, n.availability === 'active' ? 'ok' : 'warn')),
        el('td', {}, n.ingress ? n.ingress.v4 : '-'), el('td', {}, running));
    });
    body.replaceChildren(...rows);
  }

  function renderNetworks() {
    const body = $('networks').tBodies[0];
    const rows = [...state.networks.values()].sort((a, b) => byName(a.name, b.name)).map((n) =>
      el('tr', { 'data-network': n.name },
        el('td', {}, n.name, n.ingress ? ' ' : '', n.ingress ? badge('ingress') : null), el('td', {}, n.driver),
        el('td', {}, n.ipam.v4.subnet + (n.ipam.v6 ? ', ' + n.ipam.v6.subnet : '')), el('td', {}, n.ipam.v4.gateway),
        el('td', {}, n.vni === undefined ? '-' : n.vni)));
    body.replaceChildren(...rows);
  }

  function taskChip(t) {
    const st = taskState(t);
    const c = connectionsOf(t);
    const first = Object.entries(t.addresses || {}).find(([net]) => !(state.networks.get(net) || {}).ingress) || Object.entries(t.addresses || {})[0];
    const label = t.serviceName + '.' + t.slot;
    return el('span', { class: 'task ' + st, 'data-task': t.id, 'data-state': st, title: t.id + (t.status.message ? ': ' + t.status.message : '') },
      label, ' ', badge(st, st === 'running' ? 'ok' : st === 'draining' || st === 'starting' ? 'warn' : st === 'unhealthy' || st === 'failed' ? 'bad' : ''),
      first ? ' ' + first[1].v4 : '',
      c ? ' · ' + (c.open !== null ? 'open ' + c.open + ', ' : '') + 'flows ' + c.flows : '');
  }

  function renderServices() {
    const cards = [...state.services.values()].sort((a, b) => byName(a.spec.name, b.spec.name)).map((s) => {
      const tasks = [...state.tasks.values()].filter((t) => t.serviceId === s.id && visible(t)).sort((a, b) => a.slot - b.slot);
      const running = tasks.filter((t) => t.desiredState === 'running' && t.status.state === 'running').length;
      const vips = Object.entries(s.vips || {}).map(([net, v]) => ((state.networks.get(net) || {}).name || net) + ' ' + v.v4 + (v.v6 ? ' ' + v.v6 : ''));
      const ports = (s.spec.ports || []).map((p) => p.published + '→' + p.target + '/' + p.protocol + ' ' + (p.mode === 'host' ? 'host' : (s.spec.trafficPolicy === 'local' ? 'ingress, local' : 'ingress')));
      const perNode = new Map();
      for (const t of tasks) {
        const n = state.nodes.get(t.nodeId);
        const name = n ? n.name : (t.nodeId || 'unassigned');
        if (!perNode.has(name)) perNode.set(name, []);
        perNode.get(name).push(t);
      }
      const nodes = [...perNode.entries()].sort((a, b) => byName(a[0], b[0])).map(([name, ts]) =>
        el('div', { class: 'node', 'data-node': name }, el('div', {}, name), ...ts.map(taskChip)));
      return el('div', { class: 'service', 'data-service': s.spec.name },
        el('h3', {}, s.spec.name, badge(running + '/' + s.spec.replicas + ' running', running === s.spec.replicas ? 'ok' : 'warn'), el('span', { class: 'muted' }, s.spec.endpointMode)),
        el('div', { class: 'meta' }, 'VIP: ', vips.length ? vips.join('; ') : '-'),
        el('div', { class: 'meta' }, 'published: ', ports.length ? ports.join(', ') : '-'),
        el('div', { class: 'pernode' }, ...nodes));
    });
    $('services').replaceChildren(...cards);
  }

  let queued = false;
  function render() {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => {
      queued = false;
      renderNodes();
      renderNetworks();
      renderServices();
      const ready = [...state.nodes.values()].filter((n) => n.state === 'ready').length;
      $('summary').textContent = 'revision ' + state.revision + ' · ' + ready + '/' + state.nodes.size + ' nodes ready · ' + state.services.size + ' services';
    });
  }

  const KINDS = { nodes: 'nodes', networks: 'networks', services: 'services', tasks: 'tasks' };
  const status = (text, cls) => { const s = $('status'); s.textContent = text; s.className = 'badge ' + cls; };

  const events = new EventSource('/ui/events');
  events.addEventListener('snapshot', (e) => {
    const d = JSON.parse(e.data);
    state.revision = d.revision;
    for (const k of Object.keys(KINDS)) state[k] = new Map(d[k].map((o) => [o.id, o]));
    state.stats = new Map(d.lbstats.map((s) => [s.nodeId, s.rows]));
    status('live', 'ok');
    render();
  });
  events.addEventListener('change', (e) => {
    const d = JSON.parse(e.data);
    state.revision = d.revision;
    for (const c of d.changes) {
      const m = state[KINDS[c.kind]];
      if (!m) continue;
      if (c.obj) m.set(c.id, c.obj); else m.delete(c.id);
    }
    render();
  });
  events.addEventListener('lbstats', (e) => {
    const d = JSON.parse(e.data);
    if (d.rows) state.stats.set(d.nodeId, d.rows); else state.stats.delete(d.nodeId);
    render();
  });
  events.onerror = () => status(events.readyState === EventSource.CLOSED ? 'disconnected (reload)' : 'reconnecting', 'warn');
})();
`;

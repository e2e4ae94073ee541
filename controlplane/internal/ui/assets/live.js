// live: views that follow the cluster as it runs: data planes and
// convergence, per-route traffic, the audit log, and a route as the data
// planes apply it. Each view polls while it is shown and returns the
// function that stops it.

import { call } from './api.js';
import { h, clear, fmtTime, ago } from './dom.js';
import { lineChart } from './chart.js';
import { problemBox } from './objects.js';

// poll runs fn now and every ms until stopped; a failure is shown in slot
// and retried on the next tick.
function poll(ms, slot, fn) {
  let timer = null;
  let stopped = false;
  const tick = async () => {
    try {
      await fn();
      clear(slot);
    } catch (e) {
      clear(slot).append(problemBox(e));
    }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  tick();
  return () => { stopped = true; clearTimeout(timer); };
}

export function dataplanesView(view) {
  const err = h('div');
  const head = h('div', { class: 'summary', id: 'convergence' });
  const body = h('tbody');
  view.append(h('h1', {}, 'Data planes'), err, head,
    h('table', { class: 'list', id: 'dataplanes' },
      h('thead', {}, h('tr', {}, ['Node', 'Version', 'Applied revision', 'Status', 'Converged', 'Last seen', 'Address', 'Rejected objects'].map((t) => h('th', {}, t)))),
      body));
  return poll(2000, err, async () => {
    const { data } = await call('GET', '/v1/dataplanes');
    const nodes = data.nodes || [];
    clear(head).append(
      h('span', { class: data.converged ? 'badge ok' : 'badge warn', id: 'converged' },
        data.converged ? 'converged' : 'converging'),
      ` revision ${data.revision}`, data.epoch ? ` · epoch ${data.epoch}` : '',
      ` · ${nodes.filter((n) => n.status === 'connected').length} connected of ${nodes.length}`);
    clear(body);
    if (!nodes.length) body.append(h('tr', {}, h('td', { colspan: 8, class: 'empty' }, 'No data plane has polled this control plane yet.')));
    for (const n of nodes) {
      body.append(h('tr', { dataset: { node: n.id, converged: String(n.converged) } },
        h('td', { class: 'name' }, n.id), h('td', {}, n.version || ''),
        h('td', {}, String(n.applied_revision), n.applied_revision < data.revision ? h('span', { class: 'lag' }, ` (${data.revision - n.applied_revision} behind)`) : ''),
        h('td', {}, h('span', { class: n.status === 'connected' ? 'badge ok' : 'badge' }, n.status), n.polling ? ' polling' : ''),
        h('td', {}, h('span', { class: n.converged ? 'badge ok' : 'badge warn' }, n.converged ? 'yes' : 'no')),
        h('td', { title: fmtTime(n.last_seen) }, ago(n.last_seen)),
        h('td', {}, n.remote_addr || ''),
        h('td', {}, (n.rejected || []).map((r) => h('div', { class: 'rejected' }, `${r.kind} ${r.name}: ${r.reason}`)))));
    }
  });
}

// Traffic asks for the last 5 minutes in 10 s points (GET /v1/analytics?
// step=10s) for all routes and the route shown, and the last minute's
// figures per route for the table.
const TRAFFIC_POLL_MS = 3000;
const TOTAL = '(all routes)';

export function trafficView(view) {
  const err = h('div');
  const picker = h('select', { id: 'traffic-route', 'aria-label': 'route' });
  const charts = h('div', { class: 'charts', id: 'charts' });
  const body = h('tbody');
  let selected = TOTAL;
  let last = null; // the latest series answer
  picker.addEventListener('change', () => { selected = picker.value; refresh(); });
  view.append(
    h('div', { class: 'bar' }, h('h1', {}, 'Traffic'), h('label', {}, 'Route ', picker)),
    h('p', { class: 'hint' }, 'The last 5 minutes in 10 s steps, as the data planes reported them (GET /v1/analytics?window=5m&step=10s); the table covers the last minute.'),
    err, charts,
    h('table', { class: 'list', id: 'traffic' },
      h('thead', {}, h('tr', {}, ['Route', 'Requests (1 min)', 'req/s', '5xx ratio', '4xx', 'p50', 'p99'].map((t) => h('th', {}, t)))),
      body));

  const draw = () => {
    if (!last) return;
    const want = selected === TOTAL ? '' : selected;
    const se = (last.series || []).find((x) => x.route === want) || { points: [] };
    // Points before the control plane started collecting are no data, not zero traffic.
    const from = Date.parse(last.from) || 0;
    const pts = se.points.filter((p) => Date.parse(p.t) + 10000 > from).map((p) => ({ t: Date.parse(p.t), rps: p.rps, err: p.error_rate * 100, p50: p.p50_ms, p99: p.p99_ms }));
    const now = Date.parse(last.to) || Date.now();
    const t0 = pts.length ? pts[0].t : now - 300000;
    const line = (k) => pts.map((p) => [p.t, p[k]]);
    clear(charts).append(
      lineChart({ id: 'chart-rps', title: `Requests per second · ${selected}`, unit: '', t0, t1: now, series: [{ name: 'req/s', cls: 's0', points: line('rps') }] }),
      lineChart({ id: 'chart-errors', title: `5xx ratio · ${selected}`, unit: '%', t0, t1: now, series: [{ name: '5xx %', cls: 's2', points: line('err') }] }),
      lineChart({ id: 'chart-latency', title: `Latency · ${selected}`, unit: 'ms', t0, t1: now,
        series: [{ name: 'p50', cls: 's0', points: line('p50') }, { name: 'p99', cls: 's1', points: line('p99') }] }));
  };
  const refresh = async () => {
    const q = selected === TOTAL || selected === '(no route)' ? '' : `&route=${encodeURIComponent(selected)}`;
    const [{ data: series }, { data: minute }] = await Promise.all([
      call('GET', `/v1/analytics?window=5m&step=10s${q}`), call('GET', '/v1/analytics?window=1m')]);
    last = series;
    const names = [TOTAL];
    clear(body);
    for (const r of minute.routes || []) {
      const name = r.route === '' ? '(no route)' : r.route;
      names.push(name);
      body.append(h('tr', { dataset: { route: name } },
        h('td', { class: 'name' }, h('a', { href: '#', onclick: (ev) => { ev.preventDefault(); selected = name; picker.value = name; refresh().catch(() => {}); } }, name)),
        h('td', {}, String(r.requests)), h('td', {}, r.rps.toFixed(2)),
        h('td', {}, `${(r.error_rate * 100).toFixed(1)} %`), h('td', {}, String(r.client_errors)),
        h('td', {}, `${r.p50_ms} ms`), h('td', {}, `${r.p99_ms} ms`)));
    }
    if (!(minute.routes || []).length) body.append(h('tr', {}, h('td', { colspan: 7, class: 'empty' }, 'No traffic in the last minute.')));
    if (!names.includes(selected)) names.push(selected);
    clear(picker).append(...names.map((n) => h('option', { value: n, selected: n === selected }, n)));
    draw();
  };
  return poll(TRAFFIC_POLL_MS, err, refresh);
}

export function auditView(view) {
  const err = h('div');
  const body = h('tbody');
  const status = h('div', { class: 'status' });
  let after = -1;
  view.append(h('h1', {}, 'Audit log'), err, status,
    h('table', { class: 'list', id: 'audit' },
      h('thead', {}, h('tr', {}, ['Revision', 'Time', 'Actor', 'Action', 'Object', 'Version', 'From', 'Request'].map((t) => h('th', {}, t)))),
      body));
  return poll(3000, err, async () => {
    if (after < 0) {
      // The newest 100 entries: one entry per revision.
      const { data } = await call('GET', '/v1/dataplanes');
      after = Math.max(0, data.revision - 100);
    }
    const { data } = await call('GET', `/v1/audit?after=${after}&limit=1000`);
    for (const e of data.entries) {
      body.prepend(h('tr', { dataset: { revision: String(e.revision) } },
        h('td', {}, String(e.revision)), h('td', {}, fmtTime(e.time)), h('td', {}, e.actor),
        h('td', {}, h('span', { class: `badge act-${e.action}` }, e.action)),
        h('td', {}, e.kind ? `${e.kind} ${e.name || ''}` : e.summary || ""),
        h('td', {}, e.version ? String(e.version) : ''), h('td', {}, e.remote_addr || ''), h('td', { class: 'mono' }, e.request_id || '')));
    }
    after = data.next;
    status.textContent = `newest first, up to revision ${after}`;
  });
}

// Stages in the order data planes apply them, with the route members that
// turn each on. The third column names the compile step in
// dataplane/internal/proxy/stages.go; a test (stages_test.go) keeps this
// list in that file's order.
const STAGES = [
  ['HTTPS redirect / HSTS', (r) => r.https_redirect || r.hsts, 'httpsredirect.Compile'],
  ['IP rules', (r, g) => r.ip || (g && g.ip), 'ipfilter.Compile'],
  ['Response edits / CORS', (r) => r.response_headers || r.cors, 'transform.CompileResponse'],
  ['Body limit, upgrades', () => true, 'compileLimits'],
  ['Authentication', (r) => r.auth, 'auth.CompileRoute'],
  ['External authorization', (r) => r.ext_authz, 'extauthz.Compile'],
  ['Rate limit', (r, g) => r.rate_limit || (g && g.rate_limit), 'ratelimit.CompileRoute'],
  ['Max in flight', (r) => r.max_in_flight, 'throttle.Compile'],
  ['Request validation', (r) => r.validate, 'c.compileSchemas'],
  ['Cache', (r) => r.cache, 'cache.CompileRoute'],
  ['Request edits', (r) => r.rewrite || r.strip_prefix || r.query || r.request_headers, 'transform.CompileRequest'],
  ['Body edits', (r) => r.body, 'bodyedit.Compile'],
  ['Fault injection', (r) => r.fault, 'fault.Compile'],
  ['Mirror', (r) => r.mirror, 'mirror.Compile'],
  ['Tunnel limits', (r) => r.tunnel_idle_timeout || r.tunnel_max_lifetime, 'tunnel.Compile'],
];

function terminal(r) {
  if (r.aggregate) return `aggregate: ${r.aggregate.map((b) => `${b.service}${b.path}`).join(', ')}`;
  if (r.grpc) return 'JSON → gRPC';
  if (r.soap) return 'JSON → SOAP';
  if (r.backends) return `split: ${r.backends.map((b) => `${b.service} ${b.weight}`).join(', ')}`;
  return `forward to ${r.service}`;
}

export function routeView(view, name) {
  const err = h('div');
  const content = h('div', { id: 'route-view' });
  view.append(
    h('div', { class: 'bar' }, h('h1', {}, `Route ${name}`),
      h('a', { class: 'button', href: `#/routes/edit/${encodeURIComponent(name)}` }, 'Edit'),
      h('a', { class: 'button', href: '#/routes' }, 'Back to the list')),
    h('p', { class: 'hint' }, 'The route as the control plane stores and ships it (normalised, defaults spelled out), where it ranks, the stages it turns on in the order data planes apply them, and which data planes run this version.'),
    err, content);
  return poll(3000, err, async () => {
    const [{ data: r }, { data: dps }] = await Promise.all([
      call('GET', `/v1/routes/${encodeURIComponent(name)}`), call('GET', '/v1/dataplanes')]);
    let global = null;
    try { global = (await call('GET', '/v1/global')).data; } catch { /* a token without access to global */ }
    const services = [...new Set([r.service, ...(r.backends || []).map((b) => b.service), ...(r.aggregate || []).map((b) => b.service)].filter(Boolean))];
    const svcs = await Promise.all(services.map((s) => call('GET', `/v1/services/${encodeURIComponent(s)}`).then((x) => x.data, (e) => ({ name: s, error: e.message }))));
    const g = global;
    const p = r.precedence || {};
    clear(content).append(
      h('section', {}, h('h2', {}, 'Matches'),
        h('dl', { class: 'kv' },
          h('dt', {}, 'Hosts'), h('dd', {}, (r.hosts || []).join(' ') || 'any'),
          h('dt', {}, 'Methods'), h('dd', {}, (r.methods || []).join(' ') || 'any'),
          h('dt', {}, 'Paths'), h('dd', {}, (r.paths || []).map((x, i) => `${x} (${(p.path_kinds || [])[i] || ''})`).join(', ')),
          h('dt', {}, 'Conditions'), h('dd', {}, `${p.conditions || 0}${p.key ? ` · ${p.key}` : ''}`),
          h('dt', {}, 'Priority'), h('dd', {}, String(p.priority || 0)))),
      h('section', {}, h('h2', {}, 'Stages, in order'),
        h('ol', { class: 'stages', id: 'stages' },
          STAGES.filter(([, on]) => on(r, g)).map(([n]) => h('li', {}, n)),
          h('li', { class: 'terminal' }, terminal(r)))),
      h('section', {}, h('h2', {}, 'Services'),
        svcs.map((s) => h('div', { class: 'svc' }, h('strong', {}, s.name), ' ',
          s.error ? s.error : s.consul ? `Consul service ${s.consul.service}` : (s.targets || []).map((t) => `${t.url} (weight ${t.weight})`).join(', ')))),
      h('section', {}, h('h2', {}, 'Data planes'),
        h('table', { class: 'list', id: 'route-nodes' },
          h('thead', {}, h('tr', {}, ['Node', 'Applied revision', 'This route']. map((t) => h('th', {}, t)))),
          h('tbody', {}, (dps.nodes || []).map((n) => {
            const rej = (n.rejected || []).find((x) => x.kind === 'route' && x.name === name);
            const runs = n.status === 'connected' && n.applied_revision >= r.revision;
            return h('tr', { dataset: { node: n.id } }, h('td', {}, n.id), h('td', {}, String(n.applied_revision)),
              h('td', {}, rej ? h('span', { class: 'badge bad' }, `rejected: ${rej.reason}`)
                : h('span', { class: runs ? 'badge ok' : 'badge warn' }, runs ? `serves version ${r.version}` : 'not yet')));
          })))),
      h('section', {}, h('h2', {}, 'As stored (JSON)'), h('pre', { class: 'code' }, JSON.stringify(r, null, 2))));
  });
}

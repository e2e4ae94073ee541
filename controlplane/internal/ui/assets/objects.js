// objects: lists and JSON editors of the five kinds of configuration
// objects. Every edit is conditional (If-Match: the version the editor
// opened); the server's field errors are shown beside the line they name.

import { call, ApiError, mayWrite, session } from './api.js';
import { h, clear, fmtTime } from './dom.js';
import { parse, lineOf, JSONSyntaxError } from './jsonpos.js';

const list = (a) => (a && a.length ? a.join(' ') : '');

export const KINDS = {
  routes: {
    title: 'Routes', one: 'route',
    columns: [
      ['Paths', (r) => list(r.paths)],
      ['Methods', (r) => list(r.methods) || 'any'],
      ['Hosts', (r) => list(r.hosts) || 'any'],
      ['Goes to', (r) => r.service || (r.backends || []).map((b) => `${b.service} ${b.weight}`).join(', ') ||
        (r.aggregate ? `aggregate of ${r.aggregate.length}` : '')],
    ],
    template: { name: 'new-route', paths: ['/new'], service: '', strip_prefix: true },
  },
  services: {
    title: 'Services', one: 'service',
    columns: [
      ['Instances', (s) => s.consul ? `consul: ${s.consul.service}` : (s.targets || []).map((t) => t.url).join(' ')],
      ['Balancing', (s) => s.load_balancer || 'round_robin'],
      ['Protocol', (s) => s.protocol || 'http'],
    ],
    template: { name: 'new-service', targets: [{ url: 'http://127.0.0.1:8081' }] },
  },
  consumers: {
    title: 'Consumers', one: 'consumer',
    columns: [
      ['Groups', (c) => list(c.groups)],
      ['JWT issuers', (c) => list(c.jwt_issuers)],
      ['API keys', (c) => (c.api_keys || []).length],
    ],
    template: { name: 'new-consumer', groups: [] },
  },
  issuers: {
    title: 'Issuers', one: 'issuer',
    columns: [
      ['Issuer', (i) => i.issuer],
      ['Algorithms', (i) => list(i.algorithms)],
      ['Keys', (i) => i.jwks_url ? `JWKS ${i.jwks_url}` : `${(i.keys || []).length} inline`],
    ],
    template: { name: 'new-issuer', issuer: 'https://issuer.example', algorithms: ['RS256'], jwks_url: 'https://issuer.example/.well-known/jwks.json' },
  },
  certificates: {
    title: 'Certificates', one: 'certificate',
    columns: [
      ['SNIs', (c) => list(c.snis)],
      ['Expires', (c) => c.status ? `${fmtTime(c.status.not_after)} (${c.status.days_left} days)` : ''],
      ['Served by', (c) => c.status ? list(c.status.served_by) : ''],
    ],
    template: { name: 'new-certificate', cert: '-----BEGIN CERTIFICATE-----\n...', key: '-----BEGIN PRIVATE KEY-----\n...', snis: ['example.com'] },
  },
};

// Output-only members: the server ignores them on input, so the editor
// leaves them out (they are shown above it).
const OUTPUT_ONLY = ['version', 'revision', 'created_at', 'updated_at', 'precedence', 'status'];

function editable(obj) {
  const o = { ...obj };
  for (const k of OUTPUT_ONLY) delete o[k];
  return o;
}

// problemBox shows a refused request: its detail and, for field errors
// that the editor cannot place, the fields.
export function problemBox(err, extra) {
  return h('div', { class: 'problem', role: 'alert', dataset: { status: String(err.status || '') } },
    h('strong', {}, err.status ? `${err.status} ${err.problem.title || ''}` : 'Error'), ' ',
    h('span', { class: 'detail' }, err.message), extra || '');
}

export async function listView(main, kind, nav) {
  const k = KINDS[kind];
  const body = h('tbody');
  const status = h('div', { class: 'status' });
  const writable = mayWrite(k.one);
  main.append(
    h('div', { class: 'bar' },
      h('h1', {}, k.title),
      writable ? h('a', { class: 'button primary', href: `#/${kind}/new`, id: 'new-object' }, `New ${k.one}`)
        : h('span', { class: 'badge', id: 'read-only' }, `read-only: this token may not change ${k.title.toLowerCase()}`)),
    status,
    h('table', { class: 'list', id: `list-${kind}` },
      h('thead', {}, h('tr', {}, h('th', {}, 'Name'), k.columns.map(([t]) => h('th', {}, t)),
        h('th', {}, 'Version'), h('th', {}, 'Updated'), h('th', {}, ''))),
      body));

  let res;
  try {
    res = await call('GET', `/v1/${kind}`);
  } catch (e) {
    status.append(problemBox(e));
    return;
  }
  status.textContent = `${res.data.items.length} ${k.title.toLowerCase()} at revision ${res.data.revision}`;
  if (!res.data.items.length) {
    body.append(h('tr', {}, h('td', { colspan: k.columns.length + 4, class: 'empty' }, `No ${k.title.toLowerCase()} yet.`)));
  }
  for (const obj of res.data.items) {
    const actions = h('td', { class: 'actions' },
      kind === 'routes' ? h('a', { href: `#/routes/view/${encodeURIComponent(obj.name)}` }, 'View') : '',
      h('a', { href: `#/${kind}/edit/${encodeURIComponent(obj.name)}`, class: 'edit' }, writable ? 'Edit' : 'JSON'),
      writable ? h('button', { class: 'link danger', onclick: () => confirmDelete(actions, kind, obj, nav) }, 'Delete') : '');
    body.append(h('tr', { dataset: { name: obj.name } },
      h('td', { class: 'name' }, h('a', { href: `#/${kind}/edit/${encodeURIComponent(obj.name)}` }, obj.name)),
      k.columns.map(([, f]) => h('td', {}, String(f(obj) ?? ''))),
      h('td', {}, String(obj.version)), h('td', {}, fmtTime(obj.updated_at)), actions));
  }
}

function confirmDelete(cell, kind, obj, nav) {
  const k = KINDS[kind];
  const box = h('div', { class: 'confirm', role: 'alertdialog' },
    `Delete ${k.one} ${obj.name} (version ${obj.version})? `,
    h('button', {
      class: 'danger', onclick: async () => {
        try {
          await call('DELETE', `/v1/${kind}/${encodeURIComponent(obj.name)}`, { ifMatch: `"${obj.version}"` });
          nav.refresh();
        } catch (e) {
          clear(box).append(deleteProblem(e, k, obj));
        }
      },
    }, 'Delete'),
    h('button', { onclick: () => box.remove() }, 'Cancel'));
  cell.append(box);
}

function deleteProblem(e, k, obj) {
  if (e.status === 412) {
    return problemBox(e, h('p', {}, `Someone else changed ${k.one} ${obj.name} after this list was loaded; reload the list and check it before deleting.`));
  }
  return problemBox(e, fieldList(e.fields));
}

function fieldList(fields) {
  if (!fields || !fields.length) return '';
  return h('ul', { class: 'fields' }, fields.map((f) => h('li', {}, h('code', {}, f.field || '(document)'), ' ', f.message)));
}

// editView edits one object (name given) or creates one (name null).
export async function editView(main, kind, name, nav) {
  const k = KINDS[kind];
  const creating = name === null;
  let etag = null;
  let current = null;
  const meta = h('div', { class: 'meta' });
  const banner = h('div', { class: 'banner-slot' });
  const editor = new JSONEditor();
  const save = h('button', { class: 'primary', id: 'save', type: 'button' }, creating ? 'Create' : 'Save');
  const saved = h('span', { class: 'saved', role: 'status' });

  if (!mayWrite(k.one)) {
    save.disabled = true;
    editor.text.readOnly = true;
    saved.textContent = `Read-only: this token (role ${session.who.role}) may not change ${k.title.toLowerCase()}.`;
    saved.id = 'read-only';
  }
  main.append(
    h('div', { class: 'bar' },
      h('h1', {}, creating ? `New ${k.one}` : `${k.title.replace(/s$/, '')} ${name}`),
      h('a', { class: 'button', href: `#/${kind}` }, 'Back to the list')),
    meta, banner, editor.el,
    h('div', { class: 'bar' }, save, saved));
  if (kind === 'consumers' && !creating) {
    // A key change is a new version of the consumer: reload the editor
    // unless the operator has unsaved edits (their save would then get
    // the conflict message, as it should).
    main.append(apiKeys(name, mayWrite('consumer'), () => {
      if (!editor.dirty()) load().catch((e) => banner.append(problemBox(e)));
    }));
  }

  const load = async () => {
    clear(banner);
    if (creating) {
      editor.setText(JSON.stringify(k.template, null, 2));
      return;
    }
    const res = await call('GET', `/v1/${kind}/${encodeURIComponent(name)}`);
    current = res.data;
    etag = res.etag;
    clear(meta).append(describeMeta(current));
    editor.setText(JSON.stringify(editable(current), null, 2));
  };
  try {
    await load();
  } catch (e) {
    banner.append(problemBox(e));
    save.disabled = true;
    return;
  }

  save.addEventListener('click', async () => {
    clear(banner);
    saved.textContent = '';
    let doc;
    try {
      doc = editor.parse();
    } catch (e) {
      if (e instanceof JSONSyntaxError) {
        editor.mark([{ line: e.line, field: '', message: e.message }]);
        banner.append(h('div', { class: 'problem', role: 'alert' }, h('strong', {}, 'Not valid JSON'), ' ', e.message));
        return;
      }
      throw e;
    }
    save.disabled = true;
    try {
      let res;
      if (creating) {
        res = await call('POST', `/v1/${kind}`, { body: doc });
        location.hash = `#/${kind}/edit/${encodeURIComponent(res.data.name)}`;
        return;
      }
      res = await call('PUT', `/v1/${kind}/${encodeURIComponent(name)}`, { body: doc, ifMatch: etag });
      current = res.data;
      etag = res.etag;
      clear(meta).append(describeMeta(current));
      editor.setText(JSON.stringify(editable(current), null, 2));
      saved.textContent = res.revision ? `Saved: version ${current.version}, revision ${res.revision}.` : 'Saved.';
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      if (e.status === 412) {
        banner.append(await conflictBanner(kind, name, k, current, load, editor));
        return;
      }
      const placed = editor.markFields(e.fields);
      banner.append(problemBox(e, fieldList(e.fields.filter((f) => !placed.has(f)))));
    } finally {
      save.disabled = false;
    }
  });
}

function describeMeta(obj) {
  return h('span', {},
    `version ${obj.version} · changed at revision ${obj.revision} · updated ${fmtTime(obj.updated_at)} · created ${fmtTime(obj.created_at)}`);
}

// conflictBanner explains a 412: the object changed since the editor
// opened it. The operator's text stays in the editor until they choose to
// reload.
async function conflictBanner(kind, name, k, mine, load, editor) {
  let now = '';
  try {
    const res = await call('GET', `/v1/${kind}/${encodeURIComponent(name)}`);
    now = ` It is now version ${res.data.version} (updated ${fmtTime(res.data.updated_at)}).`;
  } catch (e) {
    if (e.status === 404) now = ' It has since been deleted.';
  }
  const box = h('div', { class: 'conflict', role: 'alert', id: 'conflict' },
    h('strong', {}, 'Someone else changed this object.'), ' ',
    `You edited version ${mine ? mine.version : '?'} of ${k.one} ${name}; your change was not saved.${now} `,
    'Reload to see their version (your edits in the editor are discarded), or copy your text first.',
    h('div', {},
      h('button', {
        class: 'primary', id: 'reload', onclick: async () => {
          try { await load(); editor.mark([]); } catch (e) { box.replaceWith(problemBox(e)); }
        },
      }, 'Reload their version'),
      h('button', { onclick: () => box.remove() }, 'Keep my text')));
  return box;
}

// JSONEditor is a textarea with a line-number gutter and a column of notes
// beside the lines: a field error appears on the line of the field.
export class JSONEditor {
  constructor() {
    this.text = h('textarea', { class: 'code', id: 'editor', spellcheck: 'false', autocomplete: 'off', wrap: 'off', 'aria-label': 'object as JSON' });
    this.gutter = h('div', { class: 'gutter', 'aria-hidden': 'true' });
    this.notes = h('div', { class: 'notes', id: 'notes' });
    this.el = h('div', { class: 'editor' }, this.gutter, this.text, this.notes);
    this.marks = [];
    this.text.addEventListener('input', () => this.layout());
  }

  dirty() { return this.text.value !== this.loaded; }

  setText(t) {
    this.loaded = t;
    this.text.value = t;
    this.marks = [];
    this.layout();
  }

  parse() {
    const r = parse(this.text.value);
    this.lines = r.lines;
    return r.value;
  }

  // markFields places field errors on their lines; returns those placed.
  // strip removes a prefix the server puts before paths of this document.
  markFields(fields, strip) {
    const placed = new Set();
    let lines;
    try { lines = parse(this.text.value).lines; } catch { lines = null; }
    const marks = [];
    for (const f of fields || []) {
      const field = strip && (f.field || '').startsWith(strip) ? f.field.slice(strip.length) : f.field;
      const line = lines ? lineOf(lines, field) : 1;
      marks.push({ line, field: f.field, message: f.message });
      placed.add(f);
    }
    this.mark(marks);
    return placed;
  }

  mark(marks) {
    this.marks = marks;
    this.layout();
    if (marks.length) this.text.focus();
  }

  layout() {
    const n = this.text.value.split('\n').length;
    this.text.rows = n + 1;
    const byLine = new Map();
    for (const m of this.marks) {
      if (!byLine.has(m.line)) byLine.set(m.line, []);
      byLine.get(m.line).push(m);
    }
    clear(this.gutter);
    clear(this.notes);
    for (let i = 1; i <= n; i++) {
      const ms = byLine.get(i);
      this.gutter.append(h('div', { class: ms ? 'ln error' : 'ln', dataset: { line: String(i) } }, String(i)));
      this.notes.append(h('div', { class: ms ? 'note error' : 'note', dataset: { line: String(i) } },
        ms ? ms.map((m) => h('span', { class: 'field-error', dataset: { field: m.field }, title: `${m.field}: ${m.message}` },
          m.field ? h('code', {}, m.field) : '', ' ', m.message)) : ''));
    }
  }
}

// apiKeys lists a consumer's API keys (prefixes only) and creates and
// revokes them; a new key is shown once.
function apiKeys(consumer, writable, changed) {
  const path = `/v1/consumers/${encodeURIComponent(consumer)}/api-keys`;
  const body = h('tbody');
  const result = h('div', { id: 'api-key-result' });
  const create = h('button', { id: 'api-key-create', type: 'button', disabled: !writable }, 'New API key');
  const load = async () => {
    clear(body);
    try {
      const { data } = await call('GET', path);
      if (!data.api_keys.length) body.append(h('tr', {}, h('td', { colspan: 4, class: 'empty' }, 'No API keys.')));
      for (const key of data.api_keys) {
        const cell = h('td', { class: 'actions' });
        if (writable) {
          cell.append(h('button', {
            class: 'link danger', onclick: async () => {
              try {
                await call('DELETE', `${path}/${encodeURIComponent(key.id)}`);
                clear(result);
                changed();
                load();
              } catch (e) {
                cell.append(problemBox(e));
              }
            },
          }, 'Revoke'));
        }
        body.append(h('tr', { dataset: { id: key.id } }, h('td', { class: 'mono' }, key.id), h('td', { class: 'mono' }, key.prefix),
          h('td', {}, fmtTime(key.created_at)), cell));
      }
    } catch (e) {
      body.append(h('tr', {}, h('td', { colspan: 4 }, problemBox(e))));
    }
  };
  create.addEventListener('click', async () => {
    clear(result);
    try {
      const { data } = await call('POST', path);
      const secret = h('input', { id: 'api-key-secret', readonly: true, value: data.key, class: 'secret', 'aria-label': 'the new API key' });
      result.append(h('div', { class: 'conflict', role: 'status' },
        h('strong', {}, `API key ${data.prefix}… created. `), 'Copy it now: it is shown this once and stored only as a hash.', h('div', {}, secret)));
      secret.select();
      changed();
      load();
    } catch (e) {
      result.append(problemBox(e));
    }
  });
  load();
  return h('section', { id: 'api-keys' }, h('h2', {}, 'API keys'), result,
    h('table', { class: 'list' }, h('thead', {}, h('tr', {}, ['Id', 'Prefix', 'Created', ''].map((t) => h('th', {}, t)))), body),
    h('div', { class: 'bar' }, create));
}

// globalView edits the cluster-wide defaults (GET/PUT /v1/global). Its
// ETag is the configuration revision, so any change anywhere since it was
// opened makes a save answer 412.
export async function globalView(main) {
  const banner = h('div', { class: 'banner-slot' });
  const meta = h('div', { class: 'meta' });
  const editor = new JSONEditor();
  const save = h('button', { class: 'primary', id: 'save', type: 'button', disabled: !mayWrite('global') }, 'Save');
  const saved = h('span', { class: 'saved', role: 'status' });
  let etag = null;
  main.append(h('div', { class: 'bar' }, h('h1', {}, 'Global defaults')),
    h('p', { class: 'hint' }, 'Cluster-wide defaults: the rate limit of routes without one (rate_limit) and IP rules checked before every route\'s (ip). See docs/CONFIGURATION.md.'),
    meta, banner, editor.el, h('div', { class: 'bar' }, save, saved));
  const load = async () => {
    const res = await call('GET', '/v1/global');
    etag = res.etag;
    clear(meta).append(`at revision ${res.revision || (etag || '').replace(/"/g, '')}`);
    editor.setText(JSON.stringify(res.data || {}, null, 2));
    editor.mark([]);
  };
  try { await load(); } catch (e) { banner.append(problemBox(e)); save.disabled = true; return; }
  save.addEventListener('click', async () => {
    clear(banner);
    saved.textContent = '';
    let doc;
    try {
      doc = editor.parse();
    } catch (e) {
      editor.mark([{ line: e.line || 1, field: '', message: e.message }]);
      banner.append(h('div', { class: 'problem', role: 'alert' }, h('strong', {}, 'Not valid JSON'), ' ', e.message));
      return;
    }
    try {
      const res = await call('PUT', '/v1/global', { body: doc, ifMatch: etag });
      etag = res.etag;
      clear(meta).append(`at revision ${res.revision}`);
      editor.setText(JSON.stringify(res.data || doc, null, 2));
      saved.textContent = `Saved: revision ${res.revision}.`;
    } catch (e) {
      if (e.status === 412) {
        banner.append(h('div', { class: 'conflict', role: 'alert', id: 'conflict' },
          h('strong', {}, 'The configuration changed since you opened this page.'), ' ',
          'Global defaults are versioned by the configuration revision, so any change elsewhere counts; your change was not saved. Reload to see the current defaults (your edits are discarded), or copy your text first.',
          h('div', {}, h('button', { class: 'primary', id: 'reload', onclick: () => load().then(() => clear(banner), (x) => banner.append(problemBox(x))) }, 'Reload'))));
        return;
      }
      const placed = editor.markFields(e.fields, 'global.');
      banner.append(problemBox(e, fieldList(e.fields.filter((f) => !placed.has(f)))));
    }
  });
}

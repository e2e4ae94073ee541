// tokens: scoped admin tokens (GET/POST /v1/tokens, DELETE
// /v1/tokens/{name}; the admin role only). A new token's secret is shown
// once, in this page, and never again: the server keeps only its hash.

import { call } from './api.js';
import { h, clear, fmtTime } from './dom.js';
import { problemBox } from './objects.js';

const KINDS = ['service', 'route', 'consumer', 'issuer', 'certificate', 'global'];
const EXPIRY = [['never', 0], ['1 hour', 3600], ['1 day', 86400], ['7 days', 7 * 86400], ['30 days', 30 * 86400], ['90 days', 90 * 86400]];

export async function tokensView(view, nav) {
  const status = h('div', { class: 'status' });
  const body = h('tbody');
  const name = h('input', { id: 'token-name', placeholder: 'name, e.g. ci-deploy', required: true });
  const role = h('select', { id: 'token-role' }, ['read', 'write', 'admin'].map((r) => h('option', { value: r }, r)));
  const kinds = KINDS.map((k) => h('label', { class: 'check' }, h('input', { type: 'checkbox', value: k, class: 'token-kind' }), ` ${k}`));
  const expiry = h('select', { id: 'token-expiry' }, EXPIRY.map(([l, s]) => h('option', { value: String(s), selected: s === 30 * 86400 }, l)));
  const result = h('div', { id: 'token-result' });
  const form = h('form', { class: 'panel', id: 'token-form' },
    h('h2', {}, 'New token'),
    h('div', { class: 'row' }, h('label', {}, 'Name ', name), h('label', {}, 'Role ', role), h('label', {}, 'Expires in ', expiry)),
    h('div', { class: 'row' }, 'Only these kinds (none checked: all): ', kinds),
    h('button', { class: 'primary', type: 'submit', id: 'token-create' }, 'Create token'),
    result);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clear(result);
    const spec = { name: name.value.trim(), role: role.value };
    const picked = [...form.querySelectorAll('.token-kind:checked')].map((c) => c.value);
    if (picked.length) spec.kinds = picked;
    const secs = Number(expiry.value);
    if (secs) spec.expires_at = new Date(Date.now() + secs * 1000).toISOString();
    try {
      const { data } = await call('POST', '/v1/tokens', { body: spec });
      const secret = h('input', { id: 'token-secret', readonly: true, value: data.token, class: 'secret', 'aria-label': 'the new token' });
      result.append(h('div', { class: 'conflict', role: 'status' },
        h('strong', {}, `Token ${data.name} created. `), 'Copy it now: it is shown this once and the server keeps only its hash.',
        h('div', {}, secret)));
      secret.select();
      name.value = '';
      load();
    } catch (e) {
      result.append(problemBox(e, e.fields.length ? h('ul', { class: 'fields' }, e.fields.map((f) => h('li', {}, h('code', {}, f.field), ' ', f.message))) : ''));
    }
  });
  view.append(h('div', { class: 'bar' }, h('h1', {}, 'Admin tokens')),
    h('p', { class: 'hint' }, 'Scoped tokens for people, pipelines and this UI: a role (read, write, admin), optionally the kinds they may touch, optionally an expiry. The bootstrap --admin-token is not listed.'),
    form, status,
    h('table', { class: 'list', id: 'tokens' },
      h('thead', {}, h('tr', {}, ['Name', 'Role', 'Kinds', 'Prefix', 'Expires', 'Created', 'By', ''].map((t) => h('th', {}, t)))),
      body));

  async function load() {
    clear(status);
    let res;
    try {
      res = await call('GET', '/v1/tokens');
    } catch (e) {
      status.append(problemBox(e));
      return;
    }
    clear(body);
    if (!res.data.items.length) body.append(h('tr', {}, h('td', { colspan: 8, class: 'empty' }, 'No scoped tokens yet.')));
    for (const t of res.data.items) {
      const cell = h('td', { class: 'actions' });
      cell.append(h('button', {
        class: 'link danger', onclick: () => {
          const box = h('div', { class: 'confirm', role: 'alertdialog' }, `Revoke ${t.name}? Requests with it are refused at once. `,
            h('button', {
              class: 'danger', onclick: async () => {
                try {
                  await call('DELETE', `/v1/tokens/${encodeURIComponent(t.name)}`);
                  load();
                } catch (e) {
                  clear(box).append(problemBox(e));
                }
              },
            }, 'Revoke'),
            h('button', { onclick: () => box.remove() }, 'Cancel'));
          cell.append(box);
        },
      }, 'Revoke'));
      const expired = t.expires_at && Date.parse(t.expires_at) < Date.now();
      body.append(h('tr', { dataset: { name: t.name } },
        h('td', { class: 'name' }, t.name), h('td', {}, t.role), h('td', {}, (t.kinds || []).join(', ') || 'all'),
        h('td', { class: 'mono' }, t.prefix || ''),
        h('td', {}, t.expires_at ? fmtTime(t.expires_at) : 'never', expired ? h('span', { class: 'badge bad' }, ' expired') : ''),
        h('td', {}, fmtTime(t.created_at)), h('td', {}, t.created_by || ''), cell));
    }
  }
  load();
  return () => {};
}

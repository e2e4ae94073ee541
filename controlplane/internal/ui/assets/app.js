// app: sign-in, navigation and the hash router of the admin UI. Routes are
// in the fragment (#/routes/edit/NAME) so that no path or token ever
// reaches the server's logs through the URL.

import { session, setToken, probe, onUnauthorized } from './api.js';
import { h, clear } from './dom.js';
import { KINDS, listView, editView, globalView } from './objects.js';
import { dataplanesView, trafficView, auditView, routeView } from './live.js';
import { tokensView } from './tokens.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const who = document.getElementById('who');
let stop = () => {};

const NAV = [
  ['routes', 'Routes'], ['services', 'Services'], ['consumers', 'Consumers'], ['issuers', 'Issuers'],
  ['certificates', 'Certificates'], ['global', 'Global'], ['dataplanes', 'Data planes'], ['traffic', 'Traffic'], ['audit', 'Audit log'],
];

function drawNav(active) {
  clear(nav);
  const items = session.who && session.who.role === 'admin' ? [...NAV, ['tokens', 'Tokens']] : NAV;
  for (const [id, label] of items) {
    nav.append(h('a', { href: `#/${id}`, class: id === active ? 'active' : '', id: `nav-${id}` }, label));
  }
  clear(who);
  const w = session.who || {};
  if (session.dev && !session.token) who.append(h('span', { class: 'badge warn', id: 'dev-mode' }, 'dev mode: no token'));
  else {
    const scope = w.kinds && w.kinds.length ? ` (${w.kinds.join(', ')})` : '';
    who.append(h('span', { class: 'badge', id: 'whoami', title: w.expires_at ? `expires ${w.expires_at}` : '' },
      `${w.principal || 'signed in'} · ${w.role || '?'}${scope}`));
  }
  who.append(h('button', { class: 'link', id: 'sign-out', onclick: signOut }, 'Sign out'));
}

function signOut() {
  setToken('');
  session.dev = false;
  session.who = null;
  signIn('');
}

// signIn shows the sign-in form; message says why (a refused token...).
function signIn(message) {
  stop();
  stop = () => {};
  clear(nav);
  clear(who);
  clear(main);
  const input = h('input', { type: 'password', id: 'token', name: 'token', autocomplete: 'current-password', required: true, placeholder: 'admin token' });
  const err = h('div', { id: 'signin-error', role: 'alert', class: message ? 'problem' : '' }, message || '');
  const form = h('form', { class: 'signin', id: 'signin' },
    h('h1', {}, 'Sign in to Portico'),
    h('p', {}, 'Paste an admin API token. It is kept in this tab only (sessionStorage) and sent to this control plane in the Authorization header.'),
    h('label', { for: 'token' }, 'Token'), input,
    h('button', { class: 'primary', type: 'submit', id: 'signin-button' }, 'Sign in'),
    err);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const token = input.value.trim();
    err.className = '';
    err.textContent = 'Checking…';
    let r;
    try {
      r = await probe(token);
    } catch (e) {
      err.className = 'problem';
      err.textContent = e.message;
      return;
    }
    if (r === 'refused') {
      err.className = 'problem';
      err.textContent = 'This token was refused by the control plane (401). Check it and try again.';
      input.select();
      return;
    }
    setToken(token);
    session.dev = false;
    if (location.hash === '' || location.hash === '#/' || location.hash === '#/signin') location.hash = '#/routes';
    route();
  });
  main.append(form);
  input.focus();
}

onUnauthorized(() => {
  setToken('');
  session.who = null;
  signIn('The control plane no longer accepts this session\'s token (401). Sign in again.');
});

const navApi = { refresh: () => route() };

async function route() {
  stop();
  stop = () => {};
  if (!session.token && !session.dev) {
    signIn('');
    return;
  }
  const parts = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  const [section, action, name] = parts;
  drawNav(section || 'routes');
  clear(main);
  const view = h('div', { class: 'view' });
  main.append(view);
  if (!section) {
    location.hash = '#/routes';
    return;
  }
  if (KINDS[section]) {
    if (action === 'new') return editView(view, section, null, navApi);
    if (action === 'edit' && name) return editView(view, section, name, navApi);
    if (section === 'routes' && action === 'view' && name) { stop = routeView(view, name); return; }
    return listView(view, section, navApi);
  }
  if (section === 'dataplanes') { stop = dataplanesView(view); return; }
  if (section === 'traffic') { stop = trafficView(view); return; }
  if (section === 'audit') { stop = auditView(view); return; }
  if (section === 'tokens') { tokensView(view, navApi); return; }
  if (section === 'global') return globalView(view);
  view.append(h('p', {}, 'No such page. '), h('a', { href: '#/routes' }, 'Go to the routes.'));
}

async function boot() {
  window.addEventListener('hashchange', route);
  if (session.token) {
    const r = await probe(session.token).catch(() => 'ok');
    if (r === 'refused') {
      setToken('');
      signIn('The stored token is no longer accepted (401). Sign in again.');
      return;
    }
    route();
    return;
  }
  // Without a token: a control plane in --dev answers anyway.
  const r = await probe('').catch(() => 'refused');
  if (r === 'ok') {
    session.dev = true;
    route();
    return;
  }
  signIn('');
}

boot();

// api: the admin API client of the UI. The token lives in sessionStorage
// (see docs/SECURITY.md) and travels only in the Authorization header.

const TOKEN_KEY = 'portico.token';

export const session = {
  token: sessionStorage.getItem(TOKEN_KEY) || '',
  dev: false,
  who: null, // GET /v1/whoami of the session's token
};

export function setToken(token) {
  session.token = token;
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

// ApiError is a refused request: status plus the problem document.
export class ApiError extends Error {
  constructor(status, problem) {
    const p = problem && typeof problem === 'object' ? problem : {};
    super(p.detail || p.title || `HTTP ${status}`);
    this.status = status;
    this.problem = p;
    this.fields = Array.isArray(p.errors) ? p.errors : [];
  }
}

// onUnauthorized is called when the server refuses the session's token.
let unauthorized = () => {};
export function onUnauthorized(fn) { unauthorized = fn; }

// call sends one request to the admin API. opts: body (object or JSON
// text), ifMatch, token (overrides the session's), quiet401 (do not end the
// session on 401: the sign-in probe).
export async function call(method, path, opts = {}) {
  const headers = { Accept: 'application/json, application/problem+json', 'X-Portico-Actor': 'ui' };
  const token = opts.token !== undefined ? opts.token : session.token;
  if (token) headers.Authorization = `Bearer ${token}`;
  let body;
  if (opts.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
  }
  if (opts.ifMatch) headers['If-Match'] = opts.ifMatch;
  let resp;
  try {
    resp = await fetch(path, { method, headers, body, cache: 'no-store', credentials: 'omit', redirect: 'error' });
  } catch (e) {
    throw new ApiError(0, { title: 'control plane unreachable', detail: `the control plane did not answer (${e.message})` });
  }
  const text = await resp.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = { detail: text.slice(0, 200) }; }
  }
  if (!resp.ok) {
    const err = new ApiError(resp.status, data);
    if (resp.status === 401 && !opts.quiet401) unauthorized(err);
    throw err;
  }
  return { status: resp.status, data, etag: resp.headers.get('ETag'), revision: resp.headers.get('X-Portico-Revision') };
}

// probe tells how a token (or none) fares with GET /v1/whoami: 'ok'
// (accepted; session.who then says who it is and what it may do: principal,
// role, kinds) or 'refused' (401).
export async function probe(token) {
  try {
    const { data } = await call('GET', '/v1/whoami', { token, quiet401: true });
    session.who = data;
    return 'ok';
  } catch (e) {
    if (e.status === 401) return 'refused';
    throw e;
  }
}

const RANK = { read: 1, write: 2, admin: 3 };

// mayWrite reports whether the signed-in token may change objects of a
// kind (singular: route, service...). The server decides; this only keeps
// the UI from offering what would be refused with 403.
export function mayWrite(kind) {
  const w = session.who;
  if (!w) return true;
  if ((RANK[w.role] || 0) < RANK.write) return false;
  return !w.kinds || !w.kinds.length || w.kinds.includes(kind);
}

// Package cache is the data plane's per-route HTTP response cache, with the
// semantics of an RFC 9111 shared cache kept to what a gateway needs.
//
// # Keys
//
// A request's primary key hashes (sha256) the route name and generation, the
// authority in package authority's normal form (lower case, with a port other
// than the scheme's default), the escaped path, the query (queryKey: only
// the RFC 3986 equivalences, parameters stably sorted by name unless a raw
// ';' is present; restricted to KeyQuery or left out with IgnoreQuery), the
// KeyHeaders' values and, with KeyConsumer, the consumer. The rule is that
// two requests share a key only if no upstream could read them differently;
// FuzzCacheKey checks it against several ways of reading a query. Hashing keeps Redis keys short whatever the request, and the
// generation is the route's revision: a purge bumps it, so every old entry
// becomes unreachable at once on every data plane and in Redis, and simply
// ages out instead of being hunted down.
//
// Vary takes two levels, because the headers that matter are only known
// from a response: a response without Vary is stored under the primary key;
// one with Vary stores a small record of the header names there and the
// response under the primary key extended by those headers' request values.
// A hit then costs two lookups. Vary: * is never stored.
//
// # Filling
//
// One upstream fetch per primary key at a time on a data plane: the first
// request (the leader) calls next with a writer that streams to its client
// while keeping a copy of the body up to the route's MaxEntryBytes; requests
// arriving meanwhile wait for it (or for their own context) and are answered
// from its result when that was storable. With a Store that is also a
// Locker (Redis), the leader first takes a short cross-node lock so that two
// data planes do not both fetch; a node that finds the lock taken polls the
// store for the entry for a bounded time before fetching itself.
//
// # What is stored
//
// Only GET answers with a heuristically cacheable status (RFC 9110 §15.1:
// 200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501; not 206), without
// Set-Cookie, no-store, private, no-cache or Vary: *, and with a lifetime
// left: s-maxage, else max-age, else the route's TTL. Two narrower rules
// keep one client's request from choosing what others get:
//
//   - A 4xx or 5xx answer is stored only with an explicit s-maxage or
//     max-age and only on a route whose key holds the whole query (neither
//     KeyQuery nor IgnoreQuery): an error usually describes the request (a
//     414 for a long query), and a part of it the key leaves out must not
//     put that error in front of requests without it.
//   - A request with credentials the key does not separate (Authorization,
//     or a consumer without KeyConsumer) is answered from, and stored to,
//     the cache only with public or s-maxage (RFC 9111 §3.5). A request
//     with a Cookie is treated alike, stricter: only answers that say
//     Cache-Control: public, unless Cookie is one of the KeyHeaders or
//     every cookie it carries is one of KeyCookies (whose values, as sent,
//     are then in the key). The Cookie header is split by the cache itself:
//     a pair net/http would skip still counts as another cookie.
//
// # Store errors and freshness
//
// Store errors never fail a request: a failed or slow lookup is a miss, a
// failed write is only counted. Freshness is decided here from the entry's
// own stored-at time and lifetime, not by the store's expiry, so that the
// clock can be injected and Redis and memory behave alike; the store's ttl
// only reclaims space.
//
// A route's cache settings are its cache stage (Route, route.go; see
// package stage), which wraps the rest of the route's chain in Serve.
package cache

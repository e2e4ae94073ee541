// Package cache is the data plane's per-route HTTP response cache, with the
// semantics of an RFC 9111 shared cache kept to what a gateway needs.
//
// # Keys
//
// A request's primary key hashes (sha256) the route name and generation, the
// lower-cased Host, the escaped path, the query (normalised: parameters
// decoded, re-encoded and stably sorted by name; restricted to KeyQuery or
// left out with IgnoreQuery), the KeyHeaders' values and, with KeyConsumer,
// the consumer. Hashing keeps Redis keys short whatever the request, and the
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
// Store errors never fail a request: a failed or slow lookup is a miss, a
// failed write is only counted. Freshness is decided here from the entry's
// own stored-at time and lifetime, not by the store's expiry, so that the
// clock can be injected and Redis and memory behave alike; the store's ttl
// only reclaims space.
package cache

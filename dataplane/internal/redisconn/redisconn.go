// Package redisconn builds the data plane's one Redis client from --redis,
// shared by the rate limiter and the response cache.
package redisconn

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/redis/go-redis/v9"
)

// ParseURL returns a client for the Redis deployment a URL names. The
// scheme chooses the kind:
//
//	redis://[[user]:password@]host[:port][/db][?option=value...]
//	rediss://...                  the same over TLS
//	unix://[[user]:password@]/path/to/redis.sock[?db=N&option=value...]
//	    one server (go-redis ParseURL)
//
//	redis-sentinel://[[user]:password@]host[:port][/db]?master_name=NAME[&addr=host2:port...]
//	rediss-sentinel://...         the same over TLS
//	    the master of NAME as the Sentinels at host and each addr report it,
//	    following failovers (go-redis ParseFailoverURL). The URL's user and
//	    password are the Sentinels'; the master's go in the username and
//	    password options.
//
//	redis-cluster://[[user]:password@]host[:port][?addr=host2:port...]
//	rediss-cluster://...          the same over TLS
//	    a Redis Cluster discovered from the seed nodes host and each addr
//	    (go-redis ParseClusterURL); there is no database number.
//
// Options are go-redis option names in snake case (dial_timeout=1s,
// pool_size=20, ...); unknown ones are an error. The port defaults to 6379.
//
// Whatever the URL says, the client applies context deadlines to its I/O
// (ContextTimeoutEnabled), since that is how the rate limiter and the cache keep every call
// within its budget. Unless max_retries is given it does not retry either: a
// retry cannot fit in a budget of milliseconds, and retrying a decision whose
// reply was lost would count the request twice.
func ParseURL(u string) (redis.UniversalClient, error) {
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok {
		return nil, errors.New("redis URL: no scheme (want redis://, rediss://, redis-sentinel://, redis-cluster:// or unix://)")
	}
	q, err := query(rest)
	if err != nil {
		return nil, err
	}
	noRetries := !q.Has("max_retries")
	switch scheme {
	case "redis", "rediss", "unix":
		o, err := redis.ParseURL(u)
		if err != nil {
			return nil, redact(err)
		}
		o.ContextTimeoutEnabled = true
		if noRetries {
			o.MaxRetries = -1
		}
		return redis.NewClient(o), nil
	case "redis-sentinel", "rediss-sentinel":
		o, err := redis.ParseFailoverURL(strings.TrimSuffix(scheme, "-sentinel") + "://" + rest)
		if err != nil {
			return nil, redact(err)
		}
		if o.MasterName == "" {
			return nil, errors.New("redis URL: redis-sentinel needs the master_name option")
		}
		o.ContextTimeoutEnabled = true
		if noRetries {
			o.MaxRetries = -1
		}
		return redis.NewFailoverClient(o), nil
	case "redis-cluster", "rediss-cluster":
		o, err := redis.ParseClusterURL(strings.TrimSuffix(scheme, "-cluster") + "://" + rest)
		if err != nil {
			return nil, redact(err)
		}
		o.ContextTimeoutEnabled = true
		if noRetries {
			o.MaxRetries = -1
		}
		return redis.NewClusterClient(o), nil
	default:
		return nil, fmt.Errorf("redis URL: unknown scheme %q (want redis, rediss, redis-sentinel, rediss-sentinel, redis-cluster, rediss-cluster or unix)", scheme)
	}
}

// query returns the options of a URL given without its scheme.
func query(rest string) (url.Values, error) {
	_, raw, _ := strings.Cut(rest, "?")
	raw, _, _ = strings.Cut(raw, "#")
	q, err := url.ParseQuery(raw)
	if err != nil {
		return nil, fmt.Errorf("redis URL: options: %w", err)
	}
	return q, nil
}

// redact drops the URL that net/url puts into its errors: it may carry a
// password, and errors end up in logs.
func redact(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		err = ue.Err
	}
	return fmt.Errorf("redis URL: %w", err)
}

// HonoursDeadlines reports whether c applies a context's deadline to its
// socket I/O; go-redis does so only with ContextTimeoutEnabled (ParseURL
// always sets it).
func HonoursDeadlines(c redis.UniversalClient) bool {
	switch c := c.(type) {
	case *redis.Client:
		return c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		return c.Options().ContextTimeoutEnabled
	case *redis.Ring:
		return c.Options().ContextTimeoutEnabled
	}
	return false
}

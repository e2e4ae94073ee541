// Package config holds Portico's declarative configuration model: the objects
// an operator manages through the admin API (services, routes, consumers), how
// they are decoded strictly from JSON, and how they are validated.
//
// The model is plain data. The control plane stores it; the data plane compiles
// it into immutable runtime structures of its own. Nothing here runs requests.
package config

import (
	"encoding/json"
	"reflect"
	"strconv"
	"time"
)

var durationType = reflect.TypeFor[Duration]()

// Kind names a type of object in the configuration.
type Kind string

const (
	KindService  Kind = "service"
	KindRoute    Kind = "route"
	KindConsumer Kind = "consumer"
)

// Meta is what the control plane maintains on every object. Clients may send
// it back unchanged (so GET output can be PUT again); its values are ignored on
// input and recomputed on every write.
type Meta struct {
	// Version counts the writes of this object, starting at 1. It is the
	// object's ETag and what If-Match compares against.
	Version int64 `json:"version,omitempty"`
	// Revision is the global revision at which the object last changed.
	Revision  int64     `json:"revision,omitempty"`
	CreatedAt time.Time `json:"created_at,omitzero"`
	UpdatedAt time.Time `json:"updated_at,omitzero"`
}

// Service is an upstream: where a route's traffic goes.
type Service struct {
	Name    string   `json:"name"`
	Targets []Target `json:"targets,omitempty"`
	// ConnectTimeout bounds dialing one target. Zero means the default.
	ConnectTimeout Duration `json:"connect_timeout,omitzero"`
	Meta
}

// Target is one static upstream address.
type Target struct {
	URL string `json:"url"`
	// Weight is relative to the other targets; 0 means 1.
	Weight int `json:"weight,omitempty"`
}

// Route maps requests to a service.
type Route struct {
	Name string `json:"name"`
	// Paths are exact ("/health"), carry {param} segments ("/users/{id}"), or
	// end in "/*" to match a prefix ("/users/*" matches "/users" and below).
	Paths []string `json:"paths"`
	// Methods limits the route to these HTTP methods; empty means any.
	Methods []string `json:"methods,omitempty"`
	// Hosts limits the route to these hosts ("api.example.com" or
	// "*.example.com"); empty means any host.
	Hosts   []string `json:"hosts,omitempty"`
	Service string   `json:"service"`
	// StripPrefix removes the matched prefix of a "/*" path before proxying.
	StripPrefix bool `json:"strip_prefix,omitempty"`
	// Timeout bounds the whole upstream exchange up to the response headers.
	// Zero means the default (30s).
	Timeout Duration `json:"timeout,omitzero"`
	// MaxBodyBytes caps the request body; 0 means the default (10 MiB).
	// Request size limits are always on: there is no "unlimited".
	MaxBodyBytes int64 `json:"max_body_bytes,omitempty"`
	Meta
}

// Consumer is an identified client of the gateway.
type Consumer struct {
	Name   string   `json:"name"`
	Groups []string `json:"groups,omitempty"`
	Meta
}

// Config is the whole declarative configuration. Objects are kept sorted by
// name so that its JSON form is canonical (the snapshot checksum relies on it).
type Config struct {
	Services  []Service  `json:"services"`
	Routes    []Route    `json:"routes"`
	Consumers []Consumer `json:"consumers"`
}

// Defaults applied by the data plane when a field is zero.
const (
	DefaultRouteTimeout   = 30 * time.Second
	DefaultConnectTimeout = 5 * time.Second
	DefaultMaxBodyBytes   = 10 << 20
)

// Duration is a time.Duration written in JSON as a Go duration string ("30s").
type Duration time.Duration

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON accepts a duration string such as "1.5s" or "250ms".
func (d *Duration) UnmarshalJSON(b []byte) error {
	// UnmarshalTypeError lets the decoder attach the field path.
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return &json.UnmarshalTypeError{Value: string(b), Type: durationType}
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return &json.UnmarshalTypeError{Value: strconv.Quote(s), Type: durationType}
	}
	*d = Duration(v)
	return nil
}

// Std returns the value as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

package config

import (
	"errors"
	"strings"
	"testing"
)

func validConfig() *Config {
	return &Config{
		Services: []Service{{Name: "users", Targets: []Target{{URL: "http://127.0.0.1:9001", Weight: 1}}}},
		Routes: []*Route{
			{Name: "users", Paths: []string{"/users/*"}, Methods: []string{"GET"}, Service: "users", StripPrefix: true},
			{Name: "user", Paths: []string{"/user/{id}"}, Service: "users"},
		},
		Consumers: []Consumer{{Name: "alice", Groups: []string{"staff"}}},
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *Config)
		kind   error  // nil: valid
		field  string // a field path that must be reported
	}{
		{"valid", func(*Config) {}, nil, ""},
		{"service without targets", func(c *Config) { c.Services[0].Targets = nil }, ErrInvalid, "services[0].targets"},
		{"target scheme", func(c *Config) { c.Services[0].Targets[0].URL = "ftp://x" }, ErrInvalid, "services[0].targets[0].url"},
		{"target no host", func(c *Config) { c.Services[0].Targets[0].URL = "http://" }, ErrInvalid, "services[0].targets[0].url"},
		{"target credentials", func(c *Config) { c.Services[0].Targets[0].URL = "http://u:p@h" }, ErrInvalid, "services[0].targets[0].url"},
		{"target query", func(c *Config) { c.Services[0].Targets[0].URL = "http://h/?a=1" }, ErrInvalid, "services[0].targets[0].url"},
		{"target bad port", func(c *Config) { c.Services[0].Targets[0].URL = "http://h:99999" }, ErrInvalid, "services[0].targets[0].url"},
		{"negative weight", func(c *Config) { c.Services[0].Targets[0].Weight = -1 }, ErrInvalid, "services[0].targets[0].weight"},
		{"duplicate target", func(c *Config) {
			c.Services[0].Targets = append(c.Services[0].Targets, c.Services[0].Targets[0])
		}, ErrInvalid, "services[0].targets[1].url"},
		{"bad service name", func(c *Config) { c.Services[0].Name = "a b"; c.Routes[0].Service = "a b"; c.Routes[1].Service = "a b" }, ErrInvalid, "services[0].name"},
		{"duplicate service", func(c *Config) { c.Services = append(c.Services, c.Services[0]) }, ErrConflict, "services[1].name"},
		{"route without paths", func(c *Config) { c.Routes[0].Paths = nil }, ErrInvalid, "routes[0].paths"},
		{"null route", func(c *Config) { c.Routes[1] = nil }, ErrInvalid, "routes[1]"},
		{"relative path", func(c *Config) { c.Routes[0].Paths = []string{"users"} }, ErrInvalid, "routes[0].paths[0]"},
		{"double slash", func(c *Config) { c.Routes[0].Paths = []string{"/a//b"} }, ErrInvalid, "routes[0].paths[0]"},
		{"dot segment", func(c *Config) { c.Routes[0].Paths = []string{"/a/../b"} }, ErrInvalid, "routes[0].paths[0]"},
		{"star not last", func(c *Config) { c.Routes[0].Paths = []string{"/a/*/b"} }, ErrInvalid, "routes[0].paths[0]"},
		{"bad param", func(c *Config) { c.Routes[0].Paths = []string{"/a/{1x}"} }, ErrInvalid, "routes[0].paths[0]"},
		{"duplicate param", func(c *Config) { c.Routes[0].Paths = []string{"/a/{id}/{id}"} }, ErrInvalid, "routes[0].paths[0]"},
		{"percent in path", func(c *Config) { c.Routes[0].Paths = []string{"/a%2fb"} }, ErrInvalid, "routes[0].paths[0]"},
		{"same path twice", func(c *Config) { c.Routes[1].Paths = []string{"/u/{a}", "/u/{b}"} }, ErrInvalid, "routes[1].paths[1]"},
		{"unknown method", func(c *Config) { c.Routes[0].Methods = []string{"FETCH"} }, ErrInvalid, "routes[0].methods[0]"},
		{"bad host", func(c *Config) { c.Routes[0].Hosts = []string{"exa mple.com"} }, ErrInvalid, "routes[0].hosts[0]"},
		{"host with port", func(c *Config) { c.Routes[0].Hosts = []string{"example.com:80"} }, ErrInvalid, "routes[0].hosts[0]"},
		{"wildcard host ok", func(c *Config) { c.Routes[0].Hosts = []string{"*.example.com"} }, nil, ""},
		{"missing service", func(c *Config) { c.Routes[0].Service = "nope" }, ErrInvalid, "routes[0].service"},
		{"empty service", func(c *Config) { c.Routes[0].Service = "" }, ErrInvalid, "routes[0].service"},
		{"timeout too long", func(c *Config) { c.Routes[0].Timeout = Duration(2 * MaxRouteTimeout) }, ErrInvalid, "routes[0].timeout"},
		{"body limit negative", func(c *Config) { c.Routes[0].MaxBodyBytes = -1 }, ErrInvalid, "routes[0].max_body_bytes"},
		{"ambiguous routes", func(c *Config) { c.Routes[1].Paths = []string{"/users/*"}; c.Routes[1].Methods = []string{"GET"} }, ErrConflict, "routes[1].paths[0]"},
		{"same path, param names differ", func(c *Config) {
			c.Routes[0].Paths = []string{"/user/{name}"}
			c.Routes[0].Methods = nil
		}, ErrConflict, "routes[1].paths[0]"},
		{"same path, different methods ok", func(c *Config) { c.Routes[1].Paths = []string{"/users/*"}; c.Routes[1].Methods = []string{"POST"} }, nil, ""},
		{"same path, any method vs GET ok", func(c *Config) { c.Routes[1].Paths = []string{"/users/*"} }, nil, ""},
		{"same path, different hosts ok", func(c *Config) {
			c.Routes[1].Paths = []string{"/users/*"}
			c.Routes[1].Methods = []string{"GET"}
			c.Routes[1].Hosts = []string{"a.example.com"}
		}, nil, ""},
		{"duplicate route name", func(c *Config) { c.Routes[1].Name = "users" }, ErrConflict, "routes[1].name"},
		{"duplicate consumer group", func(c *Config) { c.Consumers[0].Groups = []string{"a", "a"} }, ErrInvalid, "consumers[0].groups[1]"},
		{"invalid wins over conflict", func(c *Config) {
			c.Services = append(c.Services, c.Services[0])
			c.Routes[0].Paths = nil
		}, ErrInvalid, "routes[0].paths"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.mutate(c)
			checkValidation(t, c.Validate(), tt.kind, tt.field)
		})
	}
}

// checkValidation fails unless err is nil (kind nil) or of kind and
// reports field among its fields.
func checkValidation(t *testing.T, err, kind error, field string) {
	t.Helper()
	if kind == nil {
		if err != nil {
			t.Fatalf("Validate() = %v, want nil", err)
		}
		return
	}
	if !errors.Is(err, kind) {
		t.Fatalf("Validate() = %v, want %v", err, kind)
	}
	var fields []string
	for _, f := range FieldErrors(err) {
		fields = append(fields, f.Field)
		if f.Field == field {
			return
		}
	}
	t.Fatalf("Validate() reported fields %v, want %q among them (err: %v)", fields, field, err)
}

func TestCheckRoute(t *testing.T) {
	c := validConfig()
	c.Sort()
	r := Route{Name: "other", Paths: []string{"/x", "/users/*"}, Methods: []string{"GET"}, Service: "users"}
	err := c.CheckRoute(&r)
	if !errors.Is(err, ErrConflict) || FieldErrors(err)[0].Field != "paths[1]" {
		t.Fatalf("CheckRoute = %v, want conflict on paths[1]", err)
	}
	// Replacing a route by itself is not a conflict with itself.
	self := c.Routes[1]
	if err := c.CheckRoute(self); err != nil {
		t.Fatalf("CheckRoute(self) = %v", err)
	}
	r = Route{Name: "x", Paths: []string{"/x"}, Service: "ghost"}
	if err := c.CheckRoute(&r); !errors.Is(err, ErrInvalid) || FieldErrors(err)[0].Field != "service" {
		t.Fatalf("CheckRoute(missing service) = %v", err)
	}
	if err := c.CheckServiceDelete("users"); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "user") {
		t.Fatalf("CheckServiceDelete = %v, want conflict naming the routes", err)
	}
}

func TestPathShape(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"/", "/", true},
		{"/*", "/*", true},
		{"/health", "/health", true},
		{"/users/", "/users/", true},
		{"/users/{id}", "/users/{}", true},
		{"/users/{id}/orders/{order_id}", "/users/{}/orders/{}", true},
		{"/users/*", "/users/*", true},
		{"/a/b:c@d", "/a/b:c@d", true},
		{"", "", false},
		{"x", "", false},
		{"//", "", false},
		{"/a//", "", false},
		{"/./a", "", false},
		{"/a/{}", "", false},
		{"/a/{id", "", false},
		{"/a/x{id}", "", false},
		{"/a?b", "", false},
		{"/a#b", "", false},
		{"/a b", "", false},
		{"/*/a", "", false},
		{"/a*", "", false},
		{"/" + strings.Repeat("a", MaxPathLen), "", false},
	}
	for _, tt := range tests {
		got, err := PathShape(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("PathShape(%q) = %q, %v; want %q, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestDecodeStrict(t *testing.T) {
	tests := []struct {
		name, in, field, msg string
	}{
		{"unknown field", `{"name":"a","targetz":[]}`, "targetz", "unknown field"},
		{"wrong type", `{"name":"a","targets":"x"}`, "targets", "must be an array"},
		{"nested wrong type", `{"name":"a","targets":[{"url":1}]}`, "targets.url", "must be a string"},
		{"bad duration", `{"name":"a","connect_timeout":"soon"}`, "connect_timeout", "duration"},
		{"numeric duration", `{"name":"a","connect_timeout":5}`, "connect_timeout", "duration"},
		{"syntax", `{"name":`, "", "JSON"},
		{"trailing data", `{"name":"a"} {}`, "", "after the JSON value"},
		{"empty", ``, "", "empty body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s Service
			err := Decode([]byte(tt.in), &s)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Decode = %v, want ErrMalformed", err)
			}
			f := FieldErrors(err)[0]
			if f.Field != tt.field || !strings.Contains(f.Message, tt.msg) {
				t.Fatalf("Decode error = %+v, want field %q with %q", f, tt.field, tt.msg)
			}
		})
	}
	var s Service
	if err := Decode([]byte(`{"name":"a","connect_timeout":"1.5s","targets":[{"url":"http://h"}]}`), &s); err != nil {
		t.Fatal(err)
	}
	if s.ConnectTimeout.Std().Milliseconds() != 1500 {
		t.Fatalf("connect_timeout = %v", s.ConnectTimeout.Std())
	}
}

func TestChangedFields(t *testing.T) {
	a := Route{Name: "r", Paths: []string{"/a"}, Service: "s", Meta: Meta{Version: 3}}
	b := a
	b.Meta = Meta{Version: 9}
	if !SameSpec(&a, &b) {
		t.Fatal("metadata must not count as a change")
	}
	b.Methods = []string{}
	if !SameSpec(&a, &b) {
		t.Fatal("nil and empty lists must compare equal")
	}
	b.Paths = []string{"/b"}
	b.StripPrefix = true
	got := ChangedFields(&a, &b)
	if strings.Join(got, ",") != "paths,strip_prefix" {
		t.Fatalf("ChangedFields = %v", got)
	}
}

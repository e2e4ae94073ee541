package config

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
)

func trafficConfig() *Config {
	c := validConfig()
	c.Services = append(c.Services,
		Service{Name: "orders", Targets: []Target{{URL: "http://127.0.0.1:9002", Weight: 1}}},
		Service{Name: "shop", Protocol: ProtocolGRPC, Targets: []Target{{URL: "http://127.0.0.1:9003", Weight: 1}}},
	)
	c.Routes = append(c.Routes,
		&Route{Name: "profile", Paths: []string{"/profile/{id}"}, Aggregate: []AggregateBackend{
			{Service: "users", Path: "/users/{id}", Key: "user"},
			{Service: "orders", Path: "/orders?user={id}", Key: "orders", Timeout: Duration(time.Second)},
		}},
		&Route{Name: "order", Paths: []string{"/v1/orders/{id}"}, Methods: []string{"GET"}, Service: "shop",
			GRPC: &RouteGRPC{Method: "shop.v1.Orders/GetOrder"}},
	)
	c.Routes[1].Rewrite = "/v2/users/{id}"
	c.Routes[1].Cache = &RouteCache{TTL: Duration(time.Minute), KeyHeaders: []string{"Accept-Language"}}
	c.Routes[1].RequestHeaders = &Edits{Set: map[string]string{"X-User": "{id}"}, Remove: []string{"Cookie"}}
	c.Routes[1].Query = &Edits{Add: map[string]string{"source": "gateway"}}
	c.Routes[1].CORS = &CORS{AllowOrigins: []string{"https://app.example.com", "https://*.example.com"}, AllowCredentials: true}
	return c
}

func TestTrafficValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *Config)
		kind   error
		field  string
	}{
		{"valid", func(*Config) {}, nil, ""},
		{"aggregate and service", func(c *Config) { c.Routes[2].Service = "users" }, ErrInvalid, "routes[2].service"},
		{"aggregate unknown service", func(c *Config) { c.Routes[2].Aggregate[1].Service = "nope" }, ErrInvalid, "routes[2].aggregate[1].service"},
		{"aggregate grpc service", func(c *Config) { c.Routes[2].Aggregate[1].Service = "shop" }, ErrInvalid, "routes[2].aggregate[1].service"},
		{"aggregate relative path", func(c *Config) { c.Routes[2].Aggregate[0].Path = "users" }, ErrInvalid, "routes[2].aggregate[0].path"},
		{"aggregate bad template", func(c *Config) { c.Routes[2].Aggregate[0].Path = "/users/{id" }, ErrInvalid, "routes[2].aggregate[0].path"},
		{"aggregate duplicate key", func(c *Config) { c.Routes[2].Aggregate[1].Key = "user" }, ErrInvalid, "routes[2].aggregate[1].key"},
		{"aggregate POST", func(c *Config) { c.Routes[2].Aggregate[0].Method = "POST" }, ErrInvalid, "routes[2].aggregate[0].method"},
		{"aggregate flatten ok", func(c *Config) { c.Routes[2].Aggregate[0].Key = ""; c.Routes[2].Aggregate[1].Key = "" }, nil, ""},
		{"grpc route on http service", func(c *Config) { c.Routes[3].Service = "users" }, ErrInvalid, "routes[3].grpc"},
		{"grpc pass-through", func(c *Config) { c.Routes[3].GRPC, c.Routes[3].Methods = nil, nil }, nil, ""},
		{"grpc pass-through without POST", func(c *Config) { c.Routes[3].GRPC, c.Routes[3].Methods = nil, []string{"GET"} }, ErrInvalid, "routes[3].methods"},
		{"grpc bad method", func(c *Config) { c.Routes[3].GRPC.Method = "GetOrder" }, ErrInvalid, "routes[3].grpc.method"},
		{"bad protocol", func(c *Config) { c.Services[0].Protocol = "thrift" }, ErrInvalid, "services[0].protocol"},
		{"grpc settings on http", func(c *Config) { c.Services[0].GRPC = &ServiceGRPC{} }, ErrInvalid, "services[0].grpc"},
		{"rewrite unknown param", func(c *Config) { c.Routes[1].Rewrite = "/x/{name}" }, ErrInvalid, "routes[1].rewrite"},
		{"rewrite rest without prefix", func(c *Config) { c.Routes[1].Rewrite = "/x/{*}" }, ErrInvalid, "routes[1].rewrite"},
		{"rewrite rest ok", func(c *Config) { c.Routes[0].StripPrefix = false; c.Routes[0].Rewrite = "/api/{*}" }, nil, ""},
		{"rewrite with query", func(c *Config) { c.Routes[1].Rewrite = "/x?a=1" }, ErrInvalid, "routes[1].rewrite"},
		{"rewrite and strip", func(c *Config) { c.Routes[0].Rewrite = "/api/{*}" }, ErrInvalid, "routes[0].strip_prefix"},
		{"cache ttl zero", func(c *Config) { c.Routes[1].Cache.TTL = 0 }, ErrInvalid, "routes[1].cache.ttl"},
		{"cache bad store", func(c *Config) { c.Routes[1].Cache.Store = "disk" }, ErrInvalid, "routes[1].cache.store"},
		{"cache bad header", func(c *Config) { c.Routes[1].Cache.KeyHeaders = []string{"a b"} }, ErrInvalid, "routes[1].cache.key_headers[0]"},
		{"cache bad cookie", func(c *Config) { c.Routes[1].Cache.KeyCookies = []string{"lang", "a=b"} }, ErrInvalid, "routes[1].cache.key_cookies[1]"},
		{"cache consumer without auth", func(c *Config) { c.Routes[1].Cache.KeyConsumer = true }, ErrInvalid, "routes[1].cache.key_consumer"},
		{"cache on POST route", func(c *Config) { c.Routes[1].Methods = []string{"POST"} }, ErrInvalid, "routes[1].cache"},
		{"edit hop-by-hop", func(c *Config) { c.Routes[1].RequestHeaders.Set["connection"] = "x" }, ErrInvalid, "routes[1].request_headers.set.connection"},
		{"edit header CRLF", func(c *Config) { c.Routes[1].RequestHeaders.Set["X-A"] = "a\r\nb" }, ErrInvalid, "routes[1].request_headers.set.X-A"},
		{"edit unknown param", func(c *Config) { c.Routes[1].RequestHeaders.Set["X-A"] = "{nope}" }, ErrInvalid, "routes[1].request_headers.set.X-A"},
		{"query bad name", func(c *Config) { c.Routes[1].Query.Add["a=b"] = "1" }, ErrInvalid, "routes[1].query.add.a=b"},
		{"cors star with credentials", func(c *Config) { c.Routes[1].CORS.AllowOrigins = []string{"*"} }, ErrInvalid, "routes[1].cors.allow_origins[0]"},
		{"cors bad origin", func(c *Config) { c.Routes[1].CORS.AllowOrigins = []string{"app.example.com"} }, ErrInvalid, "routes[1].cors.allow_origins[0]"},
		{"cors origin with path", func(c *Config) { c.Routes[1].CORS.AllowOrigins = []string{"https://a.example.com/x"} }, ErrInvalid, "routes[1].cors.allow_origins[0]"},
		{"cors bad method", func(c *Config) { c.Routes[1].CORS.AllowMethods = []string{"FETCH"} }, ErrInvalid, "routes[1].cors.allow_methods[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := trafficConfig()
			tt.mutate(c)
			checkValidation(t, c.Validate(), tt.kind, tt.field)
		})
	}
}

func descriptorSet(t *testing.T) []byte {
	t.Helper()
	str := func(s string) *string { return &s }
	set := &descriptorpb.FileDescriptorSet{File: []*descriptorpb.FileDescriptorProto{{
		Name: str("shop.proto"), Package: str("shop.v1"), Syntax: str("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{{Name: str("Req")}},
		Service: []*descriptorpb.ServiceDescriptorProto{{Name: str("Orders"), Method: []*descriptorpb.MethodDescriptorProto{
			{Name: str("GetOrder"), InputType: str(".shop.v1.Req"), OutputType: str(".shop.v1.Req")},
			{Name: str("Watch"), InputType: str(".shop.v1.Req"), OutputType: str(".shop.v1.Req"), ServerStreaming: proto.Bool(true)},
		}}},
	}}}
	b, err := proto.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDescriptorSetChecks(t *testing.T) {
	set := descriptorSet(t)
	tests := []struct {
		name   string
		set    []byte
		method string
		field  string
	}{
		{"method in the set", set, "shop.v1.Orders/GetOrder", ""},
		{"method missing", set, "shop.v1.Orders/Cancel", "routes[3].grpc.method"},
		{"streaming method", set, "shop.v1.Orders/Watch", "routes[3].grpc.method"},
		{"garbage set", []byte("not a descriptor set"), "shop.v1.Orders/GetOrder", "services[2].grpc.descriptor_set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := trafficConfig()
			c.Services[2].GRPC = &ServiceGRPC{DescriptorSet: tt.set}
			c.Routes[3].GRPC.Method = tt.method
			var kind error
			if tt.field != "" {
				kind = ErrInvalid
			}
			checkValidation(t, c.Validate(), kind, tt.field)
		})
	}
}

func TestServiceDeleteSeesAggregates(t *testing.T) {
	c := trafficConfig()
	c.Sort()
	if err := c.CheckServiceDelete("orders"); !errors.Is(err, ErrConflict) {
		t.Fatalf("deleting a service an aggregate uses = %v, want a conflict", err)
	}
}

// TestCloneSharesNothing walks a fully populated config and its clone and
// fails on any slice or map or pointer they share: a change prepared on a
// clone must never leak into the published config.
func TestCloneSharesNothing(t *testing.T) {
	c := trafficConfig()
	c.Services[2].GRPC = &ServiceGRPC{DescriptorSet: []byte{1, 2}}
	c.Services[0].Consul = &ConsulSource{Service: "u", Tags: []string{"a"}}
	c.Services[0].Retries = &Retries{OnStatuses: []int{502}}
	c.Services[0].OutlierDetection = &OutlierDetection{}
	c.Services[0].CircuitBreaker = &CircuitBreaker{}
	c.Services[0].HealthCheck = &HealthCheck{Path: "/"}
	c.Routes[1].ResponseHeaders = &Edits{Add: map[string]string{"a": "b"}, Remove: []string{"x"}}
	c.Routes[1].CORS.AllowMethods = []string{"GET"}
	c.Routes[1].CORS.AllowHeaders = []string{"X"}
	c.Routes[1].CORS.ExposeHeaders = []string{"Y"}
	c.Routes[1].Cache.KeyQuery = []string{"q"}
	c.Routes[1].Cache.KeyCookies = []string{"lang"}
	c.Routes[1].Hosts = []string{"a.example.com"}
	c.Routes[1].RateLimit = &RateLimit{Limit: 1}
	c.Routes[1].Auth = &RouteAuth{Issuers: []string{"i"}, Consumers: []string{"c"}, Groups: []string{"g"}, Scopes: []string{"s"},
		Claims: map[string]string{"a": "b"}, ForwardClaims: map[string]string{"a": "B"}}
	c.Consumers[0].APIKeys = []APIKey{{ID: "k"}}
	c.Issuers = []Issuer{{Name: "i", Audiences: []string{"a"}, Algorithms: []string{"RS256"}, Keys: []string{"k"}}}
	c.Global.RateLimit = &RateLimit{Limit: 1}
	shared := sharedMemory(reflect.ValueOf(c).Elem(), reflect.ValueOf(c.Clone()).Elem(), "config")
	if len(shared) > 0 {
		t.Fatalf("Clone shares memory with the original at %v", shared)
	}
}

func sharedMemory(a, b reflect.Value, path string) []string {
	var out []string
	switch a.Kind() {
	case reflect.Pointer:
		if a.IsNil() {
			return nil
		}
		if a.Pointer() == b.Pointer() {
			return []string{path}
		}
		return sharedMemory(a.Elem(), b.Elem(), path)
	case reflect.Slice:
		if a.Len() > 0 && a.Pointer() == b.Pointer() {
			return []string{path}
		}
		for i := 0; i < a.Len(); i++ {
			out = append(out, sharedMemory(a.Index(i), b.Index(i), path+"[]")...)
		}
	case reflect.Map:
		if a.Len() > 0 && a.Pointer() == b.Pointer() {
			return []string{path}
		}
	case reflect.Struct:
		for i := 0; i < a.NumField(); i++ {
			out = append(out, sharedMemory(a.Field(i), b.Field(i), path+"."+a.Type().Field(i).Name)...)
		}
	}
	return out
}

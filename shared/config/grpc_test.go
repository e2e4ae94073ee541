package config

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
)

// linkSet serializes one file declaring package g, message Req and
// service S with method M taking input and answering Req.
func linkSet(t *testing.T, input string, streaming bool) []byte {
	t.Helper()
	b, err := proto.Marshal(&descriptorpb.FileDescriptorSet{File: []*descriptorpb.FileDescriptorProto{{
		Name: proto.String("g.proto"), Package: proto.String("g"), Syntax: proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{{Name: proto.String("Req")}},
		Service: []*descriptorpb.ServiceDescriptorProto{{Name: proto.String("S"), Method: []*descriptorpb.MethodDescriptorProto{
			{Name: proto.String("M"), InputType: proto.String(input), OutputType: proto.String(".g.Req"), ServerStreaming: proto.Bool(streaming)},
		}}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDescriptorSetMustLink: a descriptor set is validated by linking it,
// as the data plane does, not only by parsing it: a method whose message
// type no file defines parses fine and then fails on every data plane.
func TestDescriptorSetMustLink(t *testing.T) {
	tests := []struct {
		name   string
		set    []byte
		method string
		field  string // "" when valid
	}{
		{"links", linkSet(t, ".g.Req", false), "g.S/M", ""},
		{"input type defined nowhere", linkSet(t, ".g.Missing", false), "g.S/M", "services[0].grpc.descriptor_set"},
		{"method missing", linkSet(t, ".g.Req", false), "g.S/Nope", "routes[0].grpc.method"},
		{"streaming method", linkSet(t, ".g.Req", true), "g.S/M", "routes[0].grpc.method"},
		{"not a descriptor set", []byte("junk"), "g.S/M", "services[0].grpc.descriptor_set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Config{
				Services: []Service{{Name: "g", Protocol: ProtocolGRPC, Targets: []Target{{URL: "http://h:1"}}, GRPC: &ServiceGRPC{DescriptorSet: tt.set}}},
				Routes:   []*Route{{Name: "r", Paths: []string{"/m"}, Service: "g", GRPC: &RouteGRPC{Method: tt.method}}},
			}
			err := c.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate = %v", err)
				}
				return
			}
			var fields []string
			for _, f := range FieldErrors(err) {
				fields = append(fields, f.Field)
			}
			if !strings.Contains(strings.Join(fields, " "), tt.field) {
				t.Fatalf("Validate = %v; want an error on %s", err, tt.field)
			}
		})
	}
}

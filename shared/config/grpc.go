package config

import (
	"errors"
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

// ErrMethodNotFound means a descriptor set (or a server's reflection) does
// not define a method.
var ErrMethodNotFound = errors.New("method not found")

// maxDescriptorFiles bounds the files of one service: a hostile or broken
// server must not keep a data plane fetching imports forever.
const maxDescriptorFiles = 4096

// ParseDescriptorSet links a serialized google.protobuf.FileDescriptorSet
// into a registry. The control plane validates a service's descriptor set
// with it and the data plane compiles the set with it, so a set accepted at
// write time links on every data plane (a set that merely parses may not:
// a method can name a message type no file defines). Imports missing from
// the set are taken from the binary's registry, so a set built without
// --include_imports still works for the well-known types.
func ParseDescriptorSet(b []byte) (*protoregistry.Files, error) {
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("not a serialized google.protobuf.FileDescriptorSet: %w", err)
	}
	if len(set.File) == 0 {
		return nil, errors.New("the descriptor set holds no file")
	}
	return LinkDescriptors(set.File, nil)
}

// LinkDescriptors links fds into a registry. fetch, when not nil, is asked
// for imports that are missing (gRPC reflection), before the binary's own
// registry.
func LinkDescriptors(fds []*descriptorpb.FileDescriptorProto, fetch func(name string) ([]*descriptorpb.FileDescriptorProto, error)) (*protoregistry.Files, error) {
	byName := make(map[string]*descriptorpb.FileDescriptorProto, len(fds))
	queue := make([]*descriptorpb.FileDescriptorProto, 0, len(fds))
	add := func(fd *descriptorpb.FileDescriptorProto) {
		if _, dup := byName[fd.GetName()]; !dup {
			byName[fd.GetName()] = fd
			queue = append(queue, fd)
		}
	}
	for _, fd := range fds {
		add(fd)
	}
	for i := 0; i < len(queue); i++ {
		if len(queue) > maxDescriptorFiles {
			return nil, fmt.Errorf("more than %d files in the dependency closure", maxDescriptorFiles)
		}
		for _, dep := range queue[i].GetDependency() {
			if _, ok := byName[dep]; ok {
				continue
			}
			if fetch != nil {
				got, err := fetch(dep)
				if err != nil {
					return nil, err
				}
				for _, fd := range got {
					add(fd)
				}
				if _, ok := byName[dep]; ok {
					continue
				}
			}
			gd, err := protoregistry.GlobalFiles.FindFileByPath(dep)
			if err != nil {
				return nil, fmt.Errorf("file %s imports %s, which is not available", queue[i].GetName(), dep)
			}
			add(protodesc.ToFileDescriptorProto(gd))
		}
	}
	files, err := protodesc.NewFiles(&descriptorpb.FileDescriptorSet{File: queue})
	if err != nil {
		return nil, fmt.Errorf("linking descriptors: %w", err)
	}
	return files, nil
}

// UnaryMethod finds service/method in files and checks that it is unary:
// only unary methods can be called with one JSON body.
func UnaryMethod(files *protoregistry.Files, service protoreflect.FullName, method protoreflect.Name) (protoreflect.MethodDescriptor, error) {
	d, err := files.FindDescriptorByName(service)
	if err != nil {
		return nil, fmt.Errorf("service %s: %w", service, ErrMethodNotFound)
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return nil, fmt.Errorf("%s is not a service", service)
	}
	md := sd.Methods().ByName(method)
	if md == nil {
		return nil, fmt.Errorf("%s/%s: %w", service, method, ErrMethodNotFound)
	}
	if md.IsStreamingClient() || md.IsStreamingServer() {
		return nil, fmt.Errorf("%s/%s is a streaming method; only unary methods can be called with JSON", service, method)
	}
	return md, nil
}

// checkGRPCMethod checks a route's method against its service's descriptor
// set, when it has one, the way the data plane will look it up.
func checkGRPCMethod(l *errorList, p string, r *Route, svc *Service) {
	if r.GRPC == nil || svc.GRPC == nil || len(svc.GRPC.DescriptorSet) == 0 {
		return
	}
	files, err := ParseDescriptorSet(svc.GRPC.DescriptorSet)
	if err != nil {
		return // reported on the service
	}
	name, method, _ := strings.Cut(strings.TrimPrefix(r.GRPC.Method, "/"), "/")
	if _, err := UnaryMethod(files, protoreflect.FullName(name), protoreflect.Name(method)); err != nil {
		l.add(join(p, "grpc.method"), "service %q's descriptor set: %v", svc.Name, err)
	}
}

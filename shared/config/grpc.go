package config

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
)

// descriptorMethods lists the unary methods ("pkg.Service/Method") a
// serialized FileDescriptorSet declares. The control plane checks routes
// against it so that a method missing from the set is refused at write
// time; linking the files (imports, types) is left to the data plane.
func descriptorMethods(set []byte) (map[string]bool, error) {
	var fds descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(set, &fds); err != nil {
		return nil, fmt.Errorf("not a serialized google.protobuf.FileDescriptorSet: %v", err)
	}
	if len(fds.File) == 0 {
		return nil, fmt.Errorf("the descriptor set holds no file")
	}
	methods := map[string]bool{}
	for _, f := range fds.File {
		for _, s := range f.Service {
			name := s.GetName()
			if pkg := f.GetPackage(); pkg != "" {
				name = pkg + "." + name
			}
			for _, m := range s.Method {
				if !m.GetClientStreaming() && !m.GetServerStreaming() {
					methods[name+"/"+m.GetName()] = true
				}
			}
		}
	}
	return methods, nil
}

// checkGRPCMethod checks a route's method against its service's descriptor
// set, when it has one.
func checkGRPCMethod(l *errorList, p string, r *Route, svc *Service) {
	if r.GRPC == nil || svc.GRPC == nil || len(svc.GRPC.DescriptorSet) == 0 {
		return
	}
	methods, err := descriptorMethods(svc.GRPC.DescriptorSet)
	if err != nil {
		return // reported on the service
	}
	if !methods[strings.TrimPrefix(r.GRPC.Method, "/")] {
		l.add(join(p, "grpc.method"), "service %q's descriptor set has no unary method %s", svc.Name, r.GRPC.Method)
	}
}

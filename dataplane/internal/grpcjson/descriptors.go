package grpcjson

import (
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	rpbalpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/portico-gw/portico/shared/config"
)

// methodDesc is what a call needs to know about a method's messages.
type methodDesc struct {
	in, out protoreflect.MessageDescriptor
	// types resolves google.protobuf.Any payloads, in the messages and
	// in status details: the service's own types first, then those linked
	// into the binary (google.rpc error details among them).
	types     resolver
	unmarshal protojson.UnmarshalOptions
	marshal   protojson.MarshalOptions
}

// errMethodNotFound means the server (or descriptor set) does not define the
// method. In reflection mode it is not cached: the server may be upgraded.
var errMethodNotFound = config.ErrMethodNotFound

// errNoReflection means the server offers neither reflection version.
var errNoReflection = errors.New("the server offers no gRPC reflection service (v1 or v1alpha); configure a descriptor set for this service")

// describe finds service/method in files and checks it is unary, with the
// function the control plane validates routes with.
func describe(files *protoregistry.Files, service protoreflect.FullName, method protoreflect.Name) (*methodDesc, error) {
	md, err := config.UnaryMethod(files, service, method)
	if err != nil {
		return nil, err
	}
	r := resolver{dynamicpb.NewTypes(files), protoregistry.GlobalTypes}
	return &methodDesc{
		in:        md.Input(),
		out:       md.Output(),
		types:     r,
		unmarshal: protojson.UnmarshalOptions{Resolver: r},
		marshal:   protojson.MarshalOptions{Resolver: r},
	}, nil
}

// parseDescriptorSet builds a registry from a serialized FileDescriptorSet
// with the function the control plane validates the set with.
func parseDescriptorSet(b []byte) (*protoregistry.Files, error) { return config.ParseDescriptorSet(b) }

// buildFiles links fds into a registry (config.LinkDescriptors). fetch, when
// not nil, is asked for imports that are missing, before the binary's own
// registry.
func buildFiles(fds []*descriptorpb.FileDescriptorProto, fetch func(name string) ([]*descriptorpb.FileDescriptorProto, error)) (*protoregistry.Files, error) {
	return config.LinkDescriptors(fds, fetch)
}

// reflectionStream is the part of a reflection stream fetchReflection uses,
// in v1 message types whatever version the server speaks.
type reflectionStream interface {
	Send(*rpb.ServerReflectionRequest) error
	Recv() (*rpb.ServerReflectionResponse, error)
}

// alphaStream adapts a v1alpha stream. Both versions have the same wire
// format, so converting is a marshal and an unmarshal.
type alphaStream struct {
	//lint:ignore SA1019 v1alpha is the fallback for servers that only offer it
	s grpc.BidiStreamingClient[rpbalpha.ServerReflectionRequest, rpbalpha.ServerReflectionResponse]
}

func (a alphaStream) Send(req *rpb.ServerReflectionRequest) error {
	b, err := proto.Marshal(req)
	if err != nil {
		return err
	}
	//lint:ignore SA1019 v1alpha is the fallback for servers that only offer it
	var ar rpbalpha.ServerReflectionRequest
	if err := proto.Unmarshal(b, &ar); err != nil {
		return err
	}
	return a.s.Send(&ar)
}

func (a alphaStream) Recv() (*rpb.ServerReflectionResponse, error) {
	ar, err := a.s.Recv()
	if err != nil {
		return nil, err
	}
	b, err := proto.Marshal(ar)
	if err != nil {
		return nil, err
	}
	var r rpb.ServerReflectionResponse
	if err := proto.Unmarshal(b, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// fetchReflection learns the file defining service and its imports from
// the server's reflection service, v1 first, then v1alpha. Returned errors
// are gRPC status errors when the server or the connection failed.
func fetchReflection(ctx context.Context, conn grpc.ClientConnInterface, service protoreflect.FullName) (*protoregistry.Files, error) {
	files, err := fetchReflectionVersion(ctx, conn, service, false)
	if status.Code(err) == codes.Unimplemented {
		files, err = fetchReflectionVersion(ctx, conn, service, true)
		if status.Code(err) == codes.Unimplemented {
			return nil, errNoReflection
		}
	}
	return files, err
}

func fetchReflectionVersion(ctx context.Context, conn grpc.ClientConnInterface, service protoreflect.FullName, alpha bool) (*protoregistry.Files, error) {
	// Cancelling the context is what ends the stream on both sides.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var s reflectionStream
	if alpha {
		as, err := rpbalpha.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
		if err != nil {
			return nil, err
		}
		s = alphaStream{as}
	} else {
		vs, err := rpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
		if err != nil {
			return nil, err
		}
		s = vs
	}
	ask := func(req *rpb.ServerReflectionRequest) ([]*descriptorpb.FileDescriptorProto, error) {
		if err := s.Send(req); err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		// On io.EOF from Send the real status comes from Recv.
		resp, err := s.Recv()
		if err != nil {
			return nil, err
		}
		if e := resp.GetErrorResponse(); e != nil {
			if codes.Code(e.GetErrorCode()) == codes.NotFound {
				return nil, nil
			}
			return nil, status.Error(codes.Code(e.GetErrorCode()), "reflection: "+e.GetErrorMessage())
		}
		raw := resp.GetFileDescriptorResponse().GetFileDescriptorProto()
		out := make([]*descriptorpb.FileDescriptorProto, 0, len(raw))
		for _, b := range raw {
			fd := new(descriptorpb.FileDescriptorProto)
			if err := proto.Unmarshal(b, fd); err != nil {
				return nil, fmt.Errorf("reflection sent an invalid file descriptor: %w", err)
			}
			out = append(out, fd)
		}
		return out, nil
	}
	first, err := ask(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: string(service)}})
	if err != nil {
		return nil, err
	}
	if len(first) == 0 {
		return nil, fmt.Errorf("service %s: %w", service, errMethodNotFound)
	}
	return buildFiles(first, func(name string) ([]*descriptorpb.FileDescriptorProto, error) {
		return ask(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_FileByFilename{FileByFilename: name}})
	})
}

// globalTypes resolves only the types linked into the binary, for statuses
// that arrive before the service's descriptors are known.
var globalTypes = resolver{protoregistry.GlobalTypes, protoregistry.GlobalTypes}

// resolver looks types up in a, then b.
type resolver struct {
	a, b interface {
		protoregistry.MessageTypeResolver
		protoregistry.ExtensionTypeResolver
	}
}

func (r resolver) FindMessageByName(n protoreflect.FullName) (protoreflect.MessageType, error) {
	if t, err := r.a.FindMessageByName(n); err == nil {
		return t, nil
	}
	return r.b.FindMessageByName(n)
}

func (r resolver) FindMessageByURL(url string) (protoreflect.MessageType, error) {
	if t, err := r.a.FindMessageByURL(url); err == nil {
		return t, nil
	}
	return r.b.FindMessageByURL(url)
}

func (r resolver) FindExtensionByName(n protoreflect.FullName) (protoreflect.ExtensionType, error) {
	if t, err := r.a.FindExtensionByName(n); err == nil {
		return t, nil
	}
	return r.b.FindExtensionByName(n)
}

func (r resolver) FindExtensionByNumber(m protoreflect.FullName, n protoreflect.FieldNumber) (protoreflect.ExtensionType, error) {
	if t, err := r.a.FindExtensionByNumber(m, n); err == nil {
		return t, nil
	}
	return r.b.FindExtensionByNumber(m, n)
}

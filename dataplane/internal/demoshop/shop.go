// Package demoshop is a small gRPC service, shop.v1.Orders, served with
// dynamic messages and gRPC server reflection. It is the real gRPC server
// of the JSON-to-gRPC tests and of cmd/demo-grpc; nothing in the gateway
// depends on it.
package demoshop

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	rpbalpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// FileProto is the demo service's file, built in Go (there is no protoc
// here), as protoc would describe:
//
//	package shop.v1;
//	import "google/protobuf/timestamp.proto";
//	enum Status { STATUS_UNSPECIFIED = 0; OPEN = 1; SHIPPED = 2; }
//	message Filter { string status = 1; int64 min_total = 2; Filter next = 3; }
//	message GetOrderRequest {
//	  string id = 1; int32 version = 2; repeated string fields = 3;
//	  Filter filter = 4; bool include_items = 5; Status state = 6;
//	  double min_score = 7; bytes token = 8; google.protobuf.Timestamp since = 9;
//	  map<string,string> labels = 10; uint32 limit = 11; repeated int64 ids = 12;
//	}
//	message Item { string sku = 1; int32 quantity = 2; }
//	message Order { string id = 1; string status = 2; int64 total_cents = 3; repeated Item items = 4; }
//	service Orders {
//	  rpc GetOrder(GetOrderRequest) returns (Order);
//	  rpc CreateOrder(Order) returns (Order);
//	  rpc WatchOrders(GetOrderRequest) returns (stream Order);
//	  rpc CancelOrder(GetOrderRequest) returns (Order); // only with withCancel
//	}
func FileProto(withCancel bool) *descriptorpb.FileDescriptorProto {
	type F = descriptorpb.FieldDescriptorProto
	opt := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()
	rep := descriptorpb.FieldDescriptorProto_LABEL_REPEATED.Enum()
	field := func(name string, num int32, label *descriptorpb.FieldDescriptorProto_Label, typ descriptorpb.FieldDescriptorProto_Type, typeName string) *F {
		f := &F{Name: proto.String(name), Number: proto.Int32(num), Label: label, Type: typ.Enum(), JsonName: proto.String(jsonName(name))}
		if typeName != "" {
			f.TypeName = proto.String(typeName)
		}
		return f
	}
	T := descriptorpb.FieldDescriptorProto_Type_value
	ty := func(s string) descriptorpb.FieldDescriptorProto_Type {
		return descriptorpb.FieldDescriptorProto_Type(T["TYPE_"+s])
	}
	methods := []*descriptorpb.MethodDescriptorProto{
		{Name: proto.String("GetOrder"), InputType: proto.String(".shop.v1.GetOrderRequest"), OutputType: proto.String(".shop.v1.Order")},
		{Name: proto.String("CreateOrder"), InputType: proto.String(".shop.v1.Order"), OutputType: proto.String(".shop.v1.Order")},
		{Name: proto.String("WatchOrders"), InputType: proto.String(".shop.v1.GetOrderRequest"), OutputType: proto.String(".shop.v1.Order"), ServerStreaming: proto.Bool(true)},
	}
	if withCancel {
		methods = append(methods, &descriptorpb.MethodDescriptorProto{Name: proto.String("CancelOrder"), InputType: proto.String(".shop.v1.GetOrderRequest"), OutputType: proto.String(".shop.v1.Order")})
	}
	return &descriptorpb.FileDescriptorProto{
		Name:       proto.String("shop/v1/shop.proto"),
		Package:    proto.String("shop.v1"),
		Syntax:     proto.String("proto3"),
		Dependency: []string{"google/protobuf/timestamp.proto"},
		EnumType: []*descriptorpb.EnumDescriptorProto{{
			Name: proto.String("Status"),
			Value: []*descriptorpb.EnumValueDescriptorProto{
				{Name: proto.String("STATUS_UNSPECIFIED"), Number: proto.Int32(0)},
				{Name: proto.String("OPEN"), Number: proto.Int32(1)},
				{Name: proto.String("SHIPPED"), Number: proto.Int32(2)},
			},
		}},
		MessageType: []*descriptorpb.DescriptorProto{
			{Name: proto.String("Filter"), Field: []*F{
				field("status", 1, opt, ty("STRING"), ""),
				field("min_total", 2, opt, ty("INT64"), ""),
				field("next", 3, opt, ty("MESSAGE"), ".shop.v1.Filter"),
			}},
			{
				Name: proto.String("GetOrderRequest"),
				Field: []*F{
					field("id", 1, opt, ty("STRING"), ""),
					field("version", 2, opt, ty("INT32"), ""),
					field("fields", 3, rep, ty("STRING"), ""),
					field("filter", 4, opt, ty("MESSAGE"), ".shop.v1.Filter"),
					field("include_items", 5, opt, ty("BOOL"), ""),
					field("state", 6, opt, ty("ENUM"), ".shop.v1.Status"),
					field("min_score", 7, opt, ty("DOUBLE"), ""),
					field("token", 8, opt, ty("BYTES"), ""),
					field("since", 9, opt, ty("MESSAGE"), ".google.protobuf.Timestamp"),
					field("labels", 10, rep, ty("MESSAGE"), ".shop.v1.GetOrderRequest.LabelsEntry"),
					field("limit", 11, opt, ty("UINT32"), ""),
					field("ids", 12, rep, ty("INT64"), ""),
				},
				NestedType: []*descriptorpb.DescriptorProto{{
					Name:    proto.String("LabelsEntry"),
					Field:   []*F{field("key", 1, opt, ty("STRING"), ""), field("value", 2, opt, ty("STRING"), "")},
					Options: &descriptorpb.MessageOptions{MapEntry: proto.Bool(true)},
				}},
			},
			{Name: proto.String("Item"), Field: []*F{
				field("sku", 1, opt, ty("STRING"), ""),
				field("quantity", 2, opt, ty("INT32"), ""),
			}},
			{Name: proto.String("Order"), Field: []*F{
				field("id", 1, opt, ty("STRING"), ""),
				field("status", 2, opt, ty("STRING"), ""),
				field("total_cents", 3, opt, ty("INT64"), ""),
				field("items", 4, rep, ty("MESSAGE"), ".shop.v1.Item"),
			}},
		},
		Service: []*descriptorpb.ServiceDescriptorProto{{Name: proto.String("Orders"), Method: methods}},
	}
}

func jsonName(s string) string {
	parts := strings.Split(s, "_")
	for i := 1; i < len(parts); i++ {
		if parts[i] != "" {
			parts[i] = strings.ToUpper(parts[i][:1]) + parts[i][1:]
		}
	}
	return strings.Join(parts, "")
}

// Files is a registry holding the service's file and its import.
func Files(withCancel bool) (*protoregistry.Files, protoreflect.FileDescriptor, error) {
	files := new(protoregistry.Files)
	if err := files.RegisterFile(timestamppb.File_google_protobuf_timestamp_proto); err != nil {
		return nil, nil, err
	}
	fd, err := protodesc.NewFile(FileProto(withCancel), files)
	if err != nil {
		return nil, nil, fmt.Errorf("shop.proto: %w", err)
	}
	if err := files.RegisterFile(fd); err != nil {
		return nil, nil, err
	}
	return files, fd, nil
}

// DescriptorSet is what `protoc --include_imports -o` would write.
func DescriptorSet() ([]byte, error) {
	return proto.Marshal(&descriptorpb.FileDescriptorSet{File: []*descriptorpb.FileDescriptorProto{
		protodesc.ToFileDescriptorProto(timestamppb.File_google_protobuf_timestamp_proto),
		FileProto(false),
	}})
}

// Reflection says which reflection services the server offers.
type Reflection int

const (
	ReflectV1 Reflection = iota
	ReflectV1Alpha
	ReflectNone
)

// Options configure Register.
type Options struct {
	Reflection Reflection
	// WithCancel adds the CancelOrder method (a "new version" of the
	// service, for reflection refresh tests).
	WithCancel bool
	// OnCall, when set, sees the incoming metadata of every call.
	OnCall func(md metadata.MD)
}

// Register adds shop.v1.Orders (and reflection) to srv. GetOrder answers
// id "missing" with NotFound, "bad" with InvalidArgument and a BadRequest
// detail, "unavailable" with Unavailable; anything else with an order whose
// status echoes what the request carried.
func Register(srv *grpc.Server, o Options) error {
	files, fd, err := Files(o.WithCancel)
	if err != nil {
		return err
	}
	svc := fd.Services().ByName("Orders")
	unary := func(name string, h func(ctx context.Context, in *dynamicpb.Message) (proto.Message, error)) grpc.MethodDesc {
		md := svc.Methods().ByName(protoreflect.Name(name))
		return grpc.MethodDesc{MethodName: name, Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			in := dynamicpb.NewMessage(md.Input())
			if err := dec(in); err != nil {
				return nil, err
			}
			if o.OnCall != nil {
				inMD, _ := metadata.FromIncomingContext(ctx)
				o.OnCall(inMD)
			}
			return h(ctx, in)
		}}
	}
	order := fd.Messages().ByName("Order")
	get := func(ctx context.Context, in *dynamicpb.Message) (proto.Message, error) {
		f := in.Descriptor().Fields()
		id := in.Get(f.ByName("id")).String()
		switch id {
		case "missing":
			return nil, status.Errorf(codes.NotFound, "order %s not found", id)
		case "bad":
			st, err := status.New(codes.InvalidArgument, "invalid order id").WithDetails(&errdetails.BadRequest{
				FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "id", Description: "must not be bad"}},
			})
			if err != nil {
				return nil, err
			}
			return nil, st.Err()
		case "unavailable":
			return nil, status.Error(codes.Unavailable, "draining")
		}
		_ = grpc.SetHeader(ctx, metadata.Pairs("x-served-by", "shop-test", "x-sig-bin", "\x00\x01"))
		_ = grpc.SetTrailer(ctx, metadata.Pairs("x-cost", "3"))
		var parts []string
		parts = append(parts, "v"+strconv.Itoa(int(in.Get(f.ByName("version")).Int())))
		l := in.Get(f.ByName("fields")).List()
		for i := 0; i < l.Len(); i++ {
			parts = append(parts, l.Get(i).String())
		}
		if st := in.Get(f.ByName("filter")).Message().Get(f.ByName("filter").Message().Fields().ByName("status")).String(); st != "" {
			parts = append(parts, "filter="+st)
		}
		out := dynamicpb.NewMessage(order)
		of := order.Fields()
		out.Set(of.ByName("id"), protoreflect.ValueOfString(id))
		out.Set(of.ByName("status"), protoreflect.ValueOfString(strings.Join(parts, ",")))
		out.Set(of.ByName("total_cents"), protoreflect.ValueOfInt64(1234))
		return out, nil
	}
	create := func(_ context.Context, in *dynamicpb.Message) (proto.Message, error) {
		of := order.Fields()
		in.Set(of.ByName("status"), protoreflect.ValueOfString("created"))
		return in, nil
	}
	methods := []grpc.MethodDesc{unary("GetOrder", get), unary("CreateOrder", create)}
	if o.WithCancel {
		methods = append(methods, unary("CancelOrder", func(ctx context.Context, in *dynamicpb.Message) (proto.Message, error) {
			out := dynamicpb.NewMessage(order)
			out.Set(order.Fields().ByName("status"), protoreflect.ValueOfString("cancelled"))
			return out, nil
		}))
	}
	srv.RegisterService(&grpc.ServiceDesc{
		ServiceName: "shop.v1.Orders",
		HandlerType: (*any)(nil),
		Methods:     methods,
		Metadata:    "shop/v1/shop.proto",
	}, struct{}{})
	ro := reflection.ServerOptions{Services: srv, DescriptorResolver: files}
	switch o.Reflection {
	case ReflectV1:
		rpb.RegisterServerReflectionServer(srv, reflection.NewServerV1(ro))
	case ReflectV1Alpha:
		rpbalpha.RegisterServerReflectionServer(srv, reflection.NewServer(ro))
	}
	return nil
}

// RegisterReflectionV1Alpha adds the v1alpha reflection service next to v1
// (Register offers one of them).
func RegisterReflectionV1Alpha(srv *grpc.Server) error {
	files, _, err := Files(false)
	if err != nil {
		return err
	}
	rpbalpha.RegisterServerReflectionServer(srv, reflection.NewServer(reflection.ServerOptions{Services: srv, DescriptorResolver: files}))
	return nil
}

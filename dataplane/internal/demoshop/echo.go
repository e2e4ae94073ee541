package demoshop

import (
	"context"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// EchoService is what RegisterEcho serves: grpc-go's interop
// grpc.testing.TestService (generated code shipped with grpc-go), with
// the four kinds of call, for gRPC pass-through (a route to the service
// without a method passes gRPC clients' calls through as they are).
const EchoService = "grpc.testing.TestService"

// RegisterEcho registers an echo implementation of grpc.testing.TestService
// on srv, and the gRPC health service (SERVING for the server and for
// EchoService):
//
//   - UnaryCall and FullDuplexCall echo each payload; StreamingOutputCall
//     sends one message per response_parameters entry, of its size;
//     StreamingInputCall answers the total payload size received;
//   - a request's response_status ends the call with that status;
//   - the "x-echo" metadata comes back in the response header, and every
//     call ends with the trailer "x-trailer: done";
//   - a payload "block" waits until the call's context ends (its deadline,
//     a cancellation).
func RegisterEcho(srv *grpc.Server) {
	testgrpc.RegisterTestServiceServer(srv, echo{})
	h := health.NewServer()
	h.SetServingStatus(EchoService, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, h)
}

type echo struct {
	testgrpc.UnimplementedTestServiceServer
}

func begin(ctx context.Context) {
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get("x-echo"); len(v) > 0 {
			_ = grpc.SetHeader(ctx, metadata.Pairs("x-echo", v[0]))
		}
	}
	_ = grpc.SetTrailer(ctx, metadata.Pairs("x-trailer", "done"))
}

func statusOf(st *testgrpc.EchoStatus) error {
	if st == nil {
		return nil
	}
	return status.Error(codes.Code(st.GetCode()), st.GetMessage())
}

func blocked(ctx context.Context, p *testgrpc.Payload) error {
	if string(p.GetBody()) != "block" {
		return nil
	}
	<-ctx.Done()
	return status.FromContextError(ctx.Err()).Err()
}

func (echo) EmptyCall(ctx context.Context, _ *testgrpc.Empty) (*testgrpc.Empty, error) {
	begin(ctx)
	return &testgrpc.Empty{}, nil
}

func (echo) UnaryCall(ctx context.Context, in *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	begin(ctx)
	if err := blocked(ctx, in.GetPayload()); err != nil {
		return nil, err
	}
	if err := statusOf(in.GetResponseStatus()); err != nil {
		return nil, err
	}
	return &testgrpc.SimpleResponse{Payload: in.GetPayload()}, nil
}

func (echo) StreamingOutputCall(in *testgrpc.StreamingOutputCallRequest, stream grpc.ServerStreamingServer[testgrpc.StreamingOutputCallResponse]) error {
	begin(stream.Context())
	for _, p := range in.GetResponseParameters() {
		body := make([]byte, p.GetSize())
		if err := stream.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: body}}); err != nil {
			return err
		}
	}
	return statusOf(in.GetResponseStatus())
}

func (echo) StreamingInputCall(stream grpc.ClientStreamingServer[testgrpc.StreamingInputCallRequest, testgrpc.StreamingInputCallResponse]) error {
	begin(stream.Context())
	var n int32
	for {
		in, err := stream.Recv()
		if err == io.EOF {
			return stream.SendAndClose(&testgrpc.StreamingInputCallResponse{AggregatedPayloadSize: n})
		}
		if err != nil {
			return err
		}
		n += int32(len(in.GetPayload().GetBody()))
	}
}

func (echo) FullDuplexCall(stream grpc.BidiStreamingServer[testgrpc.StreamingOutputCallRequest, testgrpc.StreamingOutputCallResponse]) error {
	begin(stream.Context())
	for {
		in, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := statusOf(in.GetResponseStatus()); err != nil {
			return err
		}
		if err := blocked(stream.Context(), in.GetPayload()); err != nil {
			return err
		}
		if err := stream.Send(&testgrpc.StreamingOutputCallResponse{Payload: in.GetPayload()}); err != nil {
			return err
		}
	}
}

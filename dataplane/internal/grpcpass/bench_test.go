package grpcpass_test

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
)

// BenchmarkUnary: one small unary call, straight to the server and through
// the gateway's h2c listener (the same grpc-go client and server): what
// the pass-through adds per call.
func BenchmarkUnary(b *testing.B) {
	srv := startEcho(b)
	g := newGateway(b, passConfig(nil, nil, srv.addr))
	for _, tc := range []struct{ name, addr string }{{"direct", srv.addr}, {"gateway", g.h2cAddr}} {
		b.Run(tc.name, func(b *testing.B) {
			cc, err := grpc.NewClient("passthrough:///"+tc.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				b.Fatal(err)
			}
			defer cc.Close()
			c := testgrpc.NewTestServiceClient(cc)
			req := &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: make([]byte, 128)}}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := c.UnaryCall(context.Background(), req); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkBidiMessage: one message echoed on an open bidirectional
// stream (send, then receive the echo), straight and through the gateway.
func BenchmarkBidiMessage(b *testing.B) {
	srv := startEcho(b)
	g := newGateway(b, passConfig(nil, nil, srv.addr))
	for _, tc := range []struct{ name, addr string }{{"direct", srv.addr}, {"gateway", g.h2cAddr}} {
		b.Run(tc.name, func(b *testing.B) {
			cc, err := grpc.NewClient("passthrough:///"+tc.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				b.Fatal(err)
			}
			defer cc.Close()
			stream, err := testgrpc.NewTestServiceClient(cc).FullDuplexCall(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			msg := &testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: make([]byte, 128)}}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if err := stream.Send(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := stream.Recv(); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			_ = stream.CloseSend()
		})
	}
}

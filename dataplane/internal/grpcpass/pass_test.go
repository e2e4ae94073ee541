package grpcpass_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/portico-gw/portico/shared/config"
)

// TestPassThrough: every kind of call reaches a real gRPC server through
// the data plane and comes back whole, over h2c and over TLS: messages,
// header and trailer metadata (binary too), statuses with details, the
// deadline, and a client's cancellation reaching the server.
func TestPassThrough(t *testing.T) {
	srv := startEcho(t)
	g := newGateway(t, passConfig(nil, nil, srv.addr))
	for _, secure := range []bool{false, true} {
		name := "h2c"
		if secure {
			name = "tls"
		}
		t.Run(name, func(t *testing.T) {
			c := g.client(t, secure)
			t.Run("unary with metadata and trailers", func(t *testing.T) {
				ctx := metadata.AppendToOutgoingContext(context.Background(), "x-echo", "hello", "x-echo-bin", string([]byte{0, 1, 2, 255}),
					"x-consumer-name", "forged")
				var hdr, trl metadata.MD
				resp, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("ping")}}, grpc.Header(&hdr), grpc.Trailer(&trl))
				if err != nil {
					t.Fatal(err)
				}
				if string(resp.GetPayload().GetBody()) != "ping" {
					t.Errorf("payload %q", resp.GetPayload().GetBody())
				}
				if got := hdr.Get("x-echo"); len(got) != 1 || got[0] != "hello" {
					t.Errorf("header metadata x-echo = %v", got)
				}
				if got := hdr.Get("x-echo-bin"); len(got) != 1 || got[0] != string([]byte{0, 1, 2, 255}) {
					t.Errorf("binary header metadata = %q", got)
				}
				if got := trl.Get("x-trailer"); len(got) != 1 || got[0] != "done" {
					t.Errorf("trailer metadata = %v", got)
				}
				md := srv.lastMD()
				if got := md.Get("x-consumer-name"); len(got) != 0 {
					t.Errorf("a client-sent identity header reached the service: %v", got)
				}
				if got := md.Get("x-forwarded-for"); len(got) != 1 || got[0] != "127.0.0.1" {
					t.Errorf("x-forwarded-for = %v", got)
				}
				if left := srv.lastDeadline(); left != 0 {
					t.Errorf("a call without deadline arrived with %s left", left)
				}
			})
			t.Run("status with details", func(t *testing.T) {
				_, err := c.UnaryCall(context.Background(), &testgrpc.SimpleRequest{ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.FailedPrecondition), Message: "not now: ünïcode 100%"}})
				st := status.Convert(err)
				if st.Code() != codes.FailedPrecondition || st.Message() != "not now: ünïcode 100%" {
					t.Fatalf("status %v %q", st.Code(), st.Message())
				}
				if d := st.Details(); len(d) != 1 || d[0].(*errdetails.ErrorInfo).GetReason() != "ASKED" {
					t.Errorf("details %v", d)
				}
			})
			t.Run("server streaming", func(t *testing.T) {
				stream, err := c.StreamingOutputCall(context.Background(), &testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 1}, {Size: 70000}, {Size: 3}}})
				if err != nil {
					t.Fatal(err)
				}
				var sizes []int
				for {
					m, err := stream.Recv()
					if err == io.EOF {
						break
					}
					if err != nil {
						t.Fatal(err)
					}
					sizes = append(sizes, len(m.GetPayload().GetBody()))
				}
				if len(sizes) != 3 || sizes[0] != 1 || sizes[1] != 70000 || sizes[2] != 3 {
					t.Errorf("messages of sizes %v", sizes)
				}
				if got := stream.Trailer().Get("x-trailer"); len(got) != 1 {
					t.Errorf("trailer after a stream: %v", stream.Trailer())
				}
			})
			t.Run("server streaming ends with a status", func(t *testing.T) {
				stream, err := c.StreamingOutputCall(context.Background(), &testgrpc.StreamingOutputCallRequest{
					ResponseParameters: []*testgrpc.ResponseParameters{{Size: 5}},
					ResponseStatus:     &testgrpc.EchoStatus{Code: int32(codes.Aborted), Message: "stopped"}})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := stream.Recv(); err != nil {
					t.Fatal(err)
				}
				_, err = stream.Recv()
				if st := status.Convert(err); st.Code() != codes.Aborted || st.Message() != "stopped" {
					t.Errorf("status after a message: %v", err)
				}
			})
			t.Run("client streaming", func(t *testing.T) {
				stream, err := c.StreamingInputCall(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				for _, n := range []int{10, 100000, 1} {
					if err := stream.Send(&testgrpc.StreamingInputCallRequest{Payload: &testgrpc.Payload{Body: bytes.Repeat([]byte("y"), n)}}); err != nil {
						t.Fatal(err)
					}
				}
				resp, err := stream.CloseAndRecv()
				if err != nil {
					t.Fatal(err)
				}
				if resp.GetAggregatedPayloadSize() != 100011 {
					t.Errorf("aggregated %d", resp.GetAggregatedPayloadSize())
				}
			})
			t.Run("bidirectional, one message at a time", func(t *testing.T) {
				// Each answer must arrive before the next message is sent:
				// nothing in the gateway may buffer a stream.
				stream, err := c.FullDuplexCall(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				for _, msg := range []string{"one", "two", "three"} {
					if err := stream.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte(msg)}}); err != nil {
						t.Fatal(err)
					}
					m, err := stream.Recv()
					if err != nil {
						t.Fatal(err)
					}
					if string(m.GetPayload().GetBody()) != msg {
						t.Fatalf("echo %q, want %q", m.GetPayload().GetBody(), msg)
					}
				}
				if err := stream.CloseSend(); err != nil {
					t.Fatal(err)
				}
				if _, err := stream.Recv(); err != io.EOF {
					t.Fatalf("end of stream: %v", err)
				}
			})
			t.Run("deadline reaches the server", func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if _, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{}); err != nil {
					t.Fatal(err)
				}
				if left := srv.lastDeadline(); left <= 0 || left > 5*time.Second {
					t.Errorf("the server's deadline: %s left of 5s", left)
				}
			})
			t.Run("cancellation reaches the server", func(t *testing.T) {
				ctx, cancel := context.WithCancel(context.Background())
				stream, err := c.FullDuplexCall(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if err := stream.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte("first")}}); err != nil {
					t.Fatal(err)
				}
				if _, err := stream.Recv(); err != nil {
					t.Fatal(err)
				}
				if err := stream.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte(bodyBlock)}}); err != nil {
					t.Fatal(err)
				}
				srv.awaitBlocked(t)
				// The server is blocked in the call; the client gives up.
				// Its Recv must return (the cancellation) and the server's
				// context must end with Canceled.
				cancel()
				if _, err := stream.Recv(); codeOf(t, err) != codes.Canceled {
					t.Errorf("client: %v", err)
				}
				if err := srv.awaitEnd(t); !errors.Is(err, context.Canceled) {
					t.Errorf("the server's call ended with %v, want context.Canceled", err)
				}
			})
		})
	}
}

// TestDeadlines: the route's timeout caps the deadline the service gets
// and ends the call at the gateway (DEADLINE_EXCEEDED) when it passes.
func TestDeadlines(t *testing.T) {
	srv := startEcho(t)
	g := newGateway(t, passConfig(func(r *config.Route) { r.Timeout = config.Duration(300 * time.Millisecond) }, nil, srv.addr))
	c := g.client(t, false)

	// A client without a deadline gets the route's.
	if _, err := c.UnaryCall(context.Background(), &testgrpc.SimpleRequest{}); err != nil {
		t.Fatal(err)
	}
	if left := srv.lastDeadline(); left <= 0 || left > 300*time.Millisecond {
		t.Errorf("no client deadline: the server had %s left, want (0, 300ms]", left)
	}
	// A longer one is cut to it.
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	if _, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{}); err != nil {
		t.Fatal(err)
	}
	if left := srv.lastDeadline(); left <= 0 || left > 300*time.Millisecond {
		t.Errorf("a client deadline of 1h: the server had %s left, want (0, 300ms]", left)
	}
	// A call that outlives it is ended by the gateway, which the server
	// sees; the client, which set no deadline, learns it from the gateway.
	_, err := c.UnaryCall(context.Background(), &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte(bodyBlock)}})
	if codeOf(t, err) != codes.DeadlineExceeded {
		t.Errorf("client: %v", err)
	}
	srv.awaitBlocked(t)
	if err := srv.awaitEnd(t); !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		t.Errorf("server: %v", err)
	}
	// The same mid-stream, after the answer started: the status comes in
	// the trailers.
	stream, err := c.FullDuplexCall(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte("a")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	_ = stream.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte(bodyBlock)}})
	if _, err := stream.Recv(); codeOf(t, err) != codes.DeadlineExceeded {
		t.Errorf("mid-stream: %v", err)
	}
	srv.awaitBlocked(t)
	srv.awaitEnd(t)
}

// TestNotGRPC: the route takes gRPC calls only; an HTTP client gets a
// problem it can read, not a gRPC status.
func TestNotGRPC(t *testing.T) {
	srv := startEcho(t)
	g := newGateway(t, passConfig(nil, nil, srv.addr))
	resp, err := http.Post("http://"+g.h2cAddr+"/grpc.testing.TestService/UnaryCall", "application/json", bytes.NewReader([]byte("{}")))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusUnsupportedMediaType || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("%d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if srv.calls.Load() != 0 {
		t.Error("the call reached the service")
	}
}

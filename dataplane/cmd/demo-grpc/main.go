// Command demo-grpc is a small gRPC microservice for trying Portico's
// JSON-to-gRPC translation and gRPC pass-through, and for end-to-end tests:
// shop.v1.Orders (see internal/demoshop) with gRPC server reflection, so a
// route only needs the method name, and grpc.testing.TestService with
// grpc.health.v1 (demoshop.RegisterEcho) for pass-through routes.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/grpc"

	"github.com/portico-gw/portico/dataplane/internal/demoshop"
	"github.com/portico-gw/portico/shared/cli"
	"github.com/portico-gw/portico/shared/envflag"
)

func main() { cli.Main("demo-grpc", run) }

func run(args []string) error {
	fs := envflag.New("demo-grpc")
	listen := fs.String("listen", "DEMO_GRPC_LISTEN", "127.0.0.1:9090", "address to listen on (plaintext HTTP/2)")
	reflect := fs.Bool("reflection", "DEMO_GRPC_REFLECTION", true, "serve gRPC server reflection (v1 and v1alpha)")
	healthListen := fs.String("health-listen", "DEMO_GRPC_HEALTH_LISTEN", "", "also answer GET /healthz over HTTP/1.1 here (for container health checks: demo-grpc probe URL); empty: off")
	descriptors := fs.String("write-descriptor-set", "DEMO_GRPC_WRITE_DESCRIPTOR_SET", "", "write the service's FileDescriptorSet to this file and exit (for services configured without reflection)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *descriptors != "" {
		set, err := demoshop.DescriptorSet()
		if err != nil {
			return err
		}
		return os.WriteFile(*descriptors, set, 0o644)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := grpc.NewServer()
	mode := demoshop.ReflectNone
	if *reflect {
		mode = demoshop.ReflectV1
	}
	if err := demoshop.Register(srv, demoshop.Options{Reflection: mode}); err != nil {
		return err
	}
	// grpc.testing.TestService (all four kinds of call) and grpc.health.v1,
	// for gRPC pass-through routes.
	demoshop.RegisterEcho(srv)
	if *reflect {
		// Older clients ask v1alpha; serve both.
		if err := demoshop.RegisterReflectionV1Alpha(srv); err != nil {
			return err
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *healthListen != "" {
		hs := &http.Server{Addr: *healthListen, ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/healthz" {
				http.NotFound(w, r)
				return
			}
			_, _ = w.Write([]byte("ok\n"))
		})}
		go func() {
			if err := hs.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				fmt.Fprintf(os.Stderr, "demo-grpc: health listener: %v\n", err)
				stop()
			}
		}()
		defer hs.Close()
	}
	go func() {
		<-ctx.Done()
		srv.GracefulStop()
	}()
	fmt.Fprintf(os.Stderr, "demo-grpc: shop.v1.Orders and %s on %s (reflection %v)\n", demoshop.EchoService, ln.Addr(), *reflect)
	return srv.Serve(ln)
}

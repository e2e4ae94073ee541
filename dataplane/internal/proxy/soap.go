package proxy

import (
	"github.com/portico-gw/portico/dataplane/internal/soap"
	"github.com/portico-gw/portico/dataplane/internal/stage"
	"github.com/portico-gw/portico/shared/config"
)

// compileSOAP compiles the SOAP stage of a route that names an operation
// (nil otherwise). An operation that does not compile (the WSDL changed,
// the port is gone) rejects the route: it answers 503 config-rejected
// rather than fall through to the reverse proxy.
func (c *routeCompiler) compileSOAP(r *config.Route) stage.Stage {
	if r.SOAP == nil || c.rt.Upstream == nil {
		return nil
	}
	svc, ok := c.cfg.Service(r.Service)
	if !ok {
		return nil
	}
	g, err := soap.Compile(r, svc, c.rt.Upstream, c.rt.Timeout)
	if err != nil {
		if c.rt.rejected == "" {
			c.rt.rejected = err.Error()
			c.t.reject(config.KindRoute, r.Name, c.rt.rejected)
		}
		return nil
	}
	return g
}

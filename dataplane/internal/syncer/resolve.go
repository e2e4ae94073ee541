package syncer

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/portico-gw/portico/shared/apiv1"
	"github.com/portico-gw/portico/shared/client"
)

// ResolvingPoller finds the control plane through a resolver (Consul) rather
// than a fixed URL. It keeps polling one instance and resolves again when
// that one stops answering, so a control-plane replica going away moves the
// data plane to another.
type ResolvingPoller struct {
	Resolve func(ctx context.Context) ([]string, error)
	Token   string
	HTTP    *http.Client
	Log     interface{ Info(string, ...any) }

	mu  sync.Mutex // PollSnapshot and Report run on different goroutines
	cur *client.Client
	url string
}

// current returns the client of the control plane in use, resolving one
// when there is none.
func (p *ResolvingPoller) current(ctx context.Context) (*client.Client, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur != nil {
		return p.cur, nil
	}
	urls, err := p.Resolve(ctx)
	if err != nil {
		return nil, fmt.Errorf("find the control plane: %w", err)
	}
	if len(urls) == 0 {
		return nil, errors.New("find the control plane: no passing instance registered")
	}
	c, err := client.New(urls[0], p.Token, client.WithHTTPClient(p.HTTP))
	if err != nil {
		return nil, err
	}
	p.cur, p.url = c, urls[0]
	if p.Log != nil {
		p.Log.Info("using control plane found through Consul", "url", p.url)
	}
	return c, nil
}

// forget drops c after a failure without an HTTP answer: this instance may
// be gone, so the next call resolves again.
func (p *ResolvingPoller) forget(c *client.Client, err error) {
	if err == nil || client.StatusOf(err) != 0 {
		return
	}
	p.mu.Lock()
	if p.cur == c {
		p.cur = nil
	}
	p.mu.Unlock()
}

// Report sends analytics to the control plane in use.
func (p *ResolvingPoller) Report(ctx context.Context, rep apiv1.Report) error {
	c, err := p.current(ctx)
	if err != nil {
		return err
	}
	err = c.Report(ctx, rep)
	p.forget(c, err)
	return err
}

// PollSnapshot implements Poller.
func (p *ResolvingPoller) PollSnapshot(ctx context.Context, req client.PollRequest) (*client.Poll, error) {
	c, err := p.current(ctx)
	if err != nil {
		return nil, err
	}
	poll, err := c.PollSnapshot(ctx, req)
	p.forget(c, err)
	return poll, err
}

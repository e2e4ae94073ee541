package syncer

import (
	"context"
	"errors"
	"fmt"
	"net/http"

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

	cur *client.Client
	url string
}

// PollSnapshot implements Poller. It is called from one goroutine.
func (p *ResolvingPoller) PollSnapshot(ctx context.Context, req client.PollRequest) (*client.Poll, error) {
	if p.cur == nil {
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
			p.Log.Info("polling control plane found through Consul", "url", p.url)
		}
	}
	poll, err := p.cur.PollSnapshot(ctx, req)
	if err != nil && client.StatusOf(err) == 0 {
		// No HTTP answer at all: this instance may be gone.
		p.cur = nil
	}
	return poll, err
}

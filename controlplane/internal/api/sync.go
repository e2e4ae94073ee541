package api

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/portico-gw/portico/controlplane/internal/nodes"
	"github.com/portico-gw/portico/shared/apiv1"
)

// snapshot is the long poll: GET /v1/snapshot?after=REV&wait=30s answers
// with the snapshot as soon as the revision passes REV, and 304 when the wait
// runs out first.
func (s *server) snapshot(c echo.Context) error {
	after, err := intParam(c, "after", 0, 0, 1<<62)
	if err != nil {
		return err
	}
	wait := 30 * time.Second
	if raw := c.QueryParam("wait"); raw != "" {
		wait, err = time.ParseDuration(raw)
		if err != nil || wait < 0 {
			return badParam("wait", "must be a duration such as 30s")
		}
		wait = min(wait, s.MaxWait)
	}
	req := c.Request()
	rep := nodes.Report{
		ID:         strings.TrimSpace(req.Header.Get(apiv1.HeaderNodeID)),
		Version:    req.Header.Get(apiv1.HeaderNodeVersion),
		RemoteAddr: c.RealIP(),
	}
	if rep.ID == "" || len(rep.ID) > 128 {
		return badParam(apiv1.HeaderNodeID, "header is required (at most 128 characters)")
	}
	rep.AppliedRevision, _ = strconv.ParseInt(req.Header.Get(apiv1.HeaderAppliedRevision), 10, 64)
	rep.AppliedEpoch = strings.TrimSpace(req.Header.Get(apiv1.HeaderEpoch))
	if len(rep.AppliedEpoch) > 64 {
		return badParam(apiv1.HeaderEpoch, "header must be at most 64 characters")
	}
	// Data planes remember revisions a store may have lost (see
	// catalog.Witness).
	s.Catalog.Witness(rep.AppliedRevision, rep.AppliedEpoch)
	if rep.Rejected, err = apiv1.DecodeRejected(req.Header.Get(apiv1.HeaderRejected)); err != nil {
		return badParam(apiv1.HeaderRejected, "must be base64url JSON: a list of {kind, name, reason}")
	}
	if rep.TLS, err = apiv1.DecodeNodeTLS(req.Header.Get(apiv1.HeaderNodeTLS), req.Header.Get(apiv1.HeaderNodeTicketKey)); err != nil {
		return badParam(apiv1.HeaderNodeTicketKey, "must be 1 to 64 hex digits")
	}
	span := trace.SpanFromContext(req.Context())
	span.SetAttributes(attribute.String("portico.node_id", rep.ID), attribute.Int64("portico.after", after),
		attribute.Int64("portico.applied_revision", rep.AppliedRevision))
	done := s.Nodes.PollStarted(rep)
	defer done()

	// The cluster size lets data planes split a rate limit among themselves
	// while Redis is unreachable.
	c.Response().Header().Set(apiv1.HeaderDataplanes, strconv.Itoa(max(1, s.Nodes.Connected())))
	ctx, cancel := context.WithTimeout(req.Context(), wait)
	defer cancel()
	if s.Stopping != nil {
		go func() {
			select {
			case <-s.Stopping:
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	p := s.Catalog.WaitEpoch(ctx, after, rep.AppliedEpoch)
	// The cluster's TLS session-ticket keys ride on every answer, as they
	// are when it is sent (tickets.Order), so a rotation reaches a data
	// plane within one wait without being a revision.
	if s.TicketKeys != nil {
		if v := s.TicketKeys(); v != "" {
			c.Response().Header().Set(apiv1.HeaderTicketKeys, v)
		}
	}
	if p == nil {
		select {
		case <-s.Stopping:
			c.Response().Header().Set("Retry-After", "1")
			return writeProblem(c, http.StatusServiceUnavailable, "shutting-down", "the control plane is shutting down")
		default:
		}
		if req.Context().Err() != nil {
			return nil // the data plane went away
		}
		cur := s.Catalog.Current()
		// A data plane ahead of us after a whole wait is not a replica lagging
		// by milliseconds: the store was replaced. Hand it what we have.
		// Revision 0 (an empty store) is no snapshot at all.
		if after <= cur.State.Revision || cur.State.Revision == 0 {
			c.Response().Header().Set(apiv1.HeaderRevision, strconv.FormatInt(cur.State.Revision, 10))
			c.Response().Header().Set(apiv1.HeaderEpoch, cur.State.Epoch.ID)
			return c.NoContent(http.StatusNotModified)
		}
		p = cur
	}
	if c.QueryParam("delta") == "1" {
		// A data plane that is current gets only what changed since the
		// revision it applied (delta.go).
		if sent, err := s.sendDelta(c, p, rep.AppliedRevision, rep.AppliedEpoch); sent || err != nil {
			return err
		}
	}
	body, err := p.Snapshot()
	contentEncoding := ""
	if err == nil && acceptsGzip(req.Header.Get(echo.HeaderAcceptEncoding)) {
		body, err = p.SnapshotGzip()
		contentEncoding = "gzip"
	}
	if err != nil {
		return err
	}
	span.SetAttributes(attribute.Int64("portico.revision", p.State.Revision))
	h := c.Response().Header()
	h.Set(apiv1.HeaderRevision, strconv.FormatInt(p.State.Revision, 10))
	h.Set(apiv1.HeaderEpoch, p.State.Epoch.ID)
	h.Set("ETag", etag(p.State.Revision))
	h.Set("Cache-Control", "no-store")
	h.Set(echo.HeaderVary, echo.HeaderAcceptEncoding)
	if contentEncoding != "" {
		h.Set(echo.HeaderContentEncoding, contentEncoding)
	}
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, body)
}

func acceptsGzip(h string) bool {
	for _, part := range strings.Split(h, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(name), "gzip") {
			continue
		}
		q, found := strings.CutPrefix(strings.TrimSpace(params), "q=")
		if !found {
			return true
		}
		v, err := strconv.ParseFloat(q, 64)
		return err == nil && v > 0
	}
	return false
}

func (s *server) dataplanes(c echo.Context) error {
	cur := s.Catalog.Current().State
	rev := cur.Revision
	list := s.Nodes.ListAt(rev, cur.Epoch.ID)
	converged := true
	for _, n := range list {
		if n.Status == "connected" && !n.Converged {
			converged = false
		}
	}
	return c.JSON(http.StatusOK, apiv1.Dataplanes{Revision: rev, Epoch: cur.Epoch.ID, Converged: converged, Nodes: list})
}

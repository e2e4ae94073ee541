package ctl

import (
	"fmt"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/portico-gw/portico/shared/apiv1"
	"github.com/portico-gw/portico/shared/client"
)

func (a *app) dataplanesCmd() *cobra.Command {
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "dataplanes",
		Short: "List data planes, their applied revision and whether the cluster converged",
		Long: `dataplanes lists the data planes polling this control plane. With --wait it
polls until every connected data plane runs the current revision, and fails
if that does not happen in time (for scripts: apply, then dataplanes --wait).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			deadline := time.Now().Add(wait)
			for {
				ctx, cancel := a.ctx(cmd)
				d, err := c.Dataplanes(ctx)
				cancel()
				if err != nil {
					return err
				}
				if d.Converged && len(d.Nodes) > 0 || wait <= 0 || time.Now().After(deadline) {
					if err := a.writeDataplanes(d); err != nil {
						return err
					}
					if wait > 0 && !(d.Converged && len(d.Nodes) > 0) {
						return fmt.Errorf("the data planes did not converge on revision %d within %s", d.Revision, wait)
					}
					return nil
				}
				select {
				case <-cmd.Context().Done():
					return cmd.Context().Err()
				case <-time.After(200 * time.Millisecond):
				}
			}
		},
	}
	cmd.Flags().DurationVar(&wait, "wait", 0, "wait up to this long for every data plane to converge")
	return cmd
}

func (a *app) writeDataplanes(d *apiv1.Dataplanes) error {
	if f := a.format("table"); f != "table" {
		return a.print(d, f)
	}
	fmt.Fprintf(a.io.Out, "revision %d, %d data plane(s), converged: %s\n", d.Revision, len(d.Nodes), yesNo(d.Converged))
	tw := tabwriter.NewWriter(a.io.Out, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tVERSION\tAPPLIED\tSTATUS\tCONVERGED\tTLS\tLAST SEEN\tREJECTED")
	for _, n := range d.Nodes {
		rejected := "-"
		if len(n.Rejected) > 0 {
			var r []string
			for _, x := range n.Rejected {
				r = append(r, string(x.Kind)+"/"+x.Name)
			}
			rejected = strings.Join(r, ",")
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", n.ID, firstOf(n.Version, "-"), n.AppliedRevision, n.Status,
			yesNo(n.Converged), tlsColumn(n.TLS), n.LastSeen.UTC().Format(time.RFC3339), rejected)
	}
	return tw.Flush()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func (a *app) analyticsCmd() *cobra.Command {
	var window time.Duration
	var trend bool
	cmd := &cobra.Command{
		Use:   "analytics",
		Short: "Traffic per route across the cluster: requests, req/s, error ratio, p50/p90/p99",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			table := a.format("table") == "table"
			var an *apiv1.Analytics
			if table && trend {
				// The busiest routes' req/s over the window as a sparkline.
				// A control plane whose buckets the step does not fit
				// answers 400: the table is shown without the trend.
				an, err = c.AnalyticsSeries(ctx, window, trendStep(window))
				if client.StatusOf(err) == http.StatusBadRequest {
					an, err = nil, nil
				}
			}
			if an == nil && err == nil {
				an, err = c.Analytics(ctx, window)
			}
			if err != nil {
				return err
			}
			if !table {
				return a.print(an, a.format("table"))
			}
			return a.writeAnalytics(an)
		},
	}
	cmd.Flags().DurationVar(&window, "window", 5*time.Minute, "how far back to sum")
	cmd.Flags().BoolVar(&trend, "trend", true, "a TREND column: req/s over the window for the busiest routes and the total")
	return cmd
}

func (a *app) writeAnalytics(an *apiv1.Analytics) error {
	fmt.Fprintf(a.io.Out, "window %s: %s to %s\n", an.Window, an.From.UTC().Format(time.RFC3339), an.To.UTC().Format(time.RFC3339))
	trends := map[string]string{}
	for _, s := range an.Series {
		trends[s.Route] = sparkline(s.Points)
	}
	tw := tabwriter.NewWriter(a.io.Out, 0, 8, 2, ' ', tabwriter.AlignRight)
	head := "ROUTE\tREQUESTS\tREQ/S\t5XX\t4XX\tERROR %\tP50 MS\tP90 MS\tP99 MS\t"
	if len(an.Series) > 0 {
		head += "TREND (REQ/S, " + an.Step + " STEPS)\t"
	}
	fmt.Fprintln(tw, head)
	row := func(name, key string, r apiv1.RouteStats) {
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%d\t%d\t%.2f\t%.1f\t%.1f\t%.1f\t", name, r.Requests, r.RPS, r.Errors, r.ClientErrors,
			100*r.ErrorRate, r.P50, r.P90, r.P99)
		if len(an.Series) > 0 {
			fmt.Fprintf(tw, "%s\t", firstOf(trends[key], "-"))
		}
		fmt.Fprintln(tw)
	}
	for _, r := range an.Routes {
		key := r.Route
		if key == "" {
			key = "\x00" // unrouted requests have no series of their own
		}
		row(firstOf(r.Route, "(no route)"), key, r)
	}
	row("TOTAL", "", an.Totals)
	return tw.Flush()
}

// trendStep divides a window into about 16 steps of whole 10 s buckets
// (the control plane's default bucket).
func trendStep(window time.Duration) time.Duration {
	const bucket = 10 * time.Second
	step := (window/16 + bucket - 1) / bucket * bucket
	return max(step, bucket)
}

var sparks = []rune("▁▂▃▄▅▆▇█")

// sparkline draws req/s per point, scaled to the series' own peak.
func sparkline(points []apiv1.SeriesPoint) string {
	peak := 0.0
	for _, p := range points {
		peak = max(peak, p.RPS)
	}
	out := make([]rune, len(points))
	for i, p := range points {
		switch {
		case peak == 0:
			out[i] = sparks[0]
		default:
			out[i] = sparks[min(len(sparks)-1, int(p.RPS/peak*float64(len(sparks)-1)+0.5))]
		}
	}
	return string(out)
}

func (a *app) auditCmd() *cobra.Command {
	var after int64
	var limit int
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "The audit log, oldest first: revision, time, actor (token), action, object",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			p, err := c.Audit(ctx, after, limit)
			if err != nil {
				return err
			}
			if f := a.format("table"); f != "table" {
				return a.print(p, f)
			}
			return a.writeAudit(p)
		},
	}
	cmd.Flags().Int64Var(&after, "after", 0, "entries after this revision")
	cmd.Flags().IntVar(&limit, "limit", 100, "at most this many entries (1-1000)")
	return cmd
}

func (a *app) writeAudit(p *apiv1.AuditPage) error {
	tw := tabwriter.NewWriter(a.io.Out, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "REVISION\tTIME\tACTOR\tACTION\tOBJECT\tVERSION\tSUMMARY")
	for _, e := range p.Entries {
		obj := "-"
		if e.Kind != "" {
			obj = string(e.Kind) + "/" + e.Name
		}
		v := "-"
		if e.Version > 0 {
			v = fmt.Sprint(e.Version)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Revision, e.Time.UTC().Format(time.RFC3339), e.Actor, e.Action, obj, v, firstOf(e.Summary, "-"))
	}
	return tw.Flush()
}

func (a *app) whoamiCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "whoami",
		Short: "Who the token is and what it may do (role, kinds, expiry)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			w, err := c.Whoami(ctx)
			if err != nil {
				return err
			}
			if f := a.format("text"); f != "text" {
				return a.print(w, f)
			}
			kinds := "every kind"
			if len(w.Kinds) > 0 {
				var k []string
				for _, x := range w.Kinds {
					k = append(k, string(x))
				}
				kinds = strings.Join(k, ", ")
			}
			exp := "never expires"
			if w.ExpiresAt != nil {
				exp = "expires " + w.ExpiresAt.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(a.io.Out, "%s: role %s on %s, %s\n", w.Principal, w.Role, kinds, exp)
			return nil
		},
	}
}

// tlsColumn: the node's TLS listener ("-" without one, "+h3" with HTTP/3).
func tlsColumn(t *apiv1.DataplaneTLS) string {
	switch {
	case t == nil:
		return "-"
	case t.HTTP3:
		return "on+h3"
	}
	return "on"
}

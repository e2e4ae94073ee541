package proxy

import "log/slog"

// responseChecked is stage.Env.ResponseChecked: each report-only check of
// an answer counted (when there are metrics), an invalid answer logged at
// warn with its failures, so a service drifting from its contract shows
// without any client being refused.
func (m *Metrics) responseChecked(log *slog.Logger) func(route, outcome, detail string) {
	return func(route, outcome, detail string) {
		if m != nil {
			m.responses.WithLabelValues(route, outcome).Inc()
		}
		if outcome == "invalid" || outcome == "not_json" {
			log.Warn("answer does not conform to the route's response schema", "route", route, "outcome", outcome, "failures", detail)
		}
	}
}

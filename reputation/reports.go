package reputation

import (
	"strings"
	"time"

	"github.com/foxproxy/foxproxy/health"
)

var (
	_ health.Reporter = (*ERS)(nil)
	_ health.Reporter = (*WRS)(nil)
	_ health.Reporter = (*Feedback)(nil)
)

// Reports implements health.Reporter: one row per zone (kind "ers"),
// with the DNS servers it asks as the target.
func (e *ERS) Reports() []health.Report {
	servers := strings.Join(e.client.Servers(), ",")
	var out []health.Report
	for _, h := range e.Health() {
		// An unchecked zone (no message yet) is healthy unless the
		// monitor's last probe of its test points failed.
		ok := h.State == StateUp || h.State == StateUnchecked && h.LastError == ""
		out = append(out, health.Report{
			Kind: string(ERSStage), Name: h.Zone, State: h.State, OK: ok, Detail: h.Detail,
			Target: servers, Since: h.Since, LastError: h.LastError, NextProbe: h.NextProbe,
			Counters: map[string]uint64{"lookups": h.Lookups, "listed": h.Listed, "failures": h.Failures,
				"checks": h.Checks, "check_failures": h.CheckFailures},
		})
	}
	return out
}

// Reports implements health.Reporter: one row per backend (kind "wrs"),
// healthy while its breaker is closed. A DNS list's target is the DNS
// servers it asks.
func (w *WRS) Reports() []health.Report {
	var out []health.Report
	for i, h := range w.Health() {
		r := health.Report{
			Kind: string(WRSStage), Name: h.Zone, State: h.State, OK: h.State == StateClosed,
			Since: h.Since, LastError: h.LastError, NextProbe: h.NextProbe,
			Counters: map[string]uint64{"lookups": h.Lookups, "listed": h.Listed, "failures": h.Failures,
				"skipped": h.Skipped, "probes": h.Checks},
		}
		if d, ok := w.backends[i].(*dnsList); ok {
			r.Target = strings.Join(d.client.Servers(), ",")
		}
		out = append(out, r)
	}
	return out
}

// ClickReport is the click service's reputation backend as one row (kind
// "click", name "wrs"): WRS as a click uses it. A click is checked only
// when every backend answers (CheckURL), so one backend whose breaker is
// open makes every click no other backend lists "unavailable", answered
// by the click service's onUnavailable action. WRS probes an open backend
// itself, so the row needs no probe of its own. A nil WRS (none
// configured) reports the click service's backend down.
func (w *WRS) ClickReport(onUnavailable string) health.Report {
	r := health.Report{Kind: "click", Name: string(WRSStage), State: health.Up, OK: true}
	if w == nil {
		r.State, r.OK, r.Detail = health.Down, false, "no WRS backend configured: clicks are answered by click.on_unavailable"
		return r
	}
	var backends, open []string
	var upSince, downSince time.Time
	for _, h := range w.Health() {
		backends = append(backends, h.Zone)
		if h.State == StateOpen {
			// Down at least since the first of the open backends opened.
			open = append(open, h.Zone)
			if downSince.IsZero() || h.Since.Before(downSince) {
				downSince = h.Since
			}
			if r.LastError == "" {
				r.LastError = h.Zone + ": " + h.LastError
			}
			continue
		}
		// Up since the last backend left the open state.
		if h.Since.After(upSince) {
			upSince = h.Since
		}
	}
	r.Target = strings.Join(backends, ", ")
	r.Since = upSince
	r.Counters = map[string]uint64{"backends": uint64(len(backends)), "open": uint64(len(open))}
	if len(open) > 0 {
		r.State, r.OK, r.Since = health.Down, false, downSince
		r.Detail = "breaker open: " + strings.Join(open, ", ") + "; clicks are answered by click.on_unavailable=" + onUnavailable
	}
	return r
}

// Reports implements health.Reporter: one row per sink (kind
// "wrs-feedback"), down from a failed attempt until the next success.
func (f *Feedback) Reports() []health.Report {
	var out []health.Report
	for _, st := range f.Stats() {
		state := health.Up
		if st.Down {
			state = health.Down
		}
		out = append(out, health.Report{Kind: "wrs-feedback", Name: st.Sink, State: state, OK: !st.Down, LastError: st.LastError,
			Counters: map[string]uint64{"queued": st.Queued, "sent": st.Sent, "dropped": st.Dropped, "pending": uint64(st.Pending)}})
	}
	return out
}

package scan

import (
	"fmt"
	"time"

	"github.com/foxproxy/foxproxy/health"
)

// A backend's states, in package health's words: what the stage last saw
// of it.
const (
	// StateUnknown: not used yet.
	StateUnknown = health.Unknown
	// StateUp: its last scan or probe was answered.
	StateUp = health.Up
	// StateDown: its last scan or probe failed.
	StateDown = health.Down
)

// Database states of a clamd's signature database in DBMonitor.Reports.
const (
	// DBCurrent: dated within scan.clamav_max_age.
	DBCurrent health.State = "current"
	// DBOutdated: older than scan.clamav_max_age (is freshclam running?).
	DBOutdated health.State = "outdated"
)

// backendState is the health object of one backend; guarded by Stage.mu.
type backendState struct {
	role    string
	scanner Scanner

	state       health.State
	since       time.Time
	lastErr     string
	lastErrAt   time.Time
	lastOK      time.Time
	consecutive int

	scans, clean, infected, failures, unavailable, tooLarge, probes uint64
}

func newBackendState(role string, sc Scanner, now time.Time) *backendState {
	return &backendState{role: role, scanner: sc, state: StateUnknown, since: now}
}

// BackendHealth is a snapshot of one backend's health, for the status
// endpoint.
type BackendHealth struct {
	// Role is "smart" or "conventional".
	Role string `json:"role"`
	// Scanner is the backend's Name().
	Scanner string       `json:"scanner"`
	State   health.State `json:"state"`
	// Since is when State last changed (or the stage started).
	Since       time.Time `json:"since"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	LastOK      time.Time `json:"last_ok,omitzero"`
	// ConsecutiveFailures counts failed scans and probes since the last
	// success.
	ConsecutiveFailures int `json:"consecutive_failures"`
	// Counters since start. Failures include Unavailable; TooLarge counts
	// scanner-side size-limit refusals (not failures).
	Scans       uint64 `json:"scans"`
	Clean       uint64 `json:"clean"`
	Infected    uint64 `json:"infected"`
	Failures    uint64 `json:"failures"`
	Unavailable uint64 `json:"unavailable"`
	TooLarge    uint64 `json:"too_large"`
	Probes      uint64 `json:"probes"`
}

// Health is a snapshot of the stage's state, for the status endpoint.
type Health struct {
	// Mode is the configured mode, Active the one in use now.
	Mode   Mode `json:"mode"`
	Active Mode `json:"active"`
	// Since is when Active was last set, Reason why.
	Since  time.Time `json:"since"`
	Reason string    `json:"reason"`
	// NextProbe is when smart will be probed next; zero when no probing
	// is scheduled.
	NextProbe    time.Time      `json:"next_probe,omitzero"`
	Smart        *BackendHealth `json:"smart,omitempty"`
	Conventional *BackendHealth `json:"conventional,omitempty"`
}

// Health returns a snapshot of the stage's mode and its backends' health.
func (s *Stage) Health() Health {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := Health{Mode: s.cfg.Mode, Active: s.active, Since: s.since, Reason: s.reason, NextProbe: s.nextProbe}
	if s.smart != nil {
		h.Smart = s.smart.snapshot()
	}
	if s.conv != nil {
		h.Conventional = s.conv.snapshot()
	}
	return h
}

func (b *backendState) snapshot() *BackendHealth {
	return &BackendHealth{
		Role: b.role, Scanner: b.scanner.Name(), State: b.state, Since: b.since,
		LastError: b.lastErr, LastErrorAt: b.lastErrAt, LastOK: b.lastOK,
		ConsecutiveFailures: b.consecutive,
		Scans:               b.scans, Clean: b.clean, Infected: b.infected, Failures: b.failures,
		Unavailable: b.unavailable, TooLarge: b.tooLarge, Probes: b.probes,
	}
}

var (
	_ health.Reporter = (*Stage)(nil)
	_ health.Reporter = (*DBMonitor)(nil)
)

// Reports implements health.Reporter: one row per scanner (kind "scan",
// named by its role). The smart scanner's row says when the stage has
// switched away from it, and when it is probed next.
func (s *Stage) Reports() []health.Report {
	h := s.Health()
	var out []health.Report
	for _, b := range []*BackendHealth{h.Smart, h.Conventional} {
		if b == nil {
			continue
		}
		r := health.Report{
			Kind: string(StageName), Name: b.Role, State: b.State, OK: b.State == StateUp,
			Target: b.Scanner, Since: b.Since, LastError: b.LastError,
			Counters: map[string]uint64{"scans": b.Scans, "clean": b.Clean, "infected": b.Infected,
				"failures": b.Failures, "unavailable": b.Unavailable, "probes": b.Probes},
		}
		if b.Role == "smart" && h.Active != h.Mode {
			r.Detail = "switched to " + string(h.Active) + ": " + h.Reason
			r.NextProbe = h.NextProbe
		}
		out = append(out, r)
	}
	return out
}

// Reports implements health.Reporter: one row per clamd (kind
// "clamav-db", named by its role) saying how old its signature database
// is. A clamd that does not answer is "unknown" here; its scanner's own
// row says whether it is down.
func (m *DBMonitor) Reports() []health.Report {
	var out []health.Report
	for _, s := range m.States() {
		r := health.Report{Kind: "clamav-db", Name: s.Role, Target: s.Scanner, Since: s.Version.Date, State: DBCurrent, OK: true}
		switch {
		case s.Err != "":
			r.State, r.LastError = health.Unknown, s.Err
		case s.Version.Date.IsZero():
			r.State, r.Detail = health.Unknown, s.Version.Engine+", no official database (no date)"
		default:
			r.Detail = fmt.Sprintf("%s, daily %d of %s", s.Version.Engine, s.Version.Daily, s.Version.Date.Format("2006-01-02 15:04"))
			if s.Old {
				r.State, r.OK = DBOutdated, false
				r.Detail += " (older than scan.clamav_max_age; is freshclam running?)"
			}
		}
		out = append(out, r)
	}
	return out
}

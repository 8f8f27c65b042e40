package scan

import "time"

// BackendState is what the stage last saw of a backend.
type BackendState string

const (
	// StateUnknown: not used yet.
	StateUnknown BackendState = "unknown"
	// StateUp: its last scan or probe was answered.
	StateUp BackendState = "up"
	// StateDown: its last scan or probe failed.
	StateDown BackendState = "down"
)

// backendState is the health object of one backend; guarded by Stage.mu.
type backendState struct {
	role    string
	scanner Scanner

	state       BackendState
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
	State   BackendState `json:"state"`
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

package reputation

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/foxproxy/foxproxy/health"
)

// State is the health state of one ERS zone (below) or of one WRS
// backend's circuit breaker (StateClosed, StateOpen, StateHalfOpen), in
// package health's vocabulary: up, down and unchecked mean what they mean
// for every dependency; disabled and the breaker's states are
// reputation's own.
type State = health.State

const (
	// StateUnchecked: no message yet, so the connectivity check has not
	// run (or is running). The first message waits for it. Probes show
	// whether the test points answer meanwhile (Health.Detail) but leave
	// the zone unchecked.
	StateUnchecked = health.Unchecked
	// StateUp: the check passed and lookups answer.
	StateUp = health.Up
	// StateDown: the check passed but the last lookups (downAfter or more
	// in a row) failed. The zone stays enabled, each failing message's
	// finding is Skipped, and the next answered lookup makes it up again.
	// A zone that passed its check is never disabled.
	StateDown = health.Down
	// StateDisabled: the check failed. The zone is not queried for
	// messages; it is re-checked every RecheckInterval and re-enabled by
	// itself, or, with RecheckInterval 0, stays disabled until restart.
	StateDisabled State = "disabled"
)

// downAfter is how many lookups in a row must fail before an up zone is
// reported down. A single failure is not worth a log line.
const downAfter = 3

// Health is a snapshot of one zone's health, for the status endpoint. ERS
// has one per zone; WRS one per backend (its breaker), where Zone is the
// backend's name (a zone, or "safebrowsing") and State one of the breaker
// states.
type Health struct {
	Zone  string
	State State
	// Since is when State was entered (the stage's start for the first).
	Since time.Time
	// LastError is the last failure of a check or a lookup, "" if none;
	// for an unchecked zone, that of the last probe ("" if it passed).
	LastError string
	// LastCheck is when the last connectivity check ended (zero: none).
	LastCheck time.Time
	// NextProbe is when a disabled zone is re-checked (zero: not planned).
	NextProbe time.Time
	// Checking is true while a connectivity check runs.
	Checking bool
	// Lookups counts message lookups, Listed those that found a listing,
	// Failures those that failed.
	Lookups, Listed, Failures uint64
	// Checks counts connectivity checks, CheckFailures the failed ones.
	// For a WRS backend they count the breaker's probes.
	Checks, CheckFailures uint64
	// Skipped counts messages a WRS backend was not asked about because
	// its breaker was open (always 0 for ERS).
	Skipped uint64
	// Detail, for an unchecked ERS zone, says what the last probe saw.
	Detail string
}

var (
	errCheckPending = errors.New("connectivity check still running")
	errStageClosed  = errors.New("stage closed")
)

// zoneHealth is the state machine of one zone (see State). Every
// transition goes through setLocked, which logs it exactly once.
type zoneHealth struct {
	e    *ERS
	zone Zone // canonical name

	mu          sync.Mutex
	state       State
	since       time.Time
	lastErr     string
	lastCheck   time.Time
	nextProbe   time.Time
	running     chan struct{} // non-nil while a check runs; closed when it ends
	stop        func() bool   // cancels the planned re-check
	consecutive int           // lookups failed in a row
	probeDetail string        // what a probe saw while unchecked
	lookups     uint64
	listed      uint64
	failures    uint64
	checks      uint64
	checkFails  uint64
}

// ready reports whether the zone may be queried for a message. While the
// zone is unchecked it starts the check (concurrent first messages share
// it) and waits for it within ctx.
func (h *zoneHealth) ready(ctx context.Context) (bool, error) {
	h.mu.Lock()
	switch h.state {
	case StateUp, StateDown:
		h.mu.Unlock()
		return true, nil
	case StateDisabled:
		h.mu.Unlock()
		return false, nil
	}
	done := h.beginCheckLocked(true)
	h.mu.Unlock()
	if done == nil {
		return false, errStageClosed
	}
	select {
	case <-done:
	case <-ctx.Done():
		return false, errCheckPending
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.state == StateUp || h.state == StateDown, nil
}

// startIfUnchecked starts the first check in the background, if none ran.
func (h *zoneHealth) startIfUnchecked() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.state == StateUnchecked {
		h.beginCheckLocked(true)
	}
}

// isDisabled reports whether the zone is disabled now.
func (h *zoneHealth) isDisabled() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.state == StateDisabled
}

// beginCheckLocked returns the running check's done channel, starting a
// check when none runs (in a new goroutine if async, else the caller must
// call runCheck). It returns nil once the stage is closed.
func (h *zoneHealth) beginCheckLocked(async bool) chan struct{} {
	if h.running != nil {
		return h.running
	}
	if h.e.closed.Load() {
		return nil
	}
	h.running = make(chan struct{})
	h.checks++
	h.e.wg.Add(1)
	if async {
		go h.runCheck(h.running)
	}
	return h.running
}

// runCheck runs one connectivity check with its own deadline, independent
// of any message, and applies the outcome.
func (h *zoneHealth) runCheck(done chan struct{}) {
	defer h.e.wg.Done()
	ctx, cancel := context.WithTimeout(h.e.base, h.e.checkTimeout)
	err := CheckHealth(ctx, h.e.client, h.zone)
	cancel()
	h.finishCheck(err)
	close(done)
}

// finishCheck applies a check's outcome: pass → up; fail → disabled, with
// a re-check planned unless RecheckInterval is 0 (the legacy latch).
func (h *zoneHealth) finishCheck(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.running = nil
	if err != nil && h.e.closed.Load() {
		// Cut short by Close: that says nothing about the zone.
		return
	}
	h.probeDetail = "" // the check decided: the state says it all now
	now := h.e.clock.Now()
	h.lastCheck = now
	h.nextProbe = time.Time{}
	if err == nil {
		h.consecutive = 0
		h.setLocked(StateUp, now, "connectivity check passed (RFC 5782 §5 test points)")
		return
	}
	h.checkFails++
	h.lastErr = err.Error()
	plan := "recheck_interval is 0: disabled until restart"
	if h.e.recheck > 0 {
		h.nextProbe = now.Add(h.e.recheck)
		h.stop = h.e.clock.AfterFunc(h.e.recheck, h.recheck)
		plan = fmt.Sprintf("re-checking every %s", h.e.recheck)
	}
	if h.state == StateDisabled {
		h.e.log.Debug("ERS zone re-check failed",
			zap.String("zone", h.zone.Name), zap.String("reason", h.lastErr))
		return
	}
	h.setLocked(StateDisabled, now, h.lastErr, zap.String("plan", plan))
}

// recheck is the timer callback of a disabled zone.
func (h *zoneHealth) recheck() {
	h.mu.Lock()
	h.stop = nil
	if h.state != StateDisabled || h.running != nil || h.e.closed.Load() {
		h.mu.Unlock()
		return
	}
	done := h.beginCheckLocked(false)
	h.mu.Unlock()
	if done != nil {
		h.runCheck(done)
	}
}

// observe records a message lookup. Only failures and answers from the
// network move the state between up and down; cached answers say nothing
// about the servers. The caller's own cancellation is not a failure.
func (h *zoneHealth) observe(res Result, fromNetwork bool, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lookups++
	if err == nil {
		if res.Listed {
			h.listed++
		}
		if fromNetwork {
			h.consecutive = 0
			if h.state == StateDown {
				h.setLocked(StateUp, h.e.clock.Now(), "lookups answer again")
			}
		}
		return
	}
	if errors.Is(err, context.Canceled) {
		return
	}
	h.failures++
	h.consecutive++
	h.lastErr = err.Error()
	if h.state == StateUp && h.consecutive >= downAfter {
		h.setLocked(StateDown, h.e.clock.Now(),
			fmt.Sprintf("%d lookups in a row failed, last: %s (zone stays enabled)", h.consecutive, h.lastErr))
	}
}

// setLocked moves to state to and logs the change, once, with why.
func (h *zoneHealth) setLocked(to State, now time.Time, reason string, extra ...zap.Field) {
	from := h.state
	if from == to {
		return
	}
	h.state, h.since = to, now
	level := zapcore.InfoLevel
	if to == StateDisabled || to == StateDown {
		level = zapcore.WarnLevel
	}
	fields := append([]zap.Field{
		zap.String("stage", string(ERSStage)),
		zap.String("zone", h.zone.Name),
		zap.String("from", string(from)),
		zap.String("to", string(to)),
		zap.String("reason", reason),
	}, extra...)
	h.e.log.Log(level, "ERS zone state changed", fields...)
}

// snapshot returns the zone's Health.
func (h *zoneHealth) snapshot() Health {
	h.mu.Lock()
	defer h.mu.Unlock()
	return Health{
		Zone:          h.zone.Name,
		State:         h.state,
		Since:         h.since,
		LastError:     h.lastErr,
		LastCheck:     h.lastCheck,
		NextProbe:     h.nextProbe,
		Checking:      h.running != nil,
		Lookups:       h.lookups,
		Listed:        h.listed,
		Failures:      h.failures,
		Checks:        h.checks,
		CheckFailures: h.checkFails,
		Detail:        h.probeDetail,
	}
}

// close cancels the planned re-check.
func (h *zoneHealth) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stop != nil {
		h.stop()
		h.stop = nil
	}
	h.nextProbe = time.Time{}
}

package reputation

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/foxproxy/foxproxy/clock"
)

// Circuit breaker states of a WRS backend (failure table row 2, README.md).
//
//	          Failures lookups in a row fail
//	closed ─────────────────────────────────▶ open ◀──┐ probe fails
//	   ▲                                       │  └───┘ (every ProbeInterval)
//	   │ a lookup answers                      │ probe passes
//	   │                                       ▼
//	   └──────────────────────────────── half-open
//	                                           │ a lookup fails
//	                              open ◀───────┘ (at once)
//
// Only answers from the service itself count as successes: a result taken
// entirely from a cache says nothing about the service and changes nothing.
// A lookup cancelled by its caller (not by the budget) is not a failure.
const (
	// StateClosed: lookups go to the backend; a success resets the count
	// of consecutive failures.
	StateClosed State = "closed"
	// StateOpen: the backend failed Failures lookups in a row. Messages
	// skip it at once (no timeout paid) and a probe runs in the background
	// every ProbeInterval.
	StateOpen State = "open"
	// StateHalfOpen: a probe passed. Messages use the backend again; the
	// first lookup that answers closes the breaker, the first that fails
	// opens it again at once, without waiting for Failures more.
	//
	// Half-open lets every message through rather than a single trial:
	// the probe has just shown the service answering, and holding back
	// the other messages would only skip WRS for them. What half-open
	// adds over closing at once is that a service that passes its probe
	// but still fails real lookups costs one message, not Failures.
	StateHalfOpen State = "half-open"
)

// Defaults for BreakerConfig.
const (
	DefaultBreakerFailures = 5
	DefaultProbeInterval   = 30 * time.Second
	DefaultProbeTimeout    = 10 * time.Second
)

// ErrBreakerOpen is the error of a backend that was not asked because its
// breaker is open.
var ErrBreakerOpen = errors.New("breaker open")

// BreakerConfig configures the circuit breaker of every WRS backend. The
// zero value uses the defaults.
type BreakerConfig struct {
	// Failures is how many lookups in a row must fail to open the breaker
	// (default 5).
	Failures int
	// ProbeInterval is how often an open breaker probes its backend
	// (default 30s).
	ProbeInterval time.Duration
	// ProbeTimeout bounds one probe (default 10s).
	ProbeTimeout time.Duration
}

// Validate reports a negative value.
func (c BreakerConfig) Validate() error {
	switch {
	case c.Failures < 0:
		return errors.New("breaker: negative failures")
	case c.ProbeInterval < 0:
		return errors.New("breaker: negative probe_interval")
	case c.ProbeTimeout < 0:
		return errors.New("breaker: negative probe_timeout")
	}
	return nil
}

// breaker is the circuit breaker and health object of one WRS backend.
// Every transition goes through setLocked, which logs it exactly once.
// Probes run on the injected clock's timers, so tests drive the state
// machine by advancing a fake clock.
type breaker struct {
	name         string
	probe        func(context.Context) error
	threshold    int
	interval     time.Duration
	probeTimeout time.Duration
	log          *zap.Logger
	clock        clock.Clock

	base   context.Context // parent of probes; cancelled by close
	cancel context.CancelFunc
	closed atomic.Bool
	wg     sync.WaitGroup // running probe

	mu          sync.Mutex
	state       State
	gen         uint64 // bumped on every transition; see allow
	since       time.Time
	consecutive int
	lastErr     string
	lastProbe   time.Time
	nextProbe   time.Time
	probing     bool
	stop        func() bool // cancels the planned probe
	lookups     uint64
	listed      uint64
	failures    uint64
	skipped     uint64
	probes      uint64
	probeFails  uint64
}

func newBreaker(name string, cfg BreakerConfig, probe func(context.Context) error, log *zap.Logger, clk clock.Clock) *breaker {
	b := &breaker{
		name:         name,
		probe:        probe,
		threshold:    orDefault(cfg.Failures, DefaultBreakerFailures),
		interval:     orDefault(cfg.ProbeInterval, DefaultProbeInterval),
		probeTimeout: orDefault(cfg.ProbeTimeout, DefaultProbeTimeout),
		log:          log,
		clock:        clk,
		state:        StateClosed,
		since:        clk.Now(),
	}
	b.base, b.cancel = context.WithCancel(context.Background())
	return b
}

// allow reports whether a message may ask the backend now, and the
// generation its outcome belongs to.
func (b *breaker) allow() (gen uint64, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state == StateOpen {
		b.skipped++
		return b.gen, false
	}
	b.lookups++
	return b.gen, true
}

// record applies the outcome of a lookup that allow let through. An
// outcome from an older generation (a lookup that started before the last
// transition, e.g. one that was already waiting when the breaker opened)
// updates the counters but cannot move the state: a late failure must not
// reopen a breaker that a probe just half-opened.
func (b *breaker) record(gen uint64, listed, cached bool, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err == nil {
		if listed {
			b.listed++
		}
		if cached || gen != b.gen {
			return
		}
		b.consecutive = 0
		if b.state == StateHalfOpen {
			b.setLocked(StateClosed, "a lookup answered after the probe passed")
		}
		return
	}
	if errors.Is(err, context.Canceled) {
		return // the caller went away; nothing learnt about the backend
	}
	b.failures++
	b.lastErr = err.Error()
	if gen != b.gen {
		return
	}
	b.consecutive++
	switch {
	case b.state == StateHalfOpen:
		b.openLocked("the first lookup after the probe failed: " + b.lastErr)
	case b.state == StateClosed && b.consecutive >= b.threshold:
		b.openLocked(fmt.Sprintf("%d lookups in a row failed, last: %s", b.consecutive, b.lastErr))
	}
}

// openLocked opens the breaker and plans the first probe.
func (b *breaker) openLocked(reason string) {
	b.setLocked(StateOpen, reason, zap.Duration("probe_interval", b.interval))
	b.planLocked()
}

// planLocked schedules the next probe of an open breaker.
func (b *breaker) planLocked() {
	if b.closed.Load() {
		return
	}
	if b.stop != nil {
		b.stop()
	}
	b.nextProbe = b.clock.Now().Add(b.interval)
	b.stop = b.clock.AfterFunc(b.interval, b.runProbe)
}

// runProbe is the timer callback: it probes the backend with its own
// deadline, independent of any message, and half-opens on success.
func (b *breaker) runProbe() {
	b.mu.Lock()
	b.stop = nil
	if b.state != StateOpen || b.probing || b.closed.Load() {
		b.mu.Unlock()
		return
	}
	b.probing = true
	b.probes++
	b.nextProbe = time.Time{}
	b.wg.Add(1)
	b.mu.Unlock()
	defer b.wg.Done()

	ctx, cancel := context.WithTimeout(b.base, b.probeTimeout)
	err := b.probe(ctx)
	cancel()

	b.mu.Lock()
	defer b.mu.Unlock()
	b.probing = false
	b.lastProbe = b.clock.Now()
	if b.closed.Load() {
		return // cut short by close: says nothing about the backend
	}
	if err == nil {
		b.consecutive = 0
		b.setLocked(StateHalfOpen, "probe passed")
		return
	}
	b.probeFails++
	b.lastErr = err.Error()
	// Still open: not a state change, so not worth more than a debug line
	// every ProbeInterval for the length of an outage.
	b.log.Debug("WRS backend probe failed", zap.String("stage", string(WRSStage)),
		zap.String("backend", b.name), zap.String("reason", b.lastErr))
	b.planLocked()
}

// setLocked moves to state to and logs the change, once, with why.
func (b *breaker) setLocked(to State, reason string, extra ...zap.Field) {
	from := b.state
	if from == to {
		return
	}
	b.state, b.since = to, b.clock.Now()
	b.gen++
	level := zapcore.InfoLevel
	if to == StateOpen {
		level = zapcore.WarnLevel
	}
	fields := append([]zap.Field{
		zap.String("stage", string(WRSStage)),
		zap.String("backend", b.name),
		zap.String("from", string(from)),
		zap.String("to", string(to)),
		zap.String("reason", reason),
	}, extra...)
	b.log.Log(level, "WRS backend state changed", fields...)
}

// snapshot returns the backend's Health.
func (b *breaker) snapshot() Health {
	b.mu.Lock()
	defer b.mu.Unlock()
	return Health{
		Zone:          b.name,
		State:         b.state,
		Since:         b.since,
		LastError:     b.lastErr,
		LastCheck:     b.lastProbe,
		NextProbe:     b.nextProbe,
		Checking:      b.probing,
		Lookups:       b.lookups,
		Listed:        b.listed,
		Failures:      b.failures,
		Checks:        b.probes,
		CheckFailures: b.probeFails,
		Skipped:       b.skipped,
	}
}

// close cancels the planned probe and waits for a running one to end.
func (b *breaker) close() {
	if b.closed.Swap(true) {
		return
	}
	b.mu.Lock()
	if b.stop != nil {
		b.stop()
		b.stop = nil
	}
	b.nextProbe = time.Time{}
	b.mu.Unlock()
	b.cancel()
	b.wg.Wait()
}

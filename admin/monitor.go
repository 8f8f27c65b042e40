package admin

import (
	"bufio"
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/foxproxy/foxproxy/health"
)

// Prober is a dependency owner that can check its dependencies on demand
// (the scan stage pings its scanners, ERS asks its zones' test points). The
// monitor calls Probe on a schedule so a dependency that goes away, or
// comes back, shows within one interval even while no mail arrives.
type Prober interface {
	Probe(ctx context.Context)
}

// Sources are the dependencies of the running configuration. A SIGHUP
// replaces them.
type Sources struct {
	// Dependencies returns their current health.
	Dependencies func() []Dependency
	// Probers are probed every interval.
	Probers []Prober
	// ScanMode returns the scan stage's active mode and why ("" without
	// scanning).
	ScanMode func() (mode, reason string)
	// Held returns the held area's count and oldest entry (nil, or ok
	// false, when no mail is held for rescan).
	Held func() (Held, bool)
}

// Monitor probes the downstream smtpd and the sources' dependencies every
// interval and keeps their health.
type Monitor struct {
	interval time.Duration
	timeout  time.Duration
	log      *zap.Logger
	sources  atomic.Pointer[Sources]
	ds       downstreamHealth
	now      func() time.Time
}

// NewMonitor returns a monitor for the downstream at addr.
func NewMonitor(downstream string, interval time.Duration, log *zap.Logger) *Monitor {
	m := &Monitor{interval: interval, timeout: 5 * time.Second, log: log, now: time.Now}
	m.ds.addr = downstream
	m.ds.state = health.Unknown
	m.SetSources(&Sources{})
	return m
}

// SetSources installs the running configuration's dependencies.
func (m *Monitor) SetSources(s *Sources) { m.sources.Store(s) }

// SetDownstream changes the downstream address (after a reload).
func (m *Monitor) SetDownstream(addr string) {
	m.ds.mu.Lock()
	defer m.ds.mu.Unlock()
	if addr != m.ds.addr {
		m.ds.addr, m.ds.state, m.ds.since = addr, health.Unknown, m.now()
	}
}

// Run probes at once and then every interval until ctx ends.
func (m *Monitor) Run(ctx context.Context) {
	for {
		m.ProbeNow(ctx)
		select {
		case <-ctx.Done():
			return
		case <-time.After(m.interval):
		}
	}
}

// ProbeNow probes everything once, in parallel, and returns when done.
func (m *Monitor) ProbeNow(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		m.probeDownstream(ctx)
	}()
	for _, p := range m.sources.Load().Probers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.Probe(ctx)
		}()
	}
	wg.Wait()
}

// Dependencies returns the downstream's and the sources' health.
func (m *Monitor) Dependencies() []Dependency {
	deps := []Dependency{m.ds.report()}
	if f := m.sources.Load().Dependencies; f != nil {
		deps = append(deps, f()...)
	}
	return deps
}

// ScanMode returns the scan stage's active mode and why.
func (m *Monitor) ScanMode() (string, string) {
	if f := m.sources.Load().ScanMode; f != nil {
		return f()
	}
	return "", ""
}

// DownstreamOK reports whether the last probe of the downstream answered.
func (m *Monitor) DownstreamOK() bool {
	m.ds.mu.Lock()
	defer m.ds.mu.Unlock()
	return m.ds.state == health.Up
}

type downstreamHealth struct {
	mu        sync.Mutex
	addr      string
	state     health.State
	since     time.Time
	lastErr   string
	lastOK    time.Time
	probes    uint64
	failures  uint64
	nextProbe time.Time
}

func (d *downstreamHealth) report() health.Report {
	d.mu.Lock()
	defer d.mu.Unlock()
	return health.Report{Kind: "downstream", Name: "smtpd", Target: d.addr, State: d.state, OK: d.state == health.Up,
		Since: d.since, LastError: d.lastErr, NextProbe: d.nextProbe,
		Counters: map[string]uint64{"probes": d.probes, "failures": d.failures}}
}

// probeDownstream connects, reads the greeting and says QUIT: what the
// proxy needs from the downstream before any message.
func (m *Monitor) probeDownstream(ctx context.Context) {
	m.ds.mu.Lock()
	addr := m.ds.addr
	m.ds.mu.Unlock()
	err := greet(ctx, addr, m.timeout)
	now := m.now()
	m.ds.mu.Lock()
	defer m.ds.mu.Unlock()
	if addr != m.ds.addr {
		return // changed meanwhile
	}
	m.ds.probes++
	m.ds.nextProbe = now.Add(m.interval)
	from := m.ds.state
	if err != nil {
		m.ds.failures++
		m.ds.lastErr = err.Error()
		if from != health.Down {
			m.ds.state, m.ds.since = health.Down, now
			m.log.Warn("dependency state changed", zap.String("kind", "downstream"), zap.String("name", addr),
				zap.String("from", string(from)), zap.String("to", string(health.Down)), zap.String("reason", err.Error()))
		}
		return
	}
	m.ds.lastOK = now
	if from != health.Up {
		m.ds.state, m.ds.since = health.Up, now
		m.log.Info("dependency state changed", zap.String("kind", "downstream"), zap.String("name", addr),
			zap.String("from", string(from)), zap.String("to", string(health.Up)), zap.String("reason", "greeting received"))
	}
}

func greet(ctx context.Context, addr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	deadline, _ := ctx.Deadline()
	c.SetDeadline(deadline)
	// Bounded like every wait: lines within the 4 KiB buffer, at most
	// 100 of them, all within the deadline.
	br := bufio.NewReader(c)
	for range 100 {
		b, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		line := string(b)
		if !strings.HasPrefix(line, "220") {
			return &greetingError{strings.TrimSpace(line)}
		}
		if len(line) < 4 || line[3] != '-' {
			c.Write([]byte("QUIT\r\n"))
			br.ReadSlice('\n')
			return nil
		}
	}
	return &greetingError{"more than 100 greeting lines"}
}

type greetingError struct{ line string }

func (e *greetingError) Error() string { return "unexpected greeting: " + e.line }

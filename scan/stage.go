package scan

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/foxproxy/foxproxy/clock"
	"github.com/foxproxy/foxproxy/pipeline"
)

// Mode is the scan method in use.
type Mode string

const (
	// ModeSmart scans with the remote scanner (ICAP, or a remote clamd).
	ModeSmart Mode = "smart"
	// ModeConventional scans with the local clamd.
	ModeConventional Mode = "conventional"
)

// OversizeAction says what happens to a message larger than MaxSize.
type OversizeAction string

const (
	// OversizePass lets it through unscanned: Finding Skipped.
	OversizePass OversizeAction = "pass"
	// OversizeTempfail reports it as unscannable: Finding Unavailable, which
	// the default policy answers with a 4xx.
	OversizeTempfail OversizeAction = "tempfail"
)

// DefaultMaxSize is the default for Config.MaxSize: clamd's default
// StreamMaxLength (25M).
const DefaultMaxSize = 25 << 20

// Config configures a Stage. Zero values select the documented defaults.
type Config struct {
	// Mode is the configured scan method. Default: smart when Smart is set,
	// else conventional.
	Mode Mode
	// Smart is the remote scanner; required for ModeSmart.
	Smart Scanner
	// Conventional is the local clamd; required for ModeConventional and
	// for FallbackToConventional.
	Conventional Scanner
	// FallbackToConventional: when smart cannot answer for a message, scan
	// that message with Conventional at once (the appliance's "switch to
	// conventional scan when Smart Protection cannot be reached"). When
	// false, such a message gets Finding Unavailable. The fallback runs
	// under the same ctx as the smart attempt: give Inspect's ctx room for
	// both backends' Timeouts, or a smart timeout leaves none.
	FallbackToConventional bool
	// DisableSmartAfter is the number of consecutive smart failures after
	// which the stage switches its mode to conventional (only with
	// FallbackToConventional). 0 never switches: every message tries smart
	// first.
	DisableSmartAfter int
	// RecheckInterval is how often smart is probed while switched to
	// conventional. Default 1m.
	RecheckInterval time.Duration
	// StayConventional keeps the switch until restart, as the appliance did;
	// by default the stage probes smart and switches back by itself.
	StayConventional bool
	// ProbeTimeout bounds one probe. Default 10s.
	ProbeTimeout time.Duration
	// MaxSize is the largest message sent to a scanner, in bytes. Default
	// DefaultMaxSize. Keep it at or below the scanners' own limits
	// (clamd StreamMaxLength, c-icap virus_scan.MaxObjectSize).
	MaxSize int64
	// Oversize is what happens to a larger message. Default OversizePass.
	Oversize OversizeAction
	// Logger receives the mode and backend state changes. Default: none.
	Logger *zap.Logger
	// Clock drives the failover state machine (default: clock.System).
	Clock clock.Clock
}

// Stage is foxproxy's malware scan stage (pipeline name StageName): smart
// scan with fallback to, and failover to, conventional scan. It is safe for
// concurrent use.
type Stage struct {
	cfg   Config
	log   *zap.Logger
	clock clock.Clock

	ctx    context.Context // cancelled by Close; parent of probes
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	active    Mode
	since     time.Time
	reason    string
	nextProbe time.Time
	probing   bool
	closed    bool
	smart     *backendState
	conv      *backendState
}

var _ pipeline.Stage = (*Stage)(nil)

// NewStage validates cfg and returns a stage. The stage owns the scanners:
// Close closes those that are io.Closers.
func NewStage(cfg Config) (*Stage, error) {
	if cfg.Mode == "" {
		cfg.Mode = ModeConventional
		if cfg.Smart != nil {
			cfg.Mode = ModeSmart
		}
	}
	switch cfg.Mode {
	case ModeSmart:
		if cfg.Smart == nil {
			return nil, errors.New("scan: mode smart needs a smart scanner")
		}
		if cfg.FallbackToConventional && cfg.Conventional == nil {
			return nil, errors.New("scan: fallback_to_conventional needs a conventional scanner")
		}
	case ModeConventional:
		if cfg.Conventional == nil {
			return nil, errors.New("scan: mode conventional needs a conventional scanner")
		}
	default:
		return nil, fmt.Errorf("scan: unknown mode %q (want smart or conventional)", cfg.Mode)
	}
	switch cfg.Oversize {
	case "":
		cfg.Oversize = OversizePass
	case OversizePass, OversizeTempfail:
	default:
		return nil, fmt.Errorf("scan: unknown oversize action %q (want pass or tempfail)", cfg.Oversize)
	}
	if cfg.DisableSmartAfter < 0 {
		return nil, errors.New("scan: disable_smart_after must not be negative")
	}
	if cfg.RecheckInterval <= 0 {
		cfg.RecheckInterval = time.Minute
	}
	if cfg.ProbeTimeout <= 0 {
		cfg.ProbeTimeout = 10 * time.Second
	}
	if cfg.MaxSize <= 0 {
		cfg.MaxSize = DefaultMaxSize
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.System()
	}
	s := &Stage{cfg: cfg, log: cfg.Logger.Named("scan"), clock: cfg.Clock}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.active, s.since, s.reason = cfg.Mode, s.clock.Now(), "configured"
	if cfg.Mode == ModeSmart {
		s.smart = newBackendState("smart", cfg.Smart, s.since)
	}
	if cfg.Conventional != nil {
		s.conv = newBackendState("conventional", cfg.Conventional, s.since)
	}
	return s, nil
}

// Name implements pipeline.Stage.
func (s *Stage) Name() pipeline.StageName { return StageName }

// Inspect implements pipeline.Stage. It reads the message through
// tx.Message.Open(), once per scanner tried.
func (s *Stage) Inspect(ctx context.Context, tx *pipeline.Transaction) pipeline.Finding {
	size := tx.Message.Size()
	if size > s.cfg.MaxSize {
		return s.oversize("", fmt.Sprintf("too large (%d bytes > %d)", size, s.cfg.MaxSize))
	}
	s.mu.Lock()
	active := s.active
	s.mu.Unlock()

	if active == ModeConventional {
		res, err := s.scanWith(ctx, s.conv, tx)
		return s.finding(s.conv, res, err)
	}
	res, err := s.scanWith(ctx, s.smart, tx)
	if err == nil || errors.Is(err, ErrSizeLimit) {
		return s.finding(s.smart, res, err)
	}
	if !s.cfg.FallbackToConventional || ctx.Err() != nil {
		return s.finding(s.smart, res, err)
	}
	res, cerr := s.scanWith(ctx, s.conv, tx)
	f := s.finding(s.conv, res, cerr)
	if cerr != nil && !errors.Is(cerr, ErrSizeLimit) {
		f.Detail = oneLine("smart: " + err.Error() + "; conventional: " + cerr.Error())
	}
	return f
}

// scanWith runs one scan and records its outcome in b's health, which may
// switch the mode.
func (s *Stage) scanWith(ctx context.Context, b *backendState, tx *pipeline.Transaction) (Result, error) {
	r := tx.Message.Open()
	if c, ok := r.(io.Closer); ok {
		defer c.Close()
	}
	res, err := b.scanner.Scan(ctx, io.LimitReader(r, s.cfg.MaxSize), tx.Message.Size())
	if err != nil && errors.Is(ctx.Err(), context.Canceled) {
		// The message was abandoned (client gone, shutdown): no verdict
		// on the scanner. A passed deadline does count: a scanner slower
		// than the message's budget is as good as down.
		return res, err
	}
	s.record(b, res, err)
	return res, err
}

// finding turns b's answer into the stage's finding.
func (s *Stage) finding(b *backendState, res Result, err error) pipeline.Finding {
	switch {
	case err == nil && res.Infected:
		return pipeline.Finding{Status: pipeline.Infected, Detail: res.Threat, Backend: b.role}
	case err == nil:
		return pipeline.Finding{Status: pipeline.Clean, Backend: b.role}
	case errors.Is(err, ErrSizeLimit):
		return s.oversize(b.role, "too large for the "+b.role+" scanner: "+err.Error())
	case Unavailable(err):
		return pipeline.Finding{Status: pipeline.Unavailable, Detail: oneLine(b.role + ": " + err.Error()), Backend: b.role}
	}
	return pipeline.Finding{Status: pipeline.Error, Detail: oneLine(b.role + ": " + err.Error()), Backend: b.role}
}

func (s *Stage) oversize(backend, detail string) pipeline.Finding {
	st := pipeline.Skipped
	if s.cfg.Oversize == OversizeTempfail {
		st = pipeline.Unavailable
	}
	return pipeline.Finding{Status: st, Detail: oneLine(detail), Backend: backend}
}

// record updates b's health after a scan; a smart failure may switch the
// mode to conventional.
func (s *Stage) record(b *backendState, res Result, err error) {
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	b.scans++
	switch {
	case err == nil:
		if res.Infected {
			b.infected++
		} else {
			b.clean++
		}
		s.markUp(b, now, "scan answered")
		return
	case errors.Is(err, ErrSizeLimit):
		// The scanner works; the message is too big for it.
		b.tooLarge++
		return
	}
	s.markDown(b, now, err)
	if b == s.smart && s.active == ModeSmart && s.cfg.FallbackToConventional &&
		s.cfg.DisableSmartAfter > 0 && b.consecutive >= s.cfg.DisableSmartAfter {
		s.switchMode(ModeConventional, now, fmt.Sprintf("%d consecutive smart scan failures, last: %s", b.consecutive, oneLine(err.Error())))
	}
}

// markUp records a success; the first after a failure is logged. Callers
// hold s.mu.
func (s *Stage) markUp(b *backendState, now time.Time, why string) {
	b.consecutive = 0
	b.lastOK = now
	if b.state == StateUp {
		return
	}
	prev, since := b.state, b.since
	b.state, b.since = StateUp, now
	if prev == StateDown {
		s.log.Info("scan backend up", zap.String("backend", b.role), zap.String("scanner", b.scanner.Name()),
			zap.String("reason", why), zap.Duration("down_for", now.Sub(since)))
	}
}

// markDown records a failure; the change to down is logged once. Callers
// hold s.mu.
func (s *Stage) markDown(b *backendState, now time.Time, err error) {
	b.failures++
	if Unavailable(err) {
		b.unavailable++
	}
	b.consecutive++
	b.lastErr, b.lastErrAt = oneLine(err.Error()), now
	if b.state == StateDown {
		return
	}
	b.state, b.since = StateDown, now
	s.log.Warn("scan backend down", zap.String("backend", b.role), zap.String("scanner", b.scanner.Name()),
		zap.String("reason", b.lastErr))
}

// switchMode changes the active mode and logs it once. Callers hold s.mu.
func (s *Stage) switchMode(to Mode, now time.Time, reason string) {
	if s.active == to {
		return
	}
	from := s.active
	s.active, s.since, s.reason = to, now, reason
	s.log.Warn("scan mode switched", zap.String("from", string(from)), zap.String("to", string(to)),
		zap.String("reason", reason))
	if to == ModeConventional && !s.cfg.StayConventional && !s.probing && !s.closed {
		s.probing = true
		s.nextProbe = now.Add(s.cfg.RecheckInterval)
		s.wg.Add(1)
		go s.probeLoop()
	}
}

// probeLoop probes smart every RecheckInterval while the stage is switched
// to conventional, and ends when smart answers or the stage is closed.
func (s *Stage) probeLoop() {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		s.probing, s.nextProbe = false, time.Time{}
		s.mu.Unlock()
	}()
	for {
		s.mu.Lock()
		if s.active != ModeConventional || s.closed {
			s.mu.Unlock()
			return
		}
		s.nextProbe = s.clock.Now().Add(s.cfg.RecheckInterval)
		s.mu.Unlock()
		due := make(chan struct{})
		stop := s.clock.AfterFunc(s.cfg.RecheckInterval, func() { close(due) })
		select {
		case <-s.ctx.Done():
			stop() // the wake-up must not outlive the stage
			return
		case <-due:
		}
		if s.Recheck(s.ctx) == nil {
			return
		}
	}
}

// Recheck probes the smart scanner now (Ping). When it answers and the
// stage is switched to conventional, the stage switches back to smart
// (unless StayConventional). It returns the probe's error. The background
// probing calls it every RecheckInterval; an admin endpoint may call it too.
func (s *Stage) Recheck(ctx context.Context) error {
	if s.smart == nil {
		return errors.New("scan: no smart scanner configured")
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ProbeTimeout)
	defer cancel()
	err := s.smart.scanner.Ping(ctx)
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.smart.probes++
	if err != nil {
		s.markDown(s.smart, now, err)
		return err
	}
	s.markUp(s.smart, now, "probe answered")
	if s.active == ModeConventional && s.cfg.Mode == ModeSmart && !s.cfg.StayConventional {
		s.switchMode(ModeSmart, now, "smart scan probe answered")
	}
	return nil
}

// Close stops the background probing and closes the scanners that are
// io.Closers. Inspect must not be called after Close.
func (s *Stage) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	var errs []error
	for _, sc := range []Scanner{s.cfg.Smart, s.cfg.Conventional} {
		if c, ok := sc.(io.Closer); ok && sc != nil {
			errs = append(errs, c.Close())
		}
	}
	return errors.Join(errs...)
}

// oneLine keeps log and trace details on one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

package scan

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/foxproxy/foxproxy/clock/clocktest"
	"github.com/foxproxy/foxproxy/pipeline"
)

// fakeScanner is a Scanner whose answers the test sets.
type fakeScanner struct {
	name string

	mu      sync.Mutex
	scanFn  func(data []byte) (Result, error)
	pingErr error
	scans   int
	pings   int
	last    []byte
}

func (f *fakeScanner) Name() string { return f.name }

func (f *fakeScanner) Scan(ctx context.Context, r io.Reader, size int64) (Result, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return Result{}, err
	}
	f.mu.Lock()
	f.scans++
	f.last = data
	fn := f.scanFn
	f.mu.Unlock()
	if int64(len(data)) != size {
		return Result{}, fmt.Errorf("got %d bytes, size said %d", len(data), size)
	}
	return fn(data)
}

func (f *fakeScanner) Ping(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pings++
	return f.pingErr
}

func (f *fakeScanner) set(fn func([]byte) (Result, error)) {
	f.mu.Lock()
	f.scanFn = fn
	f.mu.Unlock()
}

func (f *fakeScanner) setPing(err error) {
	f.mu.Lock()
	f.pingErr = err
	f.mu.Unlock()
}

func (f *fakeScanner) counts() (scans, pings int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.scans, f.pings
}

var (
	errDown    = &Error{Scanner: "fake", Kind: ErrUnavailable, Msg: "connect", Err: errors.New("connection refused")}
	errGarbage = &Error{Scanner: "fake", Kind: ErrProtocol, Msg: "unexpected reply \"HELLO\""}
	errTooBig  = &Error{Scanner: "fake", Kind: ErrSizeLimit, Msg: "INSTREAM size limit exceeded. ERROR"}
)

func answer(res Result, err error) func([]byte) (Result, error) {
	return func([]byte) (Result, error) { return res, err }
}

func newFake(name string, res Result, err error) *fakeScanner {
	return &fakeScanner{name: name, scanFn: answer(res, err)}
}

// newFakeClock returns a clock the test moves (clocktest.Fake).
func newFakeClock() *clocktest.Fake {
	return clocktest.New(time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC))
}

// stageRig is a stage with fake scanners, a fake clock and an observed log.
type stageRig struct {
	t     *testing.T
	stage *Stage
	smart *fakeScanner
	conv  *fakeScanner
	clock *clocktest.Fake
	logs  *observer.ObservedLogs
	msg   *content
}

func newRig(t *testing.T, cfg Config) *stageRig {
	t.Helper()
	r := &stageRig{t: t, clock: newFakeClock(), msg: &content{data: mail(nil, 3000)}}
	if cfg.Smart == nil && cfg.Mode != ModeConventional {
		r.smart = newFake("smart-fake", Clean, nil)
		cfg.Smart = r.smart
	}
	if cfg.Conventional == nil {
		r.conv = newFake("conv-fake", Clean, nil)
		cfg.Conventional = r.conv
	}
	core, logs := observer.New(zap.InfoLevel)
	cfg.Logger, cfg.Clock = zap.New(core), r.clock
	r.logs = logs
	s, err := NewStage(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.stage = s
	t.Cleanup(func() { s.Close() })
	return r
}

func (r *stageRig) inspect() pipeline.Finding {
	r.t.Helper()
	return r.stage.Inspect(context.Background(), &pipeline.Transaction{ID: "t1", Message: r.msg})
}

func (r *stageRig) logCount(msg string) int { return r.logs.FilterMessage(msg).Len() }

func wantFinding(t *testing.T, f pipeline.Finding, status pipeline.Status, backend, trace string) {
	t.Helper()
	f.Stage = "scan"
	if f.Status != status || f.Backend != backend || (trace != "" && f.Trace() != trace) {
		t.Fatalf("finding %+v (trace %s), want %s from %q, trace %s", f, f.Trace(), status, backend, trace)
	}
}

func TestStageConventionalMode(t *testing.T) {
	r := newRig(t, Config{Mode: ModeConventional})
	wantFinding(t, r.inspect(), pipeline.Clean, "conventional", "scan=clean(conventional)")
	if string(r.conv.last) != string(r.msg.data) {
		t.Fatal("the scanner did not get the whole message")
	}
	r.conv.set(answer(Infected("Eicar-Test-Signature.UNOFFICIAL"), nil))
	f := r.inspect()
	wantFinding(t, f, pipeline.Infected, "conventional", "scan=infected(Eicar-Test-Signature.UNOFFICIAL)")
	if f.Detail != "Eicar-Test-Signature.UNOFFICIAL" {
		t.Fatalf("detail %q", f.Detail)
	}
	r.conv.set(answer(Result{}, errDown))
	f = r.inspect()
	wantFinding(t, f, pipeline.Unavailable, "conventional", "scan=unavailable")
	if !strings.Contains(f.Detail, "conventional: fake: connect: connection refused") {
		t.Fatalf("detail %q", f.Detail)
	}
	r.conv.set(answer(Result{}, errGarbage))
	wantFinding(t, r.inspect(), pipeline.Error, "conventional", "scan=error")
	h := r.stage.Health()
	if h.Mode != ModeConventional || h.Active != ModeConventional || h.Smart != nil || h.Conventional.Scans != 4 ||
		h.Conventional.Infected != 1 || h.Conventional.Failures != 2 || h.Conventional.Unavailable != 1 {
		t.Fatalf("health %+v %+v", h, h.Conventional)
	}
}

func TestStageSmartNoFallback(t *testing.T) {
	// Appliance (1): smart unreachable, no fallback: unavailable, so the
	// policy answers 451 and the message waits in Postfix's queue.
	r := newRig(t, Config{Mode: ModeSmart, DisableSmartAfter: 2})
	wantFinding(t, r.inspect(), pipeline.Clean, "smart", "scan=clean(smart)")
	r.smart.set(answer(Result{}, errDown))
	for range 5 {
		f := r.inspect()
		wantFinding(t, f, pipeline.Unavailable, "smart", "scan=unavailable")
	}
	r.smart.set(answer(Result{}, errGarbage))
	wantFinding(t, r.inspect(), pipeline.Error, "smart", "scan=error")
	if n, _ := r.conv.counts(); n != 0 {
		t.Fatalf("conventional scanned %d messages without fallback", n)
	}
	h := r.stage.Health()
	if h.Active != ModeSmart || h.Smart.State != StateDown || h.Smart.ConsecutiveFailures != 6 {
		t.Fatalf("health %+v %+v", h, h.Smart)
	}
	if r.logCount("scan mode switched") != 0 || r.logCount("scan backend down") != 1 {
		t.Fatalf("logs: %v", r.logs.All())
	}
	// Back up: logged once, counter reset.
	r.smart.set(answer(Clean, nil))
	r.inspect()
	r.inspect()
	if r.logCount("scan backend up") != 1 || r.stage.Health().Smart.ConsecutiveFailures != 0 {
		t.Fatalf("logs: %v", r.logs.All())
	}
}

func TestStageFallbackPerMessage(t *testing.T) {
	r := newRig(t, Config{Mode: ModeSmart, FallbackToConventional: true}) // DisableSmartAfter 0: never switch
	r.smart.set(answer(Result{}, errDown))
	for i := range 10 {
		opens := r.msg.opens.Load()
		f := r.inspect()
		wantFinding(t, f, pipeline.Clean, "conventional", "scan=clean(conventional)")
		if got := r.msg.opens.Load() - opens; got != 2 {
			t.Fatalf("message %d opened %d times, want 2 (smart, then conventional from the start)", i, got)
		}
	}
	if string(r.conv.last) != string(r.msg.data) {
		t.Fatal("the fallback scan did not read the whole message from its start")
	}
	if s, _ := r.smart.counts(); s != 10 {
		t.Fatalf("smart tried %d times, want 10", s)
	}
	if r.stage.Health().Active != ModeSmart {
		t.Fatal("switched although DisableSmartAfter is 0")
	}
	// A protocol error from smart falls back too.
	r.smart.set(answer(Result{}, errGarbage))
	r.conv.set(answer(Infected("X"), nil))
	wantFinding(t, r.inspect(), pipeline.Infected, "conventional", "scan=infected(X)")
}

func TestStageSwitchAfterN(t *testing.T) {
	r := newRig(t, Config{Mode: ModeSmart, FallbackToConventional: true, DisableSmartAfter: 3, RecheckInterval: time.Minute})
	r.smart.set(answer(Result{}, errDown))
	for range 3 {
		wantFinding(t, r.inspect(), pipeline.Clean, "conventional", "")
	}
	h := r.stage.Health()
	if h.Active != ModeConventional || !strings.Contains(h.Reason, "3 consecutive smart scan failures") ||
		!h.Since.Equal(r.clock.Now()) {
		t.Fatalf("health after 3 failures: %+v", h)
	}
	// Appliance (2): smart is no longer tried, (1) no longer happens.
	for range 5 {
		wantFinding(t, r.inspect(), pipeline.Clean, "conventional", "scan=clean(conventional)")
	}
	if s, _ := r.smart.counts(); s != 3 {
		t.Fatalf("smart tried %d times after the switch", s-3)
	}
	if r.logCount("scan mode switched") != 1 || r.logCount("scan backend down") != 1 {
		t.Fatalf("logs: %v", r.logs.All())
	}
	e := r.logs.FilterMessage("scan mode switched").All()[0]
	if e.ContextMap()["to"] != "conventional" || !strings.Contains(e.ContextMap()["reason"].(string), "connection refused") {
		t.Fatalf("switch log %v", e.ContextMap())
	}
}

func TestStageSuccessResetsCount(t *testing.T) {
	r := newRig(t, Config{Mode: ModeSmart, FallbackToConventional: true, DisableSmartAfter: 3})
	for _, ok := range []bool{false, false, true, false, false, true, false, false} {
		if ok {
			r.smart.set(answer(Clean, nil))
		} else {
			r.smart.set(answer(Result{}, errDown))
		}
		r.inspect()
	}
	if h := r.stage.Health(); h.Active != ModeSmart || h.Smart.ConsecutiveFailures != 2 {
		t.Fatalf("switched on non-consecutive failures: %+v", h)
	}
}

func TestStageProbeAndSwitchBack(t *testing.T) {
	r := newRig(t, Config{Mode: ModeSmart, FallbackToConventional: true, DisableSmartAfter: 2, RecheckInterval: time.Minute})
	r.smart.set(answer(Result{}, errDown))
	r.smart.setPing(errDown)
	r.inspect()
	r.inspect()
	waitFor(t, "the probe timer", func() bool { return r.clock.Pending() == 1 })
	if h := r.stage.Health(); !h.NextProbe.Equal(r.clock.Now().Add(time.Minute)) {
		t.Fatalf("next probe %v, want now+1m", h.NextProbe)
	}
	// Not due yet.
	r.clock.Advance(59 * time.Second)
	if _, p := r.smart.counts(); p != 0 {
		t.Fatalf("probed early")
	}
	// Due: the probe fails, the stage stays on conventional and waits again.
	r.clock.Advance(time.Second)
	waitFor(t, "the first probe", func() bool { _, p := r.smart.counts(); return p == 1 })
	waitFor(t, "the next probe timer", func() bool { return r.clock.Pending() == 1 })
	if h := r.stage.Health(); h.Active != ModeConventional || h.Smart.Probes != 1 {
		t.Fatalf("after a failed probe: %+v", h)
	}
	// Smart is back: the next probe switches back by itself.
	r.smart.set(answer(Clean, nil))
	r.smart.setPing(nil)
	r.clock.Advance(time.Minute)
	waitFor(t, "the switch back", func() bool { return r.stage.Health().Active == ModeSmart })
	waitFor(t, "the probing to end", func() bool { return r.stage.Health().NextProbe.IsZero() })
	if r.clock.Pending() != 0 {
		t.Fatal("probing goes on after the switch back")
	}
	wantFinding(t, r.inspect(), pipeline.Clean, "smart", "scan=clean(smart)")
	if r.logCount("scan mode switched") != 2 || r.logCount("scan backend up") != 1 || r.logCount("scan backend down") != 1 {
		t.Fatalf("logs: %v", r.logs.All())
	}
	h := r.stage.Health()
	if h.Reason != "smart scan probe answered" || h.Smart.State != StateUp {
		t.Fatalf("health %+v", h)
	}
	// A second outage switches again and probing restarts.
	r.smart.set(answer(Result{}, errDown))
	r.inspect()
	r.inspect()
	waitFor(t, "the probe timer again", func() bool { return r.clock.Pending() == 1 })
	if r.logCount("scan mode switched") != 3 {
		t.Fatalf("logs: %v", r.logs.All())
	}
}

func TestStageStayConventional(t *testing.T) {
	r := newRig(t, Config{Mode: ModeSmart, FallbackToConventional: true, DisableSmartAfter: 1, StayConventional: true})
	r.smart.set(answer(Result{}, errDown))
	r.inspect()
	if h := r.stage.Health(); h.Active != ModeConventional || !h.NextProbe.IsZero() || r.clock.Pending() != 0 {
		t.Fatalf("probing although StayConventional: %+v", h)
	}
	if err := r.stage.Recheck(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r.stage.Health().Active != ModeConventional {
		t.Fatal("switched back although StayConventional")
	}
}

func TestStageBothDown(t *testing.T) {
	r := newRig(t, Config{Mode: ModeSmart, FallbackToConventional: true, DisableSmartAfter: 2})
	r.smart.set(answer(Result{}, errDown))
	r.conv.set(answer(Result{}, errDown))
	f := r.inspect()
	wantFinding(t, f, pipeline.Unavailable, "conventional", "scan=unavailable")
	if !strings.Contains(f.Detail, "smart: ") || !strings.Contains(f.Detail, "; conventional: ") {
		t.Fatalf("detail %q", f.Detail)
	}
	f = r.inspect() // switches now
	wantFinding(t, f, pipeline.Unavailable, "conventional", "")
	f = r.inspect() // switched: conventional only
	wantFinding(t, f, pipeline.Unavailable, "conventional", "")
	if s, _ := r.smart.counts(); s != 2 {
		t.Fatalf("smart tried %d times", s)
	}
	h := r.stage.Health()
	if h.Smart.State != StateDown || h.Conventional.State != StateDown {
		t.Fatalf("health %+v", h)
	}
	if r.logCount("scan backend down") != 2 {
		t.Fatalf("logs: %v", r.logs.All())
	}
}

func TestStageOversize(t *testing.T) {
	r := newRig(t, Config{Mode: ModeSmart, MaxSize: 100})
	f := r.inspect()
	want := fmt.Sprintf("too large (%d bytes > 100)", len(r.msg.data))
	wantFinding(t, f, pipeline.Skipped, "", "scan=skipped")
	if f.Detail != want {
		t.Fatalf("detail %q, want %q", f.Detail, want)
	}
	if s, _ := r.smart.counts(); s != 0 || r.msg.opens.Load() != 0 {
		t.Fatal("an oversized message was sent to a scanner")
	}
	r = newRig(t, Config{Mode: ModeSmart, MaxSize: 100, Oversize: OversizeTempfail})
	f = r.inspect()
	wantFinding(t, f, pipeline.Unavailable, "", "scan=unavailable")
	if f.Detail != want {
		t.Fatalf("detail %q", f.Detail)
	}
	// The scanner's own limit is handled the same way and is no failure.
	r = newRig(t, Config{Mode: ModeSmart, FallbackToConventional: true, DisableSmartAfter: 1})
	r.smart.set(answer(Result{}, errTooBig))
	f = r.inspect()
	wantFinding(t, f, pipeline.Skipped, "smart", "scan=skipped")
	if !strings.Contains(f.Detail, "too large for the smart scanner") {
		t.Fatalf("detail %q", f.Detail)
	}
	if h := r.stage.Health(); h.Active != ModeSmart || h.Smart.TooLarge != 1 || h.Smart.Failures != 0 {
		t.Fatalf("a size-limit refusal counted as a failure: %+v", h.Smart)
	}
}

func TestStageContextDone(t *testing.T) {
	r := newRig(t, Config{Mode: ModeSmart, FallbackToConventional: true})
	ctx, cancel := context.WithCancel(context.Background())
	r.smart.set(func([]byte) (Result, error) {
		cancel()
		return Result{}, &Error{Scanner: "fake", Kind: ErrUnavailable, Msg: "INSTREAM", Err: context.Canceled}
	})
	f := r.stage.Inspect(ctx, &pipeline.Transaction{Message: r.msg})
	wantFinding(t, f, pipeline.Unavailable, "smart", "")
	if n, _ := r.conv.counts(); n != 0 {
		t.Fatal("fell back although the message's context is done")
	}
	if h := r.stage.Health(); h.Smart.Failures != 0 || h.Smart.State != StateUnknown {
		t.Fatalf("an abandoned message counted against smart: %+v", h.Smart)
	}
}

func TestStageCloseStopsProbing(t *testing.T) {
	r := newRig(t, Config{Mode: ModeSmart, FallbackToConventional: true, DisableSmartAfter: 1})
	r.smart.set(answer(Result{}, errDown))
	r.smart.setPing(errDown)
	r.inspect()
	waitFor(t, "the probe timer", func() bool { return r.clock.Pending() == 1 })
	done := make(chan struct{})
	go func() { r.stage.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not stop the probing")
	}
	r.clock.Advance(time.Hour)
	if _, p := r.smart.counts(); p != 0 {
		t.Fatal("probed after Close")
	}
	if err := r.stage.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
}

func TestStageCloseClosesScanners(t *testing.T) {
	_, fs := newICAPFake(t, -1, func(*icapReq) string { return cicap204 })
	icap, _ := NewICAP("icap://"+fs.addr()+"/avscan", Options{})
	s, err := NewStage(Config{Smart: icap})
	if err != nil {
		t.Fatal(err)
	}
	if f := s.Inspect(context.Background(), &pipeline.Transaction{Message: &content{data: []byte("hi")}}); f.Status != pipeline.Clean {
		t.Fatalf("%+v", f)
	}
	s.Close()
	if idle, closed := icap.pool.state(); !closed || idle != 0 {
		t.Fatal("the ICAP pool was not closed")
	}
}

func TestStageConfig(t *testing.T) {
	sc := newFake("x", Clean, nil)
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"nothing", Config{}},
		{"smart without scanner", Config{Mode: ModeSmart, Conventional: sc}},
		{"fallback without conventional", Config{Mode: ModeSmart, Smart: sc, FallbackToConventional: true}},
		{"conventional without scanner", Config{Mode: ModeConventional, Smart: sc}},
		{"bad mode", Config{Mode: "cloud", Smart: sc}},
		{"bad oversize", Config{Smart: sc, Oversize: "drop"}},
		{"negative N", Config{Smart: sc, Conventional: sc, DisableSmartAfter: -1}},
	} {
		if _, err := NewStage(tc.cfg); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
	s, err := NewStage(Config{Smart: sc})
	if err != nil || s.cfg.Mode != ModeSmart || s.cfg.MaxSize != DefaultMaxSize || s.cfg.RecheckInterval != time.Minute || s.cfg.Oversize != OversizePass {
		t.Fatalf("defaults: %+v %v", s.cfg, err)
	}
	s.Close()
	if s.Name() != "scan" {
		t.Fatal(s.Name())
	}
}

func TestStageHealthJSON(t *testing.T) {
	r := newRig(t, Config{Mode: ModeSmart, FallbackToConventional: true, DisableSmartAfter: 1})
	r.smart.set(answer(Result{}, errDown))
	r.inspect()
	b, err := json.Marshal(r.stage.Health())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"mode":"smart"`, `"active":"conventional"`, `"next_probe":`, `"state":"down"`, `"last_error":"fake: connect: connection refused"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("status JSON lacks %s: %s", want, b)
		}
	}
}

func TestStageInPipeline(t *testing.T) {
	r := newRig(t, Config{Mode: ModeSmart})
	r.smart.set(answer(Infected("Eicar-Test-Signature.UNOFFICIAL"), nil))
	fs, err := pipeline.New(r.stage).Run(context.Background(), &pipeline.Transaction{Message: r.msg})
	if err != nil || len(fs) != 1 || fs[0].Trace() != "scan=infected(Eicar-Test-Signature.UNOFFICIAL)" || fs[0].Backend != "smart" {
		t.Fatalf("%+v %v", fs, err)
	}
}

func TestStageConcurrentFlapping(t *testing.T) {
	// Many messages at once while smart flaps and probes run: no race, and
	// every message gets an answer from one of the scanners.
	r := newRig(t, Config{Mode: ModeSmart, FallbackToConventional: true, DisableSmartAfter: 3, RecheckInterval: time.Second})
	var mu sync.Mutex
	n := 0
	r.smart.set(func([]byte) (Result, error) {
		mu.Lock()
		defer mu.Unlock()
		n++
		if n%4 != 0 {
			return Result{}, errDown
		}
		return Clean, nil
	})
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%20 == 0 {
				r.clock.Advance(time.Second)
			}
			f := r.stage.Inspect(context.Background(), &pipeline.Transaction{Message: r.msg})
			if f.Status != pipeline.Clean {
				t.Errorf("finding %+v", f)
			}
			_ = r.stage.Health()
		}()
	}
	wg.Wait()
}

func TestStageDeadlineCounts(t *testing.T) {
	// A smart scanner slower than the message's budget is as good as down.
	r := newRig(t, Config{Mode: ModeSmart, FallbackToConventional: true, DisableSmartAfter: 1})
	slow := &slowScanner{fakeScanner: r.smart}
	r.stage.cfg.Smart, r.stage.smart.scanner = slow, slow
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	f := r.stage.Inspect(ctx, &pipeline.Transaction{Message: r.msg})
	wantFinding(t, f, pipeline.Unavailable, "smart", "")
	if h := r.stage.Health(); h.Smart.Failures != 1 || h.Active != ModeConventional {
		t.Fatalf("a timed-out smart scan did not count: %+v", h)
	}
}

// slowScanner answers only when ctx is done.
type slowScanner struct{ *fakeScanner }

func (s *slowScanner) Scan(ctx context.Context, r io.Reader, size int64) (Result, error) {
	<-ctx.Done()
	return Result{}, &Error{Scanner: "slow", Kind: ErrUnavailable, Msg: "INSTREAM", Err: ctx.Err()}
}

// Probe notices a scanner that went away, and its return, without mail.
func TestProbeRecordsBothScanners(t *testing.T) {
	smart, conv := newFake("smart", Clean, nil), newFake("conv", Clean, nil)
	st, err := NewStage(Config{Mode: ModeSmart, Smart: smart, Conventional: conv, FallbackToConventional: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	conv.setPing(errDown)
	st.Probe(context.Background())
	h := st.Health()
	if h.Smart.State != StateUp || h.Conventional.State != StateDown || h.Active != ModeSmart {
		t.Fatalf("after a failed probe of conventional: %+v %+v", h.Smart, h.Conventional)
	}
	conv.setPing(nil)
	st.Probe(context.Background())
	if h := st.Health(); h.Conventional.State != StateUp || h.Conventional.Probes != 2 {
		t.Fatalf("after recovery: %+v", h.Conventional)
	}
}

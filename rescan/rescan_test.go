package rescan

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/foxproxy/foxproxy/delivery"
	"github.com/foxproxy/foxproxy/pipeline"
	"github.com/foxproxy/foxproxy/policy"
	"github.com/foxproxy/foxproxy/quarantine"
)

// scanByContent is a scan stage: "EICAR" in the message is infected,
// and it answers nothing at all while down.
type scanByContent struct{ down bool }

func (s *scanByContent) Name() pipeline.StageName { return "scan" }
func (s *scanByContent) Inspect(_ context.Context, tx *pipeline.Transaction) pipeline.Finding {
	if s.down {
		return pipeline.Finding{Status: pipeline.Unavailable}
	}
	b, _ := io.ReadAll(tx.Message.Open())
	if strings.Contains(string(b), "EICAR") {
		return pipeline.Finding{Status: pipeline.Infected, Detail: "Eicar-Test-Signature"}
	}
	return pipeline.Finding{Status: pipeline.Clean, Backend: "conventional"}
}

// downstream records deliveries; its next answers can be scripted.
type downstream struct {
	mu        sync.Mutex
	delivered []string // held IDs
	answer    func(o delivery.ReinjectOptions) (*delivery.Reinjected, error)
}

func (d *downstream) deliver(_ context.Context, o delivery.ReinjectOptions, env delivery.Envelope, host, id string, v policy.Verdict,
	_ []pipeline.Finding, open func() io.Reader, _ int64) (*delivery.Reinjected, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.answer != nil {
		return d.answer(o)
	}
	if err := o.BeforeData(); err != nil {
		return nil, err
	}
	io.ReadAll(open())
	d.delivered = append(d.delivered, id)
	return &delivery.Reinjected{Reply: "2.0.0 Ok: queued as ABC", QueuedAs: "ABC", Accepted: env.Rcpts}, nil
}

type fixture struct {
	q, held quarantine.Store
	scan    *scanByContent
	ds      *downstream
	loop    *Loop
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	q, err := quarantine.Open(filepath.Join(t.TempDir(), "q"))
	if err != nil {
		t.Fatal(err)
	}
	held, err := q.Held()
	if err != nil {
		t.Fatal(err)
	}
	eng, err := policy.New(policy.Config{OnScanUnavailable: "tempfail", OnInfected: "quarantine"}, 1<<20) // the default policy: no rules
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{q: q, held: held, scan: &scanByContent{}, ds: &downstream{}}
	f.loop = newLoop(Config{Held: held, Quarantine: q, Pipeline: pipeline.New(f.scan), Policy: eng,
		Ready: func(context.Context) bool { return !f.scan.down }, Rate: 1000, Batch: 10})
	f.loop.cfg.deliver = f.ds.deliver
	f.loop.cfg.sleep = func(time.Duration, <-chan struct{}) bool { return true }
	return f
}

func (f *fixture) hold(t *testing.T, subject, body string, arrived time.Time) string {
	t.Helper()
	msg := "Subject: " + subject + "\r\n\r\n" + body + "\r\n"
	id, err := f.held.Put(context.Background(), quarantine.Entry{From: "sender@example.test", Rcpts: []string{"rcpt@example.test"}, QueueID: "4ABC" + subject,
		Size: int64(len(msg)), Rule: "hold_after", Arrived: arrived,
		Findings: []quarantine.Finding{{Stage: "scan", Status: "unscanned"}}}, strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func (f *fixture) heldCount(t *testing.T) int {
	t.Helper()
	n, _, err := f.held.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestRescanDeliversCleanQuarantinesInfected(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	clean := f.hold(t, "clean", "hello", now.Add(-time.Hour))
	infected := f.hold(t, "virus", "EICAR", now.Add(-2*time.Hour))
	f.loop.Round()
	if len(f.ds.delivered) != 1 || f.ds.delivered[0] != clean {
		t.Fatalf("delivered %v, want only %s", f.ds.delivered, clean)
	}
	e, err := f.q.Get(context.Background(), infected)
	if err != nil {
		t.Fatalf("infected message not in the quarantine under its held ID: %v", err)
	}
	if e.Rule != "on_infected" || e.Findings[0].Status != "infected" || e.Arrived.IsZero() {
		t.Fatalf("quarantine entry %+v", e)
	}
	if n := f.heldCount(t); n != 0 {
		t.Fatalf("%d left in the held area", n)
	}
	if files, _ := os.ReadDir(f.held.Describe()); len(files) != 0 {
		t.Fatalf("held directory not empty: %v", files)
	}
	f.loop.Round()
	if len(f.ds.delivered) != 1 {
		t.Fatalf("a second round delivered again: %v", f.ds.delivered)
	}
}

// While no scanner answers nothing is touched; a scanner that answers the
// probe but not the scan ends the round at the first message.
func TestRescanWaitsForScanner(t *testing.T) {
	f := newFixture(t)
	f.hold(t, "a", "x", time.Now().Add(-time.Hour))
	f.hold(t, "b", "y", time.Now())
	f.scan.down = true
	f.loop.Round()
	f.loop.cfg.Ready = func(context.Context) bool { return true }
	scans := 0
	f.loop.cfg.Pipeline = pipeline.New(stageCounter{&scans, f.scan})
	f.loop.Round()
	if scans != 1 || len(f.ds.delivered) != 0 || f.heldCount(t) != 2 {
		t.Fatalf("scans %d, delivered %v, held %d", scans, f.ds.delivered, f.heldCount(t))
	}
}

type stageCounter struct {
	n *int
	s pipeline.Stage
}

func (c stageCounter) Name() pipeline.StageName { return c.s.Name() }
func (c stageCounter) Inspect(ctx context.Context, tx *pipeline.Transaction) pipeline.Finding {
	*c.n++
	return c.s.Inspect(ctx, tx)
}

// No reply after the final dot: the message stays held, marked, and is
// never sent again by the loop.
func TestRescanUncertainIsNotRepeated(t *testing.T) {
	f := newFixture(t)
	id := f.hold(t, "c", "x", time.Now())
	calls := 0
	f.ds.answer = func(o delivery.ReinjectOptions) (*delivery.Reinjected, error) {
		calls++
		if err := o.BeforeData(); err != nil {
			return nil, err
		}
		return nil, errUncertain
	}
	f.loop.Round()
	f.loop.Round()
	if calls != 1 {
		t.Fatalf("sent %d times", calls)
	}
	ce, ok := f.held.Claimed(context.Background(), id)
	if !ok || ce.Uncertain == "" || f.heldCount(t) != 1 {
		t.Fatalf("claim %+v %v, held %d", ce, ok, f.heldCount(t))
	}
}

var errUncertain = &wrapped{delivery.ErrReinjectUncertain}

type wrapped struct{ err error }

func (w *wrapped) Error() string { return "reinject: " + w.err.Error() }
func (w *wrapped) Unwrap() error { return w.err }

// What a crash leaves behind, found by the next process: a claim of a dead
// process that never began to send is taken over and the message
// delivered; one that began to send is left for an administrator; a move
// to the quarantine that got as far as the quarantine's copy is finished.
func TestRescanAfterCrash(t *testing.T) {
	f := newFixture(t)
	dead := deadPID(t)
	unsent := f.hold(t, "unsent", "x", time.Now().Add(-3*time.Hour))
	sending := f.hold(t, "sending", "x", time.Now().Add(-2*time.Hour))
	moving := f.hold(t, "moving", "EICAR", time.Now().Add(-time.Hour))
	writeClaim(t, f.held, unsent, map[string]any{"pid": dead, "time": time.Now()})
	writeClaim(t, f.held, sending, map[string]any{"pid": dead, "time": time.Now(), "sending": true})
	e, _ := f.held.Get(context.Background(), moving)
	if err := f.q.PutAs(context.Background(), moving, e, strings.NewReader("Subject: moving\r\n\r\nEICAR\r\n")); err != nil {
		t.Fatal(err)
	}

	f.loop.Round()
	if len(f.ds.delivered) != 1 || f.ds.delivered[0] != unsent {
		t.Fatalf("delivered %v, want only %s", f.ds.delivered, unsent)
	}
	if has(t, f.held, moving) || !has(t, f.q, moving) {
		t.Fatal("the interrupted move was not finished")
	}
	if list, _ := f.q.List(context.Background()); len(list) != 1 {
		t.Fatalf("quarantine has %d entries, want the moved one once", len(list))
	}
	ce, ok := f.held.Claimed(context.Background(), sending)
	if !has(t, f.held, sending) || !ok || ce.Uncertain == "" || ce.Running {
		t.Fatalf("the message that was being sent: held %v, claim %+v", has(t, f.held, sending), ce)
	}
}

func deadPID(t *testing.T) int {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

func writeClaim(t *testing.T, s quarantine.Store, id string, rec map[string]any) {
	b, _ := json.Marshal(rec)
	if err := os.WriteFile(filepath.Join(s.Describe(), id+".claim"), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// Start and Stop: the loop runs rounds by itself and stops promptly.
func TestLoopStartStop(t *testing.T) {
	f := newFixture(t)
	f.hold(t, "bg", "x", time.Now())
	cfg := f.loop.cfg
	cfg.Interval = 10 * time.Millisecond
	cfg.sleep = nil
	l := Start(cfg)
	deadline := time.Now().Add(5 * time.Second)
	for f.heldCount(t) != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	l.Stop()
	f.ds.mu.Lock()
	defer f.ds.mu.Unlock()
	if len(f.ds.delivered) != 1 {
		t.Fatalf("delivered %v", f.ds.delivered)
	}
}

func has(t *testing.T, s quarantine.Store, id string) bool {
	t.Helper()
	ok, err := s.Has(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

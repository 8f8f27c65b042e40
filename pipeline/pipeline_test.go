package pipeline

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

type fakeStage struct {
	name    string
	finding Finding
	delay   time.Duration
	panics  bool
	seen    []netip.Addr
}

func (s *fakeStage) Name() StageName { return StageName(s.name) }
func (s *fakeStage) Inspect(ctx context.Context, tx *Transaction) Finding {
	if s.panics {
		panic("boom")
	}
	select {
	case <-time.After(s.delay):
		return s.finding
	case <-ctx.Done():
		return Finding{Status: Skipped, Detail: "timeout"}
	}
}
func (s *fakeStage) PrefetchClient(a netip.Addr) { s.seen = append(s.seen, a) }

// Findings come back in stage order whatever order the stages finish in,
// and each is stamped with its stage's name.
func TestRunOrderAndNames(t *testing.T) {
	slow := &fakeStage{name: "ers", delay: 30 * time.Millisecond, finding: Finding{Status: Listed, Categories: []string{"spam"}}}
	fast := &fakeStage{name: "scan", finding: Finding{Stage: "wrong", Status: Clean, Backend: "conventional"}}
	fs, err := New(slow, fast).Run(context.Background(), &Transaction{})
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 2 || fs[0].Stage != "ers" || fs[1].Stage != "scan" || fs[0].Status != Listed {
		t.Fatalf("findings %+v", fs)
	}
	if fs[0].Duration < 30*time.Millisecond {
		t.Fatalf("duration not measured: %v", fs[0].Duration)
	}
}

func TestRunRecoversPanics(t *testing.T) {
	fs, err := New(&fakeStage{name: "ok"}, &fakeStage{name: "bad", panics: true}).Run(context.Background(), &Transaction{})
	var pe *PanicError
	if !errors.As(err, &pe) || pe.Stage != "bad" || len(pe.Stack) == 0 {
		t.Fatalf("err = %v", err)
	}
	if fs[1].Status != Error {
		t.Fatalf("panicking stage's finding: %+v", fs[1])
	}
}

func TestPrefetchOnlyValidAddresses(t *testing.T) {
	s := &fakeStage{name: "ers"}
	p := New(s)
	p.PrefetchClient(netip.Addr{})
	p.PrefetchClient(netip.MustParseAddr("192.0.2.1"))
	if len(s.seen) != 1 {
		t.Fatalf("prefetched %v", s.seen)
	}
}

func TestTrace(t *testing.T) {
	cases := map[string]Finding{
		"ers=listed(exploit,spam)":                 {Stage: "ers", Status: Listed, Categories: []string{"exploit", "spam"}},
		"scan=infected(Eicar-Test-Signature.UNOF)": {Stage: "scan", Status: Infected, Detail: "Eicar-Test-Signature.UNOF"},
		"scan=clean(conventional)":                 {Stage: "scan", Status: Clean, Backend: "conventional"},
		"wrs=skipped":                              {Stage: "wrs", Status: Skipped, Detail: "timeout; ignored"},
	}
	for want, f := range cases {
		if got := f.Trace(); got != want {
			t.Errorf("Trace() = %q, want %q", got, want)
		}
	}
	// Header syntax can never be broken by a finding's text.
	f := Finding{Stage: "scan", Status: Infected, Detail: "x;\r\nX-Injected: yes (" + strings.Repeat("y", 300)}
	got := f.Trace()
	if strings.ContainsAny(got[len("scan=infected("):len(got)-1], ";\r\n ()") || len(got) > 130 {
		t.Fatalf("unsafe trace %q", got)
	}
}

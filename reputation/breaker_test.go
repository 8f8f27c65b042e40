package reputation

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/zap"

	"github.com/foxproxy/foxproxy/pipeline"
)

// TestBreakerSafeBrowsing drives one backend's breaker through a whole
// outage on an injected clock, counting what reaches the server.
func TestBreakerSafeBrowsing(t *testing.T) {
	sb := newFakeSB(t)
	sb.list("http://evil.example/", "SOCIAL_ENGINEERING")
	sb.set("503")
	clock := newFakeClock()
	w, logs := newWRS(t, WRSConfig{SafeBrowsing: sb.config(), Clock: clock,
		Breaker: BreakerConfig{Failures: 3, ProbeInterval: 30 * time.Second}})
	msg := tx(textMail("http://evil.example/"))
	ctx := context.Background()

	// N consecutive failures: each message pays for its request.
	for i := range 3 {
		wantFinding(t, w.Inspect(ctx, msg), pipeline.Skipped, nil, "safebrowsing: HTTP 503")
		if h := healthOf(w, SafeBrowsingName); (i < 2) != (h.State == StateClosed) {
			t.Fatalf("after %d failures: %s", i+1, h.State)
		}
	}
	opened := clock.Now()
	h := healthOf(w, SafeBrowsingName)
	if h.State != StateOpen || !h.Since.Equal(opened) || !h.NextProbe.Equal(opened.Add(30*time.Second)) || h.LastError != "safebrowsing: HTTP 503" {
		t.Fatalf("open health %+v", h)
	}

	// Open: skipped at once, the server is not contacted.
	for range 5 {
		wantFinding(t, w.Inspect(ctx, msg), pipeline.Skipped, nil, "safebrowsing: breaker open; 1 urls")
	}
	if n := sb.count(); n != 3 {
		t.Fatalf("server got %d requests, want 3", n)
	}

	// A failing probe keeps it open and plans the next one.
	clock.Advance(30 * time.Second)
	h = healthOf(w, SafeBrowsingName)
	if h.State != StateOpen || h.Checks != 1 || h.CheckFailures != 1 || h.Skipped != 5 ||
		!h.LastCheck.Equal(clock.Now()) || !h.NextProbe.Equal(clock.Now().Add(30*time.Second)) {
		t.Fatalf("after a failed probe %+v", h)
	}
	if n := sb.count(); n != 4 {
		t.Fatalf("server got %d requests, want 4 (3 + probe)", n)
	}
	if e := sb.lastBody().ThreatInfo.ThreatEntries; !slices.Equal(e, []sbEntry{{DefaultSafeBrowsingProbeURL}}) {
		t.Errorf("probe asked %q", e)
	}
	clock.Advance(29 * time.Second)
	if sb.count() != 4 {
		t.Fatal("probed before ProbeInterval")
	}

	// The service is back: the probe half-opens, the next message closes.
	sb.set("")
	clock.Advance(time.Second)
	if h := healthOf(w, SafeBrowsingName); h.State != StateHalfOpen || h.Checks != 2 || !h.NextProbe.IsZero() {
		t.Fatalf("after a passing probe %+v", h)
	}
	wantFinding(t, w.Inspect(ctx, msg), pipeline.Listed, []string{"phish"}, "listed by safebrowsing")
	if h := healthOf(w, SafeBrowsingName); h.State != StateClosed || h.Lookups != 4 || h.Failures != 3 || h.Listed != 1 {
		t.Fatalf("after recovery %+v", h)
	}
	if got, want := transitions(logs, SafeBrowsingName), []string{"closed>open", "open>half-open", "half-open>closed"}; !slices.Equal(got, want) {
		t.Errorf("logged %q, want %q (once each)", got, want)
	}
	if clock.Pending() != 0 {
		t.Errorf("%d timers left with the breaker closed", clock.Pending())
	}
}

// TestBreakerHalfOpenFailure: after a passing probe, the first failing
// lookup reopens at once.
func TestBreakerHalfOpenFailure(t *testing.T) {
	fb := &fakeBackend{name: "fake", err: errors.New("down")}
	clock := newFakeClock()
	w, logs := newWRS(t, WRSConfig{Backends: []Backend{fb}, Clock: clock, Breaker: BreakerConfig{Failures: 2}})
	msg := tx(textMail("http://x.example/"))
	for range 2 {
		w.Inspect(context.Background(), msg)
	}
	clock.Advance(DefaultProbeInterval)
	if h := healthOf(w, "fake"); h.State != StateHalfOpen {
		t.Fatalf("state %s", h.State)
	}
	wantFinding(t, w.Inspect(context.Background(), msg), pipeline.Skipped, nil, "fake: down")
	if h := healthOf(w, "fake"); h.State != StateOpen || !h.NextProbe.Equal(clock.Now().Add(DefaultProbeInterval)) {
		t.Fatalf("after a failure in half-open %+v", h)
	}
	want := []string{"closed>open", "open>half-open", "half-open>open"}
	if got := transitions(logs, "fake"); !slices.Equal(got, want) {
		t.Errorf("logged %q, want %q", got, want)
	}
}

// TestBreakerCachedAndStale: cached answers neither close nor reset the
// breaker, and a failure from before the last transition cannot move it.
func TestBreakerCachedAndStale(t *testing.T) {
	clock := newFakeClock()
	b := newBreaker("x", BreakerConfig{Failures: 2}, func(context.Context) error { return nil }, zap.NewNop(), clock)
	defer b.close()
	fail := errors.New("fail")

	g, _ := b.allow()
	b.record(g, false, false, fail)
	g, _ = b.allow()
	b.record(g, true, true, nil) // cached: no reset
	g, _ = b.allow()
	b.record(g, false, false, fail)
	if b.snapshot().State != StateOpen {
		t.Fatal("a cached answer reset the failure count")
	}

	clock.Advance(DefaultProbeInterval)
	if b.snapshot().State != StateHalfOpen {
		t.Fatal("probe did not half-open")
	}
	g, _ = b.allow()
	b.record(g-1, false, false, fail) // started before the probe passed
	b.record(g, false, true, nil)     // cached: does not close
	if s := b.snapshot(); s.State != StateHalfOpen || s.Failures != 3 {
		t.Fatalf("stale or cached outcome moved the state: %+v", s)
	}
	b.record(g, false, false, context.Canceled)
	if s := b.snapshot(); s.State != StateHalfOpen || s.Failures != 3 {
		t.Fatalf("a cancelled lookup counted: %+v", s)
	}
	b.record(g, false, false, nil)
	if s := b.snapshot(); s.State != StateClosed {
		t.Fatalf("state %s", s.State)
	}
}

// TestBreakerDNSZone: the breaker of a DNS list, probed with the RFC 5782
// §5 test points, counted at the server.
func TestBreakerDNSZone(t *testing.T) {
	s := uriLists(t)
	s.set("uribl.test", func(z *fakeZone) { z.rcode = dns.RcodeServerFailure })
	c := newClient(t, DNSConfig{Attempts: 1}, s.Addr)
	clock := newFakeClock()
	w, logs := newWRS(t, WRSConfig{Zones: []DNSZone{uriblZone, multiZone}, Client: c, Clock: clock,
		Breaker: BreakerConfig{Failures: 2, ProbeInterval: time.Minute}})
	ctx := context.Background()
	msg := tx(textMail("http://evil.example/"))

	for range 2 {
		// The other zone still lists: Listed, with the failure named.
		wantFinding(t, w.Inspect(ctx, msg), pipeline.Listed, []string{"spam"}, "listed by multi.test; uribl.test: SERVFAIL")
	}
	wantFinding(t, w.Inspect(ctx, msg), pipeline.Listed, []string{"spam"}, "listed by multi.test; uribl.test: breaker open")
	if n := s.count("evil.example.uribl.test", dns.TypeA); n != 2 {
		t.Errorf("server asked %d times, want 2", n)
	}
	if h := healthOf(w, "multi.test"); h.State != StateClosed {
		t.Errorf("the healthy zone's breaker is %s", h.State)
	}

	clock.Advance(time.Minute) // probe fails: SERVFAIL
	if n := s.count("test.uribl.test", dns.TypeA); n != 1 {
		t.Errorf("test point asked %d times, want 1", n)
	}
	if h := healthOf(w, "uribl.test"); h.State != StateOpen || h.CheckFailures != 1 {
		t.Errorf("health %+v", h)
	}

	s.set("uribl.test", func(z *fakeZone) { z.rcode = 0 })
	clock.Advance(time.Minute)
	if n := s.count("invalid.uribl.test", dns.TypeA); n != 2 {
		t.Errorf("invalid test point asked %d times, want 2", n)
	}
	wantFinding(t, w.Inspect(ctx, msg), pipeline.Listed, []string{"spam"}, "listed by uribl.test, multi.test; 1 urls")
	if got, want := transitions(logs, "uribl.test"), []string{"closed>open", "open>half-open", "half-open>closed"}; !slices.Equal(got, want) {
		t.Errorf("logged %q, want %q", got, want)
	}
	if got := transitions(logs, "multi.test"); len(got) != 0 {
		t.Errorf("multi.test logged %q", got)
	}
}

// TestBreakerProbeNeedsTestPoint: a zone whose data lacks the test point
// (rbldnsd's dnset without a "test" line) never closes by itself, and the
// reason is in its health.
func TestBreakerProbeNeedsTestPoint(t *testing.T) {
	s := newDNSServer(t)
	s.addZone("bare.test", true, 300, 60)
	s.set("bare.test", func(z *fakeZone) { z.rcode = dns.RcodeServerFailure })
	c := newClient(t, DNSConfig{Attempts: 1}, s.Addr)
	clock := newFakeClock()
	w, _ := newWRS(t, WRSConfig{Zones: []DNSZone{{Name: "bare.test"}}, Client: c, Clock: clock,
		Breaker: BreakerConfig{Failures: 1}})
	w.Inspect(context.Background(), tx(textMail("http://a.example/")))
	s.set("bare.test", func(z *fakeZone) { z.rcode = 0 })
	clock.Advance(DefaultProbeInterval)
	h := healthOf(w, "bare.test")
	if h.State != StateOpen || !strings.Contains(h.LastError, "test.bare.test is not listed") {
		t.Errorf("health %+v", h)
	}
}

// TestBreakerCloseStopsProbes: Close cancels the planned probe and waits
// for a running one.
func TestBreakerCloseStopsProbes(t *testing.T) {
	fb := &fakeBackend{name: "fake", err: errors.New("down"), probeErr: errors.New("still down")}
	clock := newFakeClock()
	w, _ := newWRS(t, WRSConfig{Backends: []Backend{fb}, Clock: clock, Breaker: BreakerConfig{Failures: 1}})
	w.Inspect(context.Background(), tx(textMail("http://x.example/")))
	if clock.Pending() != 1 {
		t.Fatalf("%d timers, want the planned probe", clock.Pending())
	}
	w.Close()
	if clock.Pending() != 0 {
		t.Fatalf("%d timers after Close", clock.Pending())
	}
	clock.Advance(time.Hour)
	if _, probes := fb.counts(); probes != 0 {
		t.Errorf("%d probes after Close", probes)
	}
}

// TestBreakerRealClock: with the system clock the probe runs on its own
// timer and the breaker recovers by itself.
func TestBreakerRealClock(t *testing.T) {
	fb := &fakeBackend{name: "fake", err: errors.New("down")}
	w, _ := newWRS(t, WRSConfig{Backends: []Backend{fb}, Breaker: BreakerConfig{Failures: 1, ProbeInterval: 10 * time.Millisecond}})
	w.Inspect(context.Background(), tx(textMail("http://x.example/")))
	fb.set(func(b *fakeBackend) { b.err = nil })
	waitFor(t, "half-open", func() bool { return healthOf(w, "fake").State == StateHalfOpen })
	wantFinding(t, w.Inspect(context.Background(), tx(textMail("http://x.example/"))), pipeline.Clean, nil, "1 urls")
	if h := healthOf(w, "fake"); h.State != StateClosed {
		t.Errorf("state %s", h.State)
	}
}

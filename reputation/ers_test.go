package reputation

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/foxproxy/foxproxy/pipeline"
)

const stateMsg = "ERS zone state changed"

// newERS builds a stage over c with an observed logger, closed at cleanup.
func newERS(t *testing.T, cfg ERSConfig) (*ERS, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	cfg.Logger = zap.New(core)
	e, err := NewERS(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e, logs
}

// changes returns the logged state changes of zone as "from>to".
func changes(logs *observer.ObservedLogs, zone string) []string {
	var out []string
	for _, e := range logs.FilterMessage(stateMsg).FilterField(zap.String("zone", zone)).All() {
		m := e.ContextMap()
		out = append(out, fmt.Sprintf("%s>%s", m["from"], m["to"]))
	}
	return out
}

func inspect(e *ERS, ip string) pipeline.Finding {
	tx := &pipeline.Transaction{ID: "t"}
	if ip != "" {
		tx.Client = netip.MustParseAddr(ip)
	}
	return e.Inspect(context.Background(), tx)
}

// twoLists serves bl.test (spam/exploit codes, TXT) and pbl.test.
func twoLists(t *testing.T) *dnsServer {
	s := newDNSServer(t)
	s.addList("bl.test")
	s.addList("pbl.test")
	s.add(
		"10.2.0.192.bl.test. 60 IN A 127.0.0.2",
		`10.2.0.192.bl.test. 60 IN TXT "spam source, see https://bl.test/10"`,
		"11.2.0.192.bl.test. 60 IN A 127.0.0.4",
		"11.2.0.192.pbl.test. 60 IN A 127.0.0.10",
		`11.2.0.192.pbl.test. 60 IN TXT "dynamic range"`,
		"12.2.0.192.pbl.test. 60 IN A 127.0.0.11",
		"b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.bl.test. 60 IN A 127.0.0.2",
	)
	return s
}

var (
	blZone  = Zone{Name: "bl.test", Codes: map[netip.Addr]string{addr("127.0.0.2"): "spam", addr("127.0.0.4"): "exploit"}, TXT: true}
	pblZone = Zone{Name: "pbl.test", Codes: map[netip.Addr]string{addr("127.0.0.10"): "dynamic"}, TXT: true}
)

func TestERSFindings(t *testing.T) {
	s := twoLists(t)
	c := newClient(t, DNSConfig{}, s.Addr)
	e, _ := newERS(t, ERSConfig{Zones: []Zone{blZone, pblZone}, Client: c, RecheckInterval: time.Minute})

	tests := []struct {
		ip     string
		status pipeline.Status
		cats   []string
		items  []pipeline.Item
		reason string
		detail string
	}{
		{ip: "192.0.2.10", status: pipeline.Listed, cats: []string{"spam"},
			items:  []pipeline.Item{{What: "192.0.2.10", Zone: "bl.test", Category: "spam"}},
			reason: "spam source, see https://bl.test/10", detail: "listed by bl.test: 127.0.0.2 spam"},
		// Two zones: categories merged and sorted, one item per zone,
		// the reason of the first zone in configuration order that has
		// one.
		{ip: "192.0.2.11", status: pipeline.Listed, cats: []string{"dynamic", "exploit"},
			items: []pipeline.Item{
				{What: "192.0.2.11", Zone: "bl.test", Category: "exploit"},
				{What: "192.0.2.11", Zone: "pbl.test", Category: "dynamic"}},
			reason: "dynamic range", detail: "listed by bl.test: 127.0.0.4 exploit; pbl.test: 127.0.0.10 dynamic"},
		// An unmapped code is listed, with the code kept in Detail.
		{ip: "192.0.2.12", status: pipeline.Listed, cats: []string{"listed"},
			items:  []pipeline.Item{{What: "192.0.2.12", Zone: "pbl.test", Category: "listed"}},
			detail: "listed by pbl.test: 127.0.0.11 listed"},
		{ip: "::ffff:192.0.2.10", status: pipeline.Listed, cats: []string{"spam"},
			items:  []pipeline.Item{{What: "192.0.2.10", Zone: "bl.test", Category: "spam"}},
			reason: "spam source, see https://bl.test/10", detail: "listed by bl.test: 127.0.0.2 spam"},
		{ip: "2001:db8:1:2:3:4:567:89ab", status: pipeline.Listed, cats: []string{"spam"},
			items:  []pipeline.Item{{What: "2001:db8:1:2:3:4:567:89ab", Zone: "bl.test", Category: "spam"}},
			detail: "listed by bl.test: 127.0.0.2 spam"},
		{ip: "192.0.2.99", status: pipeline.Clean},
		{ip: "2001:db8::99", status: pipeline.Clean},
		{ip: "", status: pipeline.Skipped, detail: "no client address"},
	}
	for _, tt := range tests {
		t.Run(tt.ip, func(t *testing.T) {
			f := inspect(e, tt.ip)
			if f.Stage != "ers" || f.Status != tt.status || !slices.Equal(f.Categories, tt.cats) ||
				!slices.Equal(f.Items, tt.items) || f.Reason != tt.reason || f.Detail != tt.detail {
				t.Errorf("got  %+v\nwant status=%s cats=%v items=%v reason=%q detail=%q", f, tt.status, tt.cats, tt.items, tt.reason, tt.detail)
			}
		})
	}
	if f := inspect(e, "192.0.2.11"); f.Trace() != "ers=listed(dynamic,exploit)" {
		t.Errorf("trace %q", f.Trace())
	}
	h := e.Health()
	if len(h) != 2 || h[0].Zone != "bl.test" || h[0].State != StateUp || h[0].Checks != 1 || h[0].Lookups == 0 || h[0].Listed == 0 {
		t.Errorf("health %+v", h)
	}
}

// When zones disagree: any listing wins; else a failed zone makes the
// finding Skipped, naming the zone; a zone that is merely disabled does not.
func TestERSPartialFailure(t *testing.T) {
	s := twoLists(t)
	s.addList("refusing.test")
	s.add("11.2.0.192.refusing.test. 60 IN A 127.255.255.254")
	c := newClient(t, DNSConfig{Timeout: 100 * time.Millisecond, Attempts: 1}, s.Addr)
	e, _ := newERS(t, ERSConfig{Zones: []Zone{blZone, pblZone, {Name: "refusing.test"}}, Client: c, Budget: time.Second, RecheckInterval: time.Minute})
	if f := inspect(e, "192.0.2.99"); f.Status != pipeline.Clean {
		t.Fatalf("warm-up: %+v", f)
	}
	s.set("pbl.test", func(z *fakeZone) { z.blackhole = true })

	f := inspect(e, "192.0.2.10")
	if f.Status != pipeline.Listed || !slices.Equal(f.Categories, []string{"spam"}) ||
		f.Detail != "listed by bl.test: 127.0.0.2 spam; failed pbl.test: timeout" {
		t.Errorf("listed + failed: %+v", f)
	}
	f = inspect(e, "192.0.2.98")
	if f.Status != pipeline.Skipped || f.Detail != "failed pbl.test: timeout" {
		t.Errorf("clean + failed: %+v", f)
	}
	// 127.255.255.x is an error for that zone, not a listing.
	f = inspect(e, "192.0.2.11")
	if f.Status != pipeline.Listed || !slices.Equal(f.Categories, []string{"exploit"}) ||
		!strings.Contains(f.Detail, "refusing.test: query refused (127.255.255.x)") {
		t.Errorf("refused: %+v", f)
	}
	for _, h := range e.Health() {
		if h.State == StateDisabled {
			t.Errorf("zone %s disabled by a failure after its check passed", h.Zone)
		}
	}
}

// The appliance's latch, fixed: the first message's failed check disables
// the zone, a re-check one interval later enables it again, and each state
// change is logged once.
func TestERSLatchRecovers(t *testing.T) {
	s := twoLists(t)
	s.set("bl.test", func(z *fakeZone) { z.rcode = dns.RcodeServerFailure })
	clock := newFakeClock()
	c := newClient(t, DNSConfig{Clock: clock}, s.Addr)
	e, logs := newERS(t, ERSConfig{Zones: []Zone{blZone}, Client: c, Clock: clock, RecheckInterval: time.Minute})
	start := clock.Now()

	if h := e.Health()[0]; h.State != StateUnchecked || h.Checks != 0 {
		t.Fatalf("before the first message: %+v", h)
	}
	if f := inspect(e, "192.0.2.10"); f.Status != pipeline.Disabled || f.Detail != "all zones disabled" {
		t.Fatalf("first message, check failing: %+v", f)
	}
	h := e.Health()[0]
	if h.State != StateDisabled || !h.Since.Equal(start) || !h.NextProbe.Equal(start.Add(time.Minute)) ||
		h.CheckFailures != 1 || !strings.Contains(h.LastError, "SERVFAIL") || h.Checking {
		t.Fatalf("after the failed check: %+v", h)
	}
	// Mail flows without the zone, and without asking it.
	before := s.count("10.2.0.192.bl.test", dns.TypeA)
	if f := inspect(e, "192.0.2.10"); f.Status != pipeline.Disabled {
		t.Fatalf("while disabled: %+v", f)
	}
	if n := s.count("10.2.0.192.bl.test", dns.TypeA); n != before {
		t.Errorf("disabled zone asked %d times", n-before)
	}

	// Still failing at the first re-check: stays disabled, no new log line.
	clock.Advance(time.Minute)
	if h := e.Health()[0]; h.State != StateDisabled || h.Checks != 2 || !h.NextProbe.Equal(start.Add(2*time.Minute)) {
		t.Fatalf("after a failed re-check: %+v", h)
	}
	// The list comes back; nothing happens before the next re-check...
	s.set("bl.test", func(z *fakeZone) { z.rcode = 0 })
	clock.Advance(59 * time.Second)
	if h := e.Health()[0]; h.State != StateDisabled || h.Checks != 2 {
		t.Fatalf("before the re-check: %+v", h)
	}
	// ...which enables the zone by itself.
	clock.Advance(time.Second)
	h = e.Health()[0]
	if h.State != StateUp || !h.Since.Equal(start.Add(2*time.Minute)) || h.Checks != 3 || !h.NextProbe.IsZero() {
		t.Fatalf("after the good re-check: %+v", h)
	}
	if f := inspect(e, "192.0.2.10"); f.Status != pipeline.Listed {
		t.Fatalf("after recovery: %+v", f)
	}
	if got := changes(logs, "bl.test"); !slices.Equal(got, []string{"unchecked>disabled", "disabled>up"}) {
		t.Errorf("state changes logged: %v", got)
	}
	dis := logs.FilterMessage(stateMsg).FilterField(zap.String("to", "disabled")).All()
	if len(dis) != 1 || dis[0].Level != zapcore.WarnLevel || !strings.Contains(dis[0].ContextMap()["reason"].(string), "SERVFAIL") ||
		dis[0].ContextMap()["plan"] != "re-checking every 1m0s" {
		t.Errorf("disabled log line: %+v", dis)
	}
	if clock.Pending() != 0 {
		t.Errorf("%d timers left after recovery", clock.Pending())
	}
}

// recheck_interval 0 is the legacy latch: disabled until restart.
func TestERSLegacyLatch(t *testing.T) {
	s := twoLists(t)
	s.set("bl.test", func(z *fakeZone) { z.rcode = dns.RcodeServerFailure })
	clock := newFakeClock()
	c := newClient(t, DNSConfig{Clock: clock}, s.Addr)
	e, logs := newERS(t, ERSConfig{Zones: []Zone{blZone}, Client: c, Clock: clock, RecheckInterval: 0})
	if logs.FilterMessageSnippet("not recommended").Len() != 1 {
		t.Error("no warning about recheck_interval 0")
	}
	if f := inspect(e, "192.0.2.10"); f.Status != pipeline.Disabled {
		t.Fatalf("first message: %+v", f)
	}
	s.set("bl.test", func(z *fakeZone) { z.rcode = 0 })
	clock.Advance(24 * time.Hour)
	if f := inspect(e, "192.0.2.10"); f.Status != pipeline.Disabled {
		t.Fatalf("a day later: %+v", f)
	}
	h := e.Health()[0]
	if h.State != StateDisabled || h.Checks != 1 || !h.NextProbe.IsZero() || clock.Pending() != 0 {
		t.Errorf("health %+v, %d timers", h, clock.Pending())
	}
	dis := logs.FilterMessage(stateMsg).All()
	if len(dis) != 1 || !strings.Contains(dis[0].ContextMap()["plan"].(string), "until restart") {
		t.Errorf("log: %+v", dis)
	}
}

// Once a zone passed its check, failures never disable it: they make that
// message's finding Skipped, and the zone is reported down, then up again.
func TestERSFailureAfterPassDoesNotDisable(t *testing.T) {
	s := twoLists(t)
	clock := newFakeClock()
	c := newClient(t, DNSConfig{Clock: clock, Attempts: 1}, s.Addr)
	e, logs := newERS(t, ERSConfig{Zones: []Zone{blZone}, Client: c, Clock: clock, RecheckInterval: time.Minute})
	if f := inspect(e, "192.0.2.10"); f.Status != pipeline.Listed {
		t.Fatalf("first message: %+v", f)
	}
	s.set("bl.test", func(z *fakeZone) { z.rcode = dns.RcodeServerFailure })
	for i := range 5 {
		f := inspect(e, fmt.Sprintf("192.0.2.%d", 50+i))
		if f.Status != pipeline.Skipped || f.Detail != "failed bl.test: SERVFAIL" {
			t.Fatalf("failure %d: %+v", i, f)
		}
		clock.Advance(10 * time.Second) // within the 60s TTL of the listing below
	}
	// A cached answer still serves, and proves nothing about the servers.
	if f := inspect(e, "192.0.2.10"); f.Status != pipeline.Listed {
		t.Fatalf("cached listing: %+v", f)
	}
	h := e.Health()[0]
	if h.State != StateDown || h.Failures != 5 || h.Checks != 1 || clock.Pending() != 0 {
		t.Fatalf("health %+v", h)
	}
	s.set("bl.test", func(z *fakeZone) { z.rcode = 0 })
	if f := inspect(e, "192.0.2.60"); f.Status != pipeline.Clean {
		t.Fatalf("after recovery: %+v", f)
	}
	if got := changes(logs, "bl.test"); !slices.Equal(got, []string{"unchecked>up", "up>down", "down>up"}) {
		t.Errorf("state changes logged: %v", got)
	}
}

// Concurrent first messages share one check.
func TestERSConcurrentFirstMessages(t *testing.T) {
	s := twoLists(t)
	s.set("bl.test", func(z *fakeZone) { z.delay = 50 * time.Millisecond })
	c := newClient(t, DNSConfig{}, s.Addr)
	e, logs := newERS(t, ERSConfig{Zones: []Zone{blZone}, Client: c, RecheckInterval: time.Minute})
	const n = 20
	var wg sync.WaitGroup
	findings := make([]pipeline.Finding, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			findings[i] = inspect(e, "192.0.2.10")
		}()
	}
	wg.Wait()
	for i, f := range findings {
		if f.Status != pipeline.Listed {
			t.Fatalf("message %d: %+v", i, f)
		}
	}
	if a, b := s.count("2.0.0.127.bl.test", dns.TypeA), s.count("1.0.0.127.bl.test", dns.TypeA); a != 1 || b != 1 {
		t.Errorf("test points asked %d and %d times, want 1 and 1", a, b)
	}
	if got := s.count("10.2.0.192.bl.test", dns.TypeA); got != 1 {
		t.Errorf("%d queries for %d identical messages", got, n)
	}
	if h := e.Health()[0]; h.Checks != 1 || h.State != StateUp {
		t.Errorf("health %+v", h)
	}
	if got := changes(logs, "bl.test"); !slices.Equal(got, []string{"unchecked>up"}) {
		t.Errorf("state changes logged: %v", got)
	}
}

// State is per zone: a zone that fails its check is disabled, the others
// keep working; Disabled only when all are.
func TestERSPerZoneState(t *testing.T) {
	s := twoLists(t)
	s.set("pbl.test", func(z *fakeZone) { z.rcode = dns.RcodeRefused })
	clock := newFakeClock()
	c := newClient(t, DNSConfig{Clock: clock}, s.Addr)
	e, logs := newERS(t, ERSConfig{Zones: []Zone{blZone, pblZone}, Client: c, Clock: clock, RecheckInterval: time.Minute})

	f := inspect(e, "192.0.2.11")
	if f.Status != pipeline.Listed || !slices.Equal(f.Categories, []string{"exploit"}) ||
		f.Detail != "listed by bl.test: 127.0.0.4 exploit; disabled pbl.test" {
		t.Errorf("listed with one zone disabled: %+v", f)
	}
	if f := inspect(e, "192.0.2.99"); f.Status != pipeline.Clean || f.Detail != "disabled pbl.test" {
		t.Errorf("clean with one zone disabled: %+v", f)
	}
	h := e.Health()
	if h[0].State != StateUp || h[1].State != StateDisabled {
		t.Errorf("health %+v", h)
	}
	if got := changes(logs, "pbl.test"); !slices.Equal(got, []string{"unchecked>disabled"}) {
		t.Errorf("pbl.test changes: %v", got)
	}
	if got := changes(logs, "bl.test"); !slices.Equal(got, []string{"unchecked>up"}) {
		t.Errorf("bl.test changes: %v", got)
	}
	// Recovery of one zone does not touch the other's state.
	s.set("pbl.test", func(z *fakeZone) { z.rcode = 0 })
	clock.Advance(time.Minute)
	if f := inspect(e, "192.0.2.11"); !slices.Equal(f.Categories, []string{"dynamic", "exploit"}) {
		t.Errorf("after recovery: %+v", f)
	}
}

// A zone whose server never answers makes only its own messages Skipped,
// within their budget; messages against a healthy zone on the same client
// proceed meanwhile, and the dead zone cannot pile up queries.
func TestERSBlackHole(t *testing.T) {
	s := twoLists(t)
	s.addList("hole.test")
	c := newClient(t, DNSConfig{Timeout: 10 * time.Second, MaxInflightPerZone: 4}, s.Addr)
	// The budget is far above what 50 loopback lookups take even on a loaded
	// machine, so the ordering below does not depend on timing.
	const budget = 6 * time.Second
	holeERS, _ := newERS(t, ERSConfig{Zones: []Zone{{Name: "hole.test"}}, Client: c, Budget: budget, RecheckInterval: time.Minute})
	goodERS, _ := newERS(t, ERSConfig{Zones: []Zone{blZone}, Client: c, RecheckInterval: time.Minute})
	// Both pass their first check, then hole.test stops answering.
	if f := inspect(holeERS, "192.0.2.1"); f.Status != pipeline.Clean {
		t.Fatalf("hole.test before: %+v", f)
	}
	s.set("hole.test", func(z *fakeZone) { z.blackhole = true })

	const holes = 20
	var wg sync.WaitGroup
	holeFindings := make([]pipeline.Finding, holes)
	holeDone := make(chan struct{})
	for i := range holes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			holeFindings[i] = inspect(holeERS, fmt.Sprintf("198.51.100.%d", i))
		}()
	}
	go func() { wg.Wait(); close(holeDone) }()
	waitFor(t, "the black-holed queries", func() bool { return c.Stats().Inflight == 4 })

	// Cold lookups against the healthy zone, all while the black-holed
	// messages wait.
	for i := range 50 {
		ip := fmt.Sprintf("203.0.113.%d", i)
		want := pipeline.Clean
		if i == 0 {
			ip, want = "192.0.2.10", pipeline.Listed
		}
		if f := inspect(goodERS, ip); f.Status != want {
			t.Fatalf("healthy zone, %s: %+v", ip, f)
		}
		if st := c.Stats(); st.Inflight > 4+1 {
			t.Fatalf("%d queries in flight", st.Inflight)
		}
	}
	select {
	case <-holeDone:
		t.Fatal("the black-holed messages finished before the healthy ones (budget not honoured?)")
	default:
	}
	<-holeDone
	overloaded := 0
	for i, f := range holeFindings {
		if f.Status != pipeline.Skipped {
			t.Fatalf("black-holed message %d: %+v", i, f)
		}
		switch f.Detail {
		case "failed hole.test: timeout":
			if f.Duration > budget+2*time.Second {
				t.Errorf("message %d took %v, budget %v", i, f.Duration, budget)
			}
		case "failed hole.test: too many outstanding queries":
			overloaded++
		default:
			t.Errorf("message %d: %q", i, f.Detail)
		}
	}
	if overloaded != holes-4 {
		t.Errorf("%d messages refused a slot, want %d", overloaded, holes-4)
	}
	if h := holeERS.Health()[0]; h.State != StateDown {
		t.Errorf("hole.test health %+v", h)
	}
}

func TestERSBudget(t *testing.T) {
	s := twoLists(t)
	c := newClient(t, DNSConfig{Timeout: 10 * time.Second}, s.Addr)
	e, _ := newERS(t, ERSConfig{Zones: []Zone{blZone}, Client: c, Budget: 100 * time.Millisecond, RecheckInterval: time.Minute})
	if f := inspect(e, "192.0.2.99"); f.Status != pipeline.Clean {
		t.Fatalf("before: %+v", f)
	}
	s.set("bl.test", func(z *fakeZone) { z.blackhole = true })
	f := inspect(e, "192.0.2.98")
	if f.Status != pipeline.Skipped || f.Detail != "failed bl.test: timeout" || f.Duration > 2*time.Second {
		t.Errorf("budget: %+v", f)
	}
	// The caller's context ends it sooner still.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f = e.Inspect(ctx, &pipeline.Transaction{Client: addr("192.0.2.97")})
	if f.Status != pipeline.Skipped || f.Detail != "failed bl.test: cancelled" {
		t.Errorf("cancelled: %+v", f)
	}
}

// A first message whose budget ends before the check does is Skipped; the
// check carries on and decides for the next messages.
func TestERSCheckOutlivesFirstMessage(t *testing.T) {
	s := twoLists(t)
	s.set("bl.test", func(z *fakeZone) { z.delay = 300 * time.Millisecond })
	c := newClient(t, DNSConfig{}, s.Addr)
	e, _ := newERS(t, ERSConfig{Zones: []Zone{blZone}, Client: c, Budget: 20 * time.Millisecond, RecheckInterval: time.Minute})
	if f := inspect(e, "192.0.2.10"); f.Status != pipeline.Skipped || f.Detail != "failed bl.test: connectivity check still running" {
		t.Fatalf("first message: %+v", f)
	}
	waitFor(t, "the check", func() bool { return e.Health()[0].State == StateUp })
}

func TestERSPrefetch(t *testing.T) {
	s := twoLists(t)
	c := newClient(t, DNSConfig{}, s.Addr)
	e, _ := newERS(t, ERSConfig{Zones: []Zone{blZone, pblZone}, Client: c, RecheckInterval: time.Minute})
	// The first client seen starts the checks and the lookups.
	e.PrefetchClient(addr("192.0.2.11"))
	waitFor(t, "the prefetch", func() bool {
		return s.count("11.2.0.192.bl.test", dns.TypeA) == 1 && s.count("11.2.0.192.pbl.test", dns.TypeA) == 1 && c.Stats().Inflight == 0
	})
	if f := inspect(e, "192.0.2.11"); f.Status != pipeline.Listed || f.Reason != "dynamic range" {
		t.Fatalf("after prefetch: %+v", f)
	}
	if a, b := s.count("11.2.0.192.bl.test", dns.TypeA), s.count("11.2.0.192.pbl.test", dns.TypeA); a != 1 || b != 1 {
		t.Errorf("Inspect asked again: %d, %d", a, b)
	}
	if h := e.Health(); h[0].Checks != 1 || h[1].Checks != 1 {
		t.Errorf("health %+v", h)
	}
	// Invalid addresses are ignored.
	e.PrefetchClient(netip.Addr{})
}

func TestERSPrefetchNeverBlocks(t *testing.T) {
	s := twoLists(t)
	s.set("bl.test", func(z *fakeZone) { z.blackhole = true })
	c := newClient(t, DNSConfig{Timeout: 10 * time.Second}, s.Addr)
	e, _ := newERS(t, ERSConfig{Zones: []Zone{blZone}, Client: c, RecheckInterval: time.Minute})
	start := time.Now()
	for i := range 100 {
		e.PrefetchClient(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}))
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("100 prefetches against a black hole took %v", d)
	}
}

func TestERSDisabledZoneNotPrefetched(t *testing.T) {
	s := twoLists(t)
	s.set("bl.test", func(z *fakeZone) { z.rcode = dns.RcodeServerFailure })
	c := newClient(t, DNSConfig{}, s.Addr)
	e, _ := newERS(t, ERSConfig{Zones: []Zone{blZone}, Client: c, RecheckInterval: time.Minute})
	if f := inspect(e, "192.0.2.99"); f.Status != pipeline.Disabled {
		t.Fatal(f)
	}
	e.PrefetchClient(addr("192.0.2.10"))
	if st := c.Stats(); st.Inflight != 0 || s.count("10.2.0.192.bl.test", dns.TypeA) != 0 {
		t.Errorf("disabled zone prefetched: %+v", st)
	}
}

func TestERSClose(t *testing.T) {
	s := twoLists(t)
	s.set("bl.test", func(z *fakeZone) { z.rcode = dns.RcodeServerFailure })
	clock := newFakeClock()
	c := newClient(t, DNSConfig{Clock: clock}, s.Addr)
	e, _ := newERS(t, ERSConfig{Zones: []Zone{blZone}, Client: c, Clock: clock, RecheckInterval: time.Minute})
	if f := inspect(e, "192.0.2.10"); f.Status != pipeline.Disabled {
		t.Fatal(f)
	}
	if clock.Pending() != 1 {
		t.Fatalf("%d re-checks planned", clock.Pending())
	}
	e.Close()
	if clock.Pending() != 0 {
		t.Errorf("Close left %d re-checks planned", clock.Pending())
	}
	s.set("bl.test", func(z *fakeZone) { z.rcode = 0 })
	clock.Advance(time.Hour)
	if h := e.Health()[0]; h.Checks != 1 || h.State != StateDisabled {
		t.Errorf("re-checked after Close: %+v", h)
	}
	if f := inspect(e, "192.0.2.10"); f.Status != pipeline.Disabled || f.Detail != "stage closed" {
		t.Errorf("after Close: %+v", f)
	}
	e.PrefetchClient(addr("192.0.2.10"))
	e.Close() // idempotent
}

// Close while a check hangs on a server that never answers: Close returns
// at once and no re-check is planned.
func TestERSCloseDuringCheck(t *testing.T) {
	hole, _ := newBlackHole(t)
	c := newClient(t, DNSConfig{Timeout: 10 * time.Second, Attempts: 1}, hole)
	e, err := NewERS(ERSConfig{Zones: []Zone{blZone}, Client: c, RecheckInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.InfoLevel)
	e.log = zap.New(core)
	e.PrefetchClient(addr("192.0.2.1")) // starts the first check, which hangs
	waitFor(t, "the check", func() bool { return e.Health()[0].Checking })
	done := make(chan struct{})
	go func() { e.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hangs on a running check")
	}
	// A check cut short by Close decides nothing and logs nothing.
	if h := e.Health()[0]; h.Checking || h.State != StateUnchecked || !h.NextProbe.IsZero() {
		t.Errorf("after Close: %+v", h)
	}
	if logs.Len() != 0 {
		t.Errorf("logged %v", logs.All())
	}
}

func TestERSSkipStartupCheck(t *testing.T) {
	s := twoLists(t)
	c := newClient(t, DNSConfig{}, s.Addr)
	e, _ := newERS(t, ERSConfig{Zones: []Zone{blZone}, Client: c, SkipStartupCheck: true})
	if f := inspect(e, "192.0.2.10"); f.Status != pipeline.Listed {
		t.Fatal(f)
	}
	if n := s.count("2.0.0.127.bl.test", dns.TypeA); n != 0 {
		t.Errorf("test point asked %d times", n)
	}
	if h := e.Health()[0]; h.State != StateUp || h.Checks != 0 {
		t.Errorf("health %+v", h)
	}
}

func TestERSNoClientAllDisabled(t *testing.T) {
	s := twoLists(t)
	s.set("bl.test", func(z *fakeZone) { z.rcode = dns.RcodeServerFailure })
	c := newClient(t, DNSConfig{}, s.Addr)
	e, _ := newERS(t, ERSConfig{Zones: []Zone{blZone}, Client: c, RecheckInterval: time.Minute})
	// The first message has no client address; it still starts the check.
	// The check may fail before this message's finding is made (the fake
	// server answers SERVFAIL at once), so either finding is right.
	if f := inspect(e, ""); f.Status != pipeline.Skipped && f.Status != pipeline.Disabled {
		t.Fatal(f)
	}
	waitFor(t, "the check", func() bool { return e.Health()[0].State == StateDisabled })
	if f := inspect(e, ""); f.Status != pipeline.Disabled {
		t.Fatal(f)
	}
}

func TestNewERSErrors(t *testing.T) {
	c := newClient(t, DNSConfig{}, "127.0.0.1:1")
	tests := []struct {
		cfg  ERSConfig
		want string
	}{
		{ERSConfig{Zones: []Zone{blZone}}, "no DNS client"},
		{ERSConfig{Client: c}, "no zones"},
		{ERSConfig{Client: c, Zones: []Zone{blZone}, Budget: -1}, "negative budget"},
		{ERSConfig{Client: c, Zones: []Zone{blZone}, RecheckInterval: -1}, "negative recheck_interval"},
		{ERSConfig{Client: c, Zones: []Zone{{Name: "bad..zone"}}}, "not a valid DNS name"},
		{ERSConfig{Client: c, Zones: []Zone{blZone, {Name: "BL.test."}}}, "listed twice"},
		{ERSConfig{Client: c, Zones: []Zone{{Name: "bl.test", Codes: map[netip.Addr]string{addr("10.0.0.1"): "x"}}}}, "code 10.0.0.1"},
	}
	for _, tt := range tests {
		if _, err := NewERS(tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("NewERS: %v, want %q", err, tt.want)
		}
	}
}

// The stage's own copy of the zones: changing the caller's map later has
// no effect (and no race).
func TestERSCopiesZones(t *testing.T) {
	s := twoLists(t)
	c := newClient(t, DNSConfig{}, s.Addr)
	z := Zone{Name: "bl.test", Codes: map[netip.Addr]string{addr("127.0.0.2"): "spam"}}
	e, _ := newERS(t, ERSConfig{Zones: []Zone{z}, Client: c, RecheckInterval: time.Minute})
	z.Codes[addr("127.0.0.2")] = "changed"
	if f := inspect(e, "192.0.2.10"); !slices.Equal(f.Categories, []string{"spam"}) {
		t.Errorf("%+v", f)
	}
}

// ERS runs inside the pipeline like any stage.
func TestERSInPipeline(t *testing.T) {
	s := twoLists(t)
	c := newClient(t, DNSConfig{}, s.Addr)
	e, _ := newERS(t, ERSConfig{Zones: []Zone{blZone}, Client: c, RecheckInterval: time.Minute})
	p := pipeline.New(e)
	p.PrefetchClient(addr("192.0.2.10"))
	fs, err := p.Run(context.Background(), &pipeline.Transaction{Client: addr("192.0.2.10")})
	if err != nil || len(fs) != 1 || fs[0].Trace() != "ers=listed(spam)" {
		t.Errorf("Run: %+v, %v", fs, err)
	}
}

// Probe shows a list going away and coming back without any message, and
// never disables a zone that passed its check.
func TestERSProbe(t *testing.T) {
	s := twoLists(t)
	c := newClient(t, DNSConfig{Timeout: 200 * time.Millisecond}, s.Addr)
	e, logs := newERS(t, ERSConfig{Zones: []Zone{blZone}, Client: c, RecheckInterval: time.Minute})
	e.Probe(context.Background())
	if h := e.Health()[0]; h.State != StateUnchecked || h.Detail != detailProbePassed || h.LastError != "" || h.Checks != 0 {
		t.Fatalf("after a probe before any message: %+v", h)
	}
	if f := inspect(e, "192.0.2.10"); f.Status != pipeline.Listed {
		t.Fatalf("first message: %+v", f)
	}
	if h := e.Health()[0]; h.State != StateUp || h.Detail != "" {
		t.Fatalf("after the first message: %+v", h)
	}
	s.set("bl.test", func(z *fakeZone) { z.rcode = dns.RcodeServerFailure })
	e.Probe(context.Background())
	if h := e.Health()[0]; h.State != StateDown {
		t.Fatalf("probe with the list failing: %+v", h)
	}
	s.set("bl.test", func(z *fakeZone) { z.rcode = 0 })
	e.Probe(context.Background())
	if h := e.Health()[0]; h.State != StateUp {
		t.Fatalf("probe after recovery: %+v", h)
	}
	if got := changes(logs, "bl.test"); !slices.Equal(got, []string{"unchecked>up", "up>down", "down>up"}) {
		t.Fatalf("changes %v", got)
	}
}

// Before the first message, probes of a dead list only show it: the zone
// stays unchecked however often it is probed, and the first message's
// check disables it. A list that answers again before the first message
// clears what the probe showed.
func TestERSProbeBeforeFirstMessageDoesNotDisable(t *testing.T) {
	s := twoLists(t)
	s.set("bl.test", func(z *fakeZone) { z.rcode = dns.RcodeServerFailure })
	c := newClient(t, DNSConfig{Timeout: 200 * time.Millisecond}, s.Addr)
	e, logs := newERS(t, ERSConfig{Zones: []Zone{blZone}, Client: c, RecheckInterval: time.Minute})
	for range 3 {
		e.Probe(context.Background())
	}
	h := e.Health()[0]
	if h.State != StateUnchecked || h.Detail != detailProbeFailed || !strings.Contains(h.LastError, "SERVFAIL") ||
		h.Checks != 0 || h.CheckFailures != 0 || !h.NextProbe.IsZero() {
		t.Fatalf("after probes of a failing list, before any message: %+v", h)
	}
	if got := changes(logs, "bl.test"); len(got) != 0 {
		t.Fatalf("probes changed the state: %v", got)
	}

	s.set("bl.test", func(z *fakeZone) { z.rcode = 0 })
	e.Probe(context.Background())
	if h := e.Health()[0]; h.State != StateUnchecked || h.Detail != detailProbePassed || h.LastError != "" {
		t.Fatalf("after a probe of the list answering again: %+v", h)
	}

	s.set("bl.test", func(z *fakeZone) { z.rcode = dns.RcodeServerFailure })
	if f := inspect(e, "192.0.2.10"); f.Status != pipeline.Disabled {
		t.Fatalf("first message, list failing: %+v", f)
	}
	if h := e.Health()[0]; h.State != StateDisabled || h.Detail != "" || h.Checks != 1 {
		t.Fatalf("after the first message: %+v", h)
	}
	// A disabled zone is its re-check timer's: probes leave it alone.
	e.Probe(context.Background())
	if got := changes(logs, "bl.test"); !slices.Equal(got, []string{"unchecked>disabled"}) {
		t.Fatalf("changes %v", got)
	}
}

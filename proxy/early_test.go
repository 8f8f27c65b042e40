package proxy

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/foxproxy/foxproxy/links"
	"github.com/foxproxy/foxproxy/lists"
	"github.com/foxproxy/foxproxy/lists/liststage"
	"github.com/foxproxy/foxproxy/pipeline"
	"github.com/foxproxy/foxproxy/policy"
	"github.com/foxproxy/foxproxy/reputation"
	"github.com/foxproxy/foxproxy/settings"
)

// fakeERS stands in for the ERS stage: it lists 192.0.2.1 and can look at
// the envelope alone. envelope, when set, answers InspectEnvelope instead.
type fakeERS struct {
	envelope  func() pipeline.Finding
	envelopes atomic.Int32
}

func (s *fakeERS) Name() pipeline.StageName { return "ers" }
func (s *fakeERS) Inspect(_ context.Context, tx *pipeline.Transaction) pipeline.Finding {
	if tx.Client.String() != "192.0.2.1" {
		return pipeline.Finding{Status: pipeline.Clean}
	}
	return pipeline.Finding{Status: pipeline.Listed, Categories: []string{"spam"}, Reason: "Listed in the test list",
		Items: []pipeline.Item{{What: "192.0.2.1", Zone: "bl.example.test", Category: "spam"}}}
}
func (s *fakeERS) InspectEnvelope(ctx context.Context, tx *pipeline.Transaction) pipeline.Finding {
	s.envelopes.Add(1)
	if s.envelope != nil {
		return s.envelope()
	}
	return s.Inspect(ctx, tx)
}

func policyFrom(t *testing.T, rules string) *policy.Engine {
	t.Helper()
	cfg := defaultPolicy
	if err := yaml.Unmarshal([]byte("rules:\n"+rules), &cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Validate(func(key, format string, args ...any) { t.Fatalf("policy.%s: %s", key, fmt.Sprintf(format, args...)) })
	e, err := policy.New(cfg, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

const ersReject = "    - {name: ers-spam, if: {ers: [spam]}, then: reject}\n"

const listedReply = "550 5.7.1 Service unavailable; client host [192.0.2.1] blocked using bl.example.test; Listed in the test list"

func deployment(d string) proxyOption {
	return withConfig(func(c *Config) { c.Deployment = d })
}

// envelope sends XFORWARD, MAIL and the RCPTs and returns the RCPTs' replies.
func envelope(r *rawConn, client string, rcpts ...string) []string {
	r.t.Helper()
	r.send("XFORWARD ADDR=" + client + "\r\n")
	r.expect("250 ")
	r.send("MAIL FROM:<a@example.test>\r\n")
	r.expect("250 ")
	var got []string
	for _, rc := range rcpts {
		r.send("RCPT TO:<" + rc + ">\r\n")
		got = append(got, r.reply())
	}
	return got
}

// Before the queue, a client whose envelope a rule refuses gets the rule's
// reply at every RCPT, the reply the end of DATA would have had; the
// downstream hears of no recipient and gets nothing; the log line says
// what happened. Another client in the same session goes on as usual.
func TestBeforeQueueRefusesAtRcpt(t *testing.T) {
	ds := startDownstream(t)
	p := startProxy(t, ds.addr, deployment("before_queue"), withStages(&fakeERS{}), withPolicy(policyFrom(t, ersReject)))
	r := dialRaw(t, p.addr)
	r.greet()
	for _, got := range envelope(r, "192.0.2.1", "b@example.test", "c@example.test") {
		if got != listedReply {
			t.Fatalf("RCPT: %q, want %q", got, listedReply)
		}
	}
	r.send("DATA\r\n")
	if got := r.reply(); !strings.HasPrefix(got, "5") {
		t.Fatalf("DATA without recipients: %q", got)
	}
	r.send("RSET\r\n")
	r.expect("250 ")

	lines := p.logs.FilterMessage("message").All()
	if len(lines) != 1 {
		t.Fatalf("%d message lines, want 1", len(lines))
	}
	f := lines[0].ContextMap()
	if f["verdict"] != "reject" || f["rule"] != "ers-spam" || f["answered_at"] != "RCPT" || f["rcpts"] != int64(2) ||
		f["reply"] != listedReply || f["client"] != "192.0.2.1" || f["findings"] == nil {
		t.Fatalf("log line: %v", f)
	}

	got := envelope(r, "198.51.100.7", "b@example.test")
	if !strings.HasPrefix(got[0], "250 ") {
		t.Fatalf("unlisted client's RCPT: %q", got[0])
	}
	r.send("DATA\r\n")
	r.expect("354 ")
	r.send("Subject: fine\r\n\r\nx\r\n.\r\n")
	r.expect("250 ")
	msgs := ds.messages()
	if len(msgs) != 1 || len(msgs[0].rcpts) != 1 || msgs[0].rcpts[0] != "b@example.test" {
		t.Fatalf("downstream got %+v", msgs)
	}
}

// After the queue nothing changes: Postfix has already accepted the
// message, so the verdict is given after DATA, and the envelope is not
// judged on its own.
func TestAfterQueueDecidesAfterData(t *testing.T) {
	ds := startDownstream(t)
	ers := &fakeERS{}
	p := startProxy(t, ds.addr, deployment("after_queue"), withStages(ers), withPolicy(policyFrom(t, ersReject)))
	r := dialRaw(t, p.addr)
	r.greet()
	if got := envelope(r, "192.0.2.1", "b@example.test"); !strings.HasPrefix(got[0], "250 ") {
		t.Fatalf("RCPT: %q", got[0])
	}
	r.send("DATA\r\n")
	r.expect("354 ")
	r.send("Subject: x\r\n\r\nx\r\n.\r\n")
	if got := r.reply(); got != listedReply {
		t.Fatalf("end of DATA: %q", got)
	}
	if n := ers.envelopes.Load(); n != 0 {
		t.Fatalf("envelope inspected %d times after the queue", n)
	}
	if f := p.logs.FilterMessage("message").All()[0].ContextMap(); f["answered_at"] != nil || f["verdict"] != "reject" {
		t.Fatalf("log line: %v", f)
	}
}

// What the envelope cannot decide goes on to DATA exactly as before: an
// earlier rule that needs the content, or a lookup that was skipped or
// disabled before DATA.
func TestBeforeQueueUndecidedGoesOnToData(t *testing.T) {
	newsletter := "    - {name: newsletter, if: {header: [{name: List-Id, matches: .}]}, then: deliver}\n"
	cases := []struct {
		name     string
		rules    string
		envelope func() pipeline.Finding
		body     string
		want     string
	}{
		{"earlier content rule delivers", newsletter + ersReject, nil, "List-Id: <l.example>\r\n\r\nx\r\n", "250 "},
		{"earlier content rule does not match", newsletter + ersReject, nil, "Subject: x\r\n\r\nx\r\n", listedReply},
		{"lookup skipped before DATA", ersReject,
			func() pipeline.Finding { return pipeline.Finding{Status: pipeline.Skipped, Detail: "failed: timeout"} }, "Subject: x\r\n\r\nx\r\n", listedReply},
		{"lookup disabled before DATA", ersReject,
			func() pipeline.Finding { return pipeline.Finding{Status: pipeline.Disabled} }, "Subject: x\r\n\r\nx\r\n", listedReply},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ds := startDownstream(t)
			ers := &fakeERS{envelope: c.envelope}
			p := startProxy(t, ds.addr, deployment("before_queue"), withStages(ers), withPolicy(policyFrom(t, c.rules)))
			r := dialRaw(t, p.addr)
			r.greet()
			if got := envelope(r, "192.0.2.1", "b@example.test", "c@example.test"); !strings.HasPrefix(got[0], "250 ") || !strings.HasPrefix(got[1], "250 ") {
				t.Fatalf("RCPTs: %q", got)
			}
			if n := ers.envelopes.Load(); n != 1 {
				t.Fatalf("envelope inspected %d times, want once per transaction", n)
			}
			r.send("DATA\r\n")
			r.expect("354 ")
			r.send(c.body + ".\r\n")
			if got := r.reply(); !strings.HasPrefix(got, c.want) {
				t.Fatalf("end of DATA: %q, want %q", got, c.want)
			}
		})
	}
}

// A list server that never answers delays RCPT by at most ERS's budget;
// the message then goes on and is delivered with ERS skipped.
func TestBeforeQueueRcptWaitsAtMostTheBudget(t *testing.T) {
	hole, err := net.ListenPacket("udp", "127.0.0.1:0") // reads nothing, answers nothing
	if err != nil {
		t.Fatal(err)
	}
	defer hole.Close()
	client, err := reputation.NewDNSClient(reputation.DNSConfig{Servers: []string{hole.LocalAddr().String()}, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	const budget = time.Second
	ers, err := reputation.NewERS(reputation.ERSConfig{
		Zones: []reputation.Zone{{Name: "bl.example.test", Codes: map[netip.Addr]string{netip.MustParseAddr("127.0.0.2"): "spam"}}}, Client: client,
		Budget: budget, RecheckInterval: time.Minute, SkipStartupCheck: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ers.Close()
	ds := startDownstream(t)
	p := startProxy(t, ds.addr, deployment("before_queue"), withStages(ers), withPolicy(policyFrom(t, ersReject)),
		withConfig(func(c *Config) { c.Timeouts.Stages = settings.Duration(10 * time.Second) }))
	r := dialRaw(t, p.addr)
	r.greet()
	start := time.Now()
	got := envelope(r, "192.0.2.1", "b@example.test")
	waited := time.Since(start)
	if !strings.HasPrefix(got[0], "250 ") {
		t.Fatalf("RCPT: %q", got[0])
	}
	// Generous: the budget plus three seconds for a loaded machine.
	if waited > budget+3*time.Second {
		t.Fatalf("RCPT answered after %v, budget %v", waited, budget)
	}
	t.Logf("MAIL and RCPT answered after %v (ERS budget %v)", waited.Round(time.Millisecond), budget)
	r.send("DATA\r\n")
	r.expect("354 ")
	r.send("Subject: x\r\n\r\nx\r\n.\r\n")
	r.expect("250 ")
	if m := ds.messages(); len(m) != 1 || !strings.Contains(string(m[0].data), "ers=skipped") {
		t.Fatalf("downstream got %d messages", len(m))
	}
}

// refusalLog is an Observer that keeps refusals and message events.
type refusalLog struct {
	eventLog
	mu       sync.Mutex
	refusals []string
}

func (l *refusalLog) Refused(cmd string, code int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.refusals = append(l.refusals, cmd)
}

// A message answered at RCPT is counted like any other verdict, once; each
// refused RCPT is a RCPT reply, none a reply to DATA.
func TestBeforeQueueRefusalObserved(t *testing.T) {
	ds := startDownstream(t)
	obs := &refusalLog{}
	addr := startObservedProxy(t, ds.addr, obs, deployment("before_queue"), withStages(&fakeERS{}), withPolicy(policyFrom(t, ersReject)))
	r := dialRaw(t, addr)
	r.greet()
	envelope(r, "192.0.2.1", "b@example.test", "c@example.test", "d@example.test")
	r.send("QUIT\r\n")
	r.expect("221 ")
	eventually(t, "message event", func() bool {
		obs.eventLog.mu.Lock()
		defer obs.eventLog.mu.Unlock()
		return len(obs.events) == 1
	})
	obs.eventLog.mu.Lock()
	ev := obs.events[0]
	obs.eventLog.mu.Unlock()
	if ev.Verdict != "reject" || ev.Rule != "ers-spam" || ev.ReplyCode != 550 || ev.ReplyCommand != "RCPT" || ev.Rcpts != 3 || len(ev.Findings) != 1 {
		t.Fatalf("event %+v", ev)
	}
	// The message log keeps the recipients answered, though the
	// downstream never heard of them.
	if !slices.Equal(ev.Recipients, []string{"b@example.test", "c@example.test", "d@example.test"}) ||
		!strings.HasPrefix(ev.ReplyText, "5.7.1 ") || ev.Host != "foxproxy.test" || ev.MessageID != "" {
		t.Fatalf("event %+v", ev)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if strings.Join(obs.refusals, ",") != "RCPT,RCPT,RCPT" {
		t.Fatalf("refusals %v", obs.refusals)
	}
}

// A blocked sender on the local lists is answered at RCPT too, by the real
// lists stage, with ERS clean and the list rule after the ERS one.
func TestBeforeQueueRefusesBlockedSenderAtRcpt(t *testing.T) {
	b := lists.NewBuilder()
	b.AddBytes(lists.BlockedSenders, "bs", []byte("*.spam.example\n"))
	set, err := b.Set()
	if err != nil {
		t.Fatal(err)
	}
	h := lists.NewHolder()
	h.Replace(lists.FromFiles, set)
	ls, err := liststage.New(links.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ds := startDownstream(t)
	rules := ersReject + "    - {name: blocked, if: {list: [blocked_senders]}, then: reject, reply: {code: 554, text: \"sender blocked\"}}\n"
	p := startProxy(t, ds.addr, deployment("before_queue"), withStages(ls, &fakeERS{}), withPolicy(policyFrom(t, rules)),
		func(rt *Runtime) { rt.Lists = h })
	r := dialRaw(t, p.addr)
	r.greet()
	r.send("XFORWARD ADDR=198.51.100.7\r\nMAIL FROM:<x@mx.spam.example>\r\nRCPT TO:<b@example.test>\r\n")
	r.expect("250 ")
	r.expect("250 ")
	if got := r.reply(); got != "554 5.7.1 sender blocked" {
		t.Fatalf("RCPT: %q", got)
	}
	r.send("QUIT\r\n")
	r.expect("221 ")
	eventually(t, "log line", func() bool { return p.logs.FilterMessage("message").Len() == 1 })
	if f := p.logs.FilterMessage("message").All()[0].ContextMap(); f["rule"] != "blocked" || f["answered_at"] != "RCPT" {
		t.Fatalf("log line: %v", f)
	}
	if len(ds.messages()) != 0 {
		t.Fatal("delivered")
	}
}

// Refused RCPTs do not count towards max_recipients in go-smtp, so a client
// answered at RCPT could go on until max_commands: the message log keeps at
// most max_recipients of their addresses, and counts them all.
func TestBeforeQueueRefusedRecipientsListBounded(t *testing.T) {
	ds := startDownstream(t)
	obs := &refusalLog{}
	addr := startObservedProxy(t, ds.addr, obs, deployment("before_queue"), withStages(&fakeERS{}), withPolicy(policyFrom(t, ersReject)),
		withConfig(func(c *Config) { c.Limits.MaxRecipients = 2 }))
	r := dialRaw(t, addr)
	r.greet()
	for _, got := range envelope(r, "192.0.2.1", "b@example.test", "c@example.test", "d@example.test", "e@example.test") {
		if got != listedReply {
			t.Fatalf("RCPT: %q, want %q", got, listedReply)
		}
	}
	r.send("QUIT\r\n")
	r.expect("221 ")
	eventually(t, "message event", func() bool {
		obs.eventLog.mu.Lock()
		defer obs.eventLog.mu.Unlock()
		return len(obs.events) == 1
	})
	obs.eventLog.mu.Lock()
	ev := obs.events[0]
	obs.eventLog.mu.Unlock()
	if ev.Rcpts != 4 || !slices.Equal(ev.Recipients, []string{"b@example.test", "c@example.test"}) {
		t.Fatalf("event %+v", ev)
	}
}

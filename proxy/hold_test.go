package proxy

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/foxproxy/foxproxy/pipeline"
	"github.com/foxproxy/foxproxy/policy"
	"github.com/foxproxy/foxproxy/settings"
)

func TestArrivalTime(t *testing.T) {
	now := time.Date(2026, 11, 27, 14, 0, 0, 0, time.UTC)
	postfix := func(date string) string {
		return "from helo.example (client.example [192.0.2.1]) by mx.example.test (Postfix) with ESMTP id 4ABCDEF for <rcpt@example.test>; " + date
	}
	for _, c := range []struct {
		name, received string
		want           time.Time
		ok             bool
	}{
		{"postfix", postfix("Fri, 27 Nov 2026 13:40:00 +0000 (UTC)"), now.Add(-20 * time.Minute), true},
		{"other zone", postfix("Fri, 27 Nov 2026 08:40:00 -0500 (EST)"), now.Add(-20 * time.Minute), true},
		{"slightly ahead: now", postfix("Fri, 27 Nov 2026 14:03:00 +0000"), now, true},
		{"far ahead", postfix("Fri, 27 Nov 2026 15:00:00 +0000"), time.Time{}, false},
		{"no date", "from helo.example by mx.example.test (Postfix) with ESMTP id 4ABCDEF", time.Time{}, false},
		{"garbage date", postfix("yesterday-ish"), time.Time{}, false},
		{"empty", "", time.Time{}, false},
		// The last ';' counts: an earlier one inside a comment is not the date.
		{"semicolon in a comment", "from x (a;b) by mx.example.test (Postfix); Fri, 27 Nov 2026 13:00:00 +0000", now.Add(-time.Hour), true},
	} {
		got, ok := ArrivalTime(c.received, now)
		if ok != c.ok || !got.Equal(c.want) {
			t.Errorf("%s: got %v %v, want %v %v", c.name, got, ok, c.want, c.ok)
		}
	}
}

// holdRecorder is a quarantine that can hold.
type holdRecorder struct {
	mu      sync.Mutex
	arrived []time.Time
	items   []QuarantineItem
	fail    error
}

func (h *holdRecorder) Quarantine(context.Context, QuarantineItem) (string, error) {
	return "", context.Canceled // not used by these tests
}

func (h *holdRecorder) Hold(_ context.Context, it QuarantineItem, arrived time.Time) (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.fail != nil {
		return "", h.fail
	}
	h.arrived = append(h.arrived, arrived)
	h.items = append(h.items, it)
	return "20261127T140000-0badcafe", nil
}

// With scan.hold_after, an unscannable message is deferred until its
// Received date is hold_after old, then held with 250; without a usable
// date it is always deferred; nothing reaches the downstream either way.
func TestHoldAfterScanUnavailable(t *testing.T) {
	ds := startDownstream(t)
	unavailable := stageFunc{name: "scan", fn: func(context.Context, *pipeline.Transaction) pipeline.Finding {
		return pipeline.Finding{Status: pipeline.Unavailable, Detail: "connection refused"}
	}}
	eng, err := policy.New(defaultPolicy, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	h := &holdRecorder{}
	p := startProxy(t, ds.addr, withStages(unavailable), withPolicy(eng),
		withConfig(func(c *Config) { c.HoldAfter = settings.Duration(10 * time.Minute) }),
		func(rt *Runtime) { rt.Quarantine = h })

	msg := func(age time.Duration) string {
		date := time.Now().Add(-age).Format(time.RFC1123Z)
		return "Received: from helo.example (client.example [192.0.2.1])\r\n\tby mx.example.test (Postfix) with ESMTP id 4ABCDEF\r\n\tfor <rcpt@example.test>; " +
			date + " (UTC)\r\nSubject: hold me\r\n\r\nbody\r\n"
	}
	for _, c := range []struct {
		name string
		body string
		code int
	}{
		{"waited less", msg(9 * time.Minute), 451},
		{"no Received", "Subject: x\r\n\r\nbody\r\n", 451},
		{"waited long enough", msg(11 * time.Minute), 250},
	} {
		_, err := sendMail(t, p.addr, "sender@example.test", []string{"rcpt@example.test"}, c.body)
		if got := smtpCode(err); got != c.code && !(c.code == 250 && err == nil) {
			t.Errorf("%s: reply %v, want %d", c.name, err, c.code)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.items) != 1 {
		t.Fatalf("held %d messages, want 1", len(h.items))
	}
	if age := time.Since(h.arrived[0]); age < 11*time.Minute || age > 12*time.Minute {
		t.Errorf("arrived %v ago", age)
	}
	it := h.items[0]
	if it.Tx.From != "sender@example.test" || len(it.Tx.Rcpts) != 1 || it.Verdict.Rule != "on_scan_unavailable" {
		t.Errorf("held item %+v", it)
	}
	if n := len(ds.messages()); n != 0 {
		t.Errorf("downstream got %d messages", n)
	}
	eventually(t, "the log line of the held message", func() bool {
		for _, e := range p.logs.FilterMessage("message").All() {
			if e.ContextMap()["verdict"] == "hold" && strings.HasPrefix(e.ContextMap()["reply"].(string), "250 2.0.0 Ok: held for rescan as ") {
				return true
			}
		}
		return false
	})
}

// A failed hold (a full disk) defers, as a failed quarantine does.
func TestHoldFailureDefers(t *testing.T) {
	ds := startDownstream(t)
	unavailable := stageFunc{name: "scan", fn: func(context.Context, *pipeline.Transaction) pipeline.Finding {
		return pipeline.Finding{Status: pipeline.Unavailable}
	}}
	eng, _ := policy.New(defaultPolicy, 1<<20)
	h := &holdRecorder{fail: context.DeadlineExceeded}
	p := startProxy(t, ds.addr, withStages(unavailable), withPolicy(eng),
		withConfig(func(c *Config) { c.HoldAfter = settings.Duration(time.Second) }),
		func(rt *Runtime) { rt.Quarantine = h })
	body := "Received: from x by mx.example.test (Postfix) with ESMTP id 4ABC; " + time.Now().Add(-time.Hour).Format(time.RFC1123Z) + "\r\n\r\nbody\r\n"
	_, err := sendMail(t, p.addr, "sender@example.test", []string{"rcpt@example.test"}, body)
	if smtpCode(err) != 451 {
		t.Fatalf("reply %v, want 451", err)
	}
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/foxproxy/foxproxy/config"
	"github.com/foxproxy/foxproxy/console"
	"github.com/foxproxy/foxproxy/internal/pgtest"
	"github.com/foxproxy/foxproxy/pgstore"
	"github.com/foxproxy/foxproxy/proxy"
	"github.com/foxproxy/foxproxy/quarantine"
)

// consoleHost is one foxproxy host's console over the shared database, as
// startOps wires it: storeArea and consoleAudit over its running
// configuration.
type consoleHost struct {
	w   *wired
	srv *console.Server
}

func newConsoleHost(t *testing.T, url, name, downstream, hash string) consoleHost {
	t.Helper()
	cfg := config.Default()
	cfg.Hostname = name
	cfg.Downstream = downstream
	cfg.Database.URL = url
	db, err := pgstore.Open(cfg.Database.Store(), pgstore.Options{Host: name, Migrate: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	w := &wired{Config: cfg, Runtime: &proxy.Runtime{Quarantine: quarantiner{store: db.Quarantine()}}, db: &dbWiring{db: db}}
	current := func() *wired { return w }
	srv := console.New(console.Options{
		Config: console.Config{Users: []console.User{{Name: "alice", Role: console.Admin, PasswordHash: hash}},
			SessionIdle: console.Duration(time.Hour), SessionMax: console.Duration(time.Hour)},
		Quarantine: storeArea{current: current, now: time.Now},
		Held:       storeArea{held: true, current: current, now: time.Now},
		Audit:      consoleAudit{current: current},
		Host:       name,
	})
	return consoleHost{w: w, srv: srv}
}

// api calls the console's JSON API as alice and decodes the answer.
func (h consoleHost) api(t *testing.T, method, path string, out any) int {
	t.Helper()
	r := httptest.NewRequest(method, path, nil)
	r.SetBasicAuth("alice", "alice's password")
	r.RemoteAddr = "192.0.2.50:4000"
	w := httptest.NewRecorder()
	h.srv.ServeHTTP(w, r)
	if out != nil {
		if err := json.Unmarshal(w.Body.Bytes(), out); err != nil {
			t.Fatalf("%s %s: %d %s: %v", method, path, w.Code, w.Body, err)
		}
	}
	return w.Code
}

type entryWithHistory struct {
	ID      string          `json:"id"`
	Error   string          `json:"error"`
	History []console.Event `json:"history"`
}

// With the database store, an entry stored by host A and released from
// host B's console in two steps (the downstream first refuses one
// recipient) has one history on both hosts' consoles: stored on A, the
// partial release by alice on B, the final release by alice on B. Once the
// final release removed the entry, GET of it answers 404 on both hosts and
// still carries that history from the audit table.
func TestConsoleHistoryWithTheDatabase(t *testing.T) {
	pg := pgtest.Start(t)
	hash, err := console.HashPassword("alice's password")
	if err != nil {
		t.Fatal(err)
	}
	ds := startFakeDownstream(t)
	ds.set(func(d *fakeDownstream) { d.rcptReply["b@example.test"] = "450 4.2.1 <b@example.test>: Mailbox busy" })
	hostA := newConsoleHost(t, pg.URL(), "mx-a.test", "127.0.0.1:1", hash) // A's downstream is never used
	hostB := newConsoleHost(t, pg.URL(), "mx-b.test", ds.addr, hash)
	ctx := context.Background()

	e := virusEntry
	e.Rcpts = []string{"a@example.test", "b@example.test"}
	id, err := hostA.w.db.db.Quarantine().Put(ctx, e, strings.NewReader(testMessage))
	if err != nil {
		t.Fatal(err)
	}
	var res console.ReleaseResult
	if code := hostB.api(t, "POST", "/api/quarantine/"+id+"/release", &res); code != http.StatusOK || res.Delivered || res.QueuedAs == "" {
		t.Fatalf("first release from B: %d %+v", code, res)
	}
	partialQueue := res.QueuedAs

	// Both consoles show the same history, in which B did the partial
	// release, while the entry waits for b@example.test.
	var onA, onB entryWithHistory
	if code := hostA.api(t, "GET", "/api/quarantine/"+id, &onA); code != http.StatusOK {
		t.Fatalf("GET on A: %d %+v", code, onA)
	}
	hostB.api(t, "GET", "/api/quarantine/"+id, &onB)
	want := []struct{ action, user, host, result string }{
		{"quarantined", "", "mx-a.test", "rule virus"},
		{"partial release", "", "mx-b.test", "delivered to a@example.test, queued as " + partialQueue},
		{"release", "alice", "mx-b.test", "partial: delivered to a@example.test, queued as " + partialQueue + "; the downstream refused b@example.test: 450"},
	}
	for _, got := range [][]console.Event{onA.History, onB.History} {
		if len(got) != len(want) {
			t.Fatalf("history: %+v, want %d events", got, len(want))
		}
		for i, w := range want {
			if got[i].Action != w.action || got[i].User != w.user || got[i].Host != w.host || !strings.HasPrefix(got[i].Result, w.result) {
				t.Errorf("event %d: %+v, want %+v", i, got[i], w)
			}
		}
	}

	ds.set(func(d *fakeDownstream) { delete(d.rcptReply, "b@example.test") })
	if code := hostB.api(t, "POST", "/api/quarantine/"+id+"/release", &res); code != http.StatusOK || !res.Delivered {
		t.Fatalf("second release from B: %d %+v", code, res)
	}
	if len(ds.delivered()) != 2 {
		t.Fatalf("%d deliveries, want 2 (one per release)", len(ds.delivered()))
	}
	// The entry is gone; its audit is not, on either host.
	for _, h := range []consoleHost{hostA, hostB} {
		var gone entryWithHistory
		if code := h.api(t, "GET", "/api/quarantine/"+id, &gone); code != http.StatusNotFound {
			t.Fatalf("GET of a released entry: %d %+v", code, gone)
		}
		if len(gone.History) != 2 || gone.History[1].Action != "release" || gone.History[1].User != "alice" ||
			gone.History[1].Host != "mx-b.test" || gone.History[1].Result != "delivered: queued as "+res.QueuedAs {
			t.Fatalf("history of the released entry: %+v", gone.History)
		}
	}
	if _, err := (storeArea{current: func() *wired { return hostA.w }, now: time.Now}).History(ctx, "20261207T100000-00000000"); !errors.Is(err, quarantine.ErrNotFound) {
		t.Fatalf("history of an entry that never was: %v", err)
	}
}

// Without a database the console's log line is the whole audit: Record
// keeps nothing and fails nothing.
func TestConsoleAuditWithoutDatabase(t *testing.T) {
	w := &wired{Config: config.Default(), Runtime: &proxy.Runtime{}}
	if err := (consoleAudit{current: func() *wired { return w }}).Record(context.Background(),
		console.AuditEvent{User: "alice", Action: "delete", Area: "quarantine", Entry: "x", Result: "ok"}); err != nil {
		t.Fatal(err)
	}
}

func TestSplitResult(t *testing.T) {
	for in, want := range map[string][2]string{
		"ok":                              {"ok", ""},
		"delivered, queued as 4ABC":       {"delivered", "queued as 4ABC"},
		"partial: delivered to a, queued": {"partial", "delivered to a, queued"},
		"failed: not released: 451 busy":  {"failed", "not released: 451 busy"},
	} {
		if r, d := splitResult(in); r != want[0] || d != want[1] {
			t.Errorf("splitResult(%q) = %q, %q; want %q", in, r, d, want)
		}
	}
}

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/foxproxy/foxproxy/config"
	"github.com/foxproxy/foxproxy/internal/pgtest"
	"github.com/foxproxy/foxproxy/msglog"
	"github.com/foxproxy/foxproxy/pgstore"
	"github.com/foxproxy/foxproxy/proxy"
	"github.com/foxproxy/foxproxy/quarantine"
)

// "foxproxy db migrate" prepares an empty database; the quarantine
// commands then work on it (and refuse it before); without database.url
// db migrate says what is missing.
func TestDBMigrateAndQuarantineCommands(t *testing.T) {
	pg := pgtest.Start(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "foxproxy.yaml")
	cfg := "downstream: 127.0.0.1:1\nhostname: fp.test\ndatabase: {url: \"" + pg.URL() + "\", timeout: 5s}\n"
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := runCLI("quarantine", "list", "-config", cfgPath); r.code != exitFailure || !strings.Contains(r.errOut, "foxproxy db migrate") {
		t.Fatalf("list before migrating: %+v", r)
	}
	r := runCLI("db", "migrate", "-config", cfgPath)
	if r.code != exitOK || !strings.Contains(r.out, fmt.Sprintf("schema version %d", pgstore.SchemaVersion)) || !strings.Contains(r.out, "127.0.0.1") {
		t.Fatalf("db migrate: %+v", r)
	}
	db, err := pgstore.Open(pgstore.Config{URL: pg.URL()}, pgstore.Options{Host: "mx-other"})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	id, err := db.Quarantine().Put(context.Background(), virusEntry, strings.NewReader(testMessage))
	if err != nil {
		t.Fatal(err)
	}
	if r := runCLI("quarantine", "list", "-config", cfgPath); r.code != exitOK || !strings.Contains(r.out, id) || !strings.Contains(r.out, "(quarantine)") {
		t.Fatalf("list: %+v", r)
	}
	if r := runCLI("quarantine", "show", id, "-config", cfgPath); r.code != exitOK || !strings.Contains(r.out, "Subject: hello") {
		t.Fatalf("show: %+v", r)
	}
	// The downstream is down: nothing delivered, the entry stays unclaimed.
	if r := runCLI("quarantine", "release", id, "-config", cfgPath); r.code != exitFailure || !strings.Contains(r.errOut, "not released") {
		t.Fatalf("release to a closed port: %+v", r)
	}
	if _, claimed := db.Quarantine().Claimed(context.Background(), id); claimed {
		t.Fatal("a release that delivered nothing left its claim")
	}
	if r := runCLI("quarantine", "delete", id, "-config", cfgPath); r.code != exitOK {
		t.Fatalf("delete: %+v", r)
	}
	if _, err := db.Quarantine().Get(context.Background(), id); err != quarantine.ErrNotFound {
		t.Fatalf("after delete: %v", err)
	}
	// The held verbs work on the database's held area.
	heldID, err := db.HeldArea().Put(context.Background(), virusEntry, strings.NewReader(testMessage))
	if err != nil {
		t.Fatal(err)
	}
	if r := runCLI("quarantine", "list", "--held", "-config", cfgPath); r.code != exitOK || !strings.Contains(r.out, heldID) || !strings.Contains(r.out, "(held)") {
		t.Fatalf("list --held: %+v", r)
	}
	if r := runCLI("quarantine", "list", "-config", cfgPath); r.code != exitOK || strings.Contains(r.out, heldID) {
		t.Fatalf("a held entry in the quarantine's list: %+v", r)
	}
	if r := runCLI("quarantine", "delete", "--held", heldID, "-config", cfgPath); r.code != exitOK {
		t.Fatalf("delete --held: %+v", r)
	}
	noDB := filepath.Join(dir, "nodb.yaml")
	os.WriteFile(noDB, []byte("downstream: 127.0.0.1:1\n"), 0o644)
	if r := runCLI("db", "migrate", "-config", noDB); r.code != exitFailure || !strings.Contains(r.errOut, "sets no database.url") {
		t.Fatalf("db migrate without database.url: %+v", r)
	}
	if r := runCLI("db"); r.code != exitUsage {
		t.Fatalf("db without a command: %+v", r)
	}
}

// With database.url set, the daemon's wiring writes the message log to the
// database through its own bounded pool (rows Search finds, counted as
// written), and a quarantine write that fails, the database stopped, is
// counted in quarantine_failures_total while the log's rows meanwhile are
// counted as dropped.
func TestDatabaseWiresMessageLogAndCountsFailures(t *testing.T) {
	pg := pgtest.Start(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "foxproxy.yaml")
	yaml := "downstream: 127.0.0.1:1\nhostname: fp.test\ndatabase: {url: \"" + pg.URL() + "\", timeout: 2s}\n" +
		"policy:\n  rules:\n    - {name: held-back, if: {from: [q@example.test]}, then: quarantine}\n"
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := wire(cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			w.close()
		}
	})
	if w.msglog == nil || w.Quarantine == nil {
		t.Fatalf("wired without the message log (%v) or the quarantine (%v)", w.msglog, w.Quarantine)
	}
	// The log's pool is its own and bounded: it never takes the custody's
	// connections.
	if p, ok := w.logDB.(*pgxpool.Pool); !ok || p.Stat().MaxConns() != logPoolConns || w.db.db.Stats().Max <= logPoolConns {
		t.Fatalf("log pool %T, custody pool max %d", w.logDB, w.db.db.Stats().Max)
	}
	l := newMessageLog()
	l.use(w.msglog, w.logDB)
	l.Message(proxy.MessageEvent{Time: time.Now(), Host: "fp.test", ID: "m1", From: "s@example.test",
		Recipients: []string{"r@example.test"}, Verdict: "deliver", ReplyCode: 250})
	waitFor(t, 20*time.Second, "the log row written", func() bool { return w.counters()["message_log_written_total"] == 1 })

	ctx := context.Background()
	db, err := pgstore.Open(pgstore.Config{URL: pg.URL()}, pgstore.Options{Host: "reader"})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	pool, err := db.LogPool(1)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	page, err := msglog.Search(ctx, pool, msglog.Query{MsgID: "m1"})
	if err != nil || len(page.Records) != 1 || page.Records[0].Sender != "s@example.test" {
		t.Fatalf("search: %+v %v", page, err)
	}
	if c := w.counters(); c["quarantine_failures_total"] != 0 || c["message_log_dropped_total"] != 0 {
		t.Fatalf("counters before the outage: %v", c)
	}

	pg.Stop()
	item := heldItem("4Q", "r@example.test")
	if _, err := w.Quarantine.Quarantine(ctx, item); err == nil {
		t.Fatal("quarantined with the database stopped")
	}
	l.Message(proxy.MessageEvent{Time: time.Now(), Host: "fp.test", ID: "m2", From: "s@example.test", Verdict: "deliver"})
	waitFor(t, 30*time.Second, "the log row dropped", func() bool { return w.counters()["message_log_dropped_total"] == 1 })
	if c := w.counters(); c["quarantine_failures_total"] != 1 || c["message_log_failed_total"] == 0 {
		t.Fatalf("counters during the outage: %v", c)
	}
	// Close flushes within its bound even though the database is down.
	start := time.Now()
	l.Message(proxy.MessageEvent{Time: time.Now(), Host: "fp.test", ID: "m3", From: "s@example.test", Verdict: "deliver"})
	closed = true
	w.close()
	if took := time.Since(start); took > logFlushWait+10*time.Second {
		t.Fatalf("close took %s with the database down", took)
	}
}

// waitFor polls cond until it holds or max has passed.
func waitFor(t *testing.T, max time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(max)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %s", what, max)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/foxproxy/foxproxy/internal/pgtest"
	"github.com/foxproxy/foxproxy/pgstore"
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

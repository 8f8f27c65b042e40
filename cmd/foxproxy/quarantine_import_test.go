package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/foxproxy/foxproxy/internal/pgtest"
	"github.com/foxproxy/foxproxy/pgstore"
	"github.com/foxproxy/foxproxy/quarantine"
)

// importSetup is a migrated database, a configuration pointing at it and
// at dir, and the database opened as the test's own reader.
func importSetup(t *testing.T, dir string) (cfgPath string, db *pgstore.DB) {
	t.Helper()
	pg := pgtest.Start(t)
	db, err := pgstore.Open(pgstore.Config{URL: pg.URL(), Timeout: 10 * time.Second}, pgstore.Options{Host: "reader", Migrate: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if _, err := db.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	cfgPath = filepath.Join(t.TempDir(), "foxproxy.yaml")
	cfg := "downstream: 127.0.0.1:1\nhostname: fp.test\nquarantine: {dir: " + dir + "}\ndatabase: {url: \"" + pg.URL() + "\", timeout: 10s}\n"
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfgPath, db
}

// fileEntries are the IDs of the file entries left in dir (metadata
// files), the held area's prefixed with "held/".
func fileEntries(t *testing.T, dir string) []string {
	t.Helper()
	var ids []string
	for _, sub := range []string{"", "held"} {
		names, _ := filepath.Glob(filepath.Join(dir, sub, "*.json"))
		for _, n := range names {
			ids = append(ids, filepath.Join(sub, strings.TrimSuffix(filepath.Base(n), ".json")))
		}
	}
	return ids
}

func readAll(t *testing.T, s quarantine.Store, id string) []byte {
	t.Helper()
	m, err := s.Open(context.Background(), id)
	if err != nil {
		t.Fatalf("open %s: %v", id, err)
	}
	defer m.Close()
	b, err := io.ReadAll(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A file store with quarantined, partially released, uncertain, busy and
// held entries, imported in three runs: the first interrupted after its
// second commit (before that entry's files were removed), the second
// leaving the entry whose release is in progress, the third finishing it.
// Every entry ends in the database exactly once, byte for byte, with its
// partial releases and its uncertain claim, and none is left in the
// directory.
func TestQuarantineImportInterruptedAndResumed(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "quarantine")
	cfgPath, db := importSetup(t, dir)
	src, err := quarantine.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	heldSrc, err := src.Held()
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)
	content := map[string][]byte{} // "area/id" -> the message
	put := func(s quarantine.Store, area string, e quarantine.Entry, size int) string {
		t.Helper()
		b := make([]byte, size)
		rand.Read(b)
		id, err := s.Put(ctx, e, bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		content[area+"/"+id] = b
		return id
	}
	entry := func(minute int) quarantine.Entry {
		return quarantine.Entry{Time: base.Add(time.Duration(minute) * time.Minute), From: "s@example.org",
			Rcpts: []string{"a@example.test"}, Rule: "virus", Reason: "Eicar"}
	}
	// Larger than a chunk: the copy is written and read in several.
	q1 := put(src, "quarantine", entry(0), pgstore.ChunkSize+12345)
	partial := entry(1)
	partial.Released = []quarantine.Release{{Time: base.Add(time.Hour), Rcpts: []string{"b@example.test"}, QueuedAs: "4REL"}}
	q2 := put(src, "quarantine", partial, 2000)
	q3 := put(src, "quarantine", entry(2), 3000)
	q4 := put(src, "quarantine", entry(3), 4000)
	h1e := entry(4)
	h1e.Arrived = base.Add(-time.Hour)
	h1 := put(heldSrc, "held", h1e, 5000)
	h2 := put(heldSrc, "held", entry(5), 0) // an empty message is an entry too

	why := "the connection broke after the final dot"
	c3, err := src.Claim(ctx, q3, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := c3.KeepUncertain(why); err != nil {
		t.Fatal(err)
	}
	busy, err := src.Claim(ctx, q4, false) // a release in progress
	if err != nil {
		t.Fatal(err)
	}

	// Run 1, interrupted after its second commit: q1 copied and its
	// files removed, q2 copied and its files still there.
	cctx, cancel := context.WithCancel(ctx)
	commits := 0
	sum, err := importFileStore(cctx, src, db, importOptions{committed: func(area, id string) {
		if commits++; commits == 2 {
			cancel()
		}
	}})
	cancel()
	if !errors.Is(err, context.Canceled) || sum.Imported != 2 {
		t.Fatalf("interrupted run: %+v, %v", sum, err)
	}
	if got := strings.Join(fileEntries(t, dir), " "); len(fileEntries(t, dir)) != 5 || !strings.Contains(got, q2) || strings.Contains(got, q1) {
		t.Fatalf("after the interrupted run the directory holds %v, want 5 entries, q2 (%s) among them and not q1 (%s)", got, q2, q1)
	}

	// Run 2: q2 is in the database already (skipped, its files removed);
	// q4 is being released and stays; the rest is copied.
	r := runCLI("quarantine", "import", "-config", cfgPath)
	if r.code != exitFailure || !strings.Contains(r.errOut, q4+": left in the directory: a release is in progress") ||
		!strings.Contains(r.out, "imported 3, skipped 1 (in the database already), failed 0, left for a later run 1") {
		t.Fatalf("second run: %+v", r)
	}
	if got := fileEntries(t, dir); len(got) != 1 || got[0] != q4 {
		t.Fatalf("after the second run the directory holds %v, want only %s", got, q4)
	}
	busy.Drop()

	// Run 3 finishes; run 4 finds nothing to do.
	if r := runCLI("quarantine", "import", "-config", cfgPath); r.code != exitOK || !strings.Contains(r.out, "imported 1, skipped 0") {
		t.Fatalf("third run: %+v", r)
	}
	if r := runCLI("quarantine", "import", "-dir", dir, "-config", cfgPath); r.code != exitOK || !strings.Contains(r.out, "imported 0, skipped 0 (in the database already), failed 0") {
		t.Fatalf("fourth run: %+v", r)
	}
	if got := fileEntries(t, dir); len(got) != 0 {
		t.Fatalf("file entries left: %v", got)
	}

	// Exactly once each, byte for byte.
	for area, s := range map[string]*pgstore.Store{"quarantine": db.Quarantine(), "held": db.HeldArea()} {
		entries, err := s.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := 0
		for key := range content {
			if strings.HasPrefix(key, area+"/") {
				want++
			}
		}
		if len(entries) != want {
			t.Fatalf("%s: %d entries in the database, want %d", area, len(entries), want)
		}
		for _, e := range entries {
			orig, ok := content[area+"/"+e.ID]
			if !ok {
				t.Fatalf("%s: unexpected entry %s", area, e.ID)
			}
			if got := readAll(t, s, e.ID); !bytes.Equal(got, orig) {
				t.Fatalf("%s %s: %d bytes in the database differ from the file's %d", area, e.ID, len(got), len(orig))
			}
		}
	}
	q := db.Quarantine()
	if e, _ := q.Get(ctx, q2); len(e.Released) != 1 || e.Released[0].QueuedAs != "4REL" || !e.Time.Equal(partial.Time) {
		t.Fatalf("partially released entry: %+v", e)
	}
	if ce, ok := q.Claimed(ctx, q3); !ok || ce.Uncertain != why {
		t.Fatalf("the uncertain release's claim: %+v, %v", ce, ok)
	}
	if _, ok := q.Claimed(ctx, q1); ok {
		t.Fatal("the import left its own claim on an entry")
	}
	if e, _ := db.HeldArea().Get(ctx, h1); !e.Arrived.Equal(h1e.Arrived) {
		t.Fatalf("held entry's arrival: %v", e.Arrived)
	}
	if has, _ := db.HeldArea().Has(ctx, h2); !has {
		t.Fatal("the empty held message was not imported")
	}
}

// With -keep the files stay and a second run skips what the first copied;
// an entry the database holds under the same ID with another size is
// reported and its files stay.
func TestQuarantineImportKeepAndConflict(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "quarantine")
	cfgPath, db := importSetup(t, dir)
	src, err := quarantine.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	kept, err := src.Put(ctx, quarantine.Entry{From: "s@example.org", Rcpts: []string{"a@example.test"}}, strings.NewReader("kept"))
	if err != nil {
		t.Fatal(err)
	}
	for run, want := range []string{"imported 1, skipped 0", "imported 0, skipped 1"} {
		if r := runCLI("quarantine", "import", "-keep", "-config", cfgPath); r.code != exitOK || !strings.Contains(r.out, want) {
			t.Fatalf("run %d with -keep: %+v", run+1, r)
		}
		if got := fileEntries(t, dir); len(got) != 1 || got[0] != kept {
			t.Fatalf("run %d with -keep: the directory holds %v", run+1, got)
		}
		if _, ok := src.Claimed(ctx, kept); ok {
			t.Fatalf("run %d with -keep left a claim on the file entry", run+1)
		}
	}
	other, err := src.Put(ctx, quarantine.Entry{From: "s@example.org", Rcpts: []string{"a@example.test"}}, strings.NewReader("the file's"))
	if err != nil {
		t.Fatal(err)
	}
	e, _ := src.Get(ctx, other)
	if err := db.Quarantine().Import(ctx, e, strings.NewReader("another message"), nil); err != nil {
		t.Fatal(err)
	}
	r := runCLI("quarantine", "import", "-config", cfgPath)
	if r.code != exitFailure || !strings.Contains(r.errOut, other+": not imported: the database has another entry under this ID") ||
		!strings.Contains(r.out, "imported 0, skipped 1 (in the database already), failed 1") {
		t.Fatalf("conflict: %+v", r)
	}
	if got := fileEntries(t, dir); len(got) != 1 || got[0] != other {
		t.Fatalf("after the conflict the directory holds %v, want only %s", got, other)
	}
	if r := runCLI("quarantine", "import", "-config", filepath.Join(t.TempDir(), "missing.yaml")); r.code != exitFailure {
		t.Fatalf("missing configuration: %+v", r)
	}
	noDB := filepath.Join(t.TempDir(), "nodb.yaml")
	os.WriteFile(noDB, []byte("downstream: 127.0.0.1:1\n"), 0o644)
	if r := runCLI("quarantine", "import", "-dir", dir, "-config", noDB); r.code != exitFailure || !strings.Contains(r.errOut, "sets no database.url") {
		t.Fatalf("without database.url: %+v", r)
	}
}

package quarantine

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPutGetListDelete(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "q"))
	if err != nil {
		t.Fatal(err)
	}
	id, err := s.Put(context.Background(), Entry{From: "a@example.test", Rcpts: []string{"b@example.test"}, Rule: "virus",
		Findings: []Finding{{Stage: "scan", Status: "infected", Detail: "Eicar"}}}, strings.NewReader("Subject: x\r\n\r\nbody\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	e, err := s.Get(context.Background(), id)
	if err != nil || e.From != "a@example.test" || e.Rule != "virus" || e.Findings[0].Detail != "Eicar" {
		t.Fatalf("Get: %+v, %v", e, err)
	}
	f, err := s.Open(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(f)
	f.Close()
	if string(b) != "Subject: x\r\n\r\nbody\r\n" {
		t.Fatalf("content %q", b)
	}
	for _, ext := range []string{".eml", ".json"} {
		st, _ := os.Stat(filepath.Join(s.Dir(), id+ext))
		if st.Mode().Perm() != 0o600 {
			t.Fatalf("%s mode %v", ext, st.Mode())
		}
	}
	if st, _ := os.Stat(s.Dir()); st.Mode().Perm() != 0o700 {
		t.Fatalf("dir mode %v", st.Mode())
	}
	l, _ := s.List(context.Background())
	if len(l) != 1 || l[0].ID != id {
		t.Fatalf("List: %+v", l)
	}
	if err := s.Delete(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(context.Background(), id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after Delete: %v", err)
	}
	if _, err := s.Get(context.Background(), "../../etc/passwd"); !errors.Is(err, ErrNotFound) {
		t.Fatal("path traversal in an ID")
	}
}

// A crash between the two writes leaves no entry that List shows, and Purge
// removes the leftover.
func TestCrashBetweenWritesLeavesNoHalfEntry(t *testing.T) {
	s, _ := Open(t.TempDir())
	s.failAfterMessage = true
	if _, err := s.Put(context.Background(), Entry{From: "a@b"}, strings.NewReader("x")); err == nil {
		t.Fatal("simulated crash did not fail")
	}
	if l, _ := s.List(context.Background()); len(l) != 0 {
		t.Fatalf("half entry visible: %+v", l)
	}
	files, _ := os.ReadDir(s.Dir())
	if len(files) != 1 || !strings.HasSuffix(files[0].Name(), ".eml") {
		t.Fatalf("files %v", files)
	}
	s.now = func() time.Time { return time.Now().Add(2 * time.Minute) }
	s.Purge(context.Background(), 24*time.Hour)
	if files, _ := os.ReadDir(s.Dir()); len(files) != 0 {
		t.Fatalf("orphan not purged: %v", files)
	}
}

func TestPurgeByAge(t *testing.T) {
	s, _ := Open(t.TempDir())
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return now }
	old, _ := s.Put(context.Background(), Entry{Time: now.Add(-31 * 24 * time.Hour)}, strings.NewReader("old"))
	young, _ := s.Put(context.Background(), Entry{Time: now.Add(-time.Hour)}, strings.NewReader("young"))
	n, err := s.Purge(context.Background(), 30*24*time.Hour)
	if err != nil || n != 1 {
		t.Fatalf("Purge: %d, %v", n, err)
	}
	if _, err := s.Get(context.Background(), old); !errors.Is(err, ErrNotFound) {
		t.Fatal("old entry kept")
	}
	if _, err := s.Get(context.Background(), young); err != nil {
		t.Fatal("young entry purged")
	}
}

// A partial release rewrites the metadata in place; readers never see a
// mix.
func TestUpdate(t *testing.T) {
	s, _ := Open(t.TempDir())
	id, _ := s.Put(context.Background(), Entry{From: "a@b", Rcpts: []string{"x@y", "z@y"}}, strings.NewReader("m"))
	e, _ := s.Get(context.Background(), id)
	e.Rcpts = []string{"z@y"}
	e.Released = []Release{{Time: time.Now(), Rcpts: []string{"x@y"}, QueuedAs: "4ABC"}}
	if err := s.Update(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(context.Background(), id)
	if err != nil || len(got.Rcpts) != 1 || got.Rcpts[0] != "z@y" || got.Released[0].QueuedAs != "4ABC" {
		t.Fatalf("after Update: %+v, %v", got, err)
	}
	if files, _ := os.ReadDir(s.Dir()); len(files) != 2 {
		t.Fatalf("files %v", files)
	}
	if err := s.Update(context.Background(), Entry{ID: "20260101T000000-00000000"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Update of a missing entry: %v", err)
	}
}

// One claim at a time; an uncertain claim blocks until forced; a running
// claimer is never overridden; Delete and Purge clear claims.
func TestClaim(t *testing.T) {
	s, _ := Open(t.TempDir())
	id, _ := s.Put(context.Background(), Entry{From: "a@b"}, strings.NewReader("m"))
	c, err := s.Claim(context.Background(), id, false)
	if err != nil {
		t.Fatal(err)
	}
	var ce *ClaimedError
	for _, force := range []bool{false, true} {
		if _, err := s.Claim(context.Background(), id, force); !errors.As(err, &ce) || !ce.Running || ce.PID != os.Getpid() {
			t.Fatalf("second claim (force %v): %v", force, err)
		}
	}
	c.Drop()
	c, err = s.Claim(context.Background(), id, false)
	if err != nil {
		t.Fatalf("claim after Drop: %v", err)
	}
	if err := c.KeepUncertain("connection lost after the final dot"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Claim(context.Background(), id, false); !errors.As(err, &ce) || ce.Uncertain == "" || !strings.Contains(err.Error(), "may have been delivered") {
		t.Fatalf("claim after an uncertain release: %v", err)
	}
	if got, ok := s.Claimed(context.Background(), id); !ok || got.Uncertain != "connection lost after the final dot" {
		t.Fatalf("Claimed: %+v %v", got, ok)
	}
	c, err = s.Claim(context.Background(), id, true)
	if err != nil {
		t.Fatalf("forced claim: %v", err)
	}
	// A crashed claimer: a PID that is not running.
	os.WriteFile(filepath.Join(s.Dir(), id+claimExt), []byte(`{"pid":2147483000,"time":"2026-01-01T00:00:00Z"}`), 0o600)
	if _, err := s.Claim(context.Background(), id, false); !errors.As(err, &ce) || ce.Running || !strings.Contains(err.Error(), "was interrupted") {
		t.Fatalf("claim of a crashed release: %v", err)
	}
	if err := s.Delete(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	if files, _ := os.ReadDir(s.Dir()); len(files) != 0 {
		t.Fatalf("Delete left %v", files)
	}
	if _, err := s.Claim(context.Background(), id, false); !errors.Is(err, ErrNotFound) {
		t.Fatalf("claim of a deleted entry: %v", err)
	}
	_ = c

	// A claim whose entry is gone is an orphan for Purge.
	os.WriteFile(filepath.Join(s.Dir(), "20260101T000000-00000000"+claimExt), []byte("{}"), 0o600)
	s.now = func() time.Time { return time.Now().Add(2 * time.Minute) }
	s.Purge(context.Background(), time.Hour)
	if files, _ := os.ReadDir(s.Dir()); len(files) != 0 {
		t.Fatalf("orphan claim not purged: %v", files)
	}
}

func TestOpenExisting(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "q")
	if _, err := OpenExisting(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing dir: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("OpenExisting created the directory")
	}
	os.Mkdir(dir, 0o700)
	if _, err := OpenExisting(dir); err != nil {
		t.Fatal(err)
	}
}

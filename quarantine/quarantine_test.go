package quarantine

import (
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
	id, err := s.Put(Entry{From: "a@example.test", Rcpts: []string{"b@example.test"}, Rule: "virus",
		Findings: []Finding{{Stage: "scan", Status: "infected", Detail: "Eicar"}}}, strings.NewReader("Subject: x\r\n\r\nbody\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	e, err := s.Get(id)
	if err != nil || e.From != "a@example.test" || e.Rule != "virus" || e.Findings[0].Detail != "Eicar" {
		t.Fatalf("Get: %+v, %v", e, err)
	}
	f, err := s.Open(id)
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
	l, _ := s.List()
	if len(l) != 1 || l[0].ID != id {
		t.Fatalf("List: %+v", l)
	}
	if err := s.Delete(id); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after Delete: %v", err)
	}
	if _, err := s.Get("../../etc/passwd"); !errors.Is(err, ErrNotFound) {
		t.Fatal("path traversal in an ID")
	}
}

// A crash between the two writes leaves no entry that List shows, and Purge
// removes the leftover.
func TestCrashBetweenWritesLeavesNoHalfEntry(t *testing.T) {
	s, _ := Open(t.TempDir())
	s.failAfterMessage = true
	if _, err := s.Put(Entry{From: "a@b"}, strings.NewReader("x")); err == nil {
		t.Fatal("simulated crash did not fail")
	}
	if l, _ := s.List(); len(l) != 0 {
		t.Fatalf("half entry visible: %+v", l)
	}
	files, _ := os.ReadDir(s.Dir())
	if len(files) != 1 || !strings.HasSuffix(files[0].Name(), ".eml") {
		t.Fatalf("files %v", files)
	}
	s.now = func() time.Time { return time.Now().Add(2 * time.Minute) }
	s.Purge(24 * time.Hour)
	if files, _ := os.ReadDir(s.Dir()); len(files) != 0 {
		t.Fatalf("orphan not purged: %v", files)
	}
}

func TestPurgeByAge(t *testing.T) {
	s, _ := Open(t.TempDir())
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return now }
	old, _ := s.Put(Entry{Time: now.Add(-31 * 24 * time.Hour)}, strings.NewReader("old"))
	young, _ := s.Put(Entry{Time: now.Add(-time.Hour)}, strings.NewReader("young"))
	n, err := s.Purge(30 * 24 * time.Hour)
	if err != nil || n != 1 {
		t.Fatalf("Purge: %d, %v", n, err)
	}
	if _, err := s.Get(old); !errors.Is(err, ErrNotFound) {
		t.Fatal("old entry kept")
	}
	if _, err := s.Get(young); err != nil {
		t.Fatal("young entry purged")
	}
}

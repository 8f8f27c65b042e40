package quarantine

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Held entries live apart: the quarantine's List and retention Purge never
// see them, and a move keeps the ID and happens once.
func TestHeldArea(t *testing.T) {
	q, err := Open(filepath.Join(t.TempDir(), "q"))
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := mustList(t, q.HeldView()); n != 0 {
		t.Fatalf("a held area that does not exist lists %d entries", n)
	}
	held, err := q.Held()
	if err != nil {
		t.Fatal(err)
	}
	held.(*DirStore).now = func() time.Time { return time.Date(2026, 11, 27, 14, 0, 0, 0, time.UTC) }
	id, err := held.Put(context.Background(), Entry{From: "a@example.test", Rcpts: []string{"b@example.test"}}, strings.NewReader("Subject: x\r\n\r\nx\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := mustList(t, q); n != 0 {
		t.Fatalf("held entry listed in the quarantine")
	}
	if n, err := q.Purge(context.Background(), 0); n != 0 || err != nil || !mustHas(t, held, id) {
		t.Fatalf("retention purge touched the held area: %d %v", n, err)
	}
	n, oldest, err := held.Stats(context.Background())
	if n != 1 || !oldest.Equal(time.Date(2026, 11, 27, 14, 0, 0, 0, time.UTC)) || err != nil {
		t.Fatalf("stats %d %v %v", n, oldest, err)
	}

	e, _ := held.Get(context.Background(), id)
	if err := q.PutAs(context.Background(), id, e, strings.NewReader("one")); err != nil {
		t.Fatal(err)
	}
	if err := q.PutAs(context.Background(), id, e, strings.NewReader("two")); !errors.Is(err, ErrExists) {
		t.Fatalf("second PutAs: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(q.Dir(), id+".eml")); string(b) != "one" {
		t.Fatalf("PutAs overwrote: %q", b)
	}
}

func mustList(t *testing.T, s Store) (int, []Entry) {
	t.Helper()
	l, err := s.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return len(l), l
}

// A claim marked sending by a process that is gone is uncertain; one of
// this process under an earlier instance (a restarted container's PID 1)
// counts as gone.
func TestClaimSendingAndInstance(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	id, _ := s.Put(context.Background(), Entry{From: "a@example.test", Rcpts: []string{"b@example.test"}}, strings.NewReader("x"))
	c, err := s.Claim(context.Background(), id, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.MarkSending(); err != nil {
		t.Fatal(err)
	}
	ce, _ := s.Claimed(context.Background(), id)
	if !ce.Running || ce.Uncertain != "" {
		t.Fatalf("own running claim: %+v", ce)
	}
	old := instance
	instance = "a-later-process"
	defer func() { instance = old }()
	ce, _ = s.Claimed(context.Background(), id)
	if ce.Running || ce.Uncertain == "" {
		t.Fatalf("claim of an earlier process with our PID: %+v", ce)
	}
	if _, err := s.Claim(context.Background(), id, false); err == nil {
		t.Fatal("an uncertain claim was taken without force")
	}
}

func mustHas(t *testing.T, s Store, id string) bool {
	t.Helper()
	ok, err := s.Has(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

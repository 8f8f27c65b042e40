package pgstore

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/foxproxy/foxproxy/msglog"
	"github.com/foxproxy/foxproxy/quarantine"
)

// A migrated database takes the message log: a Writer on LogPool's pool
// writes rows that Search finds, and the pool never grows past its bound,
// so the log cannot take the custody's connections.
func TestLogPoolWritesTheMessageLog(t *testing.T) {
	db := host(t, freshURL(t), "mx1", 0)
	ctx := context.Background()
	if v, err := db.Migrate(ctx); err != nil || v != SchemaVersion || SchemaVersion < 2 {
		t.Fatalf("migrate: %d %v (SchemaVersion %d)", v, err, SchemaVersion)
	}
	pool, err := db.LogPool(2)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	w := msglog.NewWriter(pool, msglog.Options{FlushInterval: 20 * time.Millisecond})
	now := time.Now().UTC()
	for i := 0; i < 50; i++ {
		w.Add(msglog.Record{Time: now, Host: "mx1", MsgID: "m" + string(rune('a'+i%26)), Sender: "a@example.org",
			Rcpts: []string{"b@example.net"}, Verdict: "deliver"})
	}
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := w.Close(cctx); err != nil {
		t.Fatal(err)
	}
	if st := w.Stats(); st.Written != 50 || st.Dropped != 0 {
		t.Fatalf("stats %+v", st)
	}
	page, err := msglog.Search(ctx, pool, msglog.Query{Sender: "A@example.org", Limit: 100})
	if err != nil || len(page.Records) != 50 {
		t.Fatalf("search: %d records, %v", len(page.Records), err)
	}
	if max := pool.Stat().MaxConns(); max != 2 {
		t.Fatalf("log pool max %d, want 2", max)
	}
	if app := pool.Config().ConnConfig.RuntimeParams["synchronous_commit"]; app != "on" {
		t.Fatalf("log pool synchronous_commit %q", app)
	}
	if db.Stats().Max != 16 {
		t.Fatalf("custody pool max changed: %d", db.Stats().Max)
	}
}

// Import keeps an entry's ID, time and partial releases, and a lapsed
// claim's state (interrupted, or may have delivered), in one transaction;
// a second import of the ID writes nothing; a running claim is refused.
func TestImportKeepsEntryAndClaim(t *testing.T) {
	db := host(t, freshURL(t), "mx1", 0)
	ctx := context.Background()
	q := db.Quarantine()
	at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	e := quarantine.Entry{ID: quarantine.NewID(at), Time: at, From: "a@example.org", Rcpts: []string{"c@example.net"}, Size: 5,
		Rule: "virus", Released: []quarantine.Release{{Time: at.Add(time.Hour), Rcpts: []string{"b@example.net"}, QueuedAs: "4QX"}}}
	why := "the connection broke after the final dot"
	if err := q.Import(ctx, e, strings.NewReader("hello"), &quarantine.ClaimedError{ID: e.ID, PID: 42, Time: at, Uncertain: why}); err != nil {
		t.Fatal(err)
	}
	got, err := q.Get(ctx, e.ID)
	if err != nil || !got.Time.Equal(at) || len(got.Released) != 1 || got.Released[0].QueuedAs != "4QX" {
		t.Fatalf("get: %+v %v", got, err)
	}
	ce, ok := q.Claimed(ctx, e.ID)
	if !ok || ce.Running || ce.Uncertain != why || ce.PID != 42 {
		t.Fatalf("claim: %+v %v", ce, ok)
	}
	if _, err := q.Claim(ctx, e.ID, false); err == nil {
		t.Fatal("an uncertain imported claim was taken without --force")
	}
	if err := q.Import(ctx, e, strings.NewReader("other"), nil); err != quarantine.ErrExists {
		t.Fatalf("second import: %v", err)
	}
	e2 := e
	e2.ID = quarantine.NewID(at)
	if err := q.Import(ctx, e2, strings.NewReader("x"), &quarantine.ClaimedError{ID: e2.ID, PID: 7, Running: true}); err == nil {
		t.Fatal("an entry with a running claim was imported")
	}
	if has, _ := q.Has(ctx, e2.ID); has {
		t.Fatal("a refused import left an entry")
	}
}

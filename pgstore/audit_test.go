package pgstore

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/foxproxy/foxproxy/quarantine"
)

// An audit row written by one host's console is read by another host, in
// time order, in its own area only; it outlives its entry (a release that
// delivered everything, or a delete, removes the entry); StoredBy names
// the host that stored the entry.
func TestAuditSharedAndOutlivesEntry(t *testing.T) {
	ctx := context.Background()
	url := freshURL(t)
	a, b := host(t, url, "mx-a", time.Minute), host(t, url, "mx-b", time.Minute)
	id, err := a.Quarantine().Put(ctx, quarantine.Entry{From: "s@example.test", Rcpts: []string{"r@example.test"}, Size: 5}, bytes.NewReader([]byte("hello")))
	if err != nil {
		t.Fatal(err)
	}
	if h, err := b.Quarantine().StoredBy(ctx, id); err != nil || h != "mx-a" {
		t.Fatalf("StoredBy from B: %q, %v; want mx-a", h, err)
	}
	t0 := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	rows := []AuditRow{
		{Time: t0.Add(2 * time.Second), User: "alice", Action: "release", EntryID: id, Client: "192.0.2.9", Result: "delivered", Detail: "queued as 4XYZ"},
		{Time: t0, User: "bob", Action: "download", EntryID: id, Client: "192.0.2.8", Result: "ok"},
		{Time: t0.Add(time.Second), User: "alice", Action: "release", EntryID: id, Result: "partial", Detail: "the downstream refused x@example.test"},
	}
	for i, r := range rows {
		db := b
		if i == 1 {
			db = a
		}
		if err := db.Quarantine().RecordAudit(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	// The same ID in the held area is another entry: its rows are not
	// this one's.
	if err := b.HeldArea().RecordAudit(ctx, AuditRow{User: "carol", Action: "delete", EntryID: id, Result: "ok"}); err != nil {
		t.Fatal(err)
	}
	if err := a.Quarantine().Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Quarantine().StoredBy(ctx, id); !errors.Is(err, quarantine.ErrNotFound) {
		t.Fatalf("StoredBy of a deleted entry: %v, want ErrNotFound", err)
	}
	got, err := a.Quarantine().AuditTrail(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ user, host, action, result, detail, client string }{
		{"bob", "mx-a", "download", "ok", "", "192.0.2.8"},
		{"alice", "mx-b", "release", "partial", "the downstream refused x@example.test", ""},
		{"alice", "mx-b", "release", "delivered", "queued as 4XYZ", "192.0.2.9"},
	}
	if len(got) != len(want) {
		t.Fatalf("AuditTrail: %d rows, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		if g.User != w.user || g.Host != w.host || g.Action != w.action || g.Result != w.result || g.Detail != w.detail ||
			g.Client != w.client || g.EntryID != id {
			t.Errorf("row %d: %+v, want %+v", i, g, w)
		}
	}
	if !got[0].Time.Equal(t0) {
		t.Errorf("row 0 time %s, want %s", got[0].Time, t0)
	}
	if held, err := a.HeldArea().AuditTrail(ctx, id); err != nil || len(held) != 1 || held[0].User != "carol" {
		t.Fatalf("held area's trail: %+v, %v", held, err)
	}
}

// What the table refuses is refused with the reason, and what comes from
// outside (an ID from a URL, a downstream's reply) is stored bounded and
// as valid text whatever it was.
func TestAuditBoundsAndRefusals(t *testing.T) {
	ctx := context.Background()
	q := host(t, freshURL(t), "mx-a", time.Minute).Quarantine()
	if err := q.RecordAudit(ctx, AuditRow{User: "alice", Action: "rm", EntryID: "x", Result: "ok"}); err == nil || !strings.Contains(err.Error(), `action "rm"`) {
		t.Fatalf("unknown action: %v", err)
	}
	if err := q.RecordAudit(ctx, AuditRow{Action: "delete", EntryID: "x", Result: "ok"}); err == nil || !strings.Contains(err.Error(), "no user") {
		t.Fatalf("no user: %v", err)
	}
	long := strings.Repeat("é", 5000) // 10000 bytes
	id := strings.Repeat("i", 1000)
	if err := q.RecordAudit(ctx, AuditRow{User: "alice", Action: "release", EntryID: id, Result: "failed", Detail: "bad \xff\x00 " + long}); err != nil {
		t.Fatal(err)
	}
	if err := q.RecordAudit(ctx, AuditRow{User: "alice", Action: "delete", EntryID: clip(id, maxAuditShort), Result: "ok"}); err != nil {
		t.Fatal(err)
	}
	got, err := q.AuditTrail(ctx, clip(id, maxAuditShort))
	if err != nil || len(got) != 2 {
		t.Fatalf("trail of the clipped ID: %d rows, %v", len(got), err)
	}
	d := got[0].Detail
	if len(d) > maxAuditDetail || !utf8.ValidString(d) || strings.ContainsRune(d, 0) || !strings.HasPrefix(d, "bad \uFFFD é") || !strings.HasSuffix(d, "é…") {
		t.Fatalf("detail stored as %d bytes, valid %v: %.40q…%q", len(d), utf8.ValidString(d), d, d[len(d)-10:])
	}
	if got[0].Host != "mx-a" {
		t.Fatalf("host %q: a row without one is this host's", got[0].Host)
	}
}

// AuditTrail returns at most maxAuditRows, the newest, oldest first.
func TestAuditTrailBounded(t *testing.T) {
	ctx := context.Background()
	db := host(t, freshURL(t), "mx-a", time.Minute)
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := db.pool.Exec(ctx, `INSERT INTO audit (time, host, username, action, area, entry_id, result)
		SELECT $1::timestamptz + n * interval '1 second', 'mx-a', 'script', 'download', 'quarantine', 'e1', 'ok'
		FROM generate_series(1, $2::int) n`, t0, maxAuditRows+5); err != nil {
		t.Fatal(err)
	}
	got, err := db.Quarantine().AuditTrail(ctx, "e1")
	if err != nil || len(got) != maxAuditRows {
		t.Fatalf("%d rows, %v; want %d", len(got), err, maxAuditRows)
	}
	if first, last := got[0].Time, got[len(got)-1].Time; !first.Equal(t0.Add(6*time.Second)) || !last.Equal(t0.Add((maxAuditRows+5)*time.Second)) {
		t.Fatalf("rows from %s to %s: want the newest %d, oldest first", first, last, maxAuditRows)
	}
}

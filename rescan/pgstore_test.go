package rescan

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/foxproxy/foxproxy/config"
	"github.com/foxproxy/foxproxy/internal/pgtest"
	"github.com/foxproxy/foxproxy/pgstore"
	"github.com/foxproxy/foxproxy/pipeline"
	"github.com/foxproxy/foxproxy/policy"
	"github.com/foxproxy/foxproxy/quarantine"
)

// dbHost is one foxproxy host's rescan on the shared database.
type dbHost struct {
	db   *pgstore.DB
	ds   *downstream
	loop *Loop
}

func newDBHost(t *testing.T, url, name string, lease time.Duration) *dbHost {
	t.Helper()
	db, err := pgstore.Open(pgstore.Config{URL: url, Timeout: 10 * time.Second, ClaimLease: lease}, pgstore.Options{Host: name, Migrate: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	eng, err := policy.New(config.Default().Policy, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	h := &dbHost{db: db, ds: &downstream{}}
	h.loop = newLoop(Config{Held: db.HeldArea(), Quarantine: db.Quarantine(), Pipeline: pipeline.New(&scanByContent{}), Policy: eng,
		Ready: func(context.Context) bool { return true }, Rate: 1000, Batch: 1000})
	h.loop.cfg.deliver = h.ds.deliver
	h.loop.cfg.sleep = func(time.Duration, <-chan struct{}) bool { return true }
	return h
}

func holdIn(t *testing.T, s quarantine.Store, subject, body string) string {
	t.Helper()
	msg := "Subject: " + subject + "\r\n\r\n" + body + "\r\n"
	id, err := s.Put(context.Background(), quarantine.Entry{From: "sender@example.test", Rcpts: []string{"rcpt@example.test"},
		QueueID: "Q" + subject, Size: int64(len(msg)), Rule: "hold_after", Arrived: time.Now().Add(-time.Hour)}, strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// Two hosts rescan one held area in the database at the same time: every
// clean message is delivered exactly once (by one host or the other),
// every infected one is quarantined once, and nothing is left held.
func TestRescanSharedByTwoHosts(t *testing.T) {
	pg := pgtest.Start(t)
	a, b := newDBHost(t, pg.URL(), "mx-a", time.Minute), newDBHost(t, pg.URL(), "mx-b", time.Minute)
	clean, infected := map[string]bool{}, map[string]bool{}
	for i := range 30 {
		if i%3 == 0 {
			infected[holdIn(t, a.db.HeldArea(), "virus", "EICAR")] = true
		} else {
			clean[holdIn(t, a.db.HeldArea(), "clean", "hello")] = true
		}
	}
	var wg sync.WaitGroup
	for _, h := range []*dbHost{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 3 {
				h.loop.Round()
			}
		}()
	}
	wg.Wait()
	seen := map[string]int{}
	for _, h := range []*dbHost{a, b} {
		for _, id := range h.ds.delivered {
			seen[id]++
		}
	}
	for id := range clean {
		if seen[id] != 1 {
			t.Errorf("clean %s delivered %d times", id, seen[id])
		}
	}
	if len(seen) != len(clean) {
		t.Errorf("%d messages delivered, want the %d clean ones", len(seen), len(clean))
	}
	list, err := a.db.Quarantine().List(context.Background())
	if err != nil || len(list) != len(infected) {
		t.Fatalf("quarantine has %d entries (%v), want %d", len(list), err, len(infected))
	}
	for _, e := range list {
		if !infected[e.ID] {
			t.Errorf("%s quarantined, not an infected one", e.ID)
		}
	}
	if n, _, _ := a.db.HeldArea().Stats(context.Background()); n != 0 {
		t.Fatalf("%d left held", n)
	}
	t.Logf("host a delivered %d, host b %d", len(a.ds.delivered), len(b.ds.delivered))
}

// A host dies in the middle of its rescan, holding two claims: one on a
// message it had not begun to send, one on a message it was sending.
// After the lease, the other host delivers the first; the second may have
// been delivered, so it is never sent again by itself: it stays held,
// marked, for an administrator.
func TestRescanTakesOverFromDeadHost(t *testing.T) {
	pg := pgtest.Start(t)
	const lease = 900 * time.Millisecond
	b := newDBHost(t, pg.URL(), "mx-b", lease)
	dead, err := pgstore.Open(pgstore.Config{URL: pg.URL(), ClaimLease: lease}, pgstore.Options{Host: "mx-a", Migrate: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	notSent := holdIn(t, dead.HeldArea(), "clean", "hello")
	sending := holdIn(t, dead.HeldArea(), "clean2", "hello")
	c1, err := dead.HeldArea().Claim(ctx, notSent, false)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := dead.HeldArea().Claim(ctx, sending, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := c2.MarkSending(); err != nil {
		t.Fatal(err)
	}
	dead.Close() // mx-a is gone: its claims are no longer renewed
	defer c1.Drop()
	defer c2.Drop()

	// While the lease runs, b leaves both alone.
	b.loop.Round()
	if len(b.ds.delivered) != 0 {
		t.Fatalf("delivered %v while mx-a's claims were live", b.ds.delivered)
	}
	deadline := time.Now().Add(15 * time.Second)
	for len(b.ds.delivered) == 0 && time.Now().Before(deadline) {
		time.Sleep(lease / 3)
		b.loop.Round()
	}
	if len(b.ds.delivered) != 1 || b.ds.delivered[0] != notSent {
		t.Fatalf("delivered %v, want only %s", b.ds.delivered, notSent)
	}
	b.loop.Round()
	if len(b.ds.delivered) != 1 {
		t.Fatalf("the message mx-a was sending was sent again: %v", b.ds.delivered)
	}
	held := b.db.HeldArea()
	ce, ok := held.Claimed(ctx, sending)
	if has, _ := held.Has(ctx, sending); !has || !ok || ce.Uncertain == "" || ce.Host != "mx-a" {
		t.Fatalf("the message mx-a was sending: held %v, claim %+v", has, ce)
	}
	var claimed *quarantine.ClaimedError
	if _, err := held.Claim(ctx, sending, false); !errors.As(err, &claimed) {
		t.Fatalf("claim without force: %v", err)
	}
}

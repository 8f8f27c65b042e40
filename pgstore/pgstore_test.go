package pgstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/foxproxy/foxproxy/internal/pgtest"
	"github.com/foxproxy/foxproxy/quarantine"
)

// shared is one server for the tests that do not stop it; each test gets
// a database of its own there.
var (
	shared *pgtest.Server
	dbSeq  int
	dbMu   sync.Mutex
)

func TestMain(m *testing.M) {
	os.Exit(func() int {
		defer func() {
			if shared != nil {
				shared.Close()
			}
		}()
		return m.Run()
	}())
}

// freshURL is the URL of a new, empty database on a server shared by this
// package's tests (started by the first test that asks).
func freshURL(t *testing.T) string {
	t.Helper()
	dbMu.Lock()
	defer dbMu.Unlock()
	if shared == nil {
		s, err := pgtest.Launch()
		if err != nil {
			t.Fatal(err)
		}
		shared = s
	}
	dbSeq++
	name := fmt.Sprintf("t%d", dbSeq)
	c, err := pgx.Connect(context.Background(), shared.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(context.Background(), "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	return strings.Replace(shared.URL(), "/foxproxy?", "/"+name+"?", 1)
}

// host opens the database as one foxproxy host would.
func host(t *testing.T, url, name string, lease time.Duration) *DB {
	t.Helper()
	db, err := Open(Config{URL: url, Timeout: 10 * time.Second, ClaimLease: lease}, Options{Host: name, Migrate: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// A message goes in chunks and comes back byte for byte, sequentially and
// at any offset; the entry's metadata round-trips; an entry stored with
// PutAs is not overwritten.
func TestCustodyRoundTrip(t *testing.T) {
	ctx := context.Background()
	db := host(t, freshURL(t), "mx1", time.Minute)
	q := db.Quarantine()
	q.chunkSize = 1000
	content := randomBytes(t, 10_500)
	e := quarantine.Entry{From: "a@example.test", Rcpts: []string{"b@example.test", "c@example.test"}, Client: "192.0.2.1",
		QueueID: "4ABC", Size: int64(len(content)), Rule: "virus", Reason: "eicar",
		Findings:    []quarantine.Finding{{Stage: "scan", Status: "infected", Detail: "Eicar"}},
		MailOptions: map[string]string{"BODY": "8BITMIME"}}
	id, err := q.Put(ctx, e, bytes.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}
	got, err := q.Get(ctx, id)
	if err != nil || got.ID != id || got.From != e.From || len(got.Rcpts) != 2 || got.Findings[0].Detail != "Eicar" || got.MailOptions["BODY"] != "8BITMIME" {
		t.Fatalf("Get: %+v, %v", got, err)
	}
	var chunks int
	if err := db.pool.QueryRow(ctx, "SELECT count(*) FROM entry_chunks WHERE entry_id = $1", id).Scan(&chunks); err != nil || chunks != 11 {
		t.Fatalf("%d chunks (%v), want 11 of at most 1000 bytes", chunks, err)
	}
	m, err := q.Open(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Size() != int64(len(content)) {
		t.Fatalf("Size %d", m.Size())
	}
	all, err := io.ReadAll(m)
	if err != nil || !bytes.Equal(all, content) {
		t.Fatalf("read %d bytes, %v: not the message stored", len(all), err)
	}
	for _, off := range []int64{0, 999, 1000, 1001, 5500, 10_499} {
		p := make([]byte, 1700)
		n, err := m.ReadAt(p, off)
		want := content[off:min(off+1700, int64(len(content)))]
		if !bytes.Equal(p[:n], want) || (n < len(p) && err != io.EOF) {
			t.Fatalf("ReadAt %d: %d bytes, %v", off, n, err)
		}
	}
	if err := q.PutAs(ctx, id, e, strings.NewReader("other")); !errors.Is(err, quarantine.ErrExists) {
		t.Fatalf("PutAs over an entry: %v", err)
	}
	// The held area is apart: the same ID there is another entry.
	held := db.HeldArea()
	if err := held.PutAs(ctx, id, e, strings.NewReader("held")); err != nil {
		t.Fatal(err)
	}
	if l, err := q.List(ctx); err != nil || len(l) != 1 {
		t.Fatalf("quarantine lists %d (%v)", len(l), err)
	}
	if n, _, err := held.Stats(ctx); n != 1 || err != nil {
		t.Fatalf("held stats %d %v", n, err)
	}
	got.Rcpts = []string{"c@example.test"}
	got.Released = []quarantine.Release{{Time: time.Now().UTC(), Rcpts: []string{"b@example.test"}, QueuedAs: "4XYZ"}}
	if err := q.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	if again, _ := q.Get(ctx, id); len(again.Rcpts) != 1 || again.Released[0].QueuedAs != "4XYZ" {
		t.Fatalf("after Update: %+v", again)
	}
	if err := q.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Get(ctx, id); !errors.Is(err, quarantine.ErrNotFound) {
		t.Fatalf("after Delete: %v", err)
	}
	if err := db.pool.QueryRow(ctx, "SELECT count(*) FROM entry_chunks WHERE area = 'quarantine'").Scan(&chunks); err != nil || chunks != 0 {
		t.Fatalf("Delete left %d chunks", chunks)
	}
	if ok, _ := held.Has(ctx, id); !ok {
		t.Fatal("deleting the quarantine's entry deleted the held one")
	}
	if _, err := q.Get(ctx, "../../etc/passwd"); !errors.Is(err, quarantine.ErrNotFound) {
		t.Fatalf("bad ID: %v", err)
	}
}

// Two hosts claiming one entry at the same moment: exactly one gets it,
// and the other is told who has it.
func TestConcurrentClaimsOneWins(t *testing.T) {
	ctx := context.Background()
	url := freshURL(t)
	a, b := host(t, url, "mx-a", time.Minute).Quarantine(), host(t, url, "mx-b", time.Minute).Quarantine()
	for round := range 10 {
		id, err := a.Put(ctx, quarantine.Entry{From: "x@example.test"}, strings.NewReader("m"))
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		claims := make([]quarantine.Claim, 2)
		errs := make([]error, 2)
		for i, s := range []*Store{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				claims[i], errs[i] = s.Claim(ctx, id, false)
			}()
		}
		wg.Wait()
		won := 0
		for i := range 2 {
			var ce *quarantine.ClaimedError
			switch {
			case errs[i] == nil:
				won++
				defer claims[i].Drop()
			case errors.As(errs[i], &ce) && ce.Running && (ce.Host == "mx-a" || ce.Host == "mx-b"):
			default:
				t.Fatalf("round %d: %v", round, errs[i])
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d claims won", round, won)
		}
	}
}

// A host that dies holding a claim (its renewals stop) loses it after the
// lease: another host may take it over, as the rescan does, and the dead
// host, should it come back, can no longer mark it sending.
func TestLeaseExpiryTakeover(t *testing.T) {
	ctx := context.Background()
	url := freshURL(t)
	const lease = 900 * time.Millisecond
	a, b := host(t, url, "mx-a", lease).HeldArea(), host(t, url, "mx-b", lease).HeldArea()
	id, err := a.Put(ctx, quarantine.Entry{From: "x@example.test"}, strings.NewReader("m"))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := a.Claim(ctx, id, false)
	if err != nil {
		t.Fatal(err)
	}
	// While a renews, its claim outlives several leases.
	time.Sleep(2 * lease)
	var ce *quarantine.ClaimedError
	if _, err := b.Claim(ctx, id, true); !errors.As(err, &ce) || !ce.Running {
		t.Fatalf("a renewed claim was taken over: %v", err)
	}
	ca.(*claim).finish() // a dies: no more renewals, nothing written
	waitFor(t, 10*time.Second, func() bool { ce, _ := b.Claimed(ctx, id); return ce != nil && !ce.Running })
	if _, err := b.Claim(ctx, id, false); !errors.As(err, &ce) || ce.Running || ce.Uncertain != "" || ce.Host != "mx-a" {
		t.Fatalf("an expired claim, without force: %v", err)
	}
	cb, err := b.Claim(ctx, id, true)
	if err != nil {
		t.Fatalf("an expired claim that never sent was not taken over: %v", err)
	}
	defer cb.Drop()
	if err := ca.(*claim).markSendingAfterFinish(); !errors.Is(err, errClaimLost) {
		t.Fatalf("the dead host's MarkSending after the takeover: %v", err)
	}
}

// A claim that reached "sending" and whose holder died is uncertain: no
// claim takes it without force, and force is what an administrator uses.
func TestSendingExpiredIsUncertain(t *testing.T) {
	ctx := context.Background()
	url := freshURL(t)
	const lease = 900 * time.Millisecond
	a, b := host(t, url, "mx-a", lease).HeldArea(), host(t, url, "mx-b", lease).HeldArea()
	id, _ := a.Put(ctx, quarantine.Entry{From: "x@example.test"}, strings.NewReader("m"))
	ca, err := a.Claim(ctx, id, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.MarkSending(); err != nil {
		t.Fatal(err)
	}
	ca.(*claim).finish() // a dies while sending
	waitFor(t, 10*time.Second, func() bool { ce, _ := b.Claimed(ctx, id); return ce != nil && !ce.Running })
	var ce *quarantine.ClaimedError
	if _, err := b.Claim(ctx, id, false); !errors.As(err, &ce) || ce.Uncertain == "" || !strings.Contains(err.Error(), "may have been delivered") {
		t.Fatalf("claim of an expired sending claim: %v", err)
	}
	// The rescan's rule (rescan.Loop.claim) takes over only what is not
	// uncertain; an administrator's --force takes it.
	cb, err := b.Claim(ctx, id, true)
	if err != nil {
		t.Fatalf("forced: %v", err)
	}
	if err := cb.KeepUncertain("connection lost after the final dot"); err != nil {
		t.Fatal(err)
	}
	if got, ok := a.Claimed(ctx, id); !ok || got.Uncertain != "connection lost after the final dot" || got.Host != "mx-b" {
		t.Fatalf("Claimed from the other host: %+v", got)
	}
}

// Two hosts working through one held area at once, each claiming what it
// takes: every entry is taken exactly once.
func TestHeldAreaSharedByTwoHosts(t *testing.T) {
	ctx := context.Background()
	url := freshURL(t)
	hosts := []*Store{host(t, url, "mx-a", time.Minute).HeldArea(), host(t, url, "mx-b", time.Minute).HeldArea()}
	const n = 40
	for range n {
		if _, err := hosts[0].Put(ctx, quarantine.Entry{From: "x@example.test", Arrived: time.Now()}, strings.NewReader("m")); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	taken := map[string]string{}
	var wg sync.WaitGroup
	for _, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				entries, err := h.List(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				if len(entries) == 0 {
					return
				}
				for _, e := range entries {
					c, err := h.Claim(ctx, e.ID, false)
					var ce *quarantine.ClaimedError
					if errors.As(err, &ce) || errors.Is(err, quarantine.ErrNotFound) {
						continue // the other host has it
					}
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					if by, dup := taken[e.ID]; dup {
						t.Errorf("%s taken by %s and %s", e.ID, by, h.db.opts.Host)
					}
					taken[e.ID] = h.db.opts.Host
					mu.Unlock()
					if err := h.Delete(ctx, e.ID); err != nil {
						t.Error(err)
					}
					c.Drop()
				}
			}
		}()
	}
	wg.Wait()
	if len(taken) != n {
		t.Fatalf("%d of %d entries taken", len(taken), n)
	}
}

// A database whose schema a newer foxproxy migrated is refused, with both
// versions named; nothing is written to it.
func TestNewerSchemaRefused(t *testing.T) {
	ctx := context.Background()
	url := freshURL(t)
	db := host(t, url, "mx-a", time.Minute)
	if v, err := db.Migrate(ctx); err != nil || v != SchemaVersion {
		t.Fatalf("Migrate: %d, %v", v, err)
	}
	if _, err := db.pool.Exec(ctx, "INSERT INTO schema_version (version, host) VALUES ($1, 'newer')", SchemaVersion+1); err != nil {
		t.Fatal(err)
	}
	for _, migrate := range []bool{true, false} {
		old, err := Open(Config{URL: url}, Options{Host: "old", Migrate: migrate})
		if err != nil {
			t.Fatal(err)
		}
		_, err = old.Quarantine().Put(ctx, quarantine.Entry{}, strings.NewReader("m"))
		old.Close()
		want := fmt.Sprintf("version %d, this foxproxy knows up to %d", SchemaVersion+1, SchemaVersion)
		if !errors.Is(err, ErrSchemaTooNew) || !strings.Contains(err.Error(), want) {
			t.Fatalf("migrate %v: %v", migrate, err)
		}
	}
	var n int
	db.pool.QueryRow(ctx, "SELECT count(*) FROM entries").Scan(&n)
	if n != 0 {
		t.Fatalf("%d entries written under a newer schema", n)
	}
}

// The command line does not migrate: an empty database is an error that
// says what to run.
func TestOldSchemaWithoutMigrate(t *testing.T) {
	db, err := Open(Config{URL: freshURL(t)}, Options{Host: "cli"})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Quarantine().List(context.Background()); !errors.Is(err, ErrSchemaOld) || !strings.Contains(err.Error(), "foxproxy db migrate") {
		t.Fatalf("List on an unmigrated database: %v", err)
	}
}

// killingReader yields n bytes and calls kill once, after half of them,
// from inside the COPY: PostgreSQL dies in the middle of the write.
type killingReader struct {
	left, at int
	kill     func()
	killed   bool
}

func (r *killingReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	if !r.killed && r.left <= r.at {
		r.killed = true
		r.kill()
	}
	n := min(len(p), r.left)
	for i := range p[:n] {
		p[i] = 'x'
	}
	r.left -= n
	return n, nil
}

// PostgreSQL killed while a 20 MiB message is being stored: the Put fails,
// and after the restart (crash recovery) no part of the entry is visible.
func TestKillDuringPutLeavesNoPartialEntry(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.Start(t)
	db := host(t, srv.URL(), "mx-a", time.Minute)
	q := db.Quarantine()
	const size = 20 << 20
	_, err := q.Put(ctx, quarantine.Entry{From: "x@example.test", Size: size}, &killingReader{left: size, at: size / 2, kill: srv.Kill})
	if err == nil {
		t.Fatal("a Put survived the database's death")
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	var entries, chunks int
	if err := db.pool.QueryRow(ctx, "SELECT (SELECT count(*) FROM entries), (SELECT count(*) FROM entry_chunks)").Scan(&entries, &chunks); err != nil {
		t.Fatal(err)
	}
	if entries != 0 || chunks != 0 {
		t.Fatalf("after the crash: %d entries, %d chunks", entries, chunks)
	}
	// And the same DB (no reopen) stores again.
	if _, err := q.Put(ctx, quarantine.Entry{From: "x@example.test"}, strings.NewReader("m")); err != nil {
		t.Fatalf("Put after the restart: %v", err)
	}
}

// A database that is down, or that accepts connections and never
// answers, fails a Put within the configured bound; when it is back, the
// same store works again.
func TestPutWhileDownFailsWithinBound(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.Start(t)
	db := host(t, srv.URL(), "mx-a", time.Minute)
	q := db.Quarantine()
	if _, err := q.Put(ctx, quarantine.Entry{}, strings.NewReader("m")); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	start := time.Now()
	if _, err := q.Put(ctx, quarantine.Entry{}, strings.NewReader("m")); err == nil {
		t.Fatal("Put succeeded with the database stopped")
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Fatalf("Put took %s with the database stopped (timeout 10s)", d)
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Put(ctx, quarantine.Entry{}, strings.NewReader("m")); err != nil {
		t.Fatalf("Put after the database came back: %v", err)
	}

	// A server that accepts and says nothing (a hung database).
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	hung, err := Open(Config{URL: "postgres://postgres@" + l.Addr().String() + "/foxproxy?sslmode=disable", Timeout: time.Second}, Options{Host: "mx-a", Migrate: true})
	if err != nil {
		t.Fatal(err)
	}
	defer hung.Close()
	start = time.Now()
	_, err = hung.Quarantine().Put(ctx, quarantine.Entry{}, strings.NewReader("m"))
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1") {
		t.Fatalf("Put to a hung database: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("Put to a hung database took %s (timeout 1s)", d)
	}
}

// Retention runs on one host at a time: while one holds the lock, the
// other purges nothing; a live claim protects its entry.
func TestPurgeOneHostAtATime(t *testing.T) {
	ctx := context.Background()
	url := freshURL(t)
	a, b := host(t, url, "mx-a", time.Minute), host(t, url, "mx-b", time.Minute)
	old := time.Now().Add(-48 * time.Hour)
	var ids []string
	for range 3 {
		id, err := a.Quarantine().Put(ctx, quarantine.Entry{Time: old}, strings.NewReader("m"))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	young, _ := a.Quarantine().Put(ctx, quarantine.Entry{}, strings.NewReader("m"))
	c, err := a.Quarantine().Claim(ctx, ids[0], false)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := a.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	conn.Exec(ctx, "SELECT pg_advisory_lock($1)", lockPurge)
	if n, err := b.Quarantine().Purge(ctx, 24*time.Hour); n != 0 || err != nil {
		t.Fatalf("purge while another host purges: %d, %v", n, err)
	}
	conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", lockPurge)
	conn.Release()
	if n, err := b.Quarantine().Purge(ctx, 24*time.Hour); n != 2 || err != nil {
		t.Fatalf("purge: %d, %v (want the two unclaimed old entries)", n, err)
	}
	for id, want := range map[string]bool{ids[0]: true, ids[1]: false, young: true} {
		if ok, _ := a.Quarantine().Has(ctx, id); ok != want {
			t.Fatalf("%s kept %v, want %v", id, ok, want)
		}
	}
	c.Drop()
}

func waitFor(t *testing.T, max time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(max)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s", max)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// markSendingAfterFinish is MarkSending without the local "given up"
// check: what a host whose renewals stopped would do (tests).
func (c *claim) markSendingAfterFinish() error {
	n, err := c.exec(`UPDATE entries SET sending = true WHERE area = $1 AND id = $2 AND claim_token = $3 AND uncertain = ''`)
	if err != nil {
		return err
	}
	if n == 0 {
		return errClaimLost
	}
	return nil
}

// patternReader yields n bytes of a repeating pattern without holding
// them.
type patternReader struct{ left int }

func (r *patternReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	n := min(len(p), r.left)
	for i := range p[:n] {
		p[i] = byte('a' + (r.left-i)%26)
	}
	r.left -= n
	return n, nil
}

// A 50 MiB message goes in and comes out with the heap growing by a few
// chunks, not by the message: neither the write nor the read holds it.
func TestLargeMessageKeepsMemoryBound(t *testing.T) {
	ctx := context.Background()
	db := host(t, freshURL(t), "mx1", time.Minute)
	q := db.Quarantine()
	const size = 50 << 20
	const bound = 16 << 20 // a few 256 KiB chunks plus pgx's buffers, with room for the race detector
	peak := func(f func()) uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		base := ms.HeapInuse
		var max atomic.Uint64
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > base && ms.HeapInuse-base > max.Load() {
					max.Store(ms.HeapInuse - base)
				}
				select {
				case <-stop:
					return
				case <-time.After(5 * time.Millisecond):
				}
			}
		}()
		f()
		close(stop)
		<-done
		return max.Load()
	}
	var id string
	grew := peak(func() {
		var err error
		if id, err = q.Put(ctx, quarantine.Entry{Size: size}, &patternReader{left: size}); err != nil {
			t.Fatal(err)
		}
	})
	if grew > bound {
		t.Fatalf("storing 50 MiB grew the heap by %d MiB", grew>>20)
	}
	t.Logf("Put 50 MiB: heap grew by at most %.1f MiB", float64(grew)/(1<<20))
	grew = peak(func() {
		m, err := q.Open(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		n, err := io.Copy(io.Discard, m)
		if err != nil || n != size {
			t.Fatalf("read %d bytes, %v", n, err)
		}
	})
	if grew > bound {
		t.Fatalf("reading 50 MiB grew the heap by %d MiB", grew>>20)
	}
	t.Logf("read 50 MiB: heap grew by at most %.1f MiB", float64(grew)/(1<<20))
}

// The database URL's password appears in no error and no description.
func TestPasswordNeverShown(t *testing.T) {
	const secret = "s3cret-Pa55"
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	db, err := Open(Config{URL: "postgres://fox:" + secret + "@" + addr + "/foxproxy?sslmode=disable", Timeout: 2 * time.Second}, Options{Host: "mx1", Migrate: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_, err = db.Quarantine().Put(context.Background(), quarantine.Entry{}, strings.NewReader("m"))
	h := db.Probe(context.Background())
	for _, s := range []string{fmt.Sprint(err), db.String(), db.Quarantine().Describe(), h.Err} {
		if strings.Contains(s, secret) {
			t.Fatalf("password shown: %s", s)
		}
	}
	if err == nil || h.Up || !strings.Contains(db.String(), "fox:xxxxx@") {
		t.Fatalf("err %v, health %+v, %s", err, h, db)
	}
	if _, err := Open(Config{URL: "postgres://fox@" + addr + "/foxproxy", PasswordFile: "/nonexistent/pw"}, Options{}); err == nil ||
		!strings.Contains(err.Error(), "password_file") {
		t.Fatalf("missing password file: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, ""},
		{Config{URL: "postgres://fox@db.example:5432/foxproxy?sslmode=verify-full"}, ""},
		{Config{PasswordFile: "/etc/passwd"}, "password_file: is set but url is not"},
		{Config{URL: "mysql://db/x"}, "url: must be a postgres://"},
		{Config{URL: "postgres:///x"}, "url: names no host"},
		{Config{URL: "postgres://db.example"}, "url: names no database"},
		{Config{URL: "postgres://fox:pw@db.example/x", PasswordFile: "/etc/passwd"}, "password_file: the URL has a password already"},
		{Config{URL: "postgres://db.example/x", ClaimLease: time.Second}, "claim_lease: must be at least 3s"},
		{Config{URL: "postgres://db.example/x", Timeout: -1}, "timeout: must not be negative"},
	} {
		var got []string
		c.cfg.Validate(func(key, format string, args ...any) { got = append(got, key+": "+fmt.Sprintf(format, args...)) })
		joined := strings.Join(got, "; ")
		if c.want == "" && joined != "" || c.want != "" && !strings.Contains(joined, c.want) {
			t.Errorf("%+v: %q, want %q", c.cfg, joined, c.want)
		}
	}
}

// TestRestartCostsNoWrite: after the database restarts (or fails over)
// between two custody writes, the pool's connections are all dead; the
// next write must find that out before it uses one, not answer the
// message 451 once more after the database is back.
func TestRestartCostsNoWrite(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.Start(t)
	db := host(t, srv.URL(), "mx-a", time.Minute)
	q := db.Quarantine()
	// Several connections in the pool, each used a moment ago.
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := q.Put(ctx, quarantine.Entry{}, strings.NewReader("before")); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for round := range 3 {
		srv.Stop()
		if err := srv.Restart(); err != nil {
			t.Fatal(err)
		}
		for i := range 4 {
			if _, err := q.Put(ctx, quarantine.Entry{}, strings.NewReader("after")); err != nil {
				t.Fatalf("round %d, write %d after the restart: %v", round, i, err)
			}
		}
	}
}

// Readers of one open message that read at once, each at its own offset
// (a rescan's stages), fetch each chunk once, not at every turn of the
// other reader; and the message keeps at most cachedChunks chunks.
func TestInterleavedReadersFetchEachChunkOnce(t *testing.T) {
	ctx := context.Background()
	db := host(t, freshURL(t), "mx1", time.Minute)
	q := db.Quarantine()
	q.chunkSize = 1000
	content := randomBytes(t, 10_000)
	id, err := q.Put(ctx, quarantine.Entry{From: "a@example.test", Rcpts: []string{"b@example.test"}}, bytes.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}
	qm, err := q.Open(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	defer qm.Close()
	m := qm.(*message)
	a, b := io.NewSectionReader(m, 0, m.Size()), io.NewSectionReader(m, 5000, 5000)
	var gotA, gotB []byte
	p := make([]byte, 100)
	for range 50 {
		n, err := a.Read(p)
		if err != nil {
			t.Fatal(err)
		}
		gotA = append(gotA, p[:n]...)
		n, err = b.Read(p)
		if err != nil {
			t.Fatal(err)
		}
		gotB = append(gotB, p[:n]...)
	}
	if !bytes.Equal(gotA, content[:5000]) || !bytes.Equal(gotB, content[5000:]) {
		t.Fatal("the readers did not read the message stored")
	}
	if m.loads != 10 {
		t.Fatalf("%d chunks fetched for 10 chunks read", m.loads)
	}
	if len(m.cached) > cachedChunks {
		t.Fatalf("%d chunks kept", len(m.cached))
	}
}

// An envelope that is not valid UTF-8 (8-bit bytes from a client that did
// not ask for SMTPUTF8) is stored, as the file store stores it: PostgreSQL
// refuses such text, and a refused custody write would answer the message
// 451 at every retry until Postfix gives up on it. The entry keeps what
// JSON keeps of it (U+FFFD for each bad byte), in the columns as in meta.
func TestCustodyTakesAnEnvelopeThatIsNotUTF8(t *testing.T) {
	ctx := context.Background()
	db := host(t, freshURL(t), "mx1", time.Minute)
	q := db.Quarantine()
	e := quarantine.Entry{From: "m\xfcller@example.test", Rcpts: []string{"b\xe9a@example.test"}, Rule: "virus",
		Reason: "refused: 550 \xff"}
	id, err := q.Put(ctx, e, strings.NewReader("message"))
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	got, err := q.Get(ctx, id)
	if err != nil || got.From != "m\uFFFDller@example.test" || got.Rcpts[0] != "b\uFFFDa@example.test" {
		t.Fatalf("Get: %+v, %v", got, err)
	}
	got.Reason = "still \xff"
	if err := q.Update(ctx, got); err != nil {
		t.Fatalf("Update: %v", err)
	}
	var sender string
	if err := db.pool.QueryRow(ctx, "SELECT sender FROM entries WHERE id = $1", id).Scan(&sender); err != nil || sender != got.From {
		t.Fatalf("sender column %q (%v), want %q", sender, err, got.From)
	}
}

// A database.url that does not parse is reported without its password.
func TestOpenErrorHidesThePassword(t *testing.T) {
	_, err := Open(Config{URL: "postgres://fox:s3cret@db.example:notaport/custody"}, Options{Host: "mx1"})
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("Open: %v", err)
	}
}

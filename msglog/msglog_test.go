package msglog

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/foxproxy/foxproxy/internal/pgtest"
	"github.com/foxproxy/foxproxy/internal/testutil"
)

// startDB starts a private PostgreSQL with the message log's schema.
func startDB(t *testing.T) (*pgtest.Server, *pgxpool.Pool) {
	t.Helper()
	srv := pgtest.Start(t)
	pool, err := pgxpool.New(context.Background(), srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := ensureSchema(srv.URL(), pool); err != nil {
		t.Fatal(err)
	}
	return srv, pool
}

// closeWriter closes w within a generous bound and fails on a lost flush.
func closeWriter(t *testing.T, w *Writer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// sample returns n distinct records, one second apart ending at end, with
// every field set; record i's keys contain i.
func sample(n int, end time.Time) []Record {
	recs := make([]Record, n)
	for i := range recs {
		recs[i] = Record{
			Time:              end.Add(-time.Duration(n-1-i) * time.Second).UTC().Truncate(time.Microsecond),
			Host:              "mx1.example.test",
			MsgID:             fmt.Sprintf("msg%04d", i),
			QueueID:           fmt.Sprintf("UP%04X", i),
			DownstreamQueueID: fmt.Sprintf("DOWN%04X", i),
			MessageID:         fmt.Sprintf("<%d@sender.example>", i),
			Client:            netip.AddrFrom4([4]byte{192, 0, 2, byte(i % 7)}),
			ClientName:        "client.example",
			Helo:              "helo.example",
			Sender:            fmt.Sprintf("Sender%d@Example.ORG", i%5),
			Rcpts:             []string{fmt.Sprintf("rcpt%d@example.test", i), "All@Example.TEST"},
			Size:              int64(1000 + i),
			Stages: []Stage{{Stage: "ers", Status: "listed", Categories: []string{"spam"}, Detail: "zen",
				Reason: "listed at zen", Items: []string{"192.0.2.1 zen spam"}, TookMS: 1.5}},
			Verdict:      []string{"deliver", "reject", "quarantine"}[i%3],
			Rule:         fmt.Sprintf("rule%d", i%4),
			ReplyCode:    250,
			ReplyText:    "2.0.0 Ok: queued as DOWN",
			QuarantineID: "",
		}
		if recs[i].Verdict == "quarantine" {
			recs[i].QuarantineID = fmt.Sprintf("q%d", i)
		}
	}
	return recs
}

// byMsgID indexes records for comparison (the store assigns IDs).
func byMsgID(recs []Record) map[string]Record {
	m := map[string]Record{}
	for _, r := range recs {
		r.ID = 0
		m[r.MsgID] = r
	}
	return m
}

func TestWriterWritesInBatchesAndSearchFindsEveryKey(t *testing.T) {
	_, pool := startDB(t)
	w := NewWriter(pool, Options{BatchSize: 500, FlushInterval: 50 * time.Millisecond})
	defer closeWriter(t, w)
	now := time.Now()
	recs := sample(1200, now) // more than two batches
	// Bytes PostgreSQL's text refuses: one such row must not fail its
	// batch.
	recs[7].Helo = "bad\x00helo\xff"
	recs[7].Stages[0].Detail = "nul\x00"
	for _, r := range recs {
		w.Add(r)
	}
	testutil.Eventually(t, "1200 rows written", 60*time.Second, func() bool { return w.Stats().Written == 1200 })
	if s := w.Stats(); s.Dropped != 0 || s.Failed != 0 {
		t.Fatalf("stats %+v, want nothing dropped", s)
	}
	recs[7].Helo, recs[7].Stages[0].Detail = "badhelo\uFFFD", "nul"

	all, err := Search(context.Background(), pool, Query{Limit: MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	if len(all.Records) != MaxLimit || all.Next == nil {
		t.Fatalf("got %d records, next %v; want a full page of %d and more", len(all.Records), all.Next, MaxLimit)
	}
	want := byMsgID(recs)
	for _, got := range all.Records {
		got.ID = 0
		if !reflect.DeepEqual(got, want[got.MsgID]) {
			t.Fatalf("record read back differs:\n got %+v\nwant %+v", got, want[got.MsgID])
		}
	}

	i := 1003 // verdict reject (1003%3 == 1), sender Sender3@, rule rule3, client .2
	cases := []struct {
		name string
		q    Query
		want func(r Record) bool
	}{
		{"sender ignoring case", Query{Sender: "sender3@example.org"}, func(r Record) bool { return r.Sender == "Sender3@Example.ORG" }},
		{"recipient", Query{Recipient: "RCPT1003@example.test"}, func(r Record) bool { return r.MsgID == "msg1003" }},
		{"recipient shared", Query{Recipient: "all@example.test", Since: recs[1190].Time}, func(r Record) bool { return !r.Time.Before(recs[1190].Time) }},
		{"client", Query{Client: netip.MustParseAddr("::ffff:192.0.2.2")}, func(r Record) bool { return r.Client == netip.MustParseAddr("192.0.2.2") }},
		{"upstream queue id", Query{QueueID: fmt.Sprintf("UP%04X", i)}, func(r Record) bool { return r.MsgID == "msg1003" }},
		{"downstream queue id", Query{QueueID: fmt.Sprintf("DOWN%04X", i)}, func(r Record) bool { return r.MsgID == "msg1003" }},
		{"message-id", Query{MessageID: "<1003@sender.example>"}, func(r Record) bool { return r.MsgID == "msg1003" }},
		{"msg id", Query{MsgID: "msg0042"}, func(r Record) bool { return r.MsgID == "msg0042" }},
		{"verdict and rule", Query{Verdict: "reject", Rule: "rule3"}, func(r Record) bool { return r.Verdict == "reject" && r.Rule == "rule3" }},
		{"time range", Query{Since: recs[100].Time, Until: recs[110].Time}, func(r Record) bool {
			return !r.Time.Before(recs[100].Time) && r.Time.Before(recs[110].Time)
		}},
		{"nothing", Query{Sender: "nobody@example.org"}, func(Record) bool { return false }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var expect []string
			for j := len(recs) - 1; j >= 0; j-- { // newest first
				if c.want(recs[j]) {
					expect = append(expect, recs[j].MsgID)
				}
			}
			got := searchAll(t, func(q Query) (Page, error) { return Search(context.Background(), pool, q) }, c.q, 100)
			if !slices.Equal(got, expect) {
				t.Fatalf("found %d %v...\nwant %d %v...", len(got), head(got), len(expect), head(expect))
			}
		})
	}
}

func head(s []string) []string { return s[:min(len(s), 5)] }

// searchAll pages through a search with the given page size and returns
// the MsgIDs found, checking the order and that no page repeats a record.
func searchAll(t *testing.T, search func(Query) (Page, error), q Query, pageSize int) []string {
	t.Helper()
	q.Limit = pageSize
	var ids []string
	var last *Record
	seen := map[int64]bool{}
	for pages := 0; ; pages++ {
		if pages > 10000 {
			t.Fatal("pagination does not end")
		}
		p, err := search(q)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Records) > pageSize {
			t.Fatalf("page of %d records, limit %d", len(p.Records), pageSize)
		}
		for _, r := range p.Records {
			if seen[r.ID] {
				t.Fatalf("record %d (%s) on two pages", r.ID, r.MsgID)
			}
			seen[r.ID] = true
			if last != nil && (r.Time.After(last.Time) || r.Time.Equal(last.Time) && r.ID > last.ID) {
				t.Fatalf("record %s (%v) after %s (%v): not newest first", r.MsgID, r.Time, last.MsgID, last.Time)
			}
			last = &r
			ids = append(ids, r.MsgID)
		}
		if p.Next == nil {
			return ids
		}
		if len(p.Records) != pageSize {
			t.Fatalf("short page of %d with a next cursor", len(p.Records))
		}
		c, err := ParseCursor(p.Next.String())
		if err != nil || !c.Time.Equal(p.Next.Time) || c.ID != p.Next.ID {
			t.Fatalf("cursor %v does not survive its string %q: %v, %v", *p.Next, p.Next.String(), c, err)
		}
		q.After = &c
	}
}

// TestPaginationMatchesRing pages through records that share timestamps in
// the table and in a Ring: both give every record once, newest first, and
// the same order.
func TestPaginationMatchesRing(t *testing.T) {
	_, pool := startDB(t)
	now := time.Now().UTC().Truncate(time.Second)
	recs := sample(57, now)
	for i := range recs {
		recs[i].Time = now.Add(-time.Duration(i/4) * time.Second) // four records per instant
	}
	// A record with nothing optional: no findings, client or recipients.
	recs[3].Stages, recs[3].Client, recs[3].Rcpts = nil, netip.Addr{}, nil
	w := NewWriter(pool, Options{})
	ring := NewRing(100)
	for _, r := range recs {
		w.Add(r)
		ring.Add(r)
	}
	closeWriter(t, w)
	if s := w.Stats(); s.Written != 57 {
		t.Fatalf("stats %+v, want 57 written", s)
	}
	// Both stores give a record back the same.
	db, err := Search(context.Background(), pool, Query{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	rg, _ := ring.Search(Query{Limit: 100})
	if !reflect.DeepEqual(byMsgID(db.Records), byMsgID(rg.Records)) {
		t.Fatalf("database and ring records differ:\n%+v\n%+v", byMsgID(db.Records)["msg0003"], byMsgID(rg.Records)["msg0003"])
	}
	for _, q := range []Query{{}, {Sender: "SENDER1@example.org"}, {Since: now.Add(-5 * time.Second), Until: now}} {
		for _, size := range []int{1, 4, 10, 57, 100} {
			db := searchAll(t, func(q Query) (Page, error) { return Search(context.Background(), pool, q) }, q, size)
			rg := searchAll(t, ring.Search, q, size)
			if len(db) == 0 || len(db) > 57 {
				t.Fatalf("query %+v: %d records", q, len(db))
			}
			// Within one instant the store's IDs order the records; both
			// stores assigned them in the order added.
			if !slices.Equal(db, rg) {
				t.Fatalf("query %+v page size %d: database %v\nring %v", q, size, db, rg)
			}
		}
	}
}

// TestAddNeverBlocksWhenQueueFull holds the table locked, so the writer's
// first batch waits; the queue fills and the rest is dropped at once.
func TestAddNeverBlocksWhenQueueFull(t *testing.T) {
	_, pool := startDB(t)
	ctx := context.Background()
	lock, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lock.Exec(ctx, "LOCK TABLE message_log IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	w := NewWriter(pool, Options{QueueSize: 10, BatchSize: 5, WriteTimeout: 20 * time.Second})
	recs := sample(1000, time.Now())
	// The writer takes at most one batch before its write waits.
	w.Add(recs[0])
	testutil.Eventually(t, "the writer to take the first record", 10*time.Second, func() bool { return w.Stats().Queued == 0 })
	start := time.Now()
	for _, r := range recs[1:] {
		w.Add(r)
	}
	took := time.Since(start)
	s := w.Stats()
	if s.Dropped < 1000-1-5-10 || s.Queued != 10 {
		t.Fatalf("stats %+v: want the queue full (10) and at least %d dropped", s, 1000-16)
	}
	// A generous bound: 999 Adds that each waited for the database would
	// take the write timeout.
	if took > 2*time.Second {
		t.Fatalf("999 Adds took %v with the database blocked", took)
	}
	lock.Rollback(ctx)
	closeWriter(t, w)
	s = w.Stats()
	if s.Written+s.Dropped != 1000 || s.Written < 10 {
		t.Fatalf("stats %+v: want the queued rows written and written+dropped = 1000", s)
	}
}

// TestCloseGivesUpAtItsDeadline: Close with a database that does not
// answer returns at its deadline (and the write in progress with it),
// counting what it could not write.
func TestCloseGivesUpAtItsDeadline(t *testing.T) {
	_, pool := startDB(t)
	ctx := context.Background()
	lock, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Rollback(ctx)
	if _, err := lock.Exec(ctx, "LOCK TABLE message_log IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	w := NewWriter(pool, Options{BatchSize: 10, WriteTimeout: time.Minute})
	for _, r := range sample(100, time.Now()) {
		w.Add(r)
	}
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	start := time.Now()
	err = w.Close(cctx)
	// Generous: the bound is the point, not the speed; without it Close
	// would wait for the minute of WriteTimeout.
	took := time.Since(start)
	t.Logf("Close took %v: %v", took, err)
	if err == nil || took > 20*time.Second {
		t.Fatalf("Close returned %v after %v, want an error at its deadline", err, took)
	}
	if s := w.Stats(); s.Written != 0 || s.Dropped != 100 || s.Queued != 0 {
		t.Fatalf("stats %+v, want all 100 dropped", s)
	}
	w.Add(Record{})
	if s := w.Stats(); s.Dropped != 101 {
		t.Fatalf("a record added after Close: stats %+v", s)
	}
}

// TestWriterSurvivesDatabaseOutage crashes PostgreSQL: Add goes on
// returning at once, rows are dropped and counted, and the writer writes
// again once the database is back, by itself.
func TestWriterSurvivesDatabaseOutage(t *testing.T) {
	srv, pool := startDB(t)
	w := NewWriter(pool, Options{FlushInterval: 20 * time.Millisecond, RetryAfter: 100 * time.Millisecond, WriteTimeout: 3 * time.Second})
	defer closeWriter(t, w)
	recs := sample(300, time.Now())
	w.Add(recs[0])
	testutil.Eventually(t, "the first row written", 30*time.Second, func() bool { return w.Stats().Written == 1 })

	srv.Kill()
	start := time.Now()
	for _, r := range recs[1:200] {
		w.Add(r)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("199 Adds took %v with the database down", took)
	}
	testutil.Eventually(t, "the rows written during the outage dropped", 60*time.Second, func() bool {
		s := w.Stats()
		return s.Dropped == 199 && s.Failed >= 1 && s.Queued == 0
	})
	if s := w.Stats(); s.Written != 1 {
		t.Fatalf("stats %+v: rows written while the database was down", s)
	}

	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	// The pool may lose one more batch to a connection of before the
	// crash; the writer must write again without help.
	next := 200
	testutil.Eventually(t, "the writer writing again", 60*time.Second, func() bool {
		if w.Stats().Written > 1 {
			return true
		}
		if next < len(recs) {
			w.Add(recs[next])
			next++
		}
		time.Sleep(50 * time.Millisecond)
		return false
	})
	p, err := Search(context.Background(), pool, Query{Limit: MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	if s := w.Stats(); int(s.Written) != len(p.Records) {
		t.Fatalf("stats %+v but %d rows in the table", s, len(p.Records))
	}
}

// TestRetentionDropsExpiredPartitions writes rows of 40 days ago (the
// writer creates their partition on demand) and of now; retention of 30
// days drops the old day's partition, and only it.
func TestRetentionDropsExpiredPartitions(t *testing.T) {
	_, pool := startDB(t)
	ctx := context.Background()
	now := time.Now().UTC()
	old := now.AddDate(0, 0, -40)
	w := NewWriter(pool, Options{Retention: -1})
	defer closeWriter(t, w)
	recs := sample(20, now)
	for i := range 10 {
		recs[i].Time = old.Add(time.Duration(i) * time.Millisecond)
	}
	for _, r := range recs {
		w.Add(r)
	}
	testutil.Eventually(t, "20 rows written", 30*time.Second, func() bool { return w.Stats().Written == 20 })
	days, err := Partitions(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(days, func(d time.Time) bool { return d.Equal(dayOf(old)) }) {
		t.Fatalf("no partition for %v among %v", dayOf(old), days)
	}

	dropped, err := DropExpired(ctx, pool, now, 30*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if len(dropped) != 1 || !dropped[0].Equal(dayOf(old)) {
		t.Fatalf("dropped %v, want only %v", dropped, dayOf(old))
	}
	days, _ = Partitions(ctx, pool)
	want := upcomingDays(now)
	if !slices.EqualFunc(days, want, time.Time.Equal) {
		t.Fatalf("partitions left %v, want %v", days, want)
	}
	p, err := Search(ctx, pool, Query{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Records) != 10 || p.Records[len(p.Records)-1].MsgID != "msg0010" {
		t.Fatalf("%d rows left, want the 10 recent ones", len(p.Records))
	}

	// The writer believed the old day's partition existed: a late row of
	// that day makes it again instead of being lost.
	w.Add(recs[0])
	testutil.Eventually(t, "the late row written", 30*time.Second, func() bool { return w.Stats().Written == 21 })

	// Maintenance on a later day creates that day and the next two.
	w.MaintainOnce(ctx, now.AddDate(0, 0, 10))
	days, _ = Partitions(ctx, pool)
	for _, d := range upcomingDays(now.AddDate(0, 0, 10)) {
		if !slices.ContainsFunc(days, d.Equal) {
			t.Fatalf("maintenance did not create %v: %v", d, days)
		}
	}
}

// TestRetentionRunsOnOneHost: while another host holds the retention lock
// nothing is dropped; two hosts running it at once drop each day once.
func TestRetentionRunsOnOneHost(t *testing.T) {
	srv, pool := startDB(t)
	ctx := context.Background()
	now := time.Now().UTC()
	var old []time.Time
	for i := 35; i < 45; i++ {
		old = append(old, dayOf(now.AddDate(0, 0, -i)))
	}
	if err := EnsurePartitions(ctx, pool, old...); err != nil {
		t.Fatal(err)
	}

	other, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", RetentionLockKey); err != nil {
		t.Fatal(err)
	}
	if dropped, err := DropExpired(ctx, pool, now, 30*24*time.Hour); !errors.Is(err, ErrRetentionBusy) || len(dropped) != 0 {
		t.Fatalf("with the lock held elsewhere: dropped %v, %v; want ErrRetentionBusy", dropped, err)
	}
	if days, _ := Partitions(ctx, pool); len(days) != len(old)+3 {
		t.Fatalf("partitions %v changed while the lock was held elsewhere", days)
	}
	other.Rollback(ctx)

	// Two hosts: two pools, each its own connections.
	pool2, err := pgxpool.New(ctx, srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer pool2.Close()
	var mu sync.Mutex
	var all []time.Time
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, db := range []DB{pool, pool2} {
		wg.Go(func() {
			<-start
			dropped, err := DropExpired(ctx, db, now, 30*24*time.Hour)
			if err != nil && !errors.Is(err, ErrRetentionBusy) {
				t.Error(err)
			}
			mu.Lock()
			all = append(all, dropped...)
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	slices.SortFunc(all, time.Time.Compare)
	if !slices.EqualFunc(all, reversed(old), time.Time.Equal) {
		t.Fatalf("dropped %v, want each of %v once", all, reversed(old))
	}
	if days, _ := Partitions(ctx, pool); len(days) != 3 {
		t.Fatalf("partitions left %v, want the 3 upcoming days", days)
	}

	// Two hosts creating the same days at once both succeed.
	future := []time.Time{now.AddDate(0, 0, 5), now.AddDate(0, 0, 6), now.AddDate(0, 0, 7)}
	start = make(chan struct{})
	for _, db := range []DB{pool, pool2, pool, pool2} {
		wg.Go(func() {
			<-start
			if err := EnsurePartitions(ctx, db, future...); err != nil {
				t.Error(err)
			}
		})
	}
	close(start)
	wg.Wait()
	if days, _ := Partitions(ctx, pool); len(days) != 6 {
		t.Fatalf("partitions %v, want 6", days)
	}
}

func reversed(ts []time.Time) []time.Time {
	r := slices.Clone(ts)
	slices.Reverse(r)
	return r
}

func TestRingKeepsTheLastRecords(t *testing.T) {
	g := NewRing(3)
	recs := sample(5, time.Now())
	for _, r := range recs {
		g.Add(r)
	}
	got := searchAll(t, g.Search, Query{}, 10)
	if !slices.Equal(got, []string{"msg0004", "msg0003", "msg0002"}) {
		t.Fatalf("ring holds %v, want the last three, newest first", got)
	}
	if _, err := g.Search(Query{Since: time.Now(), Until: time.Now().Add(-time.Hour)}); err == nil {
		t.Fatal("until before since accepted")
	}
}

// BenchmarkWriter measures rows per second through Add, COPY and commit.
func BenchmarkWriter(b *testing.B) {
	srv := pgtest.Start(b)
	pool, err := pgxpool.New(context.Background(), srv.URL())
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	if err := ensureSchema(srv.URL(), pool); err != nil {
		b.Fatal(err)
	}
	recs := sample(1000, time.Now())
	w := NewWriter(pool, Options{QueueSize: b.N + 1})
	b.ResetTimer()
	for i := range b.N {
		w.Add(recs[i%len(recs)])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := w.Close(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if s := w.Stats(); s.Written != uint64(b.N) {
		b.Fatalf("stats %+v", s)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkRingAdd is the cost on the mail path without a database.
func BenchmarkRingAdd(b *testing.B) {
	g := NewRing(DefaultRingSize)
	recs := sample(1000, time.Now())
	b.ReportAllocs()
	for i := range b.N {
		g.Add(recs[i%len(recs)])
	}
}

// BenchmarkRingSearch searches a full ring by recipient.
func BenchmarkRingSearch(b *testing.B) {
	g := NewRing(DefaultRingSize)
	for _, r := range sample(DefaultRingSize, time.Now()) {
		g.Add(r)
	}
	b.ReportAllocs()
	for range b.N {
		if p, _ := g.Search(Query{Recipient: "all@example.test"}); len(p.Records) != DefaultLimit {
			b.Fatal(len(p.Records))
		}
	}
}

package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/foxproxy/foxproxy/config"
	"github.com/foxproxy/foxproxy/console"
	"github.com/foxproxy/foxproxy/msglog"
	"github.com/foxproxy/foxproxy/proxy"
	"github.com/foxproxy/foxproxy/quarantine"
)

// Without a database the console searches the message log's ring: the
// last msglog.DefaultRingSize messages, newest first, a page at a time.
func TestMessageLogSearchForTheConsole(t *testing.T) {
	l := newMessageLog()
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	size := msglog.DefaultRingSize
	for i := 0; i < size+10; i++ {
		ev := proxy.MessageEvent{Time: t0.Add(time.Duration(i) * time.Second), ID: fmt.Sprint(i), From: fmt.Sprintf("s%d@example.test", i%3),
			Client: netip.MustParseAddr("192.0.2.1"), Verdict: "deliver", Host: "mx1"}
		if i%10 == 0 {
			ev.Verdict, ev.QuarantineID = "hold", fmt.Sprintf("q%d", i)
		}
		l.Message(ev)
	}
	page, err := l.Search(context.Background(), console.MessageQuery{Sender: "S1@example.test", Limit: 5})
	if err != nil || len(page.Messages) != 5 || page.Next == "" {
		t.Fatalf("page %+v %v", page, err)
	}
	for i, m := range page.Messages {
		if m.Sender != "s1@example.test" || i > 0 && !m.Time.Before(page.Messages[i-1].Time) {
			t.Fatalf("not newest first or wrong sender: %+v", page.Messages)
		}
	}
	next, _ := l.Search(context.Background(), console.MessageQuery{Sender: "s1@example.test", Limit: 5, Cursor: page.Next})
	if len(next.Messages) != 5 || !next.Messages[0].Time.Before(page.Messages[4].Time) {
		t.Fatalf("second page %+v", next)
	}
	all, _ := l.Search(context.Background(), console.MessageQuery{Limit: 500, Verdict: "hold"})
	if len(all.Messages) != size/10 || all.Messages[0].Area != "held" || all.Messages[0].Host != "mx1" {
		t.Fatalf("%d held, first %+v", len(all.Messages), all.Messages[0])
	}
	old, _ := l.Search(context.Background(), console.MessageQuery{Limit: 500, Until: t0.Add(9 * time.Second)})
	if len(old.Messages) != 0 {
		t.Fatalf("messages older than the ring kept: %+v", old.Messages)
	}
	if l.Searchable() {
		t.Fatal("memory says it is the whole log")
	}
	if _, err := l.Search(context.Background(), console.MessageQuery{Client: "not an address"}); err == nil {
		t.Fatal("a client that is no address was searched for")
	}
}

// The console's view of the file store: listing filters and keeps the
// newest, a delete is refused while a release holds the entry, and the
// history shows the arrival and the claim.
func TestStoreAreaOverTheFileStore(t *testing.T) {
	dir := t.TempDir()
	st, err := quarantine.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i, from := range []string{"a@one.test", "b@two.test", "c@one.test"} {
		id, err := st.Put(context.Background(), quarantine.Entry{From: from, Rcpts: []string{"r@example.test"}, Rule: "virus",
			Time: time.Date(2026, 12, 7, 10, i, 0, 0, time.UTC)}, strings.NewReader("Subject: x\r\n\r\nbody\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	cfg := config.Default()
	cfg.Quarantine.Dir = dir
	cfg.Hostname = "mx1.test"
	w := &wired{Config: cfg, Runtime: &proxy.Runtime{Quarantine: quarantiner{store: st}}}
	a := storeArea{current: func() *wired { return w }, now: time.Now}
	ctx := context.Background()
	es, err := a.List(ctx, console.Filter{Text: "ONE.test", Limit: 1})
	if err != nil || len(es) != 1 || es[0].ID != ids[2] {
		t.Fatalf("List: %v %v", es, err)
	}
	claim, err := st.Claim(ctx, ids[0], false)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Delete(ctx, ids[0], "alice"); err == nil || !strings.Contains(err.Error(), "a release is running") {
		t.Fatalf("delete of a claimed entry: %v", err)
	}
	hist, err := a.History(ctx, ids[0])
	if err != nil || len(hist) != 2 || hist[0].Action != "quarantined" || hist[0].Host != "mx1.test" || hist[1].Action != "claimed" {
		t.Fatalf("history %+v %v", hist, err)
	}
	claim.Drop()
	if err := a.Delete(ctx, ids[0], "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Get(ctx, ids[0]); !errors.Is(err, console.ErrNotFound) {
		t.Fatalf("Get after delete: %v", err)
	}
	held := storeArea{held: true, current: func() *wired { return w }, now: time.Now}
	if es, err := held.List(ctx, console.Filter{}); err != nil || len(es) != 0 {
		t.Fatalf("empty held area: %v %v", es, err)
	}
	none := storeArea{current: func() *wired { return &wired{Config: cfg, Runtime: &proxy.Runtime{}} }, now: time.Now}
	if es, err := none.List(ctx, console.Filter{}); err != nil || len(es) != 0 {
		t.Fatalf("a configuration that keeps no mail: %v %v", es, err)
	}
	if _, err := none.Get(ctx, ids[1]); !errors.Is(err, console.ErrNotFound) {
		t.Fatalf("Get in a missing quarantine: %v", err)
	}
}

package main

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/foxproxy/foxproxy/console"
	"github.com/foxproxy/foxproxy/proxy"
)

// The in-memory message log keeps the last recentLogSize messages and
// searches them newest first, a page at a time.
func TestRecentLogSearch(t *testing.T) {
	l := newRecentLog("mx1")
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	for i := 0; i < recentLogSize+10; i++ {
		ev := proxy.MessageEvent{Time: t0.Add(time.Duration(i) * time.Second), ID: fmt.Sprint(i), From: fmt.Sprintf("s%d@example.test", i%3),
			Client: netip.MustParseAddr("192.0.2.1"), Verdict: "deliver"}
		if i%10 == 0 {
			ev.Verdict, ev.QuarantineID = "hold", fmt.Sprintf("q%d", i)
		}
		l.Message(ev)
	}
	page, err := l.Search(context.Background(), console.MessageQuery{Sender: "S1@", Limit: 5})
	if err != nil || len(page.Messages) != 5 || page.Next == "" {
		t.Fatalf("page %+v %v", page, err)
	}
	for i, m := range page.Messages {
		if m.Sender != "s1@example.test" || i > 0 && !m.Time.Before(page.Messages[i-1].Time) {
			t.Fatalf("not newest first or wrong sender: %+v", page.Messages)
		}
	}
	next, _ := l.Search(context.Background(), console.MessageQuery{Sender: "s1@", Limit: 5, Cursor: page.Next})
	if len(next.Messages) != 5 || !next.Messages[0].Time.Before(page.Messages[4].Time) {
		t.Fatalf("second page %+v", next)
	}
	all, _ := l.Search(context.Background(), console.MessageQuery{Limit: 500, Verdict: "hold"})
	if len(all.Messages) != recentLogSize/10 || all.Messages[0].Area != "held" || all.Messages[0].Host != "mx1" {
		t.Fatalf("%d held, first %+v", len(all.Messages), all.Messages[0])
	}
	old, _ := l.Search(context.Background(), console.MessageQuery{Limit: 500, Until: t0.Add(9 * time.Second)})
	if len(old.Messages) != 0 {
		t.Fatalf("messages older than the ring kept: %+v", old.Messages)
	}
	if l.Searchable() {
		t.Fatal("memory says it is the whole log")
	}
}

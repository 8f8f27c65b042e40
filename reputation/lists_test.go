package reputation

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/foxproxy/foxproxy/lists"
	"github.com/foxproxy/foxproxy/pipeline"
)

func listSet(t *testing.T, k lists.Kind, content string) *lists.Set {
	t.Helper()
	b := lists.NewBuilder()
	b.AddBytes(k, "t.txt", []byte(content))
	s, err := b.Set()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestERSApprovedClientSkipsLookups(t *testing.T) {
	s := twoLists(t)
	c := newClient(t, DNSConfig{}, s.Addr)
	h := lists.NewHolder()
	h.Replace(lists.FromFiles, listSet(t, lists.ApprovedClients, "192.0.2.0/28\n"))
	e, _ := newERS(t, ERSConfig{Zones: []Zone{blZone, pblZone}, Client: c, RecheckInterval: time.Minute, Lists: h})

	// 192.0.2.10 is listed in bl.test, but approved: no query at all,
	// neither at MAIL time nor for the message.
	e.PrefetchClient(addr("192.0.2.10"))
	f := e.Inspect(lists.NewContext(context.Background(), h.Current()), &pipeline.Transaction{Client: addr("192.0.2.10")})
	if f.Status != pipeline.Skipped || f.Detail != "approved client" || f.Stage != "ers" {
		t.Errorf("finding = %+v", f)
	}
	time.Sleep(50 * time.Millisecond) // a prefetch would have asked by now
	if n := s.count("10.2.0.192.bl.test.", dns.TypeA); n != 0 {
		t.Errorf("the approved client was looked up %d times", n)
	}

	// A message whose snapshot predates the approval is still checked.
	f = e.Inspect(lists.NewContext(context.Background(), &lists.Set{}), &pipeline.Transaction{Client: addr("192.0.2.10")})
	if f.Status != pipeline.Listed {
		t.Errorf("without the approval: %+v", f)
	}
}

func TestWRSLocalBlockedURLs(t *testing.T) {
	s := uriLists(t)
	c := newClient(t, DNSConfig{}, s.Addr)
	w, _ := newWRS(t, WRSConfig{Zones: []DNSZone{uriblZone}, Client: c})
	set := listSet(t, lists.BlockedURLs, "local-bad.example\n192.0.2.200\n")

	ctx := lists.NewContext(context.Background(), set)
	// Only locally blocked URLs: listed without a single DNS query.
	f := w.Inspect(ctx, tx(textMail("http://www.local-bad.example/a", "http://192.0.2.200/b")))
	wantFinding(t, f, pipeline.Listed, []string{"blocked"}, "listed by local; 2 urls")
	if got, want := items(f), []string{"192.0.2.200 local blocked", "local-bad.example local blocked"}; !slices.Equal(got, want) {
		t.Errorf("items = %q, want %q", got, want)
	}
	if n := s.count("local-bad.example.uribl.test.", dns.TypeA) + s.count("www.local-bad.example.uribl.test.", dns.TypeA); n != 0 {
		t.Errorf("a locally blocked domain was asked %d times", n)
	}

	// Mixed: the local hit and the DNS list's hit, the rest still asked.
	f = w.Inspect(ctx, tx(textMail("http://local-bad.example/", "http://evil.example/", "https://clean.example/")))
	wantFinding(t, f, pipeline.Listed, []string{"blocked", "spam"}, "listed by local, uribl.test; 3 urls")
	if s.count("clean.example.uribl.test.", dns.TypeA) != 1 || s.count("local-bad.example.uribl.test.", dns.TypeA) != 0 {
		t.Error("the remaining URLs were not looked up exactly as expected")
	}

	// No local hit: as before.
	f = w.Inspect(ctx, tx(textMail("https://clean.example/x")))
	wantFinding(t, f, pipeline.Clean, nil, "1 urls")
}

// At click time the blocked_urls list in force now decides, not the one a
// message was checked with: a domain blocked after delivery is blocked at
// the click, without a DNS query; other URLs still go to the backends.
func TestWRSCheckURLAsksTheListsInForce(t *testing.T) {
	s := uriLists(t)
	c := newClient(t, DNSConfig{}, s.Addr)
	h := lists.NewHolder()
	w, _ := newWRS(t, WRSConfig{Zones: []DNSZone{uriblZone}, Client: c, Lists: h})
	ctx := context.Background()
	if v, err := w.CheckURL(ctx, "https://shop.later-bad.example/pay"); err != nil || v.Listed {
		t.Fatalf("before the list changed: %+v %v", v, err)
	}
	h.Replace(lists.FromFiles, listSet(t, lists.BlockedURLs, "later-bad.example\nnever-asked.example\n"))
	v, err := w.CheckURL(ctx, "https://shop.later-bad.example/pay")
	if err != nil || !v.Listed || v.Lists != LocalListName || !slices.Equal(v.Categories, []string{LocalListCategory}) {
		t.Fatalf("after blocking the domain: %+v %v", v, err)
	}
	if v, err := w.CheckURL(ctx, "https://never-asked.example/"); err != nil || !v.Listed {
		t.Fatalf("a blocked domain: %+v %v", v, err)
	}
	if n := s.count("never-asked.example.uribl.test.", dns.TypeA); n != 0 {
		t.Errorf("a locally blocked URL was looked up %d times", n)
	}
	if v, err := w.CheckURL(ctx, "http://evil.example/x"); err != nil || !v.Listed || v.Lists != "uribl.test" {
		t.Fatalf("a URL not on the local list: %+v %v", v, err)
	}
}

package reputation

import (
	"context"
	"errors"
	"slices"
	"testing"
)

// CheckURL against real DNS lists (an in-process DNS server on port 0):
// normalisation as in messages, listings by host and domain, the cache,
// and the breaker's open state as an error.
func TestWRSCheckURL(t *testing.T) {
	s := uriLists(t)
	c := newClient(t, DNSConfig{}, s.Addr)
	w, _ := newWRS(t, WRSConfig{Zones: []DNSZone{uriblZone, multiZone}, Client: c})
	ctx := context.Background()
	for _, tc := range []struct {
		url   string
		cats  []string
		lists string
	}{
		{"http://EVIL.example./win", []string{"spam"}, "uribl.test, multi.test"},
		{"https://user@login.good.example:8443/reset#x", []string{"phish"}, "uribl.test"},
		{"http://3221226050/login.php", []string{"phish"}, "uribl.test"}, // 192.0.2.66
		{"https://clean.example/a", nil, ""},
		{"http://localhost/", nil, ""},
	} {
		v, err := w.CheckURL(ctx, tc.url)
		if err != nil {
			t.Fatalf("%s: %v", tc.url, err)
		}
		if v.Listed != (tc.cats != nil) || !slices.Equal(v.Categories, tc.cats) || v.Lists != tc.lists {
			t.Errorf("%s: %+v, want %v by %q", tc.url, v, tc.cats, tc.lists)
		}
	}
	// The second check of a URL comes from the cache.
	before := s.count("evil.example.uribl.test.", 1)
	if _, err := w.CheckURL(ctx, "http://evil.example/other"); err != nil {
		t.Fatal(err)
	}
	if s.count("evil.example.uribl.test.", 1) != before {
		t.Fatal("a cached domain was asked again")
	}
}

func TestWRSCheckURLUnavailable(t *testing.T) {
	down := &fakeBackend{name: "down", err: errors.New("connection refused")}
	listing := &fakeBackend{name: "lists", hits: []Hit{{What: "evil.example", Categories: []string{"phish"}}}}
	clean := &fakeBackend{name: "clean"}

	w, _ := newWRS(t, WRSConfig{Backends: []Backend{down, listing}, Breaker: BreakerConfig{Failures: 2}})
	v, err := w.CheckURL(context.Background(), "http://evil.example/")
	if err != nil || !v.Listed || v.Lists != "lists" {
		t.Fatalf("a listing despite a failed backend: %+v, %v", v, err)
	}

	w2, _ := newWRS(t, WRSConfig{Backends: []Backend{down, clean}, Breaker: BreakerConfig{Failures: 2}})
	for range 3 {
		_, err = w2.CheckURL(context.Background(), "http://a.example/")
		if !errors.Is(err, ErrURLUnchecked) {
			t.Fatalf("a failed backend: %v", err)
		}
	}
	if h := healthOf(w2, "down"); h.State != StateOpen {
		t.Fatalf("breaker %s after 3 failures", h.State)
	}
	calls, _ := down.counts()
	if _, err := w2.CheckURL(context.Background(), "http://a.example/"); !errors.Is(err, ErrURLUnchecked) {
		t.Fatalf("open breaker: %v", err)
	}
	if c, _ := down.counts(); c != calls {
		t.Fatal("an open breaker's backend was asked")
	}
	w2.Close()
	if _, err := w2.CheckURL(context.Background(), "http://a.example/"); !errors.Is(err, ErrURLUnchecked) {
		t.Fatalf("closed: %v", err)
	}
}

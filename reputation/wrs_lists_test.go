package reputation

import (
	"context"
	"reflect"
	"testing"

	"github.com/foxproxy/foxproxy/links"
	"github.com/foxproxy/foxproxy/lists"
	"github.com/foxproxy/foxproxy/lists/liststage"
	"github.com/foxproxy/foxproxy/pipeline"
)

// WRS and the lists stage find the same through pipeline.Run, where they
// share one extraction, as each does alone.
func TestWRSListsShareLinks(t *testing.T) {
	s := uriLists(t)
	c := newClient(t, DNSConfig{}, s.Addr)
	w, _ := newWRS(t, WRSConfig{Zones: []DNSZone{uriblZone, multiZone}, Client: c})
	lb := lists.NewBuilder()
	lb.AddBytes(lists.BlockedURLs, "bu", []byte("blocked.example\n"))
	set, err := lb.Set()
	if err != nil {
		t.Fatal(err)
	}
	ls, err := liststage.New(links.Config{})
	if err != nil {
		t.Fatal(err)
	}
	strip := func(fs ...pipeline.Finding) []pipeline.Finding {
		for i := range fs {
			fs[i].Duration = 0
		}
		return fs
	}
	for _, c := range []struct {
		mail   string
		listed bool // by both stages
	}{
		{textMail("https://www.evil.example/x", "http://blocked.example/y", "https://fine.example/"), true},
		{textMail("https://fine.example/"), false},
		{htmlMail(20 << 10), false},
	} {
		m := tx(c.mail)
		ctx := lists.NewContext(context.Background(), set)
		alone := strip(w.Inspect(ctx, m), ls.Inspect(ctx, m))
		if (alone[0].Status == pipeline.Listed) != c.listed || alone[1].Has("blocked_urls") != c.listed {
			t.Fatalf("alone: %+v", alone)
		}
		got, err := pipeline.New(w, ls).Run(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		if got := strip(got...); !reflect.DeepEqual(got, alone) {
			t.Errorf("through Run: %+v\nalone: %+v", got, alone)
		}
	}
}

// BenchmarkPipelineWRSLists100KCached runs WRS and the local-lists stage
// together through pipeline.Run on the 100 KB HTML message of
// BenchmarkWRSInspect100KCached, with a blocked_urls list that none of its
// links is on: the lists stage needs the links, and WRS still asks both
// zones (from the warm DNS cache).
//
// shared: both stages have the same extraction settings, as cmd/foxproxy
// wires them. separate: the lists stage's differ (MaxURLs 51; the message
// has fewer URLs, so the findings are the same), so each stage extracts
// the links itself.
func BenchmarkPipelineWRSLists100KCached(b *testing.B) {
	s := uriLists(b)
	c := newClient(b, DNSConfig{}, s.Addr)
	w, _ := newWRS(b, WRSConfig{Zones: []DNSZone{uriblZone, multiZone}, Client: c})
	lb := lists.NewBuilder()
	lb.AddBytes(lists.BlockedURLs, "bu", []byte("blocked.invalid\n"))
	set, err := lb.Set()
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		cfg  links.Config
	}{
		{"shared", links.Config{}},
		{"separate", links.Config{Limits: links.Limits{MaxURLs: 51}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ls, err := liststage.New(bc.cfg)
			if err != nil {
				b.Fatal(err)
			}
			p := pipeline.New(w, ls)
			msg := tx(htmlMail(100 << 10))
			ctx := lists.NewContext(context.Background(), set)
			run := func() {
				fs, err := p.Run(ctx, msg)
				if err != nil || fs[0].Status != pipeline.Clean || fs[1].Status != pipeline.Clean {
					b.Fatal(fs, err)
				}
			}
			run()
			queries := c.Stats().Queries
			b.SetBytes(msg.Message.Size())
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				run()
			}
			b.StopTimer()
			if st := c.Stats(); st.Queries != queries {
				b.Fatalf("the cache was not warm: %+v", st)
			}
		})
	}
}

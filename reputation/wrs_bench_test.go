package reputation

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/foxproxy/foxproxy/pipeline"
)

// htmlMail builds an HTML message of about size bytes, as marketing mail
// looks: table layout, inline styles, tracking links on a few hosts,
// images on a CDN, one link per block to a different shop domain.
func htmlMail(size int) string {
	var h strings.Builder
	h.WriteString("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><style>td{font-family:Arial,sans-serif}</style></head><body><table width=\"100%\">\n")
	for i := 0; h.Len() < size; i++ {
		fmt.Fprintf(&h, `<tr><td style="padding:16px 24px;font-size:15px;color:#333333">
<a href="https://click.mailer%d.example/ls/click?upn=Zx81kd0aP2mQ7bR4sT6vW8yA1cE3gI5kM7oQ9%d&amp;utm_source=mail&amp;utm_campaign=weekly">
<img src="https://cdn.images.example/c/2026/%d.jpg" width="540" alt="offer %d" style="display:block;border:0"></a>
<p>Offer %d of the week: see www.shop%d.example/deals for the terms and conditions of this offer.</p>
</td></tr>
`, i%4, i%20, i%10, i, i, i%8)
	}
	h.WriteString("</table></body></html>\n")
	return "From: news@mailer0.example\r\nTo: user@rcpt.example\r\nSubject: deals\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" +
		strings.ReplaceAll(h.String(), "\n", "\r\n")
}

// BenchmarkWRSInspect100KCached is a whole Inspect of a 100 KB HTML
// message over two zones (one a bitmask list) whose answers are all in the
// DNS cache: extraction, keys, cached lookups, the finding.
func BenchmarkWRSInspect100KCached(b *testing.B) {
	s := uriLists(b)
	c := newClient(b, DNSConfig{}, s.Addr)
	w, _ := newWRS(b, WRSConfig{Zones: []DNSZone{uriblZone, multiZone}, Client: c})
	msg := tx(htmlMail(100 << 10))
	f := w.Inspect(context.Background(), msg)
	if f.Status != pipeline.Clean {
		b.Fatal(f)
	}
	b.Logf("%d bytes: %s", msg.Message.Size(), f.Detail)
	queries := c.Stats().Queries
	b.SetBytes(msg.Message.Size())
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if f := w.Inspect(context.Background(), msg); f.Status != pipeline.Clean {
			b.Fatal(f)
		}
	}
	b.StopTimer()
	if st := c.Stats(); st.Queries != queries {
		b.Fatalf("the cache was not warm: %+v", st)
	}
}

// BenchmarkWRSInspect100KSafeBrowsing: the same message against a local
// Safe Browsing server, one request per message (clean answers are not
// cached): the HTTP round trip over loopback.
func BenchmarkWRSInspect100KSafeBrowsing(b *testing.B) {
	sb := newFakeSB(b)
	w, _ := newWRS(b, WRSConfig{SafeBrowsing: sb.config()})
	msg := tx(htmlMail(100 << 10))
	if f := w.Inspect(context.Background(), msg); f.Status != pipeline.Clean {
		b.Fatal(f)
	}
	b.SetBytes(msg.Message.Size())
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if f := w.Inspect(context.Background(), msg); f.Status != pipeline.Clean {
			b.Fatal(f)
		}
	}
}

// BenchmarkDNSListLookupCached is the lookup half of the above alone: the
// message's 26 keys in one zone, all answered from the DNS cache.
func BenchmarkDNSListLookupCached(b *testing.B) {
	s := uriLists(b)
	c := newClient(b, DNSConfig{}, s.Addr)
	w, _ := newWRS(b, WRSConfig{Zones: []DNSZone{uriblZone}, Client: c})
	res := w.extractor.Extract(tx(htmlMail(100 << 10)).Message.Open())
	q := &Query{URLs: res.URLs, Keys: res.Keys()}
	be := w.backends[0]
	if r, err := be.Lookup(context.Background(), q); err != nil || r.Cached {
		b.Fatal(r, err)
	}
	b.Logf("%d keys", len(q.Keys))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if r, err := be.Lookup(context.Background(), q); err != nil || !r.Cached {
			b.Fatal(r, err)
		}
	}
}

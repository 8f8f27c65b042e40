package reputation

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/foxproxy/foxproxy/pipeline"
)

// BenchmarkLookupIPCached is a listed address answered from the cache:
// query name, cache hit, code mapping.
func BenchmarkLookupIPCached(b *testing.B) {
	s := newDNSServer(b)
	s.addList("bl.test")
	s.add("10.2.0.192.bl.test. 3600 IN A 127.0.0.2")
	c := newClient(b, DNSConfig{}, s.Addr)
	ip := netip.MustParseAddr("192.0.2.10")
	ctx := context.Background()
	if res, err := LookupIP(ctx, c, listZone, ip); err != nil || !res.Listed {
		b.Fatal(res, err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := LookupIP(ctx, c, listZone, ip); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLookupIPCachedClean is the common case: an unlisted address
// whose negative answer is cached.
func BenchmarkLookupIPCachedClean(b *testing.B) {
	s := newDNSServer(b)
	s.addList("bl.test")
	c := newClient(b, DNSConfig{}, s.Addr)
	ip := netip.MustParseAddr("192.0.2.99")
	ctx := context.Background()
	if _, err := LookupIP(ctx, c, listZone, ip); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := LookupIP(ctx, c, listZone, ip); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLookupIPCold asks the in-process server a new address each
// time: a UDP round trip over loopback through the whole client.
func BenchmarkLookupIPCold(b *testing.B) {
	s := newDNSServer(b)
	s.addList("bl.test")
	c := newClient(b, DNSConfig{CacheSize: -1}, s.Addr)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	i := uint32(0)
	for b.Loop() {
		i++
		ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		if _, err := LookupIP(ctx, c, listZone, ip); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkERSInspectCached is a whole Inspect of a known client over two
// zones.
func BenchmarkERSInspectCached(b *testing.B) {
	s := newDNSServer(b)
	s.addList("bl.test")
	s.addList("pbl.test")
	c := newClient(b, DNSConfig{}, s.Addr)
	e, err := NewERS(ERSConfig{Zones: []Zone{{Name: "bl.test"}, {Name: "pbl.test"}}, Client: c, RecheckInterval: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	tx := &pipeline.Transaction{Client: netip.MustParseAddr("192.0.2.99")}
	if f := e.Inspect(context.Background(), tx); f.Status != pipeline.Clean {
		b.Fatal(f)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		e.Inspect(context.Background(), tx)
	}
}

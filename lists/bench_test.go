package lists

import (
	"bytes"
	"fmt"
	"net/netip"
	"runtime"
	"testing"
)

// million returns a client list of 1,000,000 entries: 990,000 IPv4
// addresses, 5,000 IPv4 networks and 5,000 IPv6 networks.
func millionClients() []byte {
	var b bytes.Buffer
	b.Grow(16 << 20)
	b.WriteString("# one million entries\n")
	for i := range 990_000 {
		fmt.Fprintf(&b, "%d.%d.%d.%d\n", 10+i>>24&0x7f, i>>16&0xff, i>>8&0xff, i&0xff)
	}
	for i := range 5000 {
		fmt.Fprintf(&b, "172.%d.%d.0/24\n", 16+i>>8, i&0xff)
	}
	for i := range 5000 {
		fmt.Fprintf(&b, "2001:db8:%x::/48\n", i)
	}
	return b.Bytes()
}

func millionHosts() []byte {
	var b bytes.Buffer
	b.Grow(24 << 20)
	for i := range 1_000_000 {
		fmt.Fprintf(&b, "host%d.spam%d.example\n", i, i%5000)
	}
	return b.Bytes()
}

func load(tb testing.TB, k Kind, data []byte) *Set {
	b := NewBuilder()
	b.AddBytes(k, "million.txt", data)
	s, err := b.Set()
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// BenchmarkLoadMillionClients: go test -run '^$' -bench LoadMillion -benchmem ./lists/
func BenchmarkLoadMillionClients(b *testing.B) {
	data := millionClients()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		load(b, BlockedClients, data)
	}
}

func BenchmarkLoadMillionHosts(b *testing.B) {
	data := millionHosts()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		load(b, BlockedURLs, data)
	}
}

func BenchmarkLookupClient(b *testing.B) {
	s := load(b, BlockedClients, millionClients())
	addrs := []netip.Addr{
		netip.MustParseAddr("10.1.2.3"),        // listed address
		netip.MustParseAddr("172.16.1.9"),      // in a listed /24
		netip.MustParseAddr("192.0.2.1"),       // not listed: every length probed
		netip.MustParseAddr("2001:db8:12::1"),  // in a listed /48
		netip.MustParseAddr("2001:db9::1"),     // not listed
		netip.MustParseAddr("::ffff:10.1.2.3"), // mapped
		netip.MustParseAddr("10.127.255.255"),  // not listed
		netip.MustParseAddr("172.31.255.1"),    // not listed
	}
	b.ResetTimer()
	i := 0
	for b.Loop() {
		s.ClientBlocked(addrs[i%len(addrs)])
		i++
	}
}

func BenchmarkLookupURLHost(b *testing.B) {
	s := load(b, BlockedURLs, millionHosts())
	hosts := []string{"host77.spam77.example", "www.host5.spam5.example", "clean.example.org", "a.b.c.d.example.com"}
	b.ResetTimer()
	i := 0
	for b.Loop() {
		s.URLBlocked(hosts[i%len(hosts)])
		i++
	}
}

// TestMillionMemory reports the heap a million-entry list keeps (run with
// -v to see the numbers); it fails only if a list costs absurdly much.
func TestMillionMemory(t *testing.T) {
	for _, c := range []struct {
		name string
		kind Kind
		data []byte
	}{
		{"clients", BlockedClients, millionClients()},
		{"url hosts", BlockedURLs, millionHosts()},
	} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		s := load(t, c.kind, c.data)
		runtime.GC()
		runtime.ReadMemStats(&after)
		kept := int64(after.HeapAlloc) - int64(before.HeapAlloc)
		t.Logf("%s: %d entries keep %.1f MiB of heap (%.0f bytes/entry)", c.name, s.Len(c.kind),
			float64(kept)/(1<<20), float64(kept)/float64(s.Len(c.kind)))
		if kept > 200<<20 {
			t.Errorf("%s: %d MiB for a million entries", c.name, kept>>20)
		}
		runtime.KeepAlive(s)
	}
}

package lists

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/foxproxy/foxproxy/internal/testutil"
)

func mustSet(t *testing.T, k Kind, content string) *Set {
	t.Helper()
	b := NewBuilder()
	b.AddBytes(k, "test.txt", []byte(content))
	s, err := b.Set()
	if err != nil {
		t.Fatalf("Set: %v", err)
	}
	return s
}

func TestClients(t *testing.T) {
	s := mustSet(t, BlockedClients, `# blocked clients
192.0.2.1
198.51.100.0/24     # a whole network

	203.0.113.128/25
2001:db8::/32
2001:db8:1::5
::ffff:192.0.2.77   # IPv4-mapped: stored as IPv4
10.0.0.0/8
10.1.0.0/16
`)
	cases := []struct {
		addr  string
		entry string
	}{
		{"192.0.2.1", "192.0.2.1"},
		{"192.0.2.2", ""},
		{"198.51.100.7", "198.51.100.0/24"},
		{"198.51.101.7", ""},
		{"203.0.113.200", "203.0.113.128/25"},
		{"203.0.113.127", ""},
		{"2001:db8:ffff::1", "2001:db8::/32"},
		{"2001:db9::1", ""},
		{"2001:db8:1::5", "2001:db8:1::5"}, // also inside 2001:db8::/32: the longer entry wins
		{"192.0.2.77", "192.0.2.77"},
		{"::ffff:192.0.2.1", "192.0.2.1"}, // a mapped client is its IPv4 address
		{"10.1.2.3", "10.1.0.0/16"},
		{"10.2.2.3", "10.0.0.0/8"},
	}
	for _, c := range cases {
		got, ok := s.ClientBlocked(netip.MustParseAddr(c.addr))
		if got != c.entry || ok != (c.entry != "") {
			t.Errorf("ClientBlocked(%s) = %q, %v; want %q", c.addr, got, ok, c.entry)
		}
		if _, ok := s.ClientApproved(netip.MustParseAddr(c.addr)); ok {
			t.Errorf("ClientApproved(%s) matched a blocked_clients entry", c.addr)
		}
	}
	if n := s.Len(BlockedClients); n != 8 {
		t.Errorf("Len = %d, want 8", n)
	}
	if _, ok := s.ClientBlocked(netip.Addr{}); ok {
		t.Error("the invalid address matched")
	}
}

func TestSenders(t *testing.T) {
	s := mustSet(t, ApprovedSenders, `
Alice@Example.COM
partner.example
@vendor.example
*.corp.example
.other.example
bücher.example
`)
	cases := []struct{ from, entry string }{
		{"alice@example.com", "alice@example.com"},
		{"ALICE@EXAMPLE.COM", "alice@example.com"},
		{"<alice@example.com>", "alice@example.com"},
		{"bob@example.com", ""},
		{"x@partner.example", "partner.example"},
		{"x@sub.partner.example", ""}, // a bare domain is that domain only
		{"x@vendor.example", "vendor.example"},
		{"x@corp.example", ""}, // *.corp.example is its subdomains only
		{"x@mail.corp.example", "*.corp.example"},
		{"x@a.b.corp.example", "*.corp.example"},
		{"x@a.other.example", "*.other.example"},
		{"x@bücher.example", "xn--bcher-kva.example"},
		{"", ""},
		{"no-at-sign", ""},
	}
	for _, c := range cases {
		got, ok := s.SenderApproved(c.from)
		if got != c.entry || ok != (c.entry != "") {
			t.Errorf("SenderApproved(%q) = %q, %v; want %q", c.from, got, ok, c.entry)
		}
	}
}

func TestURLs(t *testing.T) {
	s := mustSet(t, BlockedURLs, `
evil.example
https://Phish.Example.net/login?x=1
*.tracker.example
192.0.2.9
[2001:db8::9]
xn--bcher-kva.example
`)
	cases := []struct{ host, entry string }{
		{"evil.example", "evil.example"},
		{"www.evil.example", "evil.example"},
		{"a.b.evil.example", "evil.example"},
		{"notevil.example", ""},
		{"phish.example.net", "phish.example.net"},
		{"example.net", ""},
		{"tracker.example", "tracker.example"}, // *. and . forms equal the bare form
		{"x.tracker.example", "tracker.example"},
		{"192.0.2.9", "192.0.2.9"},
		{"192.0.2.10", ""},
		{"2001:db8::9", "2001:db8::9"},
		{"xn--bcher-kva.example", "xn--bcher-kva.example"},
		{"EVIL.EXAMPLE.", "evil.example"},
		{"", ""},
	}
	for _, c := range cases {
		got, ok := s.URLBlocked(c.host)
		if got != c.entry || ok != (c.entry != "") {
			t.Errorf("URLBlocked(%q) = %q, %v; want %q", c.host, got, ok, c.entry)
		}
	}
}

func TestInvalidEntries(t *testing.T) {
	cases := []struct {
		kind    Kind
		content string
		want    []string // "line: text" of each invalid entry
	}{
		{BlockedClients, "192.0.2.1\n\n# c\n192.0.2.300\n10.0.0.1/8\nfe80::1%eth0\n2001:db8::/129\n::ffff:10.0.0.0/104\n",
			[]string{`4: "192.0.2.300": not an IP`, `5: "10.0.0.1/8": host bits set (did you mean 10.0.0.0/8?)`,
				`6: "fe80::1%eth0"`, `7: "2001:db8::/129"`, `8: "::ffff:10.0.0.0/104": IPv4-mapped`}},
		{ApprovedSenders, "ok.example\nbad domain.example\n<a@b.example>\nx@\nfoo..example\n",
			[]string{`2: "bad domain.example"`, `3: "<a@b.example>"`, `4: "x@"`, `5: "foo..example"`}},
		{BlockedURLs, "good.example\ncom\nco.uk\nhttp:///nohost\nexample.com/path\n",
			[]string{`2: "com": a public suffix`, `3: "co.uk": a public suffix`, `4: "http:///nohost"`, `5: "example.com/path"`}},
		{BlockedClients, "1.2.3.4 # trailing comment\n1.2.3.5#not-a-comment\n", []string{`2: "1.2.3.5#not-a-comment"`}},
	}
	for _, c := range cases {
		b := NewBuilder()
		b.AddBytes(c.kind, "f.txt", []byte(c.content))
		_, err := b.Set()
		var pe *ParseError
		if !errors.As(err, &pe) {
			t.Errorf("%s %q: err = %v, want a ParseError", c.kind, c.content, err)
			continue
		}
		if len(pe.Entries) != len(c.want) {
			t.Errorf("%s: %d invalid entries (%v), want %d", c.kind, len(pe.Entries), err, len(c.want))
			continue
		}
		for i, w := range c.want {
			if got := pe.Entries[i].Error(); !strings.Contains(got, "f.txt:"+w) {
				t.Errorf("%s entry %d = %q, want it to contain %q", c.kind, i, got, "f.txt:"+w)
			}
		}
	}
}

func TestParseErrorIsBounded(t *testing.T) {
	var b strings.Builder
	for i := range 100 {
		fmt.Fprintf(&b, "bad-%d/x\n", i)
	}
	bl := NewBuilder()
	bl.AddBytes(BlockedClients, "junk.txt", []byte(b.String()))
	_, err := bl.Set()
	var pe *ParseError
	if !errors.As(err, &pe) || len(pe.Entries) != maxReported || pe.Omitted != 100-maxReported {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(err.Error(), "and 80 more invalid entries") || !strings.HasPrefix(err.Error(), `junk.txt:1: "bad-0/x"`) {
		t.Errorf("message = %s", err)
	}
}

func TestCRLFAndNoFinalNewline(t *testing.T) {
	s := mustSet(t, BlockedClients, "192.0.2.1\r\n192.0.2.2")
	for _, a := range []string{"192.0.2.1", "192.0.2.2"} {
		if _, ok := s.ClientBlocked(netip.MustParseAddr(a)); !ok {
			t.Errorf("%s not found", a)
		}
	}
}

func TestCombineAndHolder(t *testing.T) {
	files := mustSet(t, BlockedClients, "192.0.2.1\n")
	upd := mustSet(t, BlockedClients, "192.0.2.2\n")
	h := NewHolder()
	if h.Current() == nil || !h.Current().Empty() {
		t.Fatal("a new holder is not empty")
	}
	h.Replace(FromFiles, files)
	before := h.Current()
	h.Replace(FromUpdate, upd)
	now := h.Current()
	for _, a := range []string{"192.0.2.1", "192.0.2.2"} {
		if _, ok := now.ClientBlocked(netip.MustParseAddr(a)); !ok {
			t.Errorf("combined set lacks %s", a)
		}
	}
	// A snapshot taken before the swap keeps answering as it did.
	if _, ok := before.ClientBlocked(netip.MustParseAddr("192.0.2.2")); ok {
		t.Error("a snapshot changed after Replace")
	}
	h.Replace(FromUpdate, nil)
	if _, ok := h.Current().ClientBlocked(netip.MustParseAddr("192.0.2.2")); ok {
		t.Error("the update's lists are still in force after removing them")
	}
	var nilSet *Set
	if _, ok := nilSet.ClientBlocked(netip.MustParseAddr("192.0.2.1")); ok || nilSet.Len(BlockedClients) != 0 {
		t.Error("a nil set is not empty")
	}
}

func TestHolderConcurrent(t *testing.T) {
	h := NewHolder()
	a := netip.MustParseAddr("192.0.2.1")
	with := mustSet(t, BlockedClients, "192.0.2.1\n")
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
					h.Current().ClientBlocked(a)
				}
			}
		}()
	}
	for i := range 1000 {
		if i%2 == 0 {
			h.Replace(FromUpdate, with)
		} else {
			h.Replace(FromUpdate, nil)
		}
	}
	close(stop)
	wg.Wait()
}

func TestDiff(t *testing.T) {
	old := mustSet(t, BlockedClients, "192.0.2.1\n192.0.2.2\n10.0.0.0/8\n")
	b := NewBuilder()
	b.AddBytes(BlockedClients, "n", []byte("192.0.2.2\n10.0.0.0/8\n192.0.2.3\n192.0.2.4\n"))
	b.AddBytes(BlockedURLs, "n", []byte("evil.example\n"))
	nw, err := b.Set()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Change{}
	for _, c := range Diff(old, nw) {
		got[c.List] = c
	}
	if c := got["blocked_clients"]; c.Added != 2 || c.Removed != 1 || c.Old != 3 || c.New != 4 {
		t.Errorf("blocked_clients: %+v", c)
	}
	if c := got["blocked_urls"]; c.Added != 1 || c.Removed != 0 {
		t.Errorf("blocked_urls: %+v", c)
	}
}

func TestWatcherReloadsAndKeepsOnError(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "blocked.txt")
	write := func(s string) {
		// Written as deploy tools do: a temporary file renamed over it.
		tmp := p + ".tmp"
		if err := os.WriteFile(tmp, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, p); err != nil {
			t.Fatal(err)
		}
	}
	write("192.0.2.1\n")
	files := Files{BlockedClients: p}
	h := NewHolder()
	st, err := LoadInto(files, h)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.InfoLevel)
	w, err := Watch(files, h, st, 20*time.Millisecond, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	blocked := func(a string) bool {
		_, ok := h.Current().ClientBlocked(netip.MustParseAddr(a))
		return ok
	}
	waitFor(t, "initial lists", func() bool { return blocked("192.0.2.1") })

	write("192.0.2.2\n")
	waitFor(t, "reload after change", func() bool { return blocked("192.0.2.2") && !blocked("192.0.2.1") })

	write("192.0.2.3\nnot-an-address\n")
	waitFor(t, "refusal logged", func() bool { return w.Status().LastError != "" })
	if !blocked("192.0.2.2") || blocked("192.0.2.3") {
		t.Error("a bad file replaced the lists in force")
	}
	if !strings.Contains(w.Status().LastError, `blocked.txt:2: "not-an-address"`) {
		t.Errorf("LastError = %q", w.Status().LastError)
	}
	// The same problem again is not logged again.
	write("192.0.2.3\nnot-an-address\n\n")
	time.Sleep(200 * time.Millisecond)
	if n := logs.FilterMessage("list files changed but refused; keeping the lists in force").Len(); n != 1 {
		t.Errorf("refusal logged %d times, want once", n)
	}

	write("192.0.2.4\n")
	waitFor(t, "reload after fix", func() bool { return blocked("192.0.2.4") })
	if w.Status().LastError != "" {
		t.Errorf("LastError after fix = %q", w.Status().LastError)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, what, 10*time.Second, cond)
}

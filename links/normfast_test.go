package links

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// escapeRef is escapeTo as first written, byte by byte: the specification
// the run-copying version must meet.
func escapeRef(s string) string {
	const hexdig = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"<>\\^`{|}", c) >= 0 {
			b.WriteByte('%')
			b.WriteByte(hexdig[c>>4])
			b.WriteByte(hexdig[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

func TestEscapeToSameAsByteWise(t *testing.T) {
	inputs := []string{"", "/a/b?c=d", "/ä ö", "x\x00y\x7f", `"<>\^{|}` + "`", "/%41%"}
	for c := range 256 {
		inputs = append(inputs, string([]byte{byte(c)}), "/a"+string([]byte{byte(c)})+"b")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		b := make([]byte, rng.IntN(40))
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		inputs = append(inputs, string(b))
	}
	for _, s := range inputs {
		var b strings.Builder
		escapeTo(&b, s)
		if got, want := b.String(), escapeRef(s); got != want {
			t.Fatalf("escapeTo(%q) = %q, want %q", s, got, want)
		}
		if got, want := indexAuthorityEnd(s), strings.IndexAny(s, `/\?#`); got != want {
			t.Fatalf("indexAuthorityEnd(%q) = %d, want %d", s, got, want)
		}
	}
}

// TestKeptAcrossIndex: duplicates and the per-host limit are decided the
// same while the kept URLs are searched (up to smallSet) and after they are
// indexed, against a model of the rules.
func TestKeptAcrossIndex(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for round := range 50 {
		x := mustNew(t, Config{StrictText: true, Limits: Limits{MaxURLs: 30, MaxURLsPerHost: 4}})
		var text strings.Builder
		var want []string
		perHost := map[string]int{}
		seen := map[string]bool{}
		skipped, stopped := 0, false
		for range 60 {
			host := fmt.Sprintf("h%d.example.com", rng.IntN(12))
			u := fmt.Sprintf("http://%s/%d", host, rng.IntN(6))
			text.WriteString(u + "\n")
			switch {
			case stopped || seen[u]:
			case perHost[host] >= 4:
				skipped++
			case len(want) >= 30:
				stopped = true
			default:
				seen[u] = true
				perHost[host]++
				want = append(want, "1 text "+u)
			}
		}
		res := extractString(x, "Content-Type: text/plain\n\n"+text.String())
		got := urlStrings(res.URLs)
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Fatalf("round %d:\n got %q\nwant %q", round, got, want)
		}
		if !stopped && skipped > 0 {
			note := fmt.Sprintf("%d more links skipped on hosts that already have 4 URLs", skipped)
			if len(res.Notes) == 0 || res.Notes[0] != note {
				t.Fatalf("round %d: notes %q, want %q", round, res.Notes, note)
			}
		}
	}
}

// TestCleanURLAndIDNACheckSameAsRef compares cleanURL and needsIDNA with
// their first, rune-wise versions.
func TestCleanURLAndIDNACheckSameAsRef(t *testing.T) {
	cleanRef := func(s string) string {
		s = strings.TrimFunc(s, func(r rune) bool { return r <= ' ' })
		if !strings.ContainsAny(s, "\t\n\r") {
			return s
		}
		return strings.Map(func(r rune) rune {
			if r == '\t' || r == '\n' || r == '\r' {
				return -1
			}
			return r
		}, s)
	}
	idnaRef := func(h string) bool {
		for i := 0; i < len(h); i++ {
			if h[i] >= 0x80 {
				return true
			}
		}
		for i := 0; i+4 <= len(h); i++ {
			if (i == 0 || h[i-1] == '.') && strings.EqualFold(h[i:i+4], "xn--") {
				return true
			}
		}
		return false
	}
	inputs := []string{"", " \t http://a.example/ \x00", "\xff http://a\tb", "http://a\r\n.example/\xc2\xa0", "xn--a", "a.XN--b", "a.xN-", "a.xn-", "axn--b", "\u00e9.example"}
	rng := rand.New(rand.NewPCG(7, 8))
	alphabet := []byte(" \t\r\n\x00\x1f\x7f\x80\xc2\xa0\xffxXnN-.a/:")
	for range 20000 {
		b := make([]byte, rng.IntN(12))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		inputs = append(inputs, string(b))
	}
	for _, s := range inputs {
		if got, want := cleanURL(s), cleanRef(s); got != want {
			t.Fatalf("cleanURL(%q) = %q, want %q", s, got, want)
		}
		if got, want := needsIDNA(s), idnaRef(s); got != want {
			t.Fatalf("needsIDNA(%q) = %v, want %v", s, got, want)
		}
	}
}

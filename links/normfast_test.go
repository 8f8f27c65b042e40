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

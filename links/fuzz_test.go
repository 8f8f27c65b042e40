package links

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"unicode/utf8"

	"golang.org/x/net/publicsuffix"
)

// checkURL asserts what every reported URL must satisfy.
func checkURL(t *testing.T, u URL) {
	t.Helper()
	switch u.Scheme {
	case "http", "https", "ftp":
	default:
		t.Fatalf("scheme %q in %+v", u.Scheme, u)
	}
	for i := 0; i < len(u.Normalized); i++ {
		if c := u.Normalized[i]; c <= ' ' || c >= 0x7f {
			t.Fatalf("byte %#x in normalized %q", c, u.Normalized)
		}
	}
	if u.IP.IsValid() {
		if u.Domain != "" || u.Host != u.IP.String() || u.IP.Zone() != "" || u.IP.Is4In6() {
			t.Fatalf("bad IP record %+v", u)
		}
	} else {
		if !validDNSName(u.Host) {
			t.Fatalf("invalid host %q", u.Host)
		}
		if _, err := netip.ParseAddr(u.Host); err == nil {
			t.Fatalf("host %q is an address but IP is unset", u.Host)
		}
		d, err := publicsuffix.EffectiveTLDPlusOne(u.Host)
		if err != nil || d != u.Domain {
			t.Fatalf("domain %q for host %q (eTLD+1 %q, %v)", u.Domain, u.Host, d, err)
		}
	}
	again, err := Normalize(u.Normalized)
	if err != nil {
		t.Fatalf("Normalize(%q) of a normalized URL: %v", u.Normalized, err)
	}
	if again.Normalized != u.Normalized || again.Host != u.Host || again.Domain != u.Domain || again.IP != u.IP {
		t.Fatalf("not idempotent: %q -> %q", u.Normalized, again.Normalized)
	}
}

// checkResult asserts the invariants of a whole result.
func checkResult(t *testing.T, x *Extractor, res *Result) {
	t.Helper()
	if len(res.URLs) > x.lim.MaxURLs || len(res.Notes) > maxNotes {
		t.Fatalf("%d URLs, %d notes", len(res.URLs), len(res.Notes))
	}
	seen := map[string]bool{}
	for _, u := range res.URLs {
		checkURL(t, u)
		if seen[u.Normalized] {
			t.Fatalf("duplicate %q", u.Normalized)
		}
		seen[u.Normalized] = true
	}
	keys := res.Keys()
	if !slices.Equal(keys, res.Keys()) {
		t.Fatal("Keys not deterministic")
	}
	for i := 1; i < len(keys); i++ {
		a, b := keys[i-1], keys[i]
		if a == b || a.Kind > b.Kind || (a.Kind == b.Kind && a.Kind != KeyIP && a.Name >= b.Name) {
			t.Fatalf("keys out of order: %v, %v", a, b)
		}
	}
}

func fuzzExtractor(t testing.TB) *Extractor {
	return mustNew(t, Config{
		Redirectors: DefaultRedirectors(),
		Limits:      Limits{MaxURLs: 20, MaxParts: 40, MaxDepth: 6, MaxBytes: 256 << 10, MaxHeaderBytes: 4 << 10},
	})
}

// FuzzExtract drives the MIME walker with arbitrary messages. Seeds: the
// corpus in testdata/*.eml and testdata/fuzz/FuzzExtract.
func FuzzExtract(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.eml")
	for _, name := range files {
		if data, err := os.ReadFile(name); err == nil && len(data) < 32<<10 {
			f.Add(data)
		}
	}
	x := fuzzExtractor(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		res := x.Extract(bytes.NewReader(data))
		checkResult(t, x, res)
		// The result does not depend on how the input is split into reads.
		res2 := x.Extract(iotest.OneByteReader(bytes.NewReader(data)))
		if !slices.Equal(urlStrings(res.URLs), urlStrings(res2.URLs)) || !slices.Equal(res.Notes, res2.Notes) {
			t.Fatalf("one-byte reads differ:\n%q %q\n%q %q", urlStrings(res.URLs), res.Notes, urlStrings(res2.URLs), res2.Notes)
		}
	})
}

// FuzzText drives the text and HTML scanners and the normaliser directly.
func FuzzText(f *testing.F) {
	for _, s := range strictSeeds {
		f.Add(s, false)
	}
	f.Add("<a href='http://x.example/?a=1&amp;b=2'>www.y.example</a><noscript><img src=//z.example/></noscript>", true)
	f.Add("詳細はhttp://example.co.jp/をご覧ください。www.example.jp example.net/x", false)
	x := fuzzExtractor(f)
	f.Fuzz(func(t *testing.T, s string, html bool) {
		w := newWalker(x)
		w.label = "1"
		var err error
		if html {
			err = w.html(strings.NewReader(s), 0)
		} else {
			w.source, w.schemeless = "text", true
			err = w.plain(strings.NewReader(s))
		}
		w.readErr("1", err)
		res := w.finish()
		checkResult(t, x, res)
		if !html {
			// Text is not decoded, so what was found is in it.
			for _, u := range res.URLs {
				if u.Via == "" && !strings.Contains(s, u.Original) {
					t.Fatalf("original %q not in the text", u.Original)
				}
			}
		}
	})
}

// FuzzNormalize checks Normalize on arbitrary strings.
func FuzzNormalize(f *testing.F) {
	for _, s := range strictSeeds {
		f.Add(s)
	}
	for _, s := range []string{"http://3232235777/", "http://0x7f.1/", "http://[::ffff:1.2.3.4]/", "http://xn--bcher-kva.example/", "http://%65x.example/", "//a.example", `http:\\a.example`, "http://例え.テスト/", "http://a.b.c.d.e.f.example.co.uk./"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := Normalize(s)
		if err != nil {
			return
		}
		checkURL(t, u)
		if !utf8.ValidString(u.Host) || u.Original != cutString(s, defaultMaxURLLength) {
			t.Fatalf("host %q original %q", u.Host, u.Original)
		}
	})
}

// FuzzFindStrict: the ASCII fast path and the bounded regexp window agree
// with xurls' regexp on the whole text.
func FuzzFindStrict(f *testing.F) {
	for _, s := range strictSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > maxRegexpWindow/2 {
			return // longer URLs are cut by design
		}
		got, want := strictCut(s), xurlsAll(s)
		if !slices.Equal(got, want) {
			t.Fatalf("%q:\n got %q\nxurls %q", s, got, want)
		}
	})
}

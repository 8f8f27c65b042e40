package links

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

func strictAll(s string) []string {
	var out []string
	findStrict([]byte(s), len(s), func(m []byte) { out = append(out, string(m)) })
	return out
}

// xurlsAll is what xurls' regexp finds, ended as cutCJK ends URLs in text.
func xurlsAll(s string) []string {
	var out []string
	for _, m := range webURL().FindAllString(s, -1) {
		if c := cutCJK([]byte(m)); len(c) > 0 { // nothing left: no URL
			out = append(out, string(c))
		}
	}
	return out
}

// strictCut is strictAll, ended the same way.
func strictCut(s string) []string {
	var out []string
	for _, m := range strictAll(s) {
		if c := cutCJK([]byte(m)); len(c) > 0 {
			out = append(out, string(c))
		}
	}
	return out
}

// TestFindStrictMatchesXurls: findStrict, with its ASCII fast path and its
// bounded regexp window, must end up with what xurls' regexp finds
// (FuzzFindStrict checks the same on random input).
func TestFindStrictMatchesXurls(t *testing.T) {
	for _, s := range strictSeeds {
		if len(s) > maxRegexpWindow/2 {
			continue // longer URLs are cut by design
		}
		got, want := strictCut(s), xurlsAll(s)
		if !slices.Equal(got, want) {
			t.Errorf("%q:\n got %q\nxurls %q", s, got, want)
		}
	}
}

var strictSeeds = []string{
	"", "http://", "http://a", "see http://example.com/path.", "(http://example.com/a_(b))", "[http://example.com/x]",
	"<http://example.com/>", `"http://example.com/q?a=1&b=2",`, "'http://example.com/'", "http://example.com/a,b;c:d@e!f*g'h",
	"Visithttp://x.example/ xhttps://y.example/ sftp://z.example/", "HTTP://UP.EXAMPLE/ HtTpS://mixed.example/",
	"http://example.com/http://other.example/", "http://a.example/ http://b.example/", "http://[2001:db8::1]/x", "http://user@host.example:8080/p?q#f",
	"https://example.com/{a}", "http://example.com/ü", "http://bücher.example/", "http://example.com/パス。", "http://x.example/~user/%41",
	"http://x.example/\\path", "https://x.example/a|b^c`d", "ftp://files.example/pub.", "http://x.example/a#b#c", "http://.../", "http://:::::",
	"http://x.example/=", "http://x.example/$", "http://x.example/-", "http://x.example/+", "http://x.example/_", "http://x.example/.",
	"http://x.example/\x00", "http://\xff\xfe/", "https://", "https:///", "http://(", "http://a(b)c", "http://a[b]c{d}",
	"詳細はhttp://example.jp/をご覧ください。" + strings.Repeat("あ", 3000), "http://example.com/(a)をご覧", "http://example.com/a.をご覧",
	"“http://quoted.example/”", "http://日本語.jp/パス", "http://x.example/" + strings.Repeat("é", 3000),
}

func TestFindSchemeless(t *testing.T) {
	tests := []struct {
		tok  string
		want []string
	}{
		{"www.example.com", []string{"http://www.example.com"}},
		{"www.example.com.", []string{"http://www.example.com"}},
		{"(www.example.com)", []string{"http://www.example.com"}},
		{"WWW.Example.COM/Path?q=1,", []string{"http://WWW.Example.COM/Path?q=1"}},
		{"example.com/login", []string{"http://example.com/login"}},
		{"example.co.jp:8080/x", []string{"http://example.co.jp:8080/x"}},
		{`"example.org/a"`, []string{"http://example.org/a"}},
		{"see:www.example.net", []string{"http://www.example.net"}},
		{"www.a.example,www.b.example", []string{"http://www.a.example", "http://www.b.example"}},
		{"example.com", nil},          // bare host: too many false positives
		{"readme.md", nil},            // file name
		{"and/or.", nil},              // no host
		{"4.5/6", nil},                // numbers
		{"user@www.example.com", nil}, // e-mail address
		{"foo.www.example.com", nil},  // "www." inside a name
		{"www.example.notatld", nil},  // unknown TLD
		{"www.example", []string{"http://www.example"}},
		{"www..example.com", nil},
		{"example.xn--zckzah/x", []string{"http://example.xn--zckzah/x"}},
		{"path/example.com/x", nil},
	}
	for _, tt := range tests {
		var got []string
		findSchemeless([]byte(tt.tok), len(tt.tok), nil, func(m []byte) { got = append(got, string(m)) })
		if !slices.Equal(got, tt.want) {
			t.Errorf("%q: got %q, want %q", tt.tok, got, tt.want)
		}
	}
}

func TestCutCJK(t *testing.T) {
	tests := []struct{ in, want string }{
		{"http://example.com/", "http://example.com/"},
		{"http://example.comをご覧ください", "http://example.com"},
		{"http://example.com/をご覧ください", "http://example.com/"},
		{"http://example.com/path。次へ", "http://example.com/path"},
		{"http://example.com/path.（", "http://example.com/path"},
		{"http://example.com）", "http://example.com"},
		{"http://日本語.jp/パス", "http://日本語.jp/"},
		{"http://www.日本語.jp/", "http://www.日本語.jp/"},
		{"http://ｅｘａｍｐｌｅ．ｃｏｍ/x", "http://ｅｘａｍｐｌｅ．ｃｏｍ/x"},
		{"http://bücher.example/straße", "http://bücher.example/straße"},
		{"http://example.com/x”", "http://example.com/x"},
		{"http://example.com/«x»", "http://example.com/"},
	}
	for _, tt := range tests {
		if got := string(cutCJK([]byte(tt.in))); got != tt.want {
			t.Errorf("cutCJK(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestSpaces(t *testing.T) {
	s := []byte("a\u00a0b\u3000c d\u2003e")
	var toks []string
	for len(s) > 0 {
		i, n := indexSpace(s)
		if i < 0 {
			toks = append(toks, string(s))
			break
		}
		toks = append(toks, string(s[:i]))
		s = s[i+n:]
	}
	if want := []string{"a", "b", "c", "d", "e"}; !slices.Equal(toks, want) {
		t.Errorf("tokens %q, want %q", toks, want)
	}
	if i, n := lastIndexSpace([]byte("x\u3000y")); i != 1 || n != 3 {
		t.Errorf("lastIndexSpace = %d, %d", i, n)
	}
	if i, _ := lastIndexSpace([]byte(strings.Repeat("\xe3", 5))); i != -1 {
		t.Errorf("lastIndexSpace on broken UTF-8 = %d", i)
	}
}

// everyToken is how text was scanned before urlTokens: every token cut out
// with indexSpace, then tested as scanToken tests it. It is the reference
// urlTokens is checked against.
func everyToken(b []byte, schemeless bool) []string {
	var out []string
	for len(b) > 0 {
		i, size := indexSpace(b)
		tok := b
		if i >= 0 {
			tok = b[:i]
		}
		if bytes.Contains(tok, []byte("://")) || schemeless && mayHoldURL(tok) {
			out = append(out, string(tok))
		}
		if i < 0 {
			break
		}
		b = b[i+size:]
	}
	return out
}

func urlTokenStrings(b []byte, schemeless bool) []string {
	var out []string
	ts := urlTokens{b: b, schemeless: schemeless, slash: -1, dot: -1, sep: -1}
	for {
		tok, ok := ts.next()
		if !ok {
			return out
		}
		out = append(out, string(tok))
	}
}

var tokenSeeds = []string{
	"", " ", "a", ".", "/", "://", "a b c", "see http://a.example/x. and www.b.example, c.example/d",
	"no links here at all\r\n", "www.x.example\u00a0y.example/z\u3000http://q.example/",
	"trailing.", "/leading", "a.b\tc/d\ne://f", "x\u2003www.y.example", "\xe3\x80http://broken.example/",
	"word. word/ word.word/word http:/ http//x ftp://y.example", "\u00a0\u00a0", "a\u0085b.c/d",
}

// TestURLTokensMatchEveryToken: skipping to the bytes a URL needs yields
// the same tokens, in the same order, as testing every token.
func TestURLTokensMatchEveryToken(t *testing.T) {
	for _, s := range append(tokenSeeds, strictSeeds...) {
		for _, sl := range []bool{false, true} {
			got, want := urlTokenStrings([]byte(s), sl), everyToken([]byte(s), sl)
			if !slices.Equal(got, want) {
				t.Errorf("%q schemeless=%v:\n got %q\nwant %q", s, sl, got, want)
			}
		}
	}
}

// FuzzURLTokens is TestURLTokensMatchEveryToken on random text.
func FuzzURLTokens(f *testing.F) {
	for _, s := range tokenSeeds {
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, s string, schemeless bool) {
		got, want := urlTokenStrings([]byte(s), schemeless), everyToken([]byte(s), schemeless)
		if !slices.Equal(got, want) {
			t.Fatalf("%q schemeless=%v:\n got %q\nwant %q", s, schemeless, got, want)
		}
	})
}

package links

import (
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

// htmlSeeds exercise each construct html reads itself and each it hands to
// the tokenizer.
var htmlSeeds = []string{
	`<a href="http://a.example/x?a=1&amp;b=2">www.b.example</a>`,
	`<A HREF='HTTP://UP.EXAMPLE/'>x</A><img src=http://c.example/i.png alt=x/><br/>`,
	`<p>http://ev<b></b>il.example/ and http://split<div></div>.example/</p>`,
	`<!DOCTYPE html><!-- http://comment.example/ --><!--> http://after1.example/ --> <!---> http://after2.example/`,
	`<!-- a --!> http://bang.example/ --> x`, `<!-- x -- y --> http://c2.example/ <!---->http://c3.example/`,
	`<? http://pi.example/ > http://pi2.example/ </ http://bogus.example/ > </> http://e.example/`,
	`<style>a{background:url(http://css.example/a.png)}</style><STYLE type=text/css>b{}</STYLE >`,
	`<title>T &amp; http://title.example/</title><title/>http://st.example/</title>`,
	`<script>var u="http://script.example/";</script>http://after-script.example/`,
	`<noscript><a href=http://ns.example/>x</a></noscript><textarea>http://ta.example/&amp;</textarea>`,
	`<iframe srcdoc="<a href=http://srcdoc.example/>x</a>"></iframe><xmp><a href=http://xmp.example/></xmp>`,
	`<a href="http://q.example/?x=1&not=2&copy=3&notit;&amp&ampx;&#x41;&#65&lt">x</a>`,
	`<a href="http://q.example/?a&b=c&d;e">x</a><a href=&#104;ttp://ent.example/>y</a>`,
	`<a onclick="location='http://on.example/'" data-x="http://data.example/">x</a>`,
	"<a href=\"http://cr.example/a\r\nb\">x</a><a href=\"http://cr2.example/\rc\">y</a>",
	"<a href=\"http://nul.example/\x00\">x</a>\x00 http://text-nul.example/",
	`<a href=http://dup.example/ HREF=http://dup2.example/ =x =y="http://eq.example/" / b>z</a>`,
	`<a href = "http://sp.example/" >x</a><a href =http://sp2.example/ >y</a><a href= >z</a>`,
	`<p a=/>http://p.example/<style/>http://in-style.example/</style>`,
	`&amp;http://amp.example/ &notit; &#104;ttp://num.example/ < 5 http://lt.example/ <<a href=x>`,
	`<a href="http://unterminated.example/`, `<a href=http://eof.example/`, `<!-- http://open.example/`,
	`<style>http://open-style.example/`, `text http://end.example/ &amp`, `<`, `<a`, `</a`, `<!`, `<!-`,
	`<meta http-equiv=refresh content="0;url=http://refresh.example/"><img srcset="http://s1.example/a.png 1x, http://s2.example/b.png 2x">`,
	`<base href="http://base.example/"><a href="/rel">x</a><a ping="http://p1.example/ http://p2.example/">y</a>`,
	`<table><tr><td>www.td1.example</td><td>td2.example/path</td></tr></table><span>www.</span><span>inline.example</span>`,
	`<p style="background:url(http://st.example/x)">詳細はhttp://example.jp/をご覧ください。</p>`,
	`<a h=1 h=2 h=3 h=4 h=5 h=6 h=7 h=8 h=9 a=1 b=1 c=1 d=1 e=1 f=1 g=1 i=1 j=1 k=1 l=1 m=1 n=1 o=1 p=1 q=1 r=1 s=1 t=1 u=1 v=1 w=1 x=1 y=1 z=1 href=http://many.example/>x</a>`,
}

// htmlResult runs one HTML scanner on s and returns what it found.
func htmlResult(x *Extractor, s string, r io.Reader, scan func(w *walker, r io.Reader) error) *Result {
	w := newWalker(x)
	w.label = "1"
	w.readErr("1", scan(w, r))
	return w.finish()
}

// checkHTMLScan compares html, reading s in one go and a byte at a time,
// with the tokenizer-only htmlTokens.
func checkHTMLScan(t *testing.T, x *Extractor, s string) {
	t.Helper()
	want := htmlResult(x, s, strings.NewReader(s), func(w *walker, r io.Reader) error { return w.htmlTokens(r, 0) })
	for _, r := range []io.Reader{strings.NewReader(s), iotest.OneByteReader(strings.NewReader(s)), iotest.HalfReader(strings.NewReader(s))} {
		got := htmlResult(x, s, r, func(w *walker, r io.Reader) error { return w.html(r, 0) })
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q:\n got %+v\nwant %+v", s, got, want)
		}
	}
}

// TestHTMLScanMatchesTokenizer: html finds what the tokenizer alone finds.
func TestHTMLScanMatchesTokenizer(t *testing.T) {
	x := fuzzExtractor(t)
	for _, s := range htmlSeeds {
		checkHTMLScan(t, x, s)
	}
	files, _ := filepath.Glob("testdata/*.eml")
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		checkHTMLScan(t, x, string(data))
	}
	// Constructs longer than html's buffer go to the tokenizer.
	long := strings.Repeat("a{color:red} ", 4<<10)
	checkHTMLScan(t, x, "<p>http://before.example/</p><style>"+long+"b{background:url(http://css.example/x.png)}</style><a href=http://after.example/>x</a>")
	checkHTMLScan(t, x, `<a title="`+long+`" href="http://long-tag.example/">x</a> http://after.example/`)
	checkHTMLScan(t, x, "<!-- "+long+" --> http://after-comment.example/ "+long+" http://in-text.example/")
	checkHTMLScan(t, x, string(newsletter(100<<10, "8bit")))
	checkHTMLScan(t, x, string(alternative10K()))
}

// FuzzHTMLScan is TestHTMLScanMatchesTokenizer on random input.
func FuzzHTMLScan(f *testing.F) {
	for _, s := range htmlSeeds {
		f.Add(s)
	}
	x := fuzzExtractor(f)
	f.Fuzz(func(t *testing.T, s string) {
		checkHTMLScan(t, x, s)
	})
}

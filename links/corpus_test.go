package links

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// keyStrings renders keys as "kind:name" for comparison.
func keyStrings(keys []Key) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k.Kind.String() + ":" + k.Name
	}
	return out
}

// urlStrings renders URLs as "part source normalized" (plus " via" when
// unwrapped, " obf" when obfuscated).
func urlStrings(us []URL) []string {
	out := make([]string, len(us))
	for i, u := range us {
		s := u.Part + " " + u.Source + " " + u.Normalized
		if u.Via != "" {
			s += " via"
		}
		if u.Obfuscated {
			s += " obf"
		}
		out[i] = s
	}
	return out
}

func extractFile(t testing.TB, x *Extractor, name string) *Result {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return x.Extract(f)
}

func diffList(t *testing.T, what string, got, want []string) {
	t.Helper()
	if slices.Equal(got, want) {
		return
	}
	t.Errorf("%s:\n got: %q\nwant: %q", what, got, want)
}

// TestCorpus runs the extractor over real-world-shaped messages and checks
// the exact URLs (in order), lookup keys and notes.
func TestCorpus(t *testing.T) {
	x, err := New(Config{Redirectors: DefaultRedirectors()})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		file      string
		why       string
		urls      []string
		keys      []string
		notes     []string
		truncated bool
	}{{
		file: "plain.eml",
		why:  "text/plain: schemes, trailing punctuation, <...>, www. and host/path forms, e-mail and file names ignored, duplicate, localhost dropped",
		urls: []string{
			"1 text https://billing.example.com/invoice?id=123&amp=1",
			"1 text http://www.example.org/Login",
			"1 text http://www.shop.example.net/",
			"1 text http://docs.example.com/guide",
			"1 text ftp://files.example.org/pub/file.zip",
			"1 text http://example.co.jp/campaign?utm=mail",
		},
		keys: []string{
			"domain:example.co.jp", "domain:example.com", "domain:example.net", "domain:example.org",
			"host:billing.example.com", "host:docs.example.com", "host:files.example.org", "host:www.example.org", "host:www.shop.example.net",
		},
		notes: []string{`part 1: "http://localhost:8080/admin" dropped: no registrable domain: localhost`},
	}, {
		file: "html-only.eml",
		why:  "HTML: CSS, meta refresh, body background, href with &amp;, src, srcset, action, formaction, visible text, javascript: and onclick; script, comment, relative, mailto, tel ignored; text joined across inline tags",
		urls: []string{
			"1 css https://img.example.net/bg.png",
			"1 content https://refresh.example.org/next",
			"1 background http://bg.example.org/tile.gif",
			"1 href https://www.example.com/account?id=1&ref=mail",
			"1 src https://cdn.example.net/logo.png",
			"1 srcset https://cdn.example.net/logo@2x.png",
			"1 srcset https://cdn.example.net/logo@3x.png",
			"1 action http://collect.example.biz/post",
			"1 formaction https://alt.example.biz/submit",
			"1 html http://visible.example.info/path",
			"1 html http://www.typed.example.com/",
			"1 href https://popup.example.org/win",
			"1 onclick http://onclick.example.org/",
			"1 html http://evil.example/x",
		},
		keys: []string{
			"domain:evil.example", "domain:example.biz", "domain:example.com", "domain:example.info", "domain:example.net", "domain:example.org",
			"host:alt.example.biz", "host:bg.example.org", "host:cdn.example.net", "host:collect.example.biz", "host:img.example.net",
			"host:onclick.example.org", "host:popup.example.org", "host:refresh.example.org", "host:visible.example.info",
			"host:www.example.com", "host:www.typed.example.com",
		},
	}, {
		file: "multipart-alternative.eml",
		why:  "multipart/alternative, both parts quoted-printable: the HTML repeats the text's links (de-duplicated) and adds images, CSS and a tracker",
		urls: []string{
			"1 text https://shop.example.com/sale?utm_source=newsletter&utm_medium=email",
			"1 text https://lists.example.com/unsub?u=abc123",
			"2 src https://static.example.com/img/banner.jpg",
			"2 css https://static.example.com/img/bg.jpg",
			"2 href https://track.example-esp.net/o/abc.gif",
		},
		keys: []string{
			"domain:example-esp.net", "domain:example.com",
			"host:lists.example.com", "host:shop.example.com", "host:static.example.com", "host:track.example-esp.net",
		},
	}, {
		file: "qp-softbreak.eml",
		why:  "quoted-printable soft line breaks inside hosts, paths and attributes; =3D in queries",
		urls: []string{
			"1 text https://secure.example-bank.com/login?user=abc&next=/home",
			"1 text https://www.example-bank.com/very/long/path/that/wraps/across/lines/index.html?session=0123456789abcdef",
			"2 href https://cdn.example-bank.com/img/logo.png",
		},
		keys: []string{"domain:example-bank.com", "host:cdn.example-bank.com", "host:secure.example-bank.com", "host:www.example-bank.com"},
	}, {
		file: "base64-html.eml",
		why:  "single-part base64 HTML",
		urls: []string{
			"1 href https://parcel-tracking.example.net/track?id=JP123456789",
			"1 src https://parcel-tracking.example.net/logo.png",
		},
		keys: []string{"domain:example.net", "host:parcel-tracking.example.net"},
	}, {
		file: "forwarded-rfc822.eml",
		why:  "message/rfc822 inside multipart/mixed: its parts are 2.1 and 2.2; the PDF is not read",
		urls: []string{
			"1 text https://wiki.example.com/notes",
			"2.1 text https://news.example.org/article/42",
			"2.2 href http://tracker.example.io/click?id=9",
		},
		keys: []string{"domain:example.com", "domain:example.io", "domain:example.org", "host:news.example.org", "host:tracker.example.io", "host:wiki.example.com"},
	}, {
		file: "idn.eml",
		why:  "IDNs to Punycode (RFC 5891), full-width host, upper-case A-label, a URL followed by Japanese text",
		urls: []string{
			"1 text http://xn--bcher-kva.example/katalog",
			"1 text https://xn--wgv71a119e.jp/",
			"1 text http://example.com/fullwidth",
			"1 text http://example.co.jp/campaign/",
			"1 text http://xn--mnchen-3ya.de/stadt",
			"2 href https://xn--mnchen-3ya.de/stadt",
		},
		keys: []string{"domain:example.co.jp", "domain:example.com", "domain:xn--bcher-kva.example", "domain:xn--mnchen-3ya.de", "domain:xn--wgv71a119e.jp"},
	}, {
		file: "entities.eml",
		why:  "character references in attributes and text, tab and newline inside href, backslashes, surrounding spaces, unquoted attribute",
		urls: []string{
			"1 href https://evil.example/login?a=1&b=2&c=3",
			"1 href http://example.org/%22q%22",
			"1 href http://tab.example.net/x",
			"1 href https://back.example.net/path/file",
			"1 href http://spaces.example.net/",
			"1 html http://lt.example.com/a",
			"1 html http://text-entity.example.com/b&c",
			"1 href http://unquoted.example.org/u?x=1&y=2",
		},
		keys: []string{
			"domain:evil.example", "domain:example.com", "domain:example.net", "domain:example.org",
			"host:back.example.net", "host:lt.example.com", "host:spaces.example.net", "host:tab.example.net",
			"host:text-entity.example.com", "host:unquoted.example.org",
		},
	}, {
		file: "uppercase-scheme.eml",
		why:  "upper- and mixed-case schemes and hosts are lower-cased; paths keep their case",
		urls: []string{
			"1 text http://www.upper.example.com/PATH/File.HTML",
			"1 text https://mixed.example.org/Q?X=1",
			"1 text http://www.shouting.example.net/",
			"2 href https://shout.example.net/",
			"2 src http://img.example.net/A.PNG",
		},
		keys: []string{
			"domain:example.com", "domain:example.net", "domain:example.org",
			"host:img.example.net", "host:mixed.example.org", "host:shout.example.net", "host:www.shouting.example.net", "host:www.upper.example.com",
		},
	}, {
		file: "padding.eml",
		why:  "2000 links to one host do not hide the one that matters (MaxURLsPerHost)",
		urls: append(func() (s []string) {
			for i := range 10 {
				s = append(s, "1 href https://www.innocent.example/p/"+itoa(i))
			}
			return
		}(), "1 href https://evil.example/pay"),
		keys:  []string{"domain:evil.example", "domain:innocent.example", "host:www.innocent.example"},
		notes: []string{"1990 more links skipped on hosts that already have 10 URLs"},
	}, {
		file: "redirector.eml",
		why:  "Google, Safe Links, URL Defense v2 and v3, Safe Links around Google, Facebook; a Google search is not a redirect",
		urls: []string{
			"1 href https://www.google.com/url?q=https://target-one.example/path&sa=D&usg=AOvVaw1",
			"1 redirect https://target-one.example/path via",
			"1 href https://nam12.safelinks.protection.outlook.com/?url=https%3A%2F%2Ftarget-two.example%2Flogin%3Fa%3D1&data=05%7C01%7Cuser%40customer.example&reserved=0",
			"1 redirect https://target-two.example/login?a=1 via",
			"1 href https://urldefense.proofpoint.com/v2/url?u=https-3A__target-2Dthree.example_path_page.html-3Fx-3D1&d=DwMFaQ&c=abc&r=def",
			"1 redirect https://target-three.example/path/page.html?x=1 via",
			"1 href https://urldefense.com/v3/__https://target-four.example/a/b__;!!ABC!xyz123$",
			"1 redirect https://target-four.example/a/b via",
			"1 href https://eur01.safelinks.protection.outlook.com/?url=https%3A%2F%2Fwww.google.com%2Furl%3Fq%3Dhttps%253A%252F%252Ftarget-five.example%252F%26sa%3DD&data=05",
			"1 redirect https://www.google.com/url?q=https%3A%2F%2Ftarget-five.example%2F&sa=D via",
			"1 redirect https://target-five.example/ via",
			"1 href https://l.facebook.com/l.php?u=https%3A%2F%2Ftarget-six.example%2F&h=AT0",
			"1 redirect https://target-six.example/ via",
			"1 href https://www.google.com/search?q=not+a+redirect",
		},
		keys: []string{
			"domain:facebook.com", "domain:google.com", "domain:outlook.com", "domain:proofpoint.com",
			"domain:target-five.example", "domain:target-four.example", "domain:target-one.example",
			"domain:target-six.example", "domain:target-three.example", "domain:target-two.example", "domain:urldefense.com",
			"host:eur01.safelinks.protection.outlook.com", "host:l.facebook.com", "host:nam12.safelinks.protection.outlook.com",
			"host:urldefense.proofpoint.com", "host:www.google.com",
		},
	}, {
		file: "latin1.eml",
		why:  "ISO-8859-1 quoted-printable IDN; windows-1252 smart quotes and no-break spaces around URLs",
		urls: []string{
			"1 text http://xn--bcher-kva.example/angebot",
			"2 text http://quoted.example.com/",
			"2 text http://nbsp.example.com/x",
		},
		keys: []string{"domain:example.com", "domain:xn--bcher-kva.example", "host:nbsp.example.com", "host:quoted.example.com"},
	}, {
		file: "shift_jis.eml",
		why:  "Shift_JIS text (half-width katakana and 「」 around URLs); base64 HTML whose charset is only in <meta>, with a Japanese IDN",
		urls: []string{
			"1 text https://sjis-text.example.jp/",
			"1 text https://support.example.jp/form",
			"2 href https://campaign.example.co.jp/sale?id=1",
			"2 html http://www.example.ne.jp/info/",
			"2 href http://xn--wgv71a119e.jp/",
		},
		keys: []string{
			"domain:example.co.jp", "domain:example.jp", "domain:example.ne.jp", "domain:xn--wgv71a119e.jp",
			"host:campaign.example.co.jp", "host:sjis-text.example.jp", "host:support.example.jp", "host:www.example.ne.jp",
		},
	}, {
		file: "iso-2022-jp.eml",
		why:  "ISO-2022-JP (7-bit, escape sequences) decoded before scanning; URL glued to Japanese text",
		urls: []string{
			"1 text http://example.co.jp/campaign",
			"1 text https://support.example.jp/form?id=5",
			"1 text http://www.company.example.jp/",
		},
		keys: []string{"domain:example.co.jp", "domain:example.jp", "host:support.example.jp", "host:www.company.example.jp"},
	}, {
		file:  "missing-boundary.eml",
		why:   "multipart without its closing boundary: both parts read, one note",
		urls:  []string{"1 text https://first.example.com/", "2 href https://second.example.com/"},
		keys:  []string{"domain:example.com", "host:first.example.com", "host:second.example.com"},
		notes: []string{"message: multipart/mixed ends without its closing boundary"},
	}, {
		file: "bad-base64.eml",
		why:  "junk inside base64 is skipped (RFC 2045 §6.8) rather than ending the part; truncated base64 keeps what decoded",
		urls: []string{
			"1 href https://junk-tolerant.example.org/page",
			"1 html https://after-junk.example.org/",
			"2 text https://truncated.example.net/ok",
		},
		keys: []string{"domain:example.net", "domain:example.org", "host:after-junk.example.org", "host:junk-tolerant.example.org", "host:truncated.example.net"},
		notes: []string{
			"part 1: 15 bytes that are not base64 skipped",
			"part 2: base64 data ends in the middle of a group",
		},
	}, {
		file: "unknown-charset.eml",
		why:  "unknown charset and unknown transfer encoding: read as-is, noted",
		urls: []string{"1 text https://unknown-charset.example.com/", "2 text https://unknown-encoding.example.com/"},
		keys: []string{"domain:example.com", "host:unknown-charset.example.com", "host:unknown-encoding.example.com"},
		notes: []string{
			`part 1: unknown charset "x-unknown-foo", read as-is`,
			`part 2: unknown transfer encoding "x-gzip64", read undecoded`,
		},
	}, {
		file: "obfuscated.eml",
		why:  "numeric IPv4 forms browsers accept, IPv6, IPv4-mapped IPv6, userinfo, percent-encoded host; invalid hosts and ports dropped",
		urls: []string{
			"1 text http://192.168.1.1/a obf",
			"1 text http://192.168.1.2/ obf",
			"1 text http://192.168.1.3/ obf",
			"1 text http://192.168.1.4/ obf",
			"1 text http://198.51.100.7/",
			"1 text http://[2001:db8::1]/x",
			"1 text http://192.0.2.5/ obf",
			"1 text http://203.0.113.9/login obf",
			"1 text http://evil.example/ obf",
		},
		keys: []string{
			"domain:evil.example",
			"ip:192.0.2.5", "ip:192.168.1.1", "ip:192.168.1.2", "ip:192.168.1.3", "ip:192.168.1.4",
			"ip:198.51.100.7", "ip:203.0.113.9", "ip:2001:db8::1",
		},
		notes: []string{
			`part 1: "http://1.2.3.4.5/" dropped: invalid host: 1.2.3.4.5`,
			`part 1: "http://999.1.1.1/" dropped: invalid host: 999.1.1.1`,
			`part 1: "http://example.123/" dropped: invalid host: example.123`,
			`part 1: "http://exa_mple..com/" dropped: invalid host: exa_mple..com`,
			`part 1: "http://host:99999/" dropped: invalid port: 99999`,
		},
	}, {
		file: "digest.eml",
		why:  "multipart/digest: parts without Content-Type are messages (RFC 2046 §5.1.5)",
		urls: []string{"1.1 text https://digest-one.example.com/", "2.1 href https://digest-two.example.com/"},
		keys: []string{"domain:example.com", "host:digest-one.example.com", "host:digest-two.example.com"},
	}, {
		file: "qp-longline.eml",
		why:  "quoted-printable with a 6000-byte line and a control character, which stop mime/quotedprintable",
		urls: []string{
			"1 text https://before-long.example.com/",
			"1 text https://after-long.example.com/",
			"1 text https://after-control.example.com/",
		},
		keys: []string{"domain:example.com", "host:after-control.example.com", "host:after-long.example.com", "host:before-long.example.com"},
	}, {
		file:  "lf-malformed.eml",
		why:   "LF line endings, an mbox From_ line and a line that is not a header field",
		urls:  []string{"1 text https://lf-only.example.com/"},
		keys:  []string{"domain:example.com", "host:lf-only.example.com"},
		notes: []string{"message: 2 malformed header lines skipped"},
	}}
	for _, tt := range tests {
		t.Run(strings.TrimSuffix(tt.file, ".eml"), func(t *testing.T) {
			res := extractFile(t, x, tt.file)
			diffList(t, "urls", urlStrings(res.URLs), tt.urls)
			diffList(t, "keys", keyStrings(res.Keys()), tt.keys)
			diffList(t, "notes", res.Notes, tt.notes)
			if res.Truncated != tt.truncated {
				t.Errorf("truncated = %v, want %v", res.Truncated, tt.truncated)
			}
			if t.Failed() {
				t.Logf("case: %s", tt.why)
			}
		})
	}
}

// TestCorpusManyLinks: 2000 links to distinct domains stop at MaxURLs, in
// document order, with a note.
func TestCorpusManyLinks(t *testing.T) {
	x, _ := New(Config{})
	res := extractFile(t, x, "many-links.eml")
	var want []string
	for i := range 50 {
		want = append(want, "1 href https://www.shop"+itoa(i)+".example/item?id="+itoa(i))
	}
	diffList(t, "urls", urlStrings(res.URLs), want)
	if len(res.Keys()) != 100 {
		t.Errorf("%d keys, want 100 (50 domains, 50 www hosts)", len(res.Keys()))
	}
	diffList(t, "notes", res.Notes, []string{"truncated after 50 URLs"})
	if !res.Truncated {
		t.Error("not truncated")
	}
	// It stopped at the 51st link instead of reading on.
	if res.Bytes > 16<<10 {
		t.Errorf("read %d bytes of text after the URL limit was reached", res.Bytes)
	}
}

// TestStrictText: without scheme-less matching only URLs with a scheme are
// taken from text.
func TestStrictText(t *testing.T) {
	x, _ := New(Config{StrictText: true})
	res := extractFile(t, x, "plain.eml")
	diffList(t, "urls", urlStrings(res.URLs), []string{
		"1 text https://billing.example.com/invoice?id=123&amp=1",
		"1 text http://www.example.org/Login",
		"1 text http://docs.example.com/guide",
		"1 text ftp://files.example.org/pub/file.zip",
	})
}

// TestNoRedirectors: without a redirector list wrappers are reported alone.
func TestNoRedirectors(t *testing.T) {
	x, _ := New(Config{})
	res := extractFile(t, x, "redirector.eml")
	for _, u := range res.URLs {
		if u.Via != "" || u.Source == "redirect" {
			t.Errorf("unwrapped without redirectors: %+v", u)
		}
	}
	if len(res.URLs) != 7 {
		t.Errorf("%d URLs, want the 7 links", len(res.URLs))
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

package links

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestNormalize(t *testing.T) {
	tests := []struct {
		in         string
		norm       string
		host       string
		domain     string
		obfuscated bool
		err        error
	}{
		// RFC 3986 §6.2.2.1: scheme and host are case-insensitive.
		{in: "HTTP://WWW.EXAMPLE.COM/A/B?C=D", norm: "http://www.example.com/A/B?C=D", host: "www.example.com", domain: "example.com"},
		// Userinfo, port and fragment go; an empty path is "/".
		{in: "https://user:pw@Example.co.uk:8443#frag", norm: "https://example.co.uk/", host: "example.co.uk", domain: "example.co.uk", obfuscated: true},
		{in: "http://example.com:/x", norm: "http://example.com/x", host: "example.com", domain: "example.com"},
		{in: "http://example.com./", norm: "http://example.com/", host: "example.com", domain: "example.com"},
		{in: "http://a.b.example.co.jp/?", norm: "http://a.b.example.co.jp/", host: "a.b.example.co.jp", domain: "example.co.jp"},
		// Public suffix list, private section: each blog is its own site.
		{in: "https://victim.blogspot.com/post", norm: "https://victim.blogspot.com/post", host: "victim.blogspot.com", domain: "victim.blogspot.com"},
		// WHATWG: slashes and backslashes after a special scheme.
		{in: `http:\\evil.example\a\b?c\d`, norm: `http://evil.example/a/b?c%5Cd`, host: "evil.example", domain: "evil.example"},
		{in: "http:evil.example/x", norm: "http://evil.example/x", host: "evil.example", domain: "evil.example"},
		{in: "https:////evil.example", norm: "https://evil.example/", host: "evil.example", domain: "evil.example"},
		{in: "//cdn.example.net/x.js", norm: "http://cdn.example.net/x.js", host: "cdn.example.net", domain: "example.net"},
		{in: " \t http://ex\nample.com/\r\n ", norm: "http://example.com/", host: "example.com", domain: "example.com"},
		// RFC 5891 IDNA, UTS #46 mapping.
		{in: "http://Bücher.example/", norm: "http://xn--bcher-kva.example/", host: "xn--bcher-kva.example", domain: "xn--bcher-kva.example"},
		{in: "http://ｅｘａｍｐｌｅ．ｃｏｍ/", norm: "http://example.com/", host: "example.com", domain: "example.com"},
		{in: "http://例え。テスト/", norm: "http://xn--r8jz45g.xn--zckzah/", host: "xn--r8jz45g.xn--zckzah", domain: "xn--r8jz45g.xn--zckzah"},
		{in: "http://faß.de/", norm: "http://xn--fa-hia.de/", host: "xn--fa-hia.de", domain: "xn--fa-hia.de"},
		{in: "http://r3---sn-abc.googlevideo.com/v", norm: "http://r3---sn-abc.googlevideo.com/v", host: "r3---sn-abc.googlevideo.com", domain: "googlevideo.com"},
		{in: "http://_dmarc.example.com/", norm: "http://_dmarc.example.com/", host: "_dmarc.example.com", domain: "example.com"},
		{in: "http://%65vil.example/", norm: "http://evil.example/", host: "evil.example", domain: "evil.example", obfuscated: true},
		// Path and query: unsafe bytes escaped, existing escapes kept.
		{in: "http://example.com/a b/ü?q=ä ö", norm: "http://example.com/a%20b/%C3%BC?q=%C3%A4%20%C3%B6", host: "example.com", domain: "example.com"},
		{in: "http://example.com/%41%zz", norm: "http://example.com/%41%zz", host: "example.com", domain: "example.com"},
		// IPv4 in the forms browsers accept (WHATWG IPv4 parser).
		{in: "http://3232235777/", norm: "http://192.168.1.1/", host: "192.168.1.1", obfuscated: true},
		{in: "http://0xc0.0xa8.0x01.0x01/", norm: "http://192.168.1.1/", host: "192.168.1.1", obfuscated: true},
		{in: "http://0300.0250.0001.0001/", norm: "http://192.168.1.1/", host: "192.168.1.1", obfuscated: true},
		{in: "http://192.11010305/", norm: "http://192.168.1.1/", host: "192.168.1.1", obfuscated: true},
		{in: "http://127.1/", norm: "http://127.0.0.1/", host: "127.0.0.1", obfuscated: true},
		{in: "http://0x/", norm: "http://0.0.0.0/", host: "0.0.0.0", obfuscated: true},
		{in: "http://１９２．１６８．１．１/", norm: "http://192.168.1.1/", host: "192.168.1.1"},
		{in: "http://192.0.2.1./", norm: "http://192.0.2.1/", host: "192.0.2.1"},
		{in: "http://[2001:DB8:0:0::1]:80/", norm: "http://[2001:db8::1]/", host: "2001:db8::1"},
		{in: "http://[::ffff:c000:0201]/", norm: "http://192.0.2.1/", host: "192.0.2.1", obfuscated: true},
		// Errors.
		{in: "/relative/path", err: ErrRelative},
		{in: "page.html", err: ErrRelative},
		{in: "www.example.com", err: ErrRelative},
		{in: "mailto:someone@example.com", err: ErrScheme},
		{in: "javascript:alert(1)", err: ErrScheme},
		{in: "data:text/html,<a href=http://x.example/>", err: ErrScheme},
		{in: "http://", err: ErrHost},
		{in: "http://?q", err: ErrHost},
		{in: "http://exa mple.com/", err: ErrHost},
		{in: "http://example..com/", err: ErrHost},
		{in: "http://-.~!$&/", err: ErrHost},
		{in: "http://xn--zz.example/", err: ErrHost},
		{in: "http://" + strings.Repeat("a", 64) + ".example/", err: ErrHost},
		{in: "http://example.com%/", err: ErrHost},
		{in: "http://%ff.example/", err: ErrHost},
		{in: "http://1.2.3.4.5/", err: ErrHost},
		{in: "http://256.1.1.1/", err: ErrHost},
		{in: "http://4294967296/", err: ErrHost},
		{in: "http://0x1g/", err: ErrNoDomain}, // not a number, so a one-label name
		{in: "http://09.1.1.1/", err: ErrHost},
		{in: "http://example.0x10/", err: ErrHost},
		{in: "http://[fe80::1%25eth0]/", err: ErrHost},
		{in: "http://[192.0.2.1]/", err: ErrHost},
		{in: "http://[::1/", err: ErrHost},
		{in: "http://example.com:http/", err: ErrPort},
		{in: "http://example.com:65536/", err: ErrPort},
		{in: "http://localhost/", err: ErrNoDomain},
		{in: "http://co.jp/", err: ErrNoDomain},
		{in: "http://github.io/", err: ErrNoDomain},
	}
	for _, tt := range tests {
		u, err := Normalize(tt.in)
		if tt.err != nil {
			if !errors.Is(err, tt.err) {
				t.Errorf("Normalize(%q) error = %v, want %v", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("Normalize(%q): %v", tt.in, err)
			continue
		}
		if u.Normalized != tt.norm || u.Host != tt.host || u.Domain != tt.domain || u.Obfuscated != tt.obfuscated {
			t.Errorf("Normalize(%q) = %q host %q domain %q obfuscated %v; want %q %q %q %v",
				tt.in, u.Normalized, u.Host, u.Domain, u.Obfuscated, tt.norm, tt.host, tt.domain, tt.obfuscated)
		}
		if u.Original != tt.in {
			t.Errorf("Normalize(%q).Original = %q", tt.in, u.Original)
		}
		if ip, err := netip.ParseAddr(u.Host); err == nil != u.IP.IsValid() || (err == nil && ip != u.IP) {
			t.Errorf("Normalize(%q): IP %v for host %q", tt.in, u.IP, u.Host)
		}
		// Normalising is idempotent.
		again, err := Normalize(u.Normalized)
		if err != nil || again.Normalized != u.Normalized {
			t.Errorf("Normalize(Normalize(%q)) = %q, %v", tt.in, again.Normalized, err)
		}
	}
}

func TestNormalizeLength(t *testing.T) {
	long := "http://example.com/" + strings.Repeat("%41", 1000)
	u, err := Normalize(long)
	if err != nil {
		t.Fatal(err)
	}
	if len(u.Normalized) > defaultMaxURLLength || strings.HasSuffix(u.Normalized, "%") || strings.HasSuffix(u.Normalized, "%4") {
		t.Errorf("len %d, ends %q", len(u.Normalized), u.Normalized[len(u.Normalized)-4:])
	}
	if len(u.Original) > defaultMaxURLLength {
		t.Errorf("original len %d", len(u.Original))
	}
}

func TestKeysOrder(t *testing.T) {
	r := &Result{}
	for _, s := range []string{
		"http://b.example.org/", "http://198.51.100.1/", "http://a.example.com/", "http://example.org/",
		"http://[2001:db8::1]/", "http://10.0.0.1/", "http://a.example.com/other",
	} {
		u, err := Normalize(s)
		if err != nil {
			t.Fatal(err)
		}
		r.URLs = append(r.URLs, u)
	}
	diffList(t, "keys", keyStrings(r.Keys()), []string{
		"domain:example.com", "domain:example.org",
		"host:a.example.com", "host:b.example.org",
		"ip:10.0.0.1", "ip:198.51.100.1", "ip:2001:db8::1",
	})
	for _, k := range r.Keys() {
		if (k.Kind == KeyIP) != k.IP.IsValid() {
			t.Errorf("key %+v: IP field", k)
		}
	}
}

func TestRedirectorConfig(t *testing.T) {
	for _, bad := range []Redirector{
		{Host: "", Param: "q"},
		{Host: "exa mple.com", Param: "q"},
		{Host: "www.google.com", PathPrefix: "url", Param: "q"},
		{Host: "www.google.com", PathPrefix: "/url"},
		{Host: "www.google.com", Param: "q", Encoding: "rot13"},
	} {
		if _, err := New(Config{Redirectors: []Redirector{bad}}); err == nil {
			t.Errorf("New accepted redirector %+v", bad)
		}
	}
	// Hosts in the list are normalised like URL hosts.
	x, err := New(Config{Redirectors: []Redirector{{Host: "Redirect.EXAMPLE.", PathPrefix: "/go", Param: "to"}}})
	if err != nil {
		t.Fatal(err)
	}
	res := x.Extract(strings.NewReader("Content-Type: text/plain\r\n\r\nhttps://redirect.example/go?x=1&to=https%3A%2F%2Fdest.example%2F https://redirect.example/other?to=https%3A%2F%2Fno.example%2F\r\n"))
	diffList(t, "urls", urlStrings(res.URLs), []string{
		"1 text https://redirect.example/go?x=1&to=https%3A%2F%2Fdest.example%2F",
		"1 redirect https://dest.example/ via",
		"1 text https://redirect.example/other?to=https%3A%2F%2Fno.example%2F",
	})
}

func TestParseContentType(t *testing.T) {
	tests := []struct{ in, mt, boundary, charset string }{
		{`multipart/mixed; boundary="abc"`, "multipart/mixed", "abc", ""},
		{`Multipart/Alternative; Boundary=xyz; charset=utf-8`, "multipart/alternative", "xyz", "utf-8"},
		{`multipart/mixed; boundary="unterminated`, "multipart/mixed", "unterminated", ""},
		{`multipart/mixed; boundary=a b`, "multipart/mixed", "a", ""},
		{`text/plain; charset=iso-2022-jp; format=flowed; delsp`, "text/plain", "", "iso-2022-jp"},
		{`text/html; charset=""`, "text/html", "", ""},
		{"text/plain;\x82charset=sjis", "text/plain", "", ""},
		{"Content-TYpe:\x82 BoundArY", "", "", ""},
		{"\x82\x82\x82boundary=x", "", "", ""},
		{`garbage`, "", "", ""},
	}
	for _, tt := range tests {
		mt, params := parseContentType(tt.in)
		if mt != tt.mt || params["boundary"] != tt.boundary || params["charset"] != tt.charset {
			t.Errorf("parseContentType(%q) = %q %q", tt.in, mt, params)
		}
	}
}

package links

import (
	"fmt"
	"strings"
)

// Encoding says how a redirector carries its target URL.
type Encoding string

const (
	// EncodingQuery: the target is an ordinary percent-encoded query
	// parameter value (RFC 3986 §3.4), as in Google's /url?q= and Microsoft
	// Safe Links' ?url=.
	EncodingQuery Encoding = ""
	// EncodingURLDefenseV2: Proofpoint URL Defense v2, /v2/url?u=: in the
	// parameter value "_" stands for "/" and "-XX" for the byte 0xXX.
	EncodingURLDefenseV2 Encoding = "urldefense-v2"
	// EncodingURLDefenseV3: Proofpoint URL Defense v3, /v3/__TARGET__;...:
	// the target sits in the path between "__" markers. Characters the
	// wrapper replaced by "*" are not restored; the target is cut at the
	// first "*", which keeps its scheme and host, which is what is looked up.
	EncodingURLDefenseV3 Encoding = "urldefense-v3"
)

// Redirector describes a link wrapper whose target should be reported too.
//
// A URL is unwrapped when its host equals Host (or, when Host is
// "*.example.com", is any subdomain of example.com), its path starts with
// PathPrefix, and the target is found as Encoding describes.
type Redirector struct {
	Host       string   // "www.google.com", or "*.safelinks.protection.outlook.com"
	PathPrefix string   // "/url"; empty matches any path
	Param      string   // query parameter holding the target: "q"; unused for EncodingURLDefenseV3
	Encoding   Encoding // how the target is encoded
}

// DefaultRedirectors returns the built-in list: Google's /url redirector (on
// google.com and google.co.jp, parameters q and url), Microsoft Safe Links,
// Proofpoint URL Defense v1, v2 and v3, and Facebook's link shim.
func DefaultRedirectors() []Redirector {
	return []Redirector{
		{Host: "www.google.com", PathPrefix: "/url", Param: "q"},
		{Host: "www.google.com", PathPrefix: "/url", Param: "url"},
		{Host: "google.com", PathPrefix: "/url", Param: "q"},
		{Host: "google.com", PathPrefix: "/url", Param: "url"},
		{Host: "www.google.co.jp", PathPrefix: "/url", Param: "q"},
		{Host: "www.google.co.jp", PathPrefix: "/url", Param: "url"},
		{Host: "*.safelinks.protection.outlook.com", Param: "url"},
		{Host: "urldefense.proofpoint.com", PathPrefix: "/v1/url", Param: "u"},
		{Host: "urldefense.proofpoint.com", PathPrefix: "/v2/url", Param: "u", Encoding: EncodingURLDefenseV2},
		{Host: "urldefense.com", PathPrefix: "/v3/__", Encoding: EncodingURLDefenseV3},
		{Host: "l.facebook.com", PathPrefix: "/l.php", Param: "u"},
	}
}

// maxUnwrap bounds wrappers inside wrappers (Safe Links around a Google
// redirect around the real target is common; more is abuse).
const maxUnwrap = 3

// redirectors is the compiled list: exact hosts and "*." suffixes.
type redirectors struct {
	exact  map[string][]Redirector
	suffix []Redirector // Host is ".example.com"
}

func compileRedirectors(list []Redirector) (redirectors, error) {
	var rs redirectors
	for i, r := range list {
		wild := strings.HasPrefix(r.Host, "*.")
		host, _, _, err := parseHost(strings.TrimPrefix(r.Host, "*."))
		if err != nil {
			return rs, fmt.Errorf("redirector %d: host %q: %w", i, r.Host, err)
		}
		if r.PathPrefix != "" && !strings.HasPrefix(r.PathPrefix, "/") {
			return rs, fmt.Errorf("redirector %d: path prefix %q does not start with /", i, r.PathPrefix)
		}
		switch r.Encoding {
		case EncodingQuery, EncodingURLDefenseV2:
			if r.Param == "" {
				return rs, fmt.Errorf("redirector %d (%s): no query parameter", i, r.Host)
			}
		case EncodingURLDefenseV3:
		default:
			return rs, fmt.Errorf("redirector %d (%s): unknown encoding %q", i, r.Host, r.Encoding)
		}
		if wild {
			r.Host = "." + host
			rs.suffix = append(rs.suffix, r)
			continue
		}
		r.Host = host
		if rs.exact == nil {
			rs.exact = make(map[string][]Redirector)
		}
		rs.exact[host] = append(rs.exact[host], r)
	}
	return rs, nil
}

// target returns the wrapped URL of p, if p is a known redirector.
func (rs *redirectors) target(p *parsed) (string, bool) {
	if p.IP.IsValid() {
		return "", false
	}
	for _, r := range rs.exact[p.Host] {
		if t, ok := r.target(p); ok {
			return t, true
		}
	}
	for _, r := range rs.suffix {
		if strings.HasSuffix(p.Host, r.Host) {
			if t, ok := r.target(p); ok {
				return t, true
			}
		}
	}
	return "", false
}

func (r *Redirector) target(p *parsed) (string, bool) {
	if !strings.HasPrefix(p.rawPath, r.PathPrefix) {
		return "", false
	}
	switch r.Encoding {
	case EncodingURLDefenseV3:
		t := strings.TrimPrefix(p.rawPath, "/v3/__")
		if t == p.rawPath {
			return "", false
		}
		if i := strings.Index(t, "__;"); i >= 0 {
			t = t[:i]
		} else if i := strings.Index(t, "__"); i >= 0 {
			t = t[:i]
		}
		if i := strings.IndexByte(t, '*'); i >= 0 {
			t = t[:i]
		}
		return t, t != ""
	case EncodingURLDefenseV2:
		v, ok := queryParam(p.rawQuery, r.Param)
		if !ok {
			return "", false
		}
		return decodeURLDefenseV2(v), true
	default:
		return queryParam(p.rawQuery, r.Param)
	}
}

// queryParam returns the first non-empty value of name in an
// application/x-www-form-urlencoded query. Unlike net/url.ParseQuery it never
// fails: bad escapes are kept as written.
func queryParam(q, name string) (string, bool) {
	for q != "" {
		var kv string
		kv, q, _ = strings.Cut(q, "&")
		k, v, _ := strings.Cut(kv, "=")
		if formUnescape(k) == name && v != "" {
			return formUnescape(v), true
		}
	}
	return "", false
}

// formUnescape decodes "+" as space and valid %XX escapes, leaving anything
// else as written.
func formUnescape(s string) string {
	if strings.IndexByte(s, '+') < 0 {
		return percentDecode(s)
	}
	return percentDecode(strings.ReplaceAll(s, "+", " "))
}

// decodeURLDefenseV2 reverses Proofpoint's v2 encoding: "-XX" is a hex
// escape and "_" is "/".
func decodeURLDefenseV2(s string) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_':
			b = append(b, '/')
		case c == '-' && i+2 < len(s) && ishex(s[i+1]) && ishex(s[i+2]):
			b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
		default:
			b = append(b, c)
		}
	}
	return string(b)
}

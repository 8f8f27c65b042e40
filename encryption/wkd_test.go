package encryption

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/foxproxy/foxproxy/settings"
)

// TestZBase32 uses the draft's example: the hash of "joe.doe".
func TestZBase32(t *testing.T) {
	adv, direct, err := wkdURLs("Joe.Doe@Example.ORG")
	if err != nil {
		t.Fatal(err)
	}
	if want := "https://openpgpkey.example.org/.well-known/openpgpkey/example.org/hu/iy9q119eutrkn8s1mk4r39qejnbu3n5q?l=Joe.Doe"; adv != want {
		t.Errorf("advanced %s\nwant     %s", adv, want)
	}
	if want := "https://example.org/.well-known/openpgpkey/hu/iy9q119eutrkn8s1mk4r39qejnbu3n5q?l=Joe.Doe"; direct != want {
		t.Errorf("direct %s\nwant   %s", direct, want)
	}
	for in, want := range map[string]string{"": "", "\x00": "yy", "\xff": "9h", "\xf0\xbf\xc7": "6n9hq"} {
		if got := zbase32([]byte(in)); got != want {
			t.Errorf("zbase32(%x) = %q, want %q", in, got, want)
		}
	}
	for _, bad := range []string{"nobody", "a@", "@b", "a@b/c"} {
		if _, _, err := wkdURLs(bad); err == nil {
			t.Errorf("wkdURLs(%q) accepted", bad)
		}
	}
}

// wkdServer is an HTTPS server with a test CA's certificate that answers
// WKD requests for several test domains, each behaving differently.
type wkdServer struct {
	srv     *httptest.Server
	caFile  string
	resolve map[string]string
	release chan struct{}

	mu    sync.Mutex
	hits  map[string]int // "host path" -> requests
	keys  map[string][]byte
	hdr   map[string]http.Header
	codes map[string]int
}

func newEntity(t testing.TB, addr string, cfg *packet.Config) *openpgp.Entity {
	t.Helper()
	if cfg == nil {
		cfg = &packet.Config{}
	}
	cfg.Algorithm, cfg.Curve = packet.PubKeyAlgoEdDSA, packet.Curve25519
	e, err := openpgp.NewEntity("", "", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func publicBytes(t *testing.T, e *openpgp.Entity) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := e.Serialize(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func newWKDServer(t *testing.T, hosts ...string) *wkdServer {
	t.Helper()
	ca := newCA(t)
	certPEM, keyPEM := ca.issue(t, &x509.Certificate{
		DNSNames:    hosts,
		NotBefore:   time.Now().Add(-time.Hour),
		NotAfter:    time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
	})
	leaf, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	w := &wkdServer{release: make(chan struct{}), hits: map[string]int{}, keys: map[string][]byte{}, hdr: map[string]http.Header{}, codes: map[string]int{}}
	w.srv = httptest.NewUnstartedServer(http.HandlerFunc(w.serve))
	w.srv.TLS = &tls.Config{Certificates: []tls.Certificate{leaf}}
	w.srv.StartTLS()
	t.Cleanup(func() { close(w.release); w.srv.Close() })
	w.caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(w.caFile, ca.pem, 0o644); err != nil {
		t.Fatal(err)
	}
	w.resolve = map[string]string{}
	for _, h := range hosts {
		w.resolve[h] = w.srv.Listener.Addr().String()
	}
	return w
}

// set makes url (a WKD URL from wkdURLs) answer with code, body and header.
func (w *wkdServer) set(t *testing.T, rawURL string, code int, body []byte, h http.Header) {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	k := u.Host + " " + u.Path
	w.mu.Lock()
	defer w.mu.Unlock()
	w.codes[k], w.keys[k], w.hdr[k] = code, body, h
}

func (w *wkdServer) count(rawURL string) int {
	u, _ := url.Parse(rawURL)
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.hits[u.Host+" "+u.Path]
}

func (w *wkdServer) serve(rw http.ResponseWriter, r *http.Request) {
	k := r.Host + " " + r.URL.Path
	w.mu.Lock()
	w.hits[k]++
	code, body, h := w.codes[k], w.keys[k], w.hdr[k]
	w.mu.Unlock()
	if r.URL.Query().Get("l") == "" {
		http.Error(rw, "no l=", http.StatusBadRequest)
		return
	}
	switch code {
	case 0:
		http.NotFound(rw, r)
	case -1: // hang until the client gives up
		select {
		case <-r.Context().Done():
		case <-w.release:
		}
	default:
		for k, v := range h {
			rw.Header()[k] = v
		}
		rw.WriteHeader(code)
		rw.Write(body)
	}
}

func urls(t *testing.T, addr string) (adv, direct string) {
	t.Helper()
	adv, direct, err := wkdURLs(addr)
	if err != nil {
		t.Fatal(err)
	}
	return adv, direct
}

// TestWKDOutcomes: each kind of answer gives its outcome, within the bound.
func TestWKDOutcomes(t *testing.T) {
	us := users(t)
	hosts := []string{"openpgpkey.example.org", "direct.test", "openpgpkey.absent.test", "openpgpkey.broken.test",
		"openpgpkey.slow.test", "openpgpkey.garbage.test", "openpgpkey.wrongid.test", "openpgpkey.expired.test", "absent.test"}
	w := newWKDServer(t, hosts...)
	// A host whose certificate is from a CA nobody trusts.
	other := newWKDServer(t, "openpgpkey.badtls.test", "badtls.test")

	aliceBin, err := gpgCmd(us["alice"].home, nil, "--export", us["alice"].addr)
	if err != nil {
		t.Fatal(err)
	}
	adv, _ := urls(t, "alice@example.org")
	w.set(t, adv, 200, aliceBin, nil)
	_, direct := urls(t, "dora@direct.test")
	w.set(t, direct, 200, publicBytes(t, newEntity(t, "dora@direct.test", nil)), nil)
	adv, direct = urls(t, "nobody@absent.test")
	w.set(t, adv, 404, nil, nil)
	w.set(t, direct, 200, publicBytes(t, newEntity(t, "nobody@absent.test", nil)), nil) // must not be asked
	adv, _ = urls(t, "gone@broken.test")
	w.set(t, adv, 503, []byte("maintenance"), nil)
	adv, _ = urls(t, "x@slow.test")
	w.set(t, adv, -1, nil, nil)
	adv, _ = urls(t, "x@garbage.test")
	w.set(t, adv, 200, []byte("<html>it works</html>"), nil)
	adv, _ = urls(t, "x@wrongid.test")
	w.set(t, adv, 200, publicBytes(t, newEntity(t, "someone-else@wrongid.test", nil)), nil)
	adv, _ = urls(t, "old@expired.test")
	old := newEntity(t, "old@expired.test", &packet.Config{KeyLifetimeSecs: 3600, Time: func() time.Time { return time.Now().Add(-2 * time.Hour) }})
	w.set(t, adv, 200, publicBytes(t, old), nil)
	adv, _ = urls(t, "x@badtls.test")
	other.set(t, adv, 200, publicBytes(t, newEntity(t, "x@badtls.test", nil)), nil)

	resolve := w.resolve
	resolve["openpgpkey.direct.test"] = closedPort(t)
	resolve["openpgpkey.badtls.test"] = other.resolve["openpgpkey.badtls.test"]
	resolve["badtls.test"] = other.resolve["badtls.test"]

	cfg := testConfig(t)
	cfg.OpenPGP.WKD = true
	cfg.OpenPGP.CAFile = w.caFile
	cfg.OpenPGP.Resolve = resolve
	cfg.OpenPGP.Timeout = settings.Duration(time.Second)
	g, _ := newGateway(t, cfg)

	cases := []struct {
		addr    string
		want    Outcome
		errWant string
	}{
		{"alice@example.org", Found, ""},
		{"dora@direct.test", Found, ""},
		{"nobody@absent.test", Absent, "HTTP 404"},
		{"gone@broken.test", Unavailable, "HTTP 503"},
		{"x@slow.test", Unavailable, "no answer within"},
		{"x@garbage.test", Unavailable, "not an OpenPGP key"},
		{"x@wrongid.test", Unavailable, "no user ID x@wrongid.test"},
		{"old@expired.test", Absent, "expired"},
		{"x@badtls.test", Unavailable, "certificate"},
	}
	rcpts := make([]string, len(cases))
	for i, c := range cases {
		rcpts[i] = c.addr
	}
	start := time.Now()
	rs := g.Lookup(context.Background(), rcpts)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Lookup took %v with a 1s timeout", took)
	}
	for i, c := range cases {
		r := rs[i]
		if r.Addr != c.addr || r.Outcome != c.want || r.Source != SourceWKD {
			t.Errorf("%s: %+v, want %s", c.addr, r, c.want)
			continue
		}
		if c.errWant == "" && r.Err != nil || c.errWant != "" && (r.Err == nil || !strings.Contains(r.Err.Error(), c.errWant)) {
			t.Errorf("%s: error %v, want ~ %q", c.addr, r.Err, c.errWant)
		}
		if c.want == Found && (r.Method != MethodOpenPGP || r.pgp == nil) {
			t.Errorf("%s: found without a key: %+v", c.addr, r)
		}
	}
	_, direct = urls(t, "nobody@absent.test")
	if n := w.count(direct); n != 0 {
		t.Errorf("direct method asked %d times after the advanced method said 404", n)
	}

	// The key from WKD encrypts for gpg.
	var out bytes.Buffer
	if err := g.Encrypt(rs[:1], strings.NewReader(outerHeader+plainContent+"\r\n"+plainBody), &out); err != nil {
		t.Fatal(err)
	}
	got, err := gpgCmd(us["alice"].home, armoredPart(t, out.Bytes()), "--decrypt")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != innerOf(plainContent, plainBody) {
		t.Fatalf("gpg decrypted %q", got)
	}
}

// TestWKDTimeoutBoundsAllRecipients: lookups run concurrently, so many
// hanging recipients together still take about one timeout, and the
// caller's context ends them sooner.
func TestWKDTimeoutBoundsAllRecipients(t *testing.T) {
	w := newWKDServer(t, "openpgpkey.slow.test")
	var rcpts []string
	for _, l := range []string{"a", "b", "c", "d", "e", "f"} {
		addr := l + "@slow.test"
		adv, _ := urls(t, addr)
		w.set(t, adv, -1, nil, nil)
		rcpts = append(rcpts, addr)
	}
	cfg := testConfig(t)
	cfg.OpenPGP.WKD, cfg.OpenPGP.CAFile, cfg.OpenPGP.Resolve = true, w.caFile, w.resolve
	cfg.OpenPGP.Timeout = settings.Duration(time.Second)
	g, _ := newGateway(t, cfg)

	start := time.Now()
	rs := g.Lookup(context.Background(), rcpts)
	if took := time.Since(start); took > 4*time.Second {
		t.Fatalf("6 hanging lookups with a 1s timeout took %v: not concurrent or not bounded", took)
	}
	for _, r := range rs {
		if r.Outcome != Unavailable {
			t.Fatalf("%+v", r)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	cfg.OpenPGP.Timeout = settings.Duration(30 * time.Second)
	g2, _ := newGateway(t, cfg)
	start = time.Now()
	rs = g2.Lookup(ctx, rcpts[:1])
	if took := time.Since(start); took > 5*time.Second || rs[0].Outcome != Unavailable || !errors.Is(rs[0].Err, context.DeadlineExceeded) {
		t.Fatalf("caller's deadline not honoured: %v %+v", took, rs[0])
	}
}

// TestWKDCache: answers are kept for their max-age (or Expires), 404s too,
// no-store is not kept, and unavailable is never kept.
func TestWKDCache(t *testing.T) {
	hosts := []string{"openpgpkey.example.net"}
	w := newWKDServer(t, hosts...)
	cc := func(v string) http.Header { return http.Header{"Cache-Control": {v}} }
	key := func(a string) []byte { return publicBytes(t, newEntity(t, a, nil)) }
	set := func(addr string, code int, body []byte, h http.Header) string {
		adv, _ := urls(t, addr)
		w.set(t, adv, code, body, h)
		return adv
	}
	clock := time.Now()
	expires := http.Header{"Date": {clock.UTC().Format(http.TimeFormat)}, "Expires": {clock.Add(90 * time.Second).UTC().Format(http.TimeFormat)}}
	uMaxAge := set("maxage@example.net", 200, key("maxage@example.net"), cc("public, max-age=60"))
	uExpires := set("expires@example.net", 200, key("expires@example.net"), expires)
	uNoStore := set("nostore@example.net", 200, key("nostore@example.net"), cc("no-store"))
	u404 := set("absent@example.net", 404, nil, nil)
	u503 := set("down@example.net", 503, nil, nil)

	cfg := testConfig(t)
	cfg.OpenPGP.WKD, cfg.OpenPGP.CAFile, cfg.OpenPGP.Resolve = true, w.caFile, w.resolve
	g, _ := newGateway(t, cfg)
	var mu sync.Mutex
	g.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	advance := func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }
	rcpts := []string{"maxage@example.net", "expires@example.net", "nostore@example.net", "absent@example.net", "down@example.net"}
	all := []string{uMaxAge, uExpires, uNoStore, u404, u503}
	lookup := func(want ...int) {
		t.Helper()
		rs := g.Lookup(context.Background(), rcpts)
		if rs[0].Outcome != Found || rs[1].Outcome != Found || rs[2].Outcome != Found || rs[3].Outcome != Absent || rs[4].Outcome != Unavailable {
			t.Fatalf("outcomes: %v %v %v %v %v", rs[0].Outcome, rs[1].Outcome, rs[2].Outcome, rs[3].Outcome, rs[4].Outcome)
		}
		for i, u := range all {
			if got := w.count(u); got != want[i] {
				t.Errorf("%s: %d requests, want %d", rcpts[i], got, want[i])
			}
		}
	}
	lookup(1, 1, 1, 1, 1)
	lookup(1, 1, 2, 1, 2)      // cached: max-age, Expires, the 404
	advance(61 * time.Second)  // max-age=60 is over
	lookup(2, 1, 3, 1, 3)      //
	advance(40 * time.Second)  // 101s: Expires (90s) is over; the re-fetched max-age entry is fresh
	lookup(2, 2, 4, 1, 4)      //
	advance(240 * time.Second) // 341s: the 404's default 5m is over
	lookup(3, 3, 5, 2, 5)
}

// TestWKDCacheSize: the cache never holds more than cache_size entries.
func TestWKDCacheSize(t *testing.T) {
	now := time.Now()
	c := newWKDCache(3, func() time.Time { return now })
	for i := range 10 {
		c.put(string(rune('a'+i)), wkdResult{outcome: Absent}, time.Minute)
		if len(c.items) > 3 {
			t.Fatalf("%d entries with size 3", len(c.items))
		}
	}
	if _, ok := c.get("j"); !ok {
		t.Fatal("the newest entry was evicted")
	}
	off := newWKDCache(0, func() time.Time { return now })
	off.put("a", wkdResult{outcome: Found}, time.Minute)
	if _, ok := off.get("a"); ok {
		t.Fatal("cache_size 0 cached")
	}
}

func TestCacheTTL(t *testing.T) {
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	h := func(kv ...string) http.Header {
		x := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			x.Add(kv[i], kv[i+1])
		}
		return x
	}
	cases := []struct {
		h    http.Header
		want time.Duration
	}{
		{h(), time.Hour},
		{h("Cache-Control", "max-age=120"), 2 * time.Minute},
		{h("Cache-Control", "public, max-age=999999"), 24 * time.Hour},
		{h("Cache-Control", "max-age=0"), 0},
		{h("Cache-Control", "no-cache"), 0},
		{h("Cache-Control", "max-age=abc"), 0},
		{h("Expires", "Mon, 02 Mar 2026 10:30:00 GMT"), 30 * time.Minute},
		{h("Expires", "Mon, 02 Mar 2026 10:30:00 GMT", "Date", "Mon, 02 Mar 2026 10:20:00 GMT"), 10 * time.Minute},
		{h("Expires", "0"), 0},
		{h("Expires", "Mon, 02 Mar 2026 10:30:00 GMT", "Cache-Control", "max-age=60"), time.Minute},
	}
	for _, c := range cases {
		if got := cacheTTL(c.h, now, time.Hour, 24*time.Hour); got != c.want {
			t.Errorf("%v: %v, want %v", c.h, got, c.want)
		}
	}
}

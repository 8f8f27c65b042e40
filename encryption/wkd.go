package encryption

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"go.uber.org/zap"
)

// WKD limits. A key with many certifications is rarely over 100 KB.
const (
	maxWKDBody     = 1 << 20
	maxRedirects   = 3
	foundTTL       = time.Hour       // a found key without caching headers
	absentTTL      = 5 * time.Minute // a 404 without caching headers
	maxFoundTTL    = 24 * time.Hour
	maxAbsentTTL   = time.Hour // "absent" is a reason to bounce: do not believe it for long
	maxConcurrency = 32        // WKD requests in flight per Lookup
)

const zbase32Alphabet = "ybndrfg8ejkmcpqxot1uwisza345h769"

// zbase32 encodes b in z-base-32 (http://philzimmermann.com/docs/human-oriented-base-32-encoding.txt),
// most significant bit first, without padding, as WKD's hashed local part.
func zbase32(b []byte) string {
	var sb strings.Builder
	var acc uint32
	bits := 0
	for _, c := range b {
		acc = acc<<8 | uint32(c)
		bits += 8
		for bits >= 5 {
			bits -= 5
			sb.WriteByte(zbase32Alphabet[(acc>>bits)&31])
		}
	}
	if bits > 0 {
		sb.WriteByte(zbase32Alphabet[(acc<<(5-bits))&31])
	}
	return sb.String()
}

// wkdURLs returns the advanced and direct method URLs for addr
// (draft-koch-openpgp-webkey-service §3.1). The hash is over the lowercased
// local part; l= carries it unchanged.
func wkdURLs(addr string) (advanced, direct string, err error) {
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 {
		return "", "", fmt.Errorf("%q is not an email address", addr)
	}
	local, domain := addr[:at], strings.ToLower(strings.TrimSuffix(addr[at+1:], "."))
	if strings.ContainsAny(domain, "/?#@:[] ") {
		return "", "", fmt.Errorf("%q has an invalid domain", addr)
	}
	sum := sha1.Sum([]byte(strings.ToLower(local)))
	hu := zbase32(sum[:])
	q := "?l=" + url.QueryEscape(local)
	advanced = "https://openpgpkey." + domain + "/.well-known/openpgpkey/" + domain + "/hu/" + hu + q
	direct = "https://" + domain + "/.well-known/openpgpkey/hu/" + hu + q
	return advanced, direct, nil
}

// dialError marks a failure to resolve or connect, the one failure of the
// advanced method after which the direct method is tried.
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// wkdClient fetches keys over HTTPS and caches the answers.
type wkdClient struct {
	http    *http.Client
	timeout time.Duration
	cache   *wkdCache
	health  *wkdHealth
	log     *zap.Logger
}

func newWKDClient(timeout time.Duration, caFile string, resolve map[string]string, cacheSize int, now func() time.Time, log *zap.Logger) (*wkdClient, error) {
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("encryption.openpgp.ca_file: %w", err)
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("encryption.openpgp.ca_file: %s holds no PEM certificate", caFile)
		}
	}
	resolved := map[string]string{}
	for h, a := range resolve {
		resolved[strings.ToLower(h)] = a
	}
	dialer := &net.Dialer{}
	tr := &http.Transport{
		Proxy: nil, // WKD goes straight to the domain's server
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if host, _, err := net.SplitHostPort(addr); err == nil {
				if to, ok := resolved[strings.ToLower(host)]; ok {
					addr = to
				}
			}
			c, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, &dialError{err}
			}
			return c, nil
		},
		TLSClientConfig:       &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
		MaxIdleConnsPerHost:   2,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	client := &http.Client{
		Transport: tr,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= maxRedirects {
				return errors.New("too many redirects")
			}
			if req.URL.Scheme != "https" {
				return fmt.Errorf("redirect to non-https %s", req.URL.Redacted())
			}
			return nil
		},
	}
	return &wkdClient{http: client, timeout: timeout, cache: newWKDCache(cacheSize, now), health: newWKDHealth(now(), log), log: log}, nil
}

func (w *wkdClient) close() { w.http.CloseIdleConnections() }

// wkdResult is one WKD answer about one address.
type wkdResult struct {
	outcome Outcome
	entity  *openpgp.Entity
	err     error
	method  string // "advanced" or "direct": which one answered
}

// lookup asks the advanced method, then the direct one if the advanced host
// cannot be resolved or connected to (draft §3.1: the direct method is for
// domains without the openpgpkey subdomain).
func (w *wkdClient) lookup(ctx context.Context, addr string, now time.Time) wkdResult {
	key := strings.ToLower(addr)
	if r, ok := w.cache.get(key); ok {
		return r
	}
	advanced, direct, err := wkdURLs(addr)
	if err != nil {
		return wkdResult{outcome: Absent, err: err}
	}
	r, ttl, err := w.fetch(ctx, addr, advanced, now)
	r.method = "advanced"
	var de *dialError
	if err != nil && errors.As(err, &de) && ctx.Err() == nil {
		w.log.Debug("wkd advanced host unreachable, trying direct", zap.String("rcpt", addr), zap.Error(err))
		r, ttl, err = w.fetch(ctx, addr, direct, now)
		r.method = "direct"
	}
	if err != nil {
		if ctx.Err() != nil {
			// Whatever failed last, the lookup ran out of time: say so,
			// and keep the context's error in the chain for the caller.
			err = fmt.Errorf("wkd: no answer within %v (%w): %w", w.timeout, ctx.Err(), err)
		}
		r = wkdResult{outcome: Unavailable, err: err, method: r.method}
		w.health.record(addr, r, now)
		return r
	}
	w.health.record(addr, r, now)
	if ttl > 0 {
		w.cache.put(key, r, ttl)
	}
	return r
}

// fetch GETs one WKD URL. A nil error means a definitive answer (found or
// absent) and the time it may be cached; an error means unavailable.
func (w *wkdClient) fetch(ctx context.Context, addr, u string, now time.Time) (wkdResult, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return wkdResult{}, 0, err
	}
	req.Header.Set("User-Agent", "foxproxy-wkd")
	start := time.Now()
	resp, err := w.http.Do(req)
	if err != nil {
		return wkdResult{}, 0, fmt.Errorf("wkd: %w", err)
	}
	defer resp.Body.Close()
	w.log.Debug("wkd answer", zap.String("rcpt", addr), zap.String("url", u), zap.Int("status", resp.StatusCode), zap.Duration("took", time.Since(start)))
	switch {
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		ttl := cacheTTL(resp.Header, now, absentTTL, maxAbsentTTL)
		return wkdResult{outcome: Absent, err: fmt.Errorf("wkd: no key published for %s (HTTP %d)", addr, resp.StatusCode)}, ttl, nil
	case resp.StatusCode != http.StatusOK:
		return wkdResult{}, 0, fmt.Errorf("wkd: HTTP %d from %s", resp.StatusCode, req.URL.Host)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxWKDBody+1))
	if err != nil {
		return wkdResult{}, 0, fmt.Errorf("wkd: reading the key from %s: %w", req.URL.Host, err)
	}
	if len(body) > maxWKDBody {
		return wkdResult{}, 0, fmt.Errorf("wkd: answer from %s is larger than %d bytes", req.URL.Host, maxWKDBody)
	}
	// Keys on WKD are binary (draft §3.1); armored ones are accepted too.
	ents, err := readKeys(body)
	if err != nil {
		return wkdResult{}, 0, fmt.Errorf("wkd: answer from %s is not an OpenPGP key: %w", req.URL.Host, err)
	}
	// Draft §3.1: the client must only use keys with a user ID for the
	// address asked for.
	var matching openpgp.EntityList
	for _, e := range ents {
		if hasAddress(e, addr, now) {
			matching = append(matching, e)
		}
	}
	if len(matching) == 0 {
		return wkdResult{}, 0, fmt.Errorf("wkd: key from %s has no user ID %s", req.URL.Host, addr)
	}
	ttl := cacheTTL(resp.Header, now, foundTTL, maxFoundTTL)
	e, err := usable(matching, now)
	if err != nil {
		return wkdResult{outcome: Absent, err: fmt.Errorf("wkd: %w", err)}, ttl, nil
	}
	return wkdResult{outcome: Found, entity: e}, ttl, nil
}

// cacheTTL reads Cache-Control max-age (RFC 9111 §5.2.2.1), else Expires
// against Date; no-store and no-cache (which would need revalidation) give 0.
func cacheTTL(h http.Header, now time.Time, def, limit time.Duration) time.Duration {
	ttl := def
	explicit := false
	for _, cc := range h.Values("Cache-Control") {
		for _, d := range strings.Split(cc, ",") {
			d = strings.ToLower(strings.TrimSpace(d))
			switch {
			case d == "no-store" || d == "no-cache":
				return 0
			case strings.HasPrefix(d, "max-age="):
				n, err := strconv.Atoi(strings.Trim(d[len("max-age="):], `"`))
				if err != nil || n < 0 {
					return 0 // RFC 9111 §4.2.1: an invalid max-age means stale
				}
				ttl, explicit = time.Duration(n)*time.Second, true
			}
		}
	}
	if !explicit {
		if e := h.Get("Expires"); e != "" {
			exp, err := http.ParseTime(e)
			if err != nil {
				return 0 // RFC 9111 §5.3: an invalid Expires means already expired
			}
			base := now
			if d, err := http.ParseTime(h.Get("Date")); err == nil {
				base = d
			}
			ttl = exp.Sub(base)
		}
	}
	if ttl <= 0 {
		return 0
	}
	return min(ttl, limit)
}

// wkdCache keeps definitive WKD answers (found and absent) until they
// expire. Unavailable is never cached: the next message asks again, so
// recovery is seen at once.
type wkdCache struct {
	mu    sync.Mutex
	size  int
	now   func() time.Time
	items map[string]cacheItem
}

type cacheItem struct {
	r       wkdResult
	expires time.Time
}

func newWKDCache(size int, now func() time.Time) *wkdCache {
	return &wkdCache{size: size, now: now, items: map[string]cacheItem{}}
}

func (c *wkdCache) get(key string) (wkdResult, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	it, ok := c.items[key]
	if !ok {
		return wkdResult{}, false
	}
	if !c.now().Before(it.expires) {
		delete(c.items, key)
		return wkdResult{}, false
	}
	return it.r, true
}

func (c *wkdCache) put(key string, r wkdResult, ttl time.Duration) {
	if c.size <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if _, ok := c.items[key]; !ok && len(c.items) >= c.size {
		for k, it := range c.items { // drop the expired first
			if !now.Before(it.expires) {
				delete(c.items, k)
			}
		}
		for k := range c.items { // then any: a miss only costs one request
			if len(c.items) < c.size {
				break
			}
			delete(c.items, k)
		}
	}
	c.items[key] = cacheItem{r: r, expires: now.Add(ttl)}
}

// readKeys parses one or more keys, armored (possibly several blocks) or
// binary.
func readKeys(data []byte) (openpgp.EntityList, error) {
	const begin = "-----BEGIN PGP "
	if !bytes.Contains(data, []byte(begin)) {
		return openpgp.ReadKeyRing(bytes.NewReader(data))
	}
	var all openpgp.EntityList
	for _, block := range bytes.Split(data, []byte(begin))[1:] {
		el, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(append([]byte(begin), block...)))
		if err != nil {
			return nil, err
		}
		all = append(all, el...)
	}
	return all, nil
}

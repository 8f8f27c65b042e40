package reputation

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/foxproxy/foxproxy/clock"
)

// Safe Browsing v4 Lookup API (threatMatches:find), as documented at
// https://developers.google.com/safe-browsing/v4/lookup-api and
// https://developers.google.com/safe-browsing/reference/rest/v4/threatMatches/find.
const (
	// SafeBrowsingName is the Safe Browsing backend's Name, the Zone of
	// its findings' items.
	SafeBrowsingName = "safebrowsing"

	DefaultSafeBrowsingURL      = "https://safebrowsing.googleapis.com"
	DefaultSafeBrowsingClientID = "foxproxy"
	DefaultSafeBrowsingVersion  = "1.0"
	DefaultSafeBrowsingTimeout  = 3 * time.Second
	// DefaultSafeBrowsingMaxResponse bounds a response body: 500 matches
	// of a few hundred bytes each fit many times over.
	DefaultSafeBrowsingMaxResponse = 1 << 20
	DefaultSafeBrowsingCacheSize   = 10000
	// DefaultSafeBrowsingMaxCache caps a match's cacheDuration.
	DefaultSafeBrowsingMaxCache = time.Hour
	// DefaultSafeBrowsingProbeURL is the known-clean URL of the probe:
	// example.com is reserved for documentation (RFC 2606 §3).
	DefaultSafeBrowsingProbeURL = "http://example.com/"

	// safeBrowsingMaxEntries is the API's limit of URLs per request.
	safeBrowsingMaxEntries = 500
)

// ErrSafeBrowsing is wrapped by every error of the Safe Browsing backend.
var ErrSafeBrowsing = errors.New("safe browsing")

// DefaultThreatTypes returns the threat types asked for by default and
// their categories.
func DefaultThreatTypes() map[string]string {
	return map[string]string{
		"SOCIAL_ENGINEERING":              "phish",
		"MALWARE":                         "malware",
		"UNWANTED_SOFTWARE":               "unwanted",
		"POTENTIALLY_HARMFUL_APPLICATION": "harmful",
	}
}

// SafeBrowsingConfig configures the Safe Browsing backend.
type SafeBrowsingConfig struct {
	// BaseURL is the API's scheme and host (default
	// DefaultSafeBrowsingURL); tests point it at a local server.
	BaseURL string
	// APIKey is the Google API key; required. It travels in the request
	// URL, as the API wants, and appears in no error or log line.
	APIKey string
	// ClientID and ClientVersion identify the implementation to Google,
	// not the user (defaults "foxproxy", "1.0").
	ClientID, ClientVersion string
	// Timeout bounds one request (default 3s); the message's budget may
	// end it sooner.
	Timeout time.Duration
	// ThreatTypes maps the threat types asked for to categories (default
	// DefaultThreatTypes()).
	ThreatTypes map[string]string
	// MaxResponseBytes bounds a response body (default 1 MiB).
	MaxResponseBytes int64
	// CacheSize bounds the cache of matches (default 10000 URLs; negative:
	// no cache). Clean answers are never cached: the Lookup API gives no
	// duration for them.
	CacheSize int
	// MaxCacheDuration caps a match's cacheDuration (default 1h).
	MaxCacheDuration time.Duration
	// ProbeURL is the known-clean URL the breaker's probe looks up
	// (default http://example.com/).
	ProbeURL string
	// Transport carries the requests (default: a clone of
	// http.DefaultTransport, which honours HTTPS_PROXY).
	Transport http.RoundTripper
	// Clock drives cache expiry (default: WRS's clock, else the system
	// clock).
	Clock clock.Clock
}

var threatTypeName = regexp.MustCompile(`^[A-Z][A-Z_]*$`)

// Validate reports the first problem with c: no API key, a base or probe
// URL that is not http(s)://host, a threat type that is not an upper-case
// enum name, a bad category, a negative bound.
func (c SafeBrowsingConfig) Validate() error {
	if strings.TrimSpace(c.APIKey) == "" || strings.ContainsFunc(c.APIKey, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return errors.New("safebrowsing: api_key is missing or holds white space")
	}
	if c.BaseURL != "" {
		u, err := url.Parse(c.BaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return fmt.Errorf("safebrowsing: base_url %q: want http(s)://host[:port][/path]", c.BaseURL)
		}
	}
	if c.ProbeURL != "" {
		u, err := url.Parse(c.ProbeURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("safebrowsing: probe_url %q: not an http(s) URL", c.ProbeURL)
		}
	}
	types := make([]string, 0, len(c.ThreatTypes))
	for t := range c.ThreatTypes {
		types = append(types, t)
	}
	slices.Sort(types)
	for _, t := range types {
		if !threatTypeName.MatchString(t) {
			return fmt.Errorf("safebrowsing: threat type %q: not a Safe Browsing threat type name", t)
		}
		if err := validCategory(c.ThreatTypes[t]); err != nil {
			return fmt.Errorf("safebrowsing: threat type %s: %w", t, err)
		}
	}
	switch {
	case c.Timeout < 0, c.MaxCacheDuration < 0:
		return errors.New("safebrowsing: negative timeout or max_cache_duration")
	case c.MaxResponseBytes < 0:
		return errors.New("safebrowsing: negative max_response_bytes")
	}
	return nil
}

// SafeBrowsing is the Backend for the Google Safe Browsing v4 Lookup API:
// all of a message's URLs in one request (split at the API's 500), matches
// cached for their cacheDuration.
type SafeBrowsing struct {
	endpoint   string // holds the API key: never log or wrap it
	client     *http.Client
	transport  *http.Transport // ours to close, nil if configured
	clientInfo sbClient
	types      []string // sorted
	categories map[string]string
	maxResp    int64
	maxCache   time.Duration
	cache      *ttlCache[string, []string] // normalised URL → categories
	probeURL   string
	clock      clock.Clock
}

var _ Backend = (*SafeBrowsing)(nil)

// NewSafeBrowsing returns the backend for cfg.
func NewSafeBrowsing(cfg SafeBrowsingConfig) (*SafeBrowsing, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	base := cfg.BaseURL
	if base == "" {
		base = DefaultSafeBrowsingURL
	}
	s := &SafeBrowsing{
		endpoint: strings.TrimSuffix(base, "/") + "/v4/threatMatches:find?key=" + url.QueryEscape(cfg.APIKey),
		clientInfo: sbClient{
			ClientID:      cmpOr(cfg.ClientID, DefaultSafeBrowsingClientID),
			ClientVersion: cmpOr(cfg.ClientVersion, DefaultSafeBrowsingVersion),
		},
		categories: cfg.ThreatTypes,
		maxResp:    cfg.MaxResponseBytes,
		maxCache:   orDefault(cfg.MaxCacheDuration, DefaultSafeBrowsingMaxCache),
		probeURL:   cmpOr(cfg.ProbeURL, DefaultSafeBrowsingProbeURL),
		clock:      cfg.Clock,
	}
	if s.maxResp == 0 {
		s.maxResp = DefaultSafeBrowsingMaxResponse
	}
	if len(s.categories) == 0 {
		s.categories = DefaultThreatTypes()
	} else {
		s.categories = make(map[string]string, len(cfg.ThreatTypes))
		for k, v := range cfg.ThreatTypes {
			s.categories[k] = v
		}
	}
	for t := range s.categories {
		s.types = append(s.types, t)
	}
	slices.Sort(s.types)
	if s.clock == nil {
		s.clock = clock.System()
	}
	switch {
	case cfg.CacheSize == 0:
		s.cache = newTTLCache[string, []string](DefaultSafeBrowsingCacheSize)
	case cfg.CacheSize > 0:
		s.cache = newTTLCache[string, []string](cfg.CacheSize)
	}
	timeout := orDefault(cfg.Timeout, DefaultSafeBrowsingTimeout)
	rt := cfg.Transport
	if rt == nil {
		s.transport = http.DefaultTransport.(*http.Transport).Clone()
		s.transport.MaxIdleConnsPerHost = 8
		s.transport.ResponseHeaderTimeout = timeout
		rt = s.transport
	}
	s.client = &http.Client{
		Transport: rt,
		Timeout:   timeout,
		// The API does not redirect; following one would send the key
		// (in the URL) somewhere else. A 3xx is an error like a 5xx.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return s, nil
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Name implements Backend.
func (s *SafeBrowsing) Name() string { return SafeBrowsingName }

// The request and response bodies of threatMatches:find.
type (
	sbClient struct {
		ClientID      string `json:"clientId"`
		ClientVersion string `json:"clientVersion"`
	}
	sbEntry struct {
		URL string `json:"url"`
	}
	sbRequest struct {
		Client     sbClient `json:"client"`
		ThreatInfo struct {
			ThreatTypes      []string  `json:"threatTypes"`
			PlatformTypes    []string  `json:"platformTypes"`
			ThreatEntryTypes []string  `json:"threatEntryTypes"`
			ThreatEntries    []sbEntry `json:"threatEntries"`
		} `json:"threatInfo"`
	}
	sbMatch struct {
		ThreatType      string  `json:"threatType"`
		PlatformType    string  `json:"platformType"`
		ThreatEntryType string  `json:"threatEntryType"`
		Threat          sbEntry `json:"threat"`
		CacheDuration   string  `json:"cacheDuration"`
	}
	sbResponse struct {
		Matches []sbMatch `json:"matches"`
	}
)

// sbError is a failed request. kind is short enough for a finding's
// Detail; err, if any, is the cause (never the request URL, which holds
// the key).
type sbError struct {
	kind string
	err  error
}

func (e *sbError) Error() string {
	if e.err == nil {
		return "safebrowsing: " + e.kind
	}
	return "safebrowsing: " + e.kind + ": " + e.err.Error()
}

func (e *sbError) Unwrap() []error {
	if e.err == nil {
		return []error{ErrSafeBrowsing}
	}
	return []error{ErrSafeBrowsing, e.err}
}

// Lookup implements Backend. URLs whose match is cached are answered from
// the cache; the rest go to the API in one request per 500, concurrently.
// The hits are one per listed URL, What being its host.
func (s *SafeBrowsing) Lookup(ctx context.Context, q *Query) (BackendResult, error) {
	now := s.clock.Now()
	cats := make(map[string][]string)
	var ask []string
	for _, u := range q.URLs {
		if c, ok := s.cache.get(u.Normalized, now); ok {
			cats[u.Normalized] = c
		} else {
			ask = append(ask, u.Normalized)
		}
	}
	res := BackendResult{Cached: true}
	if len(ask) > 0 {
		res.Cached = false
		// With several batches some may answer while others fail: their
		// matches, like the cached ones, are facts all the same.
		found, err := s.findAll(ctx, ask)
		for u, c := range found {
			cats[u] = c
		}
		res.Hits = s.hits(q, cats)
		return res, err
	}
	res.Hits = s.hits(q, cats)
	return res, nil
}

func (s *SafeBrowsing) hits(q *Query, cats map[string][]string) []Hit {
	var hits []Hit
	for _, u := range q.URLs {
		if c := cats[u.Normalized]; len(c) > 0 {
			hits = append(hits, Hit{What: u.Host, URL: u.Normalized, Categories: c})
		}
	}
	return hits
}

// findAll asks about urls in batches of the API's limit and returns the
// categories of the listed ones, caching each for its cacheDuration.
func (s *SafeBrowsing) findAll(ctx context.Context, urls []string) (map[string][]string, error) {
	var batches [][]string
	for len(urls) > 0 {
		n := min(len(urls), safeBrowsingMaxEntries)
		batches = append(batches, urls[:n])
		urls = urls[n:]
	}
	results := make([][]sbMatch, len(batches))
	errs := make([]error, len(batches))
	if len(batches) == 1 {
		results[0], errs[0] = s.find(ctx, batches[0])
	} else {
		var wg sync.WaitGroup
		for i, b := range batches {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i], errs[i] = s.find(ctx, b)
			}()
		}
		wg.Wait()
	}
	asked := make(map[string]bool)
	for _, b := range batches {
		for _, u := range b {
			asked[u] = true
		}
	}
	type listing struct {
		cats []string
		ttl  time.Duration
	}
	found := make(map[string]*listing)
	for _, ms := range results {
		for _, m := range ms {
			if !asked[m.Threat.URL] {
				continue // not a URL we asked about: nothing to pin it on
			}
			cat := s.categories[m.ThreatType]
			if cat == "" {
				cat = CategoryListed
			}
			ttl := s.cacheDuration(m.CacheDuration)
			l := found[m.Threat.URL]
			if l == nil {
				l = &listing{ttl: ttl}
				found[m.Threat.URL] = l
			}
			l.cats = append(l.cats, cat)
			l.ttl = min(l.ttl, ttl) // never cache longer than any match allows
		}
	}
	now := s.clock.Now()
	out := make(map[string][]string, len(found))
	for u, l := range found {
		slices.Sort(l.cats)
		l.cats = slices.Compact(l.cats)
		out[u] = l.cats
		if l.ttl > 0 {
			s.cache.put(u, l.cats, now.Add(l.ttl))
		}
	}
	return out, errors.Join(errs...)
}

// cacheDuration parses a google.protobuf.Duration in its JSON form
// ("300s", "300.000s"), capped at MaxCacheDuration; 0 for anything else.
func (s *SafeBrowsing) cacheDuration(v string) time.Duration {
	num, ok := strings.CutSuffix(v, "s")
	if !ok {
		return 0
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f <= 0 || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0
	}
	if f >= s.maxCache.Seconds() {
		return s.maxCache
	}
	return time.Duration(f * float64(time.Second))
}

// find sends one threatMatches:find request.
func (s *SafeBrowsing) find(ctx context.Context, urls []string) ([]sbMatch, error) {
	var req sbRequest
	req.Client = s.clientInfo
	req.ThreatInfo.ThreatTypes = s.types
	req.ThreatInfo.PlatformTypes = []string{"ANY_PLATFORM"}
	req.ThreatInfo.ThreatEntryTypes = []string{"URL"}
	req.ThreatInfo.ThreatEntries = make([]sbEntry, len(urls))
	for i, u := range urls {
		req.ThreatInfo.ThreatEntries[i].URL = u
	}
	body, err := json.Marshal(&req)
	if err != nil {
		return nil, &sbError{kind: "encoding request", err: err}
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, s.endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, &sbError{kind: "building request"} // the error would quote the URL
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("Accept", "application/json")
	hr.Header.Set("User-Agent", s.clientInfo.ClientID+"/"+s.clientInfo.ClientVersion)
	resp, err := s.client.Do(hr)
	if err != nil {
		// *url.Error quotes the request URL, key included: keep only
		// the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, &sbError{kind: "request failed", err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// Read a little so the connection can be reused.
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil, &sbError{kind: "HTTP " + strconv.Itoa(resp.StatusCode)}
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return nil, &sbError{kind: fmt.Sprintf("content type %q is not JSON", cut(resp.Header.Get("Content-Type"), 40))}
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, s.maxResp+1))
	if err != nil {
		return nil, &sbError{kind: "reading response", err: err}
	}
	if int64(len(data)) > s.maxResp {
		return nil, &sbError{kind: fmt.Sprintf("response larger than %d bytes", s.maxResp)}
	}
	// The answer is an object: {} when nothing matched. "null", an array
	// or trailing garbage is not the documented shape.
	if t := bytes.TrimSpace(data); len(t) == 0 || t[0] != '{' {
		return nil, &sbError{kind: "malformed JSON", err: errors.New("not a JSON object")}
	}
	var r sbResponse
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, &sbError{kind: "malformed JSON", err: err}
	}
	return r.Matches, nil
}

func cut(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// Probe implements Backend: a lookup of the known-clean ProbeURL must
// answer 200 with a JSON object, whatever it says about the URL.
func (s *SafeBrowsing) Probe(ctx context.Context) error {
	_, err := s.find(ctx, []string{s.probeURL})
	return err
}

// Close releases idle connections.
func (s *SafeBrowsing) Close() error {
	if s.transport != nil {
		s.transport.CloseIdleConnections()
	}
	return nil
}

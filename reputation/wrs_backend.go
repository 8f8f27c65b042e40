package reputation

import (
	"context"

	"github.com/foxproxy/foxproxy/links"
)

// Backend is one source of URL reputation for WRS: a DNS URI block list
// (see NewDNSListBackend) or the Safe Browsing Lookup API (see
// NewSafeBrowsing). WRS wraps each backend in its own circuit breaker.
//
// Implementations must be safe for concurrent use.
type Backend interface {
	// Name identifies the backend in findings (pipeline.Item.Zone), logs
	// and health: a zone name, or "safebrowsing". Names are unique within
	// one WRS.
	Name() string

	// Lookup judges one message's URLs. It must honour ctx (the message's
	// budget) and return promptly when it ends. q and its slices are
	// shared with other backends and must not be modified or retained.
	//
	// The result's Hits are facts; a non-nil error means the answer is
	// incomplete: the service could not be asked, did not answer in time
	// or answered something unusable. Lookup may return hits together
	// with an error (some keys answered, others failed): WRS reports the
	// hits and names the failure. Set Result.Cached when no part of the
	// answer came from the service itself, so the breaker does not take a
	// cache hit for a sign of health.
	Lookup(ctx context.Context, q *Query) (BackendResult, error)

	// Probe checks, independently of any message, that the service
	// answers correctly (an RFC 5782 §5 test point, a known-clean URL).
	// nil means healthy. The breaker calls it while open, with its own
	// deadline in ctx.
	Probe(ctx context.Context) error
}

// Query is what WRS asks the backends about one message.
type Query struct {
	// URLs are the message's distinct normalised URLs (links.Result.URLs).
	URLs []links.URL
	// Keys are their distinct lookup keys (links.Result.Keys): registrable
	// domains, hosts that differ from them, IP addresses.
	Keys []links.Key
}

// BackendResult is a backend's answer for one message.
type BackendResult struct {
	// Hits are the listed keys or URLs, at most one per key or URL.
	Hits []Hit
	// Cached is true when every answer came from a cache.
	Cached bool
}

// Hit is one listed key or URL.
type Hit struct {
	// What names what is listed, for findings and logs: the domain, host
	// or IP address (for a URL hit, the URL's host).
	What string
	// Kind is the kind of key that is listed (a DNS list hit), or 0 for a
	// hit on one URL (Safe Browsing), which URL then names.
	Kind links.KeyKind
	// URL is the listed URL's normalised form for a URL hit.
	URL string
	// Categories are the categories of the listing, sorted, without
	// duplicates, at least one.
	Categories []string
}

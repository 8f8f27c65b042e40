package encryption

import (
	"context"
	"errors"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/foxproxy/foxproxy/health"
)

// States of the key service (WKD) in WKDHealth.
const (
	// WKDUnchecked: no lookup has gone to a WKD server yet. Nothing is
	// known to be wrong, so it counts as healthy.
	WKDUnchecked = health.Unchecked
	// WKDUp: the last lookup got an answer (a key, or 404/410).
	WKDUp = health.Up
	// WKDFailing: the last lookup got no usable answer (the appliance's
	// failure table, row 5: the exception action applies).
	WKDFailing health.State = "failing"
)

// WKDHealth is the key service's health as foxproxy's own lookups saw it.
// WKD is not one server: each recipient domain publishes its keys itself,
// so the state is that of the last lookup that went to the network (an
// answer from the cache says nothing about any server), and the counters
// tell how often lookups failed overall.
type WKDHealth struct {
	State health.State
	// Since is when State was entered (the gateway's start for the first).
	Since time.Time
	// LastDomain is the recipient domain of the last lookup.
	LastDomain string
	// LastError is the last failure, with its domain; never a local part.
	LastError string
	// Lookups went to the network; each ended Found, Absent or
	// Unavailable. Probes counts Probe's lookups among them.
	Lookups, Found, Absent, Unavailable, Probes uint64
}

// OK reports whether the state counts as healthy.
func (h WKDHealth) OK() bool { return h.State != WKDFailing }

// wkdHealth records the outcome of each WKD lookup that went to the
// network. It is safe for concurrent use.
type wkdHealth struct {
	log *zap.Logger

	mu sync.Mutex
	h  WKDHealth
	// retry is the address whose lookup failed last, which Probe asks
	// again while the state is failing. Memory only: never shown.
	retry string
}

func newWKDHealth(now time.Time, log *zap.Logger) *wkdHealth {
	return &wkdHealth{log: log, h: WKDHealth{State: WKDUnchecked, Since: now}}
}

func (w *wkdHealth) record(addr string, r wkdResult, now time.Time) {
	domain := addr[strings.LastIndexByte(addr, '@')+1:]
	w.mu.Lock()
	defer w.mu.Unlock()
	w.h.Lookups++
	w.h.LastDomain = domain
	to := WKDUp
	switch r.outcome {
	case Found:
		w.h.Found++
	case Absent:
		w.h.Absent++
	default:
		w.h.Unavailable++
		to = WKDFailing
		w.h.LastError = domain + ": " + strings.ReplaceAll(redactURLs(r.err), addr, "<recipient>")
		w.retry = addr
	}
	from := w.h.State
	if to == from {
		return
	}
	w.h.State, w.h.Since = to, now
	if to == WKDFailing {
		w.log.Warn("dependency state changed", zap.String("kind", "encryption"), zap.String("name", "wkd"),
			zap.String("from", string(from)), zap.String("to", string(to)), zap.String("reason", w.h.LastError))
		return
	}
	w.retry = ""
	w.log.Info("dependency state changed", zap.String("kind", "encryption"), zap.String("name", "wkd"),
		zap.String("from", string(from)), zap.String("to", string(to)), zap.String("reason", "answer from "+domain))
}

func (w *wkdHealth) snapshot() WKDHealth {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.h
}

// probeAddr is the address to ask again, "" when the service is not
// failing; it counts the probe.
func (w *wkdHealth) probeAddr() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.h.State != WKDFailing || w.retry == "" {
		return ""
	}
	w.h.Probes++
	return w.retry
}

// redactURLs is err's text with each request URL cut to its host: the
// path holds the hashed local part and the query the local part itself
// (draft-koch-openpgp-webkey-service §3.1), which the status page must not
// show.
func redactURLs(err error) string {
	if err == nil {
		return "no answer"
	}
	msg := err.Error()
	var ue *url.Error
	for e := err; e != nil && errors.As(e, &ue); e = ue.Err {
		host := "?"
		if u, perr := url.Parse(ue.URL); perr == nil {
			host = u.Host
		}
		msg = strings.ReplaceAll(msg, strconv.Quote(ue.URL), "https://"+host+"/…")
		msg = strings.ReplaceAll(msg, ue.URL, "https://"+host+"/…")
	}
	return msg
}

// WKDHealth returns the key service's health; ok is false when WKD is off.
func (g *Gateway) WKDHealth() (h WKDHealth, ok bool) {
	if g.wkd == nil {
		return WKDHealth{}, false
	}
	return g.wkd.health.snapshot(), true
}

var _ health.Reporter = (*Gateway)(nil)

// Reports implements health.Reporter: when WKD is on, the key service's
// row (kind "encryption", name "wkd"; the appliance's failure table, row
// 5): the state of the last lookup that went to a WKD server, probed
// again while it is failing (Probe). Without WKD there is no row.
func (g *Gateway) Reports() []health.Report {
	h, ok := g.WKDHealth()
	if !ok {
		return nil
	}
	r := health.Report{Kind: "encryption", Name: "wkd", State: h.State, OK: h.OK(), Since: h.Since,
		LastError: h.LastError,
		Counters: map[string]uint64{"lookups": h.Lookups, "found": h.Found, "absent": h.Absent,
			"unavailable": h.Unavailable, "probes": h.Probes}}
	if h.LastDomain != "" {
		r.Detail = "last lookup: " + h.LastDomain
	}
	if !r.OK {
		r.Detail += "; copies without a key: encryption.on_key_service_unavailable=" + g.cfg.OnKeyServiceUnavailable
	}
	return []health.Report{r}
}

// Probe asks again, while the key service is failing, for the address
// whose lookup failed last, so that its recovery shows within one probe
// interval even while no mail to encrypt arrives. Otherwise it sends
// nothing: the lookups for mail are the service's probes, and asking a
// domain foxproxy has no mail for would be neither cheap nor honest.
func (g *Gateway) Probe(ctx context.Context) {
	if g.wkd == nil {
		return
	}
	addr := g.wkd.health.probeAddr()
	if addr == "" {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, g.wkd.timeout)
	defer cancel()
	g.wkd.lookup(ctx, addr, g.now())
}

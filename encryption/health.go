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
)

// States of the key service (WKD) in WKDHealth.
const (
	// WKDUnchecked: no lookup has gone to a WKD server yet. Nothing is
	// known to be wrong, so it counts as healthy.
	WKDUnchecked = "unchecked"
	// WKDUp: the last lookup got an answer (a key, or 404/410).
	WKDUp = "up"
	// WKDFailing: the last lookup got no usable answer (the appliance's
	// failure table, row 5: the exception action applies).
	WKDFailing = "failing"
)

// WKDHealth is the key service's health as foxproxy's own lookups saw it.
// WKD is not one server: each recipient domain publishes its keys itself,
// so the state is that of the last lookup that went to the network (an
// answer from the cache says nothing about any server), and the counters
// tell how often lookups failed overall.
type WKDHealth struct {
	State string
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
			zap.String("from", from), zap.String("to", to), zap.String("reason", w.h.LastError))
		return
	}
	w.retry = ""
	w.log.Info("dependency state changed", zap.String("kind", "encryption"), zap.String("name", "wkd"),
		zap.String("from", from), zap.String("to", to), zap.String("reason", "answer from "+domain))
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

package encryption

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/foxproxy/foxproxy/settings"
)

// The key service's health follows the lookups that went to a WKD server,
// a probe re-asks only while the last one failed, and nothing shown names
// a recipient's local part.
func TestWKDHealth(t *testing.T) {
	w := newWKDServer(t, "openpgpkey.broken.test")
	adv, _ := urls(t, "gone@broken.test")
	w.set(t, adv, 503, []byte("maintenance"), nil)
	resolve := w.resolve
	resolve["openpgpkey.down.test"] = closedPort(t)
	resolve["down.test"] = closedPort(t)
	cfg := testConfig(t)
	cfg.OpenPGP.WKD = true
	cfg.OpenPGP.CAFile = w.caFile
	cfg.OpenPGP.Resolve = resolve
	cfg.OpenPGP.Timeout = settings.Duration(2 * time.Second)
	g, logs := newGateway(t, cfg)
	ctx := context.Background()

	health := func() WKDHealth {
		t.Helper()
		h, ok := g.WKDHealth()
		if !ok {
			t.Fatal("WKD on, but no health")
		}
		return h
	}
	if h := health(); h.State != WKDUnchecked || !h.OK() || h.Lookups != 0 {
		t.Fatalf("at start: %+v", h)
	}
	g.Probe(ctx) // nothing failed: nothing to ask
	if n := w.count(adv); n != 0 {
		t.Fatalf("probe while unchecked sent %d requests", n)
	}

	g.Lookup(ctx, []string{"gone@broken.test"})
	h := health()
	if h.State != WKDFailing || h.OK() || h.Unavailable != 1 || h.Lookups != 1 || h.LastDomain != "broken.test" ||
		!strings.Contains(h.LastError, "broken.test") || !strings.Contains(h.LastError, "HTTP 503") {
		t.Fatalf("after a 503: %+v", h)
	}
	g.Probe(ctx)
	if h := health(); w.count(adv) != 2 || h.State != WKDFailing || h.Probes != 1 || h.Lookups != 2 {
		t.Fatalf("probe while failing: %d requests, %+v", w.count(adv), h)
	}

	w.set(t, adv, 404, nil, nil) // the server is back: no key for gone@
	g.Probe(ctx)
	h = health()
	if h.State != WKDUp || !h.OK() || h.Absent != 1 || h.Probes != 2 || h.LastError == "" {
		t.Fatalf("after recovery: %+v", h)
	}
	g.Probe(ctx) // up: nothing to ask
	g.Lookup(ctx, []string{"gone@broken.test"})
	if n, h := w.count(adv), health(); n != 3 || h.Lookups != 3 || h.Probes != 2 {
		t.Fatalf("probe while up or a cached answer went out: %d requests, %+v", n, h)
	}

	// A connection error names the URL, whose query holds the local part.
	g.Lookup(ctx, []string{"secretname@down.test"})
	h = health()
	if h.State != WKDFailing || strings.Contains(h.LastError, "secretname") || !strings.Contains(h.LastError, "down.test") {
		t.Fatalf("connection refused: %+v", h)
	}

	var changes []string
	for _, e := range logs.FilterMessage("dependency state changed").All() {
		m := e.ContextMap()
		changes = append(changes, m["from"].(string)+">"+m["to"].(string))
		if strings.Contains(m["reason"].(string), "secretname") || strings.Contains(m["reason"].(string), "gone") {
			t.Errorf("state change log names a local part: %v", m)
		}
	}
	if strings.Join(changes, " ") != "unchecked>failing failing>up up>failing" {
		t.Fatalf("state changes logged: %v", changes)
	}
}

func TestWKDHealthOff(t *testing.T) {
	g, _ := newGateway(t, testConfig(t))
	if _, ok := g.WKDHealth(); ok {
		t.Fatal("WKD off, but health reported")
	}
	g.Probe(context.Background()) // must not panic
}

package clicktime

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// fakeChecker is an in-process URLChecker: hosts in listed are listed as
// phish, and err, when set, is every answer.
type fakeChecker struct {
	listed map[string]bool
	err    error
}

func (f fakeChecker) CheckURL(_ context.Context, u string) (CheckResult, error) {
	if f.err != nil {
		return CheckResult{}, f.err
	}
	if f.listed[hostOf(u)] {
		return CheckResult{Listed: true, Categories: []string{"phish"}, Zone: "dbl.example.test"}, nil
	}
	return CheckResult{}, nil
}

func newTestHandler(t *testing.T, c URLChecker, mode string) (*Handler, *observer.ObservedLogs, *prometheus.Registry) {
	t.Helper()
	core, logs := observer.New(zap.InfoLevel)
	reg := prometheus.NewRegistry()
	h, err := NewHandler(HandlerConfig{Signer: testSigner(t, "k1"), Checker: c, OnUnavailable: mode,
		Logger: zap.New(core), Metrics: NewMetrics(reg)})
	if err != nil {
		t.Fatal(err)
	}
	return h, logs, reg
}

func get(h http.Handler, path string) *http.Response {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Result()
}

func bodyOf(r *http.Response) string {
	b, _ := io.ReadAll(r.Body)
	return string(b)
}

func counter(t *testing.T, reg *prometheus.Registry, verdict string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "foxproxy_clicks_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == verdict {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no foxproxy_clicks_total{verdict=%q}", verdict)
	return 0
}

func TestHandler(t *testing.T) {
	s := testSigner(t, "k1")
	evil := "https://login.evil.example/a?b=<script>alert(1)</script>&c=\"q\""
	clean := "https://www.example.org/path?user=alice@example.org"
	listed := fakeChecker{listed: map[string]bool{"login.evil.example": true}}
	down := fakeChecker{err: errors.New("wrs: dbl.example.test: breaker open")}

	t.Run("clean redirects", func(t *testing.T) {
		h, logs, reg := newTestHandler(t, listed, "")
		r := get(h, "/c/"+s.Token(clean, "msg-1"))
		if r.StatusCode != http.StatusFound || r.Header.Get("Location") != clean {
			t.Fatalf("%d Location %q", r.StatusCode, r.Header.Get("Location"))
		}
		if r.Header.Get("Referrer-Policy") != "no-referrer" || r.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("headers %v", r.Header)
		}
		e := logs.All()[0].ContextMap()
		if e["verdict"] != "clean" || e["msg_ref"] != "msg-1" || e["host"] != "www.example.org" || e["key_id"] != "k1" {
			t.Fatalf("log %v", e)
		}
		// Privacy: neither path nor query is logged.
		for _, l := range logs.All() {
			for _, v := range l.ContextMap() {
				if s, ok := v.(string); ok && strings.Contains(s, "alice") {
					t.Fatalf("log holds the query: %v", l.ContextMap())
				}
			}
		}
		if counter(t, reg, "clean") != 1 {
			t.Fatal("not counted")
		}
	})
	t.Run("listed is blocked", func(t *testing.T) {
		h, logs, reg := newTestHandler(t, listed, "allow")
		r := get(h, "/c/"+s.Token(evil, "msg-2"))
		b := bodyOf(r)
		if r.StatusCode != http.StatusForbidden || r.Header.Get("Location") != "" {
			t.Fatalf("%d %q", r.StatusCode, r.Header.Get("Location"))
		}
		if !strings.Contains(b, "phish") || strings.Contains(b, "<script>") || !strings.Contains(b, "&lt;script&gt;") ||
			strings.Contains(b, `href="https://login.evil`) {
			t.Fatalf("block page:\n%s", b)
		}
		if logs.All()[0].ContextMap()["zone"] != "dbl.example.test" || counter(t, reg, "listed") != 1 {
			t.Fatal("not logged or counted")
		}
	})
	t.Run("unavailable: warn", func(t *testing.T) {
		h, _, reg := newTestHandler(t, down, "warn")
		r := get(h, "/c/"+s.Token(evil, "m"))
		b := bodyOf(r)
		if r.StatusCode != http.StatusOK || !strings.Contains(b, `id="continue" href="https://login.evil.example/a?b=%3cscript%3ealert%281%29%3c/script%3e&amp;c=%22q%22"`) ||
			strings.Contains(b, "<script>") || !strings.Contains(b, `name="viewport"`) {
			t.Fatalf("%d warning page:\n%s", r.StatusCode, b)
		}
		if counter(t, reg, "unavailable_warn") != 1 {
			t.Fatal("not counted")
		}
	})
	t.Run("unavailable: allow", func(t *testing.T) {
		h, _, _ := newTestHandler(t, down, "allow")
		if r := get(h, "/c/"+s.Token(clean, "m")); r.StatusCode != http.StatusFound || r.Header.Get("Location") != clean {
			t.Fatalf("%d %q", r.StatusCode, r.Header.Get("Location"))
		}
	})
	t.Run("unavailable: block", func(t *testing.T) {
		h, _, _ := newTestHandler(t, down, "block")
		r := get(h, "/c/"+s.Token(clean, "m"))
		if b := bodyOf(r); r.StatusCode != http.StatusServiceUnavailable || r.Header.Get("Location") != "" || strings.Contains(b, `id="continue"`) {
			t.Fatalf("%d %q\n%s", r.StatusCode, r.Header.Get("Location"), b)
		}
	})
	t.Run("invalid token: 400, never a redirect", func(t *testing.T) {
		h, logs, reg := newTestHandler(t, listed, "allow")
		other := testSigner(t, "k9")
		for _, p := range []string{"/c/", "/c/garbage", "/c/" + s.Token(clean, "m")[:40], "/c/" + other.Token(clean, "m")} {
			r := get(h, p)
			if r.StatusCode != http.StatusBadRequest || r.Header.Get("Location") != "" || !strings.Contains(bodyOf(r), "not valid") {
				t.Fatalf("%s: %d %q", p, r.StatusCode, r.Header.Get("Location"))
			}
		}
		if counter(t, reg, "invalid") != 4 || !strings.Contains(logs.All()[3].ContextMap()["reason"].(string), "unknown key") {
			t.Fatalf("invalid clicks not counted or logged: %v", logs.All()[3].ContextMap())
		}
	})
	t.Run("base path, healthz, other paths and methods", func(t *testing.T) {
		h, _, _ := newTestHandler(t, listed, "")
		if r := get(h, "/click/c/"+s.Token(clean, "m")); r.StatusCode != http.StatusFound {
			t.Fatalf("under a base path: %d", r.StatusCode)
		}
		if r := get(h, "/healthz"); r.StatusCode != http.StatusOK {
			t.Fatalf("healthz %d", r.StatusCode)
		}
		if r := get(h, "/"); r.StatusCode != http.StatusNotFound {
			t.Fatalf("/ %d", r.StatusCode)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/c/"+s.Token(clean, "m"), nil))
		if rec.Code != http.StatusMethodNotAllowed {
			t.Fatalf("POST %d", rec.Code)
		}
	})
}

func TestLocationURL(t *testing.T) {
	if got := locationURL("https://a.example/caf\xc3\xa9"); got != "https://a.example/caf%C3%A9" {
		t.Fatal(got)
	}
}

func TestNewHandlerRefuses(t *testing.T) {
	s := testSigner(t, "k1")
	for _, c := range []HandlerConfig{{Checker: fakeChecker{}}, {Signer: s}, {Signer: s, Checker: fakeChecker{}, OnUnavailable: "maybe"}} {
		if _, err := NewHandler(c); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

package reputation

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/foxproxy/foxproxy/pipeline"
)

const breakerMsg = "WRS backend state changed"

// memContent is a spooled message in memory.
type memContent []byte

func (m memContent) Size() int64     { return int64(len(m)) }
func (m memContent) Open() io.Reader { return bytes.NewReader(m) }
func (m memContent) String() string  { return string(m) }
func tx(body string) *pipeline.Transaction {
	return &pipeline.Transaction{ID: "m1", QueueID: "Q1", Message: memContent(body)}
}

// textMail is a plain-text message naming the given URLs, one a line.
func textMail(links ...string) string {
	return "From: a@sender.example\r\nTo: b@rcpt.example\r\nSubject: links\r\n\r\nHello,\r\n" +
		strings.Join(links, "\r\n") + "\r\n"
}

// uriList adds an RFC 5782 domain list zone whose test point "test" is
// listed and "invalid" is not, with a 60s negative TTL.
func (s *dnsServer) uriList(name string) {
	s.addZone(name, true, 300, 60)
	s.add("test." + name + ". 300 IN A 127.0.0.2")
}

// newWRS builds a stage with an observed logger, closed at cleanup.
func newWRS(t testing.TB, cfg WRSConfig) (*WRS, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	cfg.Logger = zap.New(core)
	w, err := NewWRS(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w, logs
}

// transitions returns the logged breaker changes of backend as "from>to".
func transitions(logs *observer.ObservedLogs, backend string) []string {
	var out []string
	for _, e := range logs.FilterMessage(breakerMsg).FilterField(zap.String("backend", backend)).All() {
		m := e.ContextMap()
		out = append(out, fmt.Sprintf("%s>%s", m["from"], m["to"]))
	}
	return out
}

func healthOf(w *WRS, name string) Health {
	for _, h := range w.Health() {
		if h.Zone == name {
			return h
		}
	}
	return Health{}
}

// items renders a finding's items as "what zone category", sorted.
func items(f pipeline.Finding) []string {
	var out []string
	for _, it := range f.Items {
		out = append(out, it.What+" "+it.Zone+" "+it.Category)
	}
	slices.Sort(out)
	return out
}

func wantFinding(t *testing.T, f pipeline.Finding, status pipeline.Status, cats []string, detail string) {
	t.Helper()
	if f.Status != status || !slices.Equal(f.Categories, cats) || !strings.Contains(f.Detail, detail) {
		t.Errorf("finding = %s %v %q; want %s %v with %q", f.Status, f.Categories, f.Detail, status, cats, detail)
	}
}

// fakeSB is a local server of the Safe Browsing v4 Lookup API's
// documented shape (threatMatches:find), whose behaviour tests switch.
type fakeSB struct {
	*httptest.Server
	key string

	mu       sync.Mutex
	mode     string              // "" answer; "503", "slow", "malformed", "huge", "html", "null"
	listed   map[string][]string // URL → threat types
	duration string              // cacheDuration of matches
	requests int
	bodies   []sbRequest
	queries  []string // raw query strings
	release  chan struct{}
}

func newFakeSB(t testing.TB) *fakeSB {
	f := &fakeSB{key: "test-key-SECRET", listed: map[string][]string{}, duration: "300s", release: make(chan struct{})}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(func() {
		close(f.release)
		f.Close()
	})
	return f
}

func (f *fakeSB) set(mode string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mode = mode
}

func (f *fakeSB) list(url string, types ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.listed[url] = types
}

func (f *fakeSB) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests
}

func (f *fakeSB) lastBody() sbRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.bodies[len(f.bodies)-1]
}

func (f *fakeSB) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v4/threatMatches:find" {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	var req sbRequest
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	decErr := dec.Decode(&req)
	f.mu.Lock()
	f.requests++
	f.bodies = append(f.bodies, req)
	f.queries = append(f.queries, r.URL.RawQuery)
	mode, listed, dur := f.mode, f.listed, f.duration
	var resp sbResponse
	for _, e := range req.ThreatInfo.ThreatEntries {
		for _, tt := range listed[e.URL] {
			resp.Matches = append(resp.Matches, sbMatch{ThreatType: tt, PlatformType: "ANY_PLATFORM",
				ThreatEntryType: "URL", Threat: sbEntry{URL: e.URL}, CacheDuration: dur})
		}
	}
	f.mu.Unlock()
	switch {
	case decErr != nil || r.URL.Query().Get("key") != f.key || r.Header.Get("Content-Type") != "application/json":
		http.Error(w, `{"error":{"code":400}}`, http.StatusBadRequest)
		return
	case mode == "503":
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return
	case mode == "slow":
		select {
		case <-r.Context().Done():
		case <-f.release:
		}
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	switch mode {
	case "html":
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, "<html>captive portal</html>")
	case "malformed":
		io.WriteString(w, `{"matches": [{"threatType": `)
	case "null":
		io.WriteString(w, `null`)
	case "huge":
		io.WriteString(w, `{"matches": [], "pad": "`)
		io.WriteString(w, strings.Repeat("x", 2<<20))
		io.WriteString(w, `"}`)
	default:
		if len(resp.Matches) == 0 {
			io.WriteString(w, "{}\n") // the API's answer when nothing matched
			return
		}
		json.NewEncoder(w).Encode(resp)
	}
}

func (f *fakeSB) config() *SafeBrowsingConfig {
	return &SafeBrowsingConfig{BaseURL: f.URL, APIKey: f.key, ClientID: "foxproxy-test", ClientVersion: "9.9", Timeout: 5e9}
}

// refusedAddr returns a loopback address nothing listens on.
func refusedAddr(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().String()
	l.Close()
	return a
}

// fakeSink collects feedback batches; fail makes it answer 503 to that
// many requests first (negative: always), status overrides the answer.
type fakeSink struct {
	*httptest.Server
	mu       sync.Mutex
	batches  [][]FeedbackEntry
	requests int
	fail     int
	status   int
	slow     bool
	release  chan struct{}
	headers  []http.Header
}

func newFakeSink(t testing.TB) *fakeSink {
	s := &fakeSink{release: make(chan struct{})}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.requests++
		s.headers = append(s.headers, r.Header.Clone())
		fail, status, slow := s.fail != 0, s.status, s.slow
		if s.fail > 0 {
			s.fail--
		}
		s.mu.Unlock()
		if slow {
			select {
			case <-r.Context().Done():
			case <-s.release:
			}
			return
		}
		if fail {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		if status != 0 {
			http.Error(w, "no", status)
			return
		}
		var b []FeedbackEntry
		if err := json.NewDecoder(r.Body).Decode(&b); err != nil || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "bad", http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		s.batches = append(s.batches, b)
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(func() {
		close(s.release)
		s.Close()
	})
	return s
}

func (s *fakeSink) configure(f func(s *fakeSink)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

func (s *fakeSink) received() (batches [][]FeedbackEntry, requests int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.batches), s.requests
}

func (s *fakeSink) entries() []FeedbackEntry {
	b, _ := s.received()
	var out []FeedbackEntry
	for _, x := range b {
		out = append(out, x...)
	}
	return out
}

// fakeBackend is a Backend whose answers tests script.
type fakeBackend struct {
	name          string
	mu            sync.Mutex
	err           error
	hits          []Hit
	cached        bool
	probeErr      error
	calls, probes int
	block         chan struct{} // non-nil: Lookup waits for it or ctx
}

func (b *fakeBackend) Name() string { return b.name }

func (b *fakeBackend) Lookup(ctx context.Context, q *Query) (BackendResult, error) {
	b.mu.Lock()
	b.calls++
	err, hits, cached, block := b.err, b.hits, b.cached, b.block
	b.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return BackendResult{}, fmt.Errorf("fake: %w", ctx.Err())
		}
	}
	return BackendResult{Hits: hits, Cached: cached}, err
}

func (b *fakeBackend) Probe(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.probes++
	return b.probeErr
}

func (b *fakeBackend) set(f func(b *fakeBackend)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f(b)
}

func (b *fakeBackend) counts() (calls, probes int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.calls, b.probes
}

package reputation

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/foxproxy/foxproxy/links"
	"github.com/foxproxy/foxproxy/pipeline"
)

// TestSafeBrowsingRequestShape asserts the JSON the server receives, per
// the v4 Lookup API's threatMatches:find request body.
func TestSafeBrowsingRequestShape(t *testing.T) {
	sb := newFakeSB(t)
	w, _ := newWRS(t, WRSConfig{SafeBrowsing: sb.config()})
	f := w.Inspect(context.Background(), tx(textMail("HTTP://Evil.Example:8080/a#frag", "https://user@clean.example/x?y=1", "http://192.0.2.66/")))
	wantFinding(t, f, pipeline.Clean, nil, "3 urls")
	if sb.count() != 1 {
		t.Fatalf("%d requests for one message, want 1 (batched)", sb.count())
	}
	got := sb.lastBody()
	if got.Client != (sbClient{ClientID: "foxproxy-test", ClientVersion: "9.9"}) {
		t.Errorf("client %+v", got.Client)
	}
	ti := got.ThreatInfo
	if want := []string{"MALWARE", "POTENTIALLY_HARMFUL_APPLICATION", "SOCIAL_ENGINEERING", "UNWANTED_SOFTWARE"}; !slices.Equal(ti.ThreatTypes, want) {
		t.Errorf("threatTypes %q, want %q", ti.ThreatTypes, want)
	}
	if !slices.Equal(ti.PlatformTypes, []string{"ANY_PLATFORM"}) || !slices.Equal(ti.ThreatEntryTypes, []string{"URL"}) {
		t.Errorf("platformTypes %q threatEntryTypes %q", ti.PlatformTypes, ti.ThreatEntryTypes)
	}
	// Normalised: scheme and host lower case, no userinfo, port, fragment.
	want := []sbEntry{{"http://evil.example/a"}, {"https://clean.example/x?y=1"}, {"http://192.0.2.66/"}}
	if !slices.Equal(ti.ThreatEntries, want) {
		t.Errorf("threatEntries %q, want %q", ti.ThreatEntries, want)
	}
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if sb.queries[0] != "key=test-key-SECRET" {
		t.Errorf("query %q", sb.queries[0])
	}
}

func TestSafeBrowsingMapping(t *testing.T) {
	sb := newFakeSB(t)
	sb.list("http://evil.example/a", "SOCIAL_ENGINEERING", "MALWARE")
	sb.list("http://evil.example/b", "MALWARE")
	sb.list("https://apk.example/x.apk", "POTENTIALLY_HARMFUL_APPLICATION")
	sb.list("http://pup.example/", "UNWANTED_SOFTWARE")
	sb.list("http://new.example/", "SOMETHING_NEW")
	cfg := sb.config()
	w, _ := newWRS(t, WRSConfig{SafeBrowsing: cfg})
	f := w.Inspect(context.Background(), tx(textMail("http://evil.example/a", "http://evil.example/b",
		"https://apk.example/x.apk", "http://pup.example/", "http://clean.example/")))
	wantFinding(t, f, pipeline.Listed, []string{"harmful", "malware", "phish", "unwanted"}, "listed by safebrowsing; 5 urls")
	// One item per listed host and category set.
	want := []string{"apk.example safebrowsing harmful", "evil.example safebrowsing malware",
		"evil.example safebrowsing malware,phish", "pup.example safebrowsing unwanted"}
	if got := items(f); !slices.Equal(got, want) {
		t.Errorf("items %q, want %q", got, want)
	}

	// Configured mapping; an unknown threat type in an answer is "listed".
	cfg.ThreatTypes = map[string]string{"SOMETHING_NEW": "novel", "MALWARE": "bad"}
	w2, _ := newWRS(t, WRSConfig{SafeBrowsing: cfg})
	f = w2.Inspect(context.Background(), tx(textMail("http://new.example/", "http://evil.example/a")))
	wantFinding(t, f, pipeline.Listed, []string{"bad", "listed", "novel"}, "")
	if tt := sb.lastBody().ThreatInfo.ThreatTypes; !slices.Equal(tt, []string{"MALWARE", "SOMETHING_NEW"}) {
		t.Errorf("threatTypes %q", tt)
	}
}

// TestSafeBrowsingCache: a match is cached for its cacheDuration (on the
// injected clock); clean URLs are asked every time.
func TestSafeBrowsingCache(t *testing.T) {
	sb := newFakeSB(t)
	sb.list("http://evil.example/", "MALWARE")
	sb.mu.Lock()
	sb.duration = "300.500s"
	sb.mu.Unlock()
	clock := newFakeClock()
	w, _ := newWRS(t, WRSConfig{SafeBrowsing: sb.config(), Clock: clock})
	listed := tx(textMail("http://evil.example/"))

	wantFinding(t, w.Inspect(context.Background(), listed), pipeline.Listed, []string{"malware"}, "")
	clock.Advance(300 * time.Second)
	wantFinding(t, w.Inspect(context.Background(), listed), pipeline.Listed, []string{"malware"}, "")
	if n := sb.count(); n != 1 {
		t.Errorf("%d requests within cacheDuration, want 1", n)
	}
	// Cached hits prove nothing about the service: no success recorded.
	if h := healthOf(w, SafeBrowsingName); h.Lookups != 2 || h.Listed != 2 {
		t.Errorf("health %+v", h)
	}
	clock.Advance(time.Second)
	wantFinding(t, w.Inspect(context.Background(), listed), pipeline.Listed, []string{"malware"}, "")
	if n := sb.count(); n != 2 {
		t.Errorf("%d requests after expiry, want 2", n)
	}

	// A cached listing and a clean URL: only the clean one is asked.
	wantFinding(t, w.Inspect(context.Background(), tx(textMail("http://evil.example/", "http://ok.example/"))), pipeline.Listed, []string{"malware"}, "")
	if e := sb.lastBody().ThreatInfo.ThreatEntries; !slices.Equal(e, []sbEntry{{"http://ok.example/"}}) {
		t.Errorf("asked %q", e)
	}
	// Clean answers are not cached.
	before := sb.count()
	w.Inspect(context.Background(), tx(textMail("http://ok.example/")))
	w.Inspect(context.Background(), tx(textMail("http://ok.example/")))
	if sb.count() != before+2 {
		t.Error("a clean answer was cached")
	}
}

func TestSafeBrowsingCacheDuration(t *testing.T) {
	s := &SafeBrowsing{maxCache: time.Hour}
	for in, want := range map[string]time.Duration{
		"300s": 300 * time.Second, "300.000s": 300 * time.Second, "0.5s": 500 * time.Millisecond,
		"86400s": time.Hour, "": 0, "300": 0, "-5s": 0, "NaNs": 0, "1e400s": 0, "1e9s": time.Hour, "abcs": 0,
	} {
		if got := s.cacheDuration(in); got != want {
			t.Errorf("cacheDuration(%q) = %v, want %v", in, got, want)
		}
	}
}

// TestSafeBrowsingFailures: every way the service can fail makes the
// message Skipped, named in Detail, never with the API key.
func TestSafeBrowsingFailures(t *testing.T) {
	tests := []struct {
		mode, detail string
	}{
		{"503", "safebrowsing: HTTP 503"},
		{"slow", "safebrowsing: timeout"},
		{"malformed", "safebrowsing: malformed JSON"},
		{"null", "safebrowsing: malformed JSON"},
		{"huge", "safebrowsing: response larger than 1048576 bytes"},
		{"html", `safebrowsing: content type "text/html" is not JSON`},
		{"refused", "safebrowsing: connection refused"},
		{"badkey", "safebrowsing: HTTP 400"},
	}
	for _, tc := range tests {
		t.Run(tc.mode, func(t *testing.T) {
			sb := newFakeSB(t)
			cfg := sb.config()
			cfg.Timeout = 300 * time.Millisecond
			switch tc.mode {
			case "refused":
				cfg.BaseURL = "http://" + refusedAddr(t)
			case "badkey":
				cfg.APIKey = "wrong-SECRET"
			default:
				sb.set(tc.mode)
			}
			w, logs := newWRS(t, WRSConfig{SafeBrowsing: cfg, Breaker: BreakerConfig{Failures: 1}})
			start := time.Now()
			f := w.Inspect(context.Background(), tx(textMail("http://evil.example/")))
			wantFinding(t, f, pipeline.Skipped, nil, tc.detail+"; 1 urls")
			if d := time.Since(start); d > 4*time.Second {
				t.Errorf("took %v with a 300ms timeout", d)
			}
			h := healthOf(w, SafeBrowsingName)
			var logged strings.Builder
			for _, e := range logs.All() {
				fmt.Fprintf(&logged, "%s %v\n", e.Message, e.ContextMap())
			}
			for _, s := range []string{f.Detail, h.LastError, logged.String()} {
				if strings.Contains(s, "SECRET") {
					t.Errorf("API key leaked: %s", s)
				}
			}
			if h.LastError == "" || h.State != StateOpen || h.Failures != 1 {
				t.Errorf("health %+v", h)
			}
		})
	}
}

// TestSafeBrowsingBatches: more than 500 URLs go out in requests of at
// most 500, and the listings of every batch count.
func TestSafeBrowsingBatches(t *testing.T) {
	sb := newFakeSB(t)
	var urls []string
	for i := range 1200 {
		urls = append(urls, fmt.Sprintf("http://h%d.example/p", i))
	}
	sb.list("http://h7.example/p", "MALWARE")
	sb.list("http://h1100.example/p", "SOCIAL_ENGINEERING")
	w, _ := newWRS(t, WRSConfig{SafeBrowsing: sb.config(),
		Extractor: links.Config{Limits: links.Limits{MaxURLs: 1200}}})
	f := w.Inspect(context.Background(), tx(textMail(urls...)))
	wantFinding(t, f, pipeline.Listed, []string{"malware", "phish"}, "1200 urls")
	sb.mu.Lock()
	defer sb.mu.Unlock()
	var sizes []int
	total := 0
	for _, b := range sb.bodies {
		n := len(b.ThreatInfo.ThreatEntries)
		sizes = append(sizes, n)
		total += n
	}
	slices.Sort(sizes)
	if !slices.Equal(sizes, []int{200, 500, 500}) || total != 1200 {
		t.Errorf("batch sizes %v", sizes)
	}
}

// TestSafeBrowsingProbe: the probe asks about the known-clean URL and
// wants 200 with a JSON object.
func TestSafeBrowsingProbe(t *testing.T) {
	sb := newFakeSB(t)
	s, err := NewSafeBrowsing(*sb.config())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Probe(context.Background()); err != nil {
		t.Fatal(err)
	}
	if e := sb.lastBody().ThreatInfo.ThreatEntries; !slices.Equal(e, []sbEntry{{DefaultSafeBrowsingProbeURL}}) {
		t.Errorf("probe asked %q", e)
	}
	sb.set("malformed")
	if err := s.Probe(context.Background()); !errors.Is(err, ErrSafeBrowsing) {
		t.Errorf("probe of a malformed answer: %v", err)
	}
}

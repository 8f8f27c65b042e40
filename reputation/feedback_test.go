package reputation

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/foxproxy/foxproxy/pipeline"
)

func newFeedback(t *testing.T, cfg FeedbackConfig) (*Feedback, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	cfg.Logger = zap.New(core)
	f, err := NewFeedback(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f, logs
}

func entries(n int, prefix string) []FeedbackEntry {
	out := make([]FeedbackEntry, n)
	for i := range out {
		out[i] = FeedbackEntry{Time: time.Unix(1700000000, 0).UTC(), Message: "m", URL: fmt.Sprintf("http://%s%d.example/", prefix, i),
			Host: fmt.Sprintf("%s%d.example", prefix, i), Verdict: VerdictClean}
	}
	return out
}

func statsOf(f *Feedback, sink string) FeedbackStats {
	for _, s := range f.Stats() {
		if s.Sink == sink {
			return s
		}
	}
	return FeedbackStats{}
}

// TestFeedbackWRS: the stage reports every URL with its verdict; the sink
// gets them as JSON.
func TestFeedbackWRS(t *testing.T) {
	s := uriLists(t)
	c := newClient(t, DNSConfig{}, s.Addr)
	sink := newFakeSink(t)
	fb, _ := newFeedback(t, FeedbackConfig{URL: sink.URL, MaxDelay: 10 * time.Millisecond,
		Header: http.Header{"Authorization": {"Bearer t0ken"}}})
	w, _ := newWRS(t, WRSConfig{Zones: []DNSZone{uriblZone, multiZone}, Client: c, Feedback: fb})
	f := w.Inspect(context.Background(), tx(textMail("http://evil.example/a", "https://login.good.example/", "https://fine.example/")))
	wantFinding(t, f, pipeline.Listed, []string{"phish", "spam"}, "")
	w.Inspect(context.Background(), tx("Subject: none\r\n\r\nno links\r\n")) // nothing to report

	// The sink has the entries before the reporter has its answer.
	waitFor(t, "3 entries sent", func() bool { return statsOf(fb, "http").Sent == 3 })
	got := sink.entries()
	want := []FeedbackEntry{
		{Message: "m1", QueueID: "Q1", URL: "http://evil.example/a", Host: "evil.example", Verdict: VerdictListed,
			Categories: []string{"spam"}, Lists: []string{"multi.test", "uribl.test"}},
		{Message: "m1", QueueID: "Q1", URL: "https://login.good.example/", Host: "login.good.example", Verdict: VerdictListed,
			Categories: []string{"phish"}, Lists: []string{"uribl.test"}},
		{Message: "m1", QueueID: "Q1", URL: "https://fine.example/", Host: "fine.example", Verdict: VerdictClean},
	}
	for i := range got {
		if got[i].Time.IsZero() {
			t.Errorf("entry %d has no time", i)
		}
		got[i].Time = time.Time{}
		if !equalEntry(got[i], want[i]) {
			t.Errorf("entry %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	sink.configure(func(s *fakeSink) {
		if h := s.headers[0].Get("Authorization"); h != "Bearer t0ken" {
			t.Errorf("Authorization %q", h)
		}
	})
	if st := statsOf(fb, "http"); st.Queued != 3 || st.Sent != 3 || st.Dropped != 0 || st.Down {
		t.Errorf("stats %+v", st)
	}

	// A failing backend makes clean URLs "unknown".
	sb := newFakeSB(t)
	sb.set("503")
	w2, _ := newWRS(t, WRSConfig{SafeBrowsing: sb.config(), Feedback: fb})
	w2.Inspect(context.Background(), tx(textMail("http://x.example/")))
	waitFor(t, "4 entries", func() bool { return len(sink.entries()) == 4 })
	if e := sink.entries()[3]; e.Verdict != VerdictUnknown {
		t.Errorf("verdict %q, want unknown", e.Verdict)
	}
}

func equalEntry(a, b FeedbackEntry) bool {
	return a.Time.Equal(b.Time) && a.Message == b.Message && a.QueueID == b.QueueID && a.URL == b.URL &&
		a.Host == b.Host && a.Verdict == b.Verdict && slices.Equal(a.Categories, b.Categories) && slices.Equal(a.Lists, b.Lists)
}

// TestFeedbackSinkDown: with the sink down, Inspect is unaffected, the
// queue stays bounded, and every lost entry is counted.
func TestFeedbackSinkDown(t *testing.T) {
	s := uriLists(t)
	c := newClient(t, DNSConfig{}, s.Addr)
	fb, logs := newFeedback(t, FeedbackConfig{URL: "http://" + refusedAddr(t), QueueSize: 5, BatchSize: 2,
		MaxDelay: time.Millisecond, RetryBackoff: time.Hour, FlushTimeout: 50 * time.Millisecond})
	w, _ := newWRS(t, WRSConfig{Zones: []DNSZone{uriblZone}, Client: c, Feedback: fb})
	for i := range 20 {
		f := w.Inspect(context.Background(), tx(textMail("http://evil.example/", fmt.Sprintf("https://ok%d.example/", i))))
		wantFinding(t, f, pipeline.Listed, []string{"spam"}, "listed by uribl.test; 2 urls")
	}
	waitFor(t, "sink down", func() bool { return statsOf(fb, "http").Down })
	st := statsOf(fb, "http")
	if st.Queued != 40 || st.Pending > 5+2 || st.Dropped < 40-7 || st.Sent != 0 {
		t.Errorf("stats while down %+v", st)
	}
	if !strings.Contains(st.LastError, "connection refused") {
		t.Errorf("last error %q", st.LastError)
	}
	start := time.Now()
	fb.Close()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Close took %v with a 50ms flush deadline", d)
	}
	st = statsOf(fb, "http")
	if st.Dropped != 40 || st.Pending != 0 || st.Sent != 0 {
		t.Errorf("stats after Close %+v", st)
	}
	if n := logs.FilterMessageSnippet("sink down").Len(); n != 1 {
		t.Errorf("logged 'sink down' %d times, want 1", n)
	}
	// Reports after Close are dropped and counted, never block.
	fb.Report(entries(3, "late")...)
	if st := statsOf(fb, "http"); st.Queued != 43 || st.Dropped != 43 {
		t.Errorf("after late report %+v", st)
	}
}

// TestFeedbackReportNeverBlocks: a stuck sink does not slow Report.
func TestFeedbackReportNeverBlocks(t *testing.T) {
	sink := newFakeSink(t)
	sink.configure(func(s *fakeSink) { s.slow = true })
	fb, _ := newFeedback(t, FeedbackConfig{URL: sink.URL, QueueSize: 100, BatchSize: 10, FlushTimeout: 50 * time.Millisecond})
	done := make(chan struct{})
	go func() {
		for range 10000 {
			fb.Report(entries(1, "x")...)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Report blocked")
	}
	if st := statsOf(fb, "http"); st.Queued != 10000 || st.Pending > 110 {
		t.Errorf("stats %+v", st)
	}
}

// TestFeedbackBatches: BatchSize and MaxDelay shape what the sink gets.
func TestFeedbackBatches(t *testing.T) {
	sink := newFakeSink(t)
	fb, _ := newFeedback(t, FeedbackConfig{URL: sink.URL, BatchSize: 3, MaxDelay: 20 * time.Millisecond})
	fb.Report(entries(7, "b")...)
	waitFor(t, "7 entries", func() bool { return len(sink.entries()) == 7 })
	batches, _ := sink.received()
	var sizes []int
	for _, b := range batches {
		sizes = append(sizes, len(b))
	}
	if !slices.Equal(sizes, []int{3, 3, 1}) {
		t.Errorf("batch sizes %v, want [3 3 1]", sizes)
	}
	var urls []string
	for _, e := range sink.entries() {
		urls = append(urls, e.URL)
	}
	if urls[0] != "http://b0.example/" || urls[6] != "http://b6.example/" {
		t.Errorf("order %q", urls)
	}
}

// TestFeedbackRetry: a sink that is down for a while gets the batch once
// it is back; down and up are logged once each.
func TestFeedbackRetry(t *testing.T) {
	sink := newFakeSink(t)
	sink.configure(func(s *fakeSink) { s.fail = 2 })
	fb, logs := newFeedback(t, FeedbackConfig{URL: sink.URL, BatchSize: 2, RetryBackoff: time.Millisecond})
	fb.Report(entries(2, "r")...)
	waitFor(t, "delivery", func() bool { return statsOf(fb, "http").Sent == 2 })
	st := statsOf(fb, "http")
	if st.Failures != 2 || st.Dropped != 0 || st.Down {
		t.Errorf("stats %+v", st)
	}
	if _, n := sink.received(); n != 3 {
		t.Errorf("%d requests, want 3", n)
	}
	if d, u := logs.FilterMessageSnippet("sink down").Len(), logs.FilterMessageSnippet("sink up").Len(); d != 1 || u != 1 {
		t.Errorf("logged down %d, up %d times", d, u)
	}
}

// TestFeedbackGiveUp: after MaxAttempts the batch is dropped and counted;
// a 4xx is not retried.
func TestFeedbackGiveUp(t *testing.T) {
	for _, tc := range []struct {
		name         string
		fail, status int
		requests     int
	}{
		{"5xx, max attempts", -1, 0, 3},
		{"400, at once", 0, http.StatusBadRequest, 1},
		{"429 is retried", 0, http.StatusTooManyRequests, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := newFakeSink(t)
			sink.configure(func(s *fakeSink) { s.fail, s.status = tc.fail, tc.status })
			fb, _ := newFeedback(t, FeedbackConfig{URL: sink.URL, BatchSize: 4, MaxAttempts: 3, RetryBackoff: time.Millisecond})
			fb.Report(entries(4, "g")...)
			waitFor(t, "drop", func() bool { return statsOf(fb, "http").Dropped == 4 })
			if _, n := sink.received(); n != tc.requests {
				t.Errorf("%d requests, want %d", n, tc.requests)
			}
			if st := statsOf(fb, "http"); st.Sent != 0 || st.Pending != 0 || st.Failures != uint64(tc.requests) {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

// TestFeedbackFile: JSON lines appended to a 0600 file, kept across
// reporters.
func TestFeedbackFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "feedback.jsonl")
	fb, err := NewFeedback(FeedbackConfig{File: path, MaxDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("file %v mode %v", err, fi.Mode())
	}
	fb.Report(entries(3, "f")...)
	fb.Close() // flushes despite MaxDelay
	if st := statsOf(fb, "file"); st.Sent != 3 || st.Queued != 3 {
		t.Errorf("stats %+v", st)
	}
	fb2, err := NewFeedback(FeedbackConfig{File: path, BatchSize: 2, MaxDelay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	fb2.Report(entries(2, "g")...)
	fb2.Close()

	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	var hosts []string
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		var e FeedbackEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		hosts = append(hosts, e.Host)
	}
	if want := []string{"f0.example", "f1.example", "f2.example", "g0.example", "g1.example"}; !slices.Equal(hosts, want) {
		t.Errorf("file holds %q, want %q", hosts, want)
	}

	if _, err := NewFeedback(FeedbackConfig{File: filepath.Join(t.TempDir(), "no", "such", "dir")}); err == nil {
		t.Error("an unwritable file was accepted")
	}
}

// TestFeedbackCloseFlushes: Close sends what is queued before returning,
// and gives up at FlushTimeout when the sink hangs.
func TestFeedbackCloseFlushes(t *testing.T) {
	sink := newFakeSink(t)
	fb, err := NewFeedback(FeedbackConfig{URL: sink.URL, MaxDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	fb.Report(entries(2, "c")...)
	fb.Close()
	if got := len(sink.entries()); got != 2 {
		t.Errorf("sink got %d entries at Close, want 2", got)
	}

	hung := newFakeSink(t)
	hung.configure(func(s *fakeSink) { s.slow = true })
	fb, err = NewFeedback(FeedbackConfig{URL: hung.URL, MaxDelay: time.Hour, FlushTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	fb.Report(entries(2, "h")...)
	start := time.Now()
	fb.Close()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Close took %v with a 50ms deadline", d)
	}
	if st := statsOf(fb, "http"); st.Dropped != 2 || st.Pending != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestFeedbackConfigValidate(t *testing.T) {
	for cfg, want := range map[*FeedbackConfig]string{
		{}:                                "neither url nor file",
		{URL: "ftp://x/"}:                 "not an http(s) URL",
		{URL: "http://x/", QueueSize: -1}: "negative",
		{File: "f", MaxDelay: -1}:         "negative duration",
	} {
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%+v: %v, want %q", *cfg, err, want)
		}
	}
}

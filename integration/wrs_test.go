package integration

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/foxproxy/foxproxy/integration/harness"
)

// startURIList serves a dnset zone: evil.example (and its subdomains) is
// listed as phish, spammy.example as spam; "test" is the RFC 5782 test point
// the breaker's probe asks.
func startURIList(t *testing.T) *harness.Rbldnsd {
	return harness.StartRbldnsd(t, harness.Zone{Name: "dbl.example.test", Type: "dnset", Lines: []string{
		"$SOA 0 ns.dbl.example.test hostmaster.example.test 0 1h 10m 1d 1m",
		":127.0.1.2:Domain $ is listed",
		"test",
		".evil.example :127.0.1.4:Phishing domain $",
		"spammy.example",
		"phish2.example :127.0.1.4:",
	}})
}

func sendLink(t *testing.T, pf *harness.Postfix, subject, link string) harness.SendResult {
	t.Helper()
	res := harness.Send(t, harness.SendOptions{Server: pf.InboundAddr, Subject: subject,
		Body: "Hello,\r\nplease see " + link + " for details.\r\n"})
	if res.Code != 250 {
		t.Fatalf("inbound smtpd: %s", res.Reply)
	}
	return res
}

const wrsPolicy = `policy:
  rules:
    - {name: wrs-phish, if: {wrs: [phish]}, then: quarantine}
    - {name: wrs-spam, if: {wrs: [spam]}, then: tag, subject_prefix: "[LINK]"}`

// A link to a listed domain gets its rule through real Postfix; with the
// list down the message is delivered with wrs=skipped (the appliance: "the
// Web Reputation condition no longer matches"); once the list is back and
// the breaker closed, the link is caught again.
func TestWRSThroughPostfix(t *testing.T) {
	rbl := startURIList(t)
	qdir, _ := quarantineConfig(t)
	pf := harness.StartPostfix(t, harness.PostfixOptions{})
	fp := startFoxproxy(t, pf.FilterAddr, pf.ReinjectAddr,
		"dns: {servers: ["+rbl.Addr()+"], timeout: 500ms}",
		"wrs:",
		"  zones: [{zone: dbl.example.test, codes: {127.0.1.2: spam, 127.0.1.4: phish}}]",
		"  budget: 3s",
		"  breaker_failures: 2",
		"  breaker_probe_interval: 1s",
		"quarantine: {dir: "+qdir+"}",
		wrsPolicy,
	)

	phish := sendLink(t, pf, "phish", "https://login.evil.example/account?id=1")
	got := pf.WaitLog(t, phish.QueueID+`: .*quarantined as (\S+)\)`, 20*time.Second)
	sendLink(t, pf, "spam link", "http://www.spammy.example/offer")
	sendLink(t, pf, "clean link", "https://www.example.org/")
	if tr := waitSubject(t, pf, "[LINK] spam link").Header().Get("X-Foxproxy"); !strings.Contains(tr, "wrs=listed(spam)") {
		t.Fatalf("spam link trace %q", tr)
	}
	if tr := waitSubject(t, pf, "clean link").Header().Get("X-Foxproxy"); !strings.Contains(tr, "wrs=clean") {
		t.Fatalf("clean link trace %q", tr)
	}
	line := fp.waitMessages(t, 3, 10*time.Second)[0]
	if line["quarantine_id"] != got[1] || !strings.Contains(toJSON(line["findings"]), "evil.example") {
		t.Fatalf("log line does not name the listed domain: %v", line)
	}

	// The list goes away: WRS is skipped, the message continues under the
	// other rules (delivered), and the breaker opens after two failures.
	// (phish2.example was never asked, so no cached answer hides the outage.)
	rbl.Stop()
	for _, s := range []string{"down one", "down two", "down three"} {
		sendLink(t, pf, s, "https://phish2.example/again")
		if tr := waitSubject(t, pf, s).Header().Get("X-Foxproxy"); !strings.Contains(tr, "wrs=skipped") {
			t.Fatalf("%s: trace %q", s, tr)
		}
	}
	fp.WaitLog(t, `"WRS backend state changed".*"to":"open"`, 5*time.Second)

	mark := fp.LogMark()
	rbl.Start()
	fp.WaitLogSince(t, mark, `"WRS backend state changed".*"to":"(half-open|closed)"`, 10*time.Second)
	res := sendLink(t, pf, "back", "https://phish2.example/back")
	pf.WaitLog(t, res.QueueID+`: .*quarantined as \S+\)`, 20*time.Second)
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// fakeSafeBrowsing speaks the Safe Browsing v4 Lookup API's documented shape
// (POST /v4/threatMatches:find?key=...): URLs containing "phishy" match
// SOCIAL_ENGINEERING. It answers 503 while down is set.
type fakeSafeBrowsing struct {
	mu       sync.Mutex
	down     bool
	requests int
}

func (f *fakeSafeBrowsing) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests++
	down := f.down
	f.mu.Unlock()
	if r.Method != http.MethodPost || r.URL.Path != "/v4/threatMatches:find" || r.URL.Query().Get("key") != "test-key" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	if down {
		http.Error(w, "backend error", http.StatusServiceUnavailable)
		return
	}
	var req struct {
		ThreatInfo struct {
			ThreatEntries []struct{ URL string } `json:"threatEntries"`
		} `json:"threatInfo"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	type match struct {
		ThreatType      string            `json:"threatType"`
		PlatformType    string            `json:"platformType"`
		ThreatEntryType string            `json:"threatEntryType"`
		Threat          map[string]string `json:"threat"`
		CacheDuration   string            `json:"cacheDuration"`
	}
	var resp struct {
		Matches []match `json:"matches,omitempty"`
	}
	for _, e := range req.ThreatInfo.ThreatEntries {
		if strings.Contains(e.URL, "phishy") {
			resp.Matches = append(resp.Matches, match{"SOCIAL_ENGINEERING", "ANY_PLATFORM", "URL", map[string]string{"url": e.URL}, "300s"})
		}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(resp)
}

// The HTTP backend through Postfix, and feedback: a sink that is down
// never affects mail and its drops are counted; once it is up, batches
// arrive.
func TestSafeBrowsingAndFeedbackThroughPostfix(t *testing.T) {
	sb := &fakeSafeBrowsing{}
	sbSrv := &http.Server{Handler: sb}
	sbLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go sbSrv.Serve(sbLn)
	t.Cleanup(func() { sbSrv.Close() })
	feedbackAddr := harness.FreeAddr(t) // nothing listens there yet

	qdir, _ := quarantineConfig(t)
	pf := harness.StartPostfix(t, harness.PostfixOptions{})
	fp := startFoxproxy(t, pf.FilterAddr, pf.ReinjectAddr,
		"wrs:",
		"  safebrowsing: {api_key: test-key, base_url: \"http://"+sbLn.Addr().String()+"\", timeout: 2s}",
		"  budget: 3s",
		"  breaker_failures: 100",
		"  feedback: {url: \"http://"+feedbackAddr+"/feedback\", queue_size: 2, batch_size: 1}",
		"quarantine: {dir: "+qdir+"}",
		wrsPolicy,
	)

	res := sendLink(t, pf, "phishy", "http://phishy.example.net/login")
	pf.WaitLog(t, res.QueueID+`: .*quarantined as \S+\)`, 20*time.Second)
	// Three links while the sink is down: the queue holds two, the oldest
	// is dropped; the mail is not affected.
	sendLink(t, pf, "three links", "https://a.example.org/ https://b.example.org/ https://c.example.org/")
	if tr := waitSubject(t, pf, "three links").Header().Get("X-Foxproxy"); !strings.Contains(tr, "wrs=clean") {
		t.Fatalf("trace %q", tr)
	}
	waitFor(t, "feedback drops to be counted", 10*time.Second, func() bool {
		_, text := httpGet(t, fp.Admin+"/metrics", "")
		v, ok := metric(text, "foxproxy_wrs_feedback_dropped_total")
		return ok && v >= 1
	})

	// Safe Browsing answers 503: WRS is skipped, the message delivered.
	sb.mu.Lock()
	sb.down = true
	sb.mu.Unlock()
	sendLink(t, pf, "sb down", "http://phishy.example.net/again")
	if tr := waitSubject(t, pf, "sb down").Header().Get("X-Foxproxy"); !strings.Contains(tr, "wrs=skipped") {
		t.Fatalf("trace %q", tr)
	}

	// The sink comes up: the queued entries arrive in batches.
	var mu sync.Mutex
	var received []map[string]any
	fbLn, err := net.Listen("tcp", feedbackAddr)
	if err != nil {
		t.Fatal(err)
	}
	fbSrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var batch []map[string]any
		if err := json.NewDecoder(r.Body).Decode(&batch); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		received = append(received, batch...)
		mu.Unlock()
	})}
	go fbSrv.Serve(fbLn)
	t.Cleanup(func() { fbSrv.Close() })
	waitFor(t, "feedback batches to arrive", 20*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(received) >= 1
	})
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(toJSON(received), "example") {
		t.Fatalf("feedback entries: %s", toJSON(received))
	}
}

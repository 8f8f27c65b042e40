package integration

// The failure table (README.md) as tests: every dependency foxproxy has,
// each way it can fail, through real Postfix. For each case a test checks
// what Postfix logged for the message (sent, deferred with the 4xx, bounced
// with the 5xx), the queue, the finding in the trace header or foxproxy's
// log line, the state-change log line, and that foxproxy recovers by itself
// once the fault is gone; it logs how long recovery took.
//
// The faults are injected by servers in this process that relay to the real
// daemons until told to misbehave (faultkit_test.go). Timeouts are short so
// the whole table runs in a few minutes.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/foxproxy/foxproxy/integration/harness"
)

// outcome is what Postfix did with one message that went to foxproxy.
type outcome struct {
	status string // sent, deferred or bounced
	reply  string // "250 2.0.0 Ok: queued as ...", "host ... said: 451 4.4.1 ..."
}

var outcomeLine = `: to=<[^>]+>, .*status=(sent|deferred|bounced) \((.*)\)$`

// postfixOutcome waits for the first delivery attempt Postfix logged for
// queue ID qid after mark.
func postfixOutcome(t *testing.T, pf *harness.Postfix, mark int, qid string, timeout time.Duration) outcome {
	t.Helper()
	m := pf.WaitLogSince(t, mark, regexp.QuoteMeta(qid)+outcomeLine, timeout)
	return outcome{m[1], m[2]}
}

// send hands one message to Postfix's inbound smtpd from client (a
// loopback address, passed on by XFORWARD) and returns its queue ID.
func send(t *testing.T, pf *harness.Postfix, client, subject, body string) string {
	t.Helper()
	res := harness.Send(t, harness.SendOptions{Server: pf.InboundAddr, Subject: subject, Body: body,
		Args: []string{"--local-interface", client}})
	if res.Code != 250 || res.QueueID == "" {
		t.Fatalf("inbound smtpd refused %q: %s\n%s", subject, res.Reply, res.Output)
	}
	return res.QueueID
}

// traceOf waits for the message with subject in box rcpt and returns its
// X-Foxproxy header.
func traceOf(t *testing.T, pf *harness.Postfix, subject string) string {
	t.Helper()
	return waitSubject(t, pf, subject).Header().Get("X-Foxproxy")
}

func wantContains(t *testing.T, what, got string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("%s: %q does not contain %q", what, got, w)
		}
	}
}

// recovered waits for a state-change line after mark and logs how long it
// took since healed.
func recovered(t *testing.T, fp *foxproxy, mark int, healed time.Time, what, pattern string, within time.Duration) time.Duration {
	t.Helper()
	fp.WaitLogSince(t, mark, pattern, within)
	d := time.Since(healed)
	t.Logf("recovery: %s %v after the fault ended", what, d.Round(10*time.Millisecond))
	return d
}

// The DNS lists behind ERS and WRS. The ERS zone lists 127.0.0.2 (the
// RFC 5782 test point) and 127.0.0.3 (an exploit source); the WRS zone
// lists evil.example as phish and "test" (its test point).
func startDNSLists(t *testing.T) *harness.Rbldnsd {
	return harness.StartRbldnsd(t,
		harness.Zone{Name: "bl.example.test", Type: "ip4set", Lines: []string{
			"$SOA 0 ns.bl.example.test hostmaster.example.test 0 1h 10m 1d 1m",
			":127.0.0.2:Listed in the test list: $",
			"127.0.0.2",
			"127.0.0.3 :127.0.0.4:Exploit source $",
		}},
		harness.Zone{Name: "dbl.example.test", Type: "dnset", Lines: []string{
			"$SOA 0 ns.dbl.example.test hostmaster.example.test 0 1h 10m 1d 1m",
			":127.0.1.2:Domain $ is listed",
			"test",
			".evil.example :127.0.1.4:Phishing domain $",
		}},
	)
}

// The DNS timeout the fault cases are measured against: one attempt, of
// the two a query makes.
const dnsTimeout = time.Second

// dnsFaultConfig: the answer cache is off (cache_size 0) so that every
// message asks the network and no cached answer hides a fault.
func dnsFaultConfig(server, qdir string) []string {
	return []string{
		"admin_probe_interval: 1s",
		fmt.Sprintf("dns: {servers: [%s], timeout: %v, cache_size: 0}", server, dnsTimeout),
		"ers:",
		"  zones: [{zone: bl.example.test, codes: {127.0.0.2: spam, 127.0.0.4: exploit}}]",
		"  recheck_interval: 1s",
		"  budget: 5s",
		"wrs:",
		"  zones: [{zone: dbl.example.test, codes: {127.0.1.2: spam, 127.0.1.4: phish}}]",
		"  budget: 5s",
		"  breaker_failures: 2",
		"  breaker_probe_interval: 1s",
		"quarantine: {dir: " + qdir + "}",
		"policy:",
		"  rules:",
		"    - {name: ers-exploit, if: {ers: [exploit]}, then: reject}",
		"    - {name: wrs-phish, if: {wrs: [phish]}, then: quarantine}",
	}
}

const (
	exploitSource = "127.0.0.3" // listed in bl.example.test
	cleanClient   = "127.0.0.5"
	phishBody     = "Please log in at https://login.evil.example/account now.\r\n"
	cleanBody     = "Minutes of the meeting: https://www.example.org/minutes\r\n"
)

// checkListsWork sends an exploit source's message (ERS rejects it:
// bounced) and a phishing link (WRS quarantines it).
func checkListsWork(t *testing.T, pf *harness.Postfix, tag string) {
	t.Helper()
	mark := pf.MaillogMark()
	a := send(t, pf, exploitSource, tag+" from an exploit source", cleanBody)
	b := send(t, pf, cleanClient, tag+" with a phishing link", phishBody)
	if o := postfixOutcome(t, pf, mark, a, 20*time.Second); o.status != "bounced" ||
		!strings.Contains(o.reply, "550 5.7.1 Service unavailable; client host [127.0.0.3] blocked using bl.example.test") {
		t.Errorf("%s: exploit source: %s (%s), want bounced with 550 5.7.1", tag, o.status, o.reply)
	}
	if o := postfixOutcome(t, pf, mark, b, 20*time.Second); o.status != "sent" || !strings.Contains(o.reply, "quarantined as") {
		t.Errorf("%s: phishing link: %s (%s), want quarantined", tag, o.status, o.reply)
	}
}

// Failure table rows 1 and 2 (README.md), the DNS lists: ERS (the client) and WRS (the
// links) share the DNS client and here the DNS server. After the zones
// passed their checks, a fault makes each message's finding skipped: the
// mail flows under the other rules (the exploit source and the phishing
// link are delivered), ERS reports the zone down (never disabled) and the
// WRS breaker opens. When the fault ends, ERS is up again within one probe
// interval and the breaker half-opens within one probe interval, with no
// restart, and the lists catch the same mail again.
func TestFaultDNSLists(t *testing.T) {
	cases := []struct {
		name  string
		fault faultMode // refused: rbldnsd itself is stopped
		// ok: the fault is harmless (an answer just inside the timeout).
		ok bool
	}{
		{name: "refused", fault: refused},
		{name: "black hole", fault: blackHole},
		{name: "slow under timeout", fault: slow(dnsTimeout * 6 / 10), ok: true},
		{name: "slow over timeout", fault: slow(dnsTimeout * 3 / 2)},
		{name: "answer outside 127/8", fault: malformed("")},
		{name: "garbage answer", fault: malformed("\x12\x34 this is not a DNS message")},
		// Dying mid-request does not apply: DNS over UDP has no connection.
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lists := startDNSLists(t)
			server := lists.Addr()
			var fdns *faultDNS
			if !tc.fault.is(modeRefused) {
				fdns = startFaultDNS(t, lists.Addr())
				server = fdns.addr
			}
			qdir := filepath.Join(t.TempDir(), "quarantine")
			pf := harness.StartPostfix(t, harness.PostfixOptions{})
			fp := startFoxproxy(t, pf.FilterAddr, pf.ReinjectAddr, dnsFaultConfig(server, qdir)...)
			// The first message runs the zone's connectivity check.
			checkListsWork(t, pf, "before")
			fp.WaitLog(t, `"ERS zone state changed".*"from":"unchecked","to":"up"`, 10*time.Second)

			inject, heal := func() { fdns.set(tc.fault) }, func() { fdns.set(pass) }
			if tc.fault.is(modeRefused) {
				inject, heal = lists.Stop, lists.Start
			}
			logMark, mark := fp.LogMark(), pf.MaillogMark()
			inject()
			if tc.ok {
				checkListsWork(t, pf, "slow")
				if n := regexp.MustCompile(`"to":"(down|disabled|open)"`).FindString(fp.Log()[logMark:]); n != "" {
					t.Errorf("state changed for answers inside the timeout: %s", n)
				}
				return
			}
			a := send(t, pf, exploitSource, "fault from an exploit source", cleanBody)
			b := send(t, pf, cleanClient, "fault with a phishing link", phishBody)
			for _, qid := range []string{a, b} {
				if o := postfixOutcome(t, pf, mark, qid, 30*time.Second); o.status != "sent" || !strings.Contains(o.reply, "queued as") {
					t.Errorf("during the fault: %s (%s), want delivered", o.status, o.reply)
				}
			}
			wantContains(t, "trace", traceOf(t, pf, "fault from an exploit source"), "ers=skipped", "wrs=skipped", "verdict=deliver")
			wantContains(t, "trace", traceOf(t, pf, "fault with a phishing link"), "ers=skipped", "wrs=skipped", "verdict=deliver")
			fp.WaitLogSince(t, logMark, `"ERS zone state changed".*"zone":"bl.example.test".*"from":"up","to":"down"`, 10*time.Second)
			fp.WaitLogSince(t, logMark, `"WRS backend state changed".*"backend":"dbl.example.test".*"to":"open"`, 10*time.Second)
			if strings.Contains(fp.Log()[logMark:], `"to":"disabled"`) {
				t.Errorf("a zone that passed its check was disabled")
			}
			pf.WaitQueueEmpty(t, 10*time.Second)

			logMark = fp.LogMark()
			heal()
			healed := time.Now()
			// One probe interval (1s) plus one probe's own time.
			recovered(t, fp, logMark, healed, "ERS zone up", `"ERS zone state changed".*"to":"up"`, 5*time.Second)
			recovered(t, fp, logMark, healed, "WRS breaker half-open", `"WRS backend state changed".*"to":"half-open"`, 5*time.Second)
			checkListsWork(t, pf, "after")
			fp.WaitLogSince(t, logMark, `"WRS backend state changed".*"to":"closed"`, 5*time.Second)
			pf.WaitQueueEmpty(t, 10*time.Second)
		})
	}
}

// Row 1, the appliance's own failure: the list server is a black hole when
// foxproxy starts. Until the first message the zone stays unchecked (the
// monitor's probes only show that the test points do not answer); the
// first message's check fails within the ERS budget and disables the zone
// (mail flows, ers=disabled); it re-enables itself within recheck_interval
// of the server answering, without a restart.
func TestFaultDNSBlackHoleAtStart(t *testing.T) {
	lists := startDNSLists(t)
	fdns := startFaultDNS(t, lists.Addr())
	fdns.set(blackHole)
	qdir := filepath.Join(t.TempDir(), "quarantine")
	pf := harness.StartPostfix(t, harness.PostfixOptions{})
	fp := startFoxproxy(t, pf.FilterAddr, pf.ReinjectAddr, dnsFaultConfig(fdns.addr, qdir)...)
	// A probe into the black hole ends on the DNS timeouts: wait until one
	// has shown the zone failing, and check that it is still unchecked.
	waitFor(t, "a probe of the black-holed zone", 20*time.Second, func() bool {
		return statusRow(t, fp.Admin, "ers", "bl.example.test").LastError != ""
	})
	if zone := statusRow(t, fp.Admin, "ers", "bl.example.test"); zone.State != "unchecked" || zone.OK {
		t.Fatalf("before the first message: %+v", zone)
	}
	if strings.Contains(fp.Log(), "ERS zone state changed") {
		t.Fatalf("zone state changed with no message:\n%s", tail(fp.Log(), 10))
	}

	mark := pf.MaillogMark()
	qid := send(t, pf, exploitSource, "while the list was never reached", cleanBody)
	if o := postfixOutcome(t, pf, mark, qid, 30*time.Second); o.status != "sent" {
		t.Fatalf("%s (%s), want delivered", o.status, o.reply)
	}
	wantContains(t, "trace", traceOf(t, pf, "while the list was never reached"), "ers=disabled")
	fp.WaitLog(t, `"ERS zone state changed".*"from":"unchecked","to":"disabled"`, 5*time.Second)

	logMark := fp.LogMark()
	fdns.set(pass)
	healed := time.Now()
	recovered(t, fp, logMark, healed, "ERS zone re-enabled", `"ERS zone state changed".*"from":"disabled","to":"up"`, 5*time.Second)
	checkListsWork(t, pf, "after")
}

// sbFaultConfig: Safe Browsing at base (a fault relay in front of the fake
// API of wrs_test.go), a one-second timeout, the breaker opening after two
// failures and probing every second. wrsExtra are more lines of the wrs
// section.
func sbFaultConfig(base, qdir string, wrsExtra ...string) []string {
	cfg := []string{
		"wrs:",
		"  safebrowsing: {api_key: test-key, base_url: \"http://" + base + "\", timeout: " + sbTimeout.String() + "}",
		"  budget: 5s",
		"  breaker_failures: 2",
		"  breaker_probe_interval: 1s",
	}
	return append(append(cfg, wrsExtra...),
		"quarantine: {dir: "+qdir+"}",
		"policy:",
		"  rules:",
		"    - {name: wrs-phish, if: {wrs: [phish]}, then: quarantine}",
	)
}

const sbTimeout = time.Second

// startFakeSafeBrowsing serves the fake Safe Browsing API of wrs_test.go.
// malformed switches it to answers that are not the documented JSON.
func startFakeSafeBrowsing(t *testing.T) (addr string, sb *fakeSafeBrowsing) {
	sb = &fakeSafeBrowsing{}
	srv := &http.Server{Handler: sb}
	ln := listenLoopback(t)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), sb
}

// phishy is a body with a link the fake Safe Browsing lists, on a host of
// its own: Safe Browsing's answers are cached, and a cached listing would
// hide a fault.
func phishy(subject string) string {
	host := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, strings.ToLower(subject))
	return "Reset your password: http://phishy-" + host + "-" + strconv.FormatInt(time.Now().UnixNano(), 36) + ".example.net/login\r\n"
}

const plainLink = "See https://docs.example.org/guide\r\n"

// Row 2, the Web Reputation HTTP API (Safe Browsing v4 Lookup): each fault
// makes WRS skipped for the messages it hits (delivered: "the Web
// Reputation condition no longer matches"), opens the breaker after two
// failures, and the breaker's probe half-opens it within one probe interval
// of the API answering again.
func TestFaultSafeBrowsing(t *testing.T) {
	cases := []struct {
		name  string
		fault faultMode
		ok    bool
	}{
		{name: "refused", fault: refused},
		{name: "black hole", fault: blackHole},
		{name: "slow under timeout", fault: slow(sbTimeout / 2), ok: true},
		{name: "slow over timeout", fault: slow(sbTimeout * 3 / 2)},
		{name: "malformed JSON", fault: malformed("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n{\"matches\": [{]}\n")},
		{name: "not an HTTP answer", fault: malformed("SSH-2.0-OpenSSH_9.2\r\n")},
		{name: "dies mid-response", fault: dieInReply(60)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			api, _ := startFakeSafeBrowsing(t)
			relay := startFaultTCP(t, api)
			qdir := filepath.Join(t.TempDir(), "quarantine")
			pf := harness.StartPostfix(t, harness.PostfixOptions{})
			fp := startFoxproxy(t, pf.FilterAddr, pf.ReinjectAddr, sbFaultConfig(relay.addr, qdir)...)

			mark := pf.MaillogMark()
			qid := send(t, pf, cleanClient, "before", phishy("before"))
			if o := postfixOutcome(t, pf, mark, qid, 20*time.Second); !strings.Contains(o.reply, "quarantined as") {
				t.Fatalf("before the fault: %s (%s), want quarantined", o.status, o.reply)
			}

			logMark, mark := fp.LogMark(), pf.MaillogMark()
			relay.set(tc.fault)
			if tc.ok {
				qid := send(t, pf, cleanClient, "slow", phishy("slow"))
				if o := postfixOutcome(t, pf, mark, qid, 20*time.Second); !strings.Contains(o.reply, "quarantined as") {
					t.Errorf("answers inside the timeout: %s (%s), want quarantined", o.status, o.reply)
				}
				if strings.Contains(fp.Log()[logMark:], `"to":"open"`) {
					t.Errorf("breaker opened for answers inside the timeout")
				}
				return
			}
			for _, s := range []string{"fault one", "fault two"} {
				qid = send(t, pf, cleanClient, s, phishy(s))
				if o := postfixOutcome(t, pf, mark, qid, 20*time.Second); o.status != "sent" || !strings.Contains(o.reply, "queued as") {
					t.Errorf("%s: %s (%s), want delivered", s, o.status, o.reply)
				}
				wantContains(t, s+": trace", traceOf(t, pf, s), "wrs=skipped", "verdict=deliver")
			}
			fp.WaitLogSince(t, logMark, `"WRS backend state changed".*"backend":"safebrowsing".*"from":"closed","to":"open"`, 10*time.Second)
			line := fp.waitMessage(t, qid)
			wantContains(t, "log line", toJSON(line["findings"]), `"status":"skipped"`, "safebrowsing")
			pf.WaitQueueEmpty(t, 10*time.Second)

			logMark = fp.LogMark()
			relay.set(pass)
			healed := time.Now()
			recovered(t, fp, logMark, healed, "breaker half-open", `"WRS backend state changed".*"to":"half-open"`, 5*time.Second)
			mark = pf.MaillogMark()
			qid = send(t, pf, cleanClient, "after", phishy("after"))
			if o := postfixOutcome(t, pf, mark, qid, 20*time.Second); !strings.Contains(o.reply, "quarantined as") {
				t.Errorf("after recovery: %s (%s), want quarantined", o.status, o.reply)
			}
			fp.WaitLogSince(t, logMark, `"WRS backend state changed".*"to":"closed"`, 5*time.Second)
		})
	}
}

// feedbackSink receives feedback batches (JSON arrays) and counts entries.
type feedbackSink struct {
	mu      sync.Mutex
	entries int
}

func (s *feedbackSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var batch []map[string]any
	if err := json.NewDecoder(r.Body).Decode(&batch); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.entries += len(batch)
	s.mu.Unlock()
}

func (s *feedbackSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.entries
}

// Row 3, WRS feedback: whatever the sink does, mail is delivered as if it
// were not there, entries that cannot be sent are dropped and counted, the
// sink's state change is logged, and batches flow again once it answers.
func TestFaultFeedbackSink(t *testing.T) {
	cases := []struct {
		name  string
		fault faultMode
	}{
		{"refused", refused},
		{"black hole", blackHole},
		{"HTTP 500", malformed("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")},
		{"dies mid-request", dieAfter(100)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			api, _ := startFakeSafeBrowsing(t)
			sink := &feedbackSink{}
			sinkSrv := &http.Server{Handler: sink}
			sinkLn := listenLoopback(t)
			go sinkSrv.Serve(sinkLn)
			t.Cleanup(func() { sinkSrv.Close() })
			relay := startFaultTCP(t, sinkLn.Addr().String())
			qdir := filepath.Join(t.TempDir(), "quarantine")
			pf := harness.StartPostfix(t, harness.PostfixOptions{})
			fp := startFoxproxy(t, pf.FilterAddr, pf.ReinjectAddr, sbFaultConfig(api, qdir,
				"  feedback: {url: \"http://"+relay.addr+"/feedback\", queue_size: 2, batch_size: 1}")...)

			send(t, pf, cleanClient, "before", plainLink)
			waitSubject(t, pf, "before")
			waitUntil(t, "the first feedback entry", 10*time.Second, func() bool { return sink.count() >= 1 })

			logMark, mark := fp.LogMark(), pf.MaillogMark()
			relay.set(tc.fault)
			var qids []string
			for i := range 3 {
				s := fmt.Sprintf("sink down %d", i)
				qid := send(t, pf, cleanClient, s,
					"https://a.example.org/ https://b.example.org/ https://c.example.org/ "+s+"\r\n")
				qids = append(qids, qid)
				if o := postfixOutcome(t, pf, mark, qid, 20*time.Second); o.status != "sent" || !strings.Contains(o.reply, "queued as") {
					t.Errorf("%s: %s (%s), want delivered", s, o.status, o.reply)
				}
				wantContains(t, s+": trace", traceOf(t, pf, s), "wrs=clean", "verdict=deliver")
			}
			// Mail is not held up by the sink: the WRS stage took no longer
			// than its lookups, far below the sink's 10 s POST timeout.
			for _, qid := range qids {
				line := fp.waitMessage(t, qid)
				if st, _ := line["stages"].(float64); st > 5000 {
					t.Errorf("stages took %v ms with the feedback sink down", st)
				}
			}
			fp.WaitLogSince(t, logMark, `"WRS feedback sink down`, 15*time.Second)
			waitFor(t, "feedback drops to be counted", 20*time.Second, func() bool {
				_, text := httpGet(t, fp.Admin+"/metrics", "")
				v, ok := metric(text, "foxproxy_wrs_feedback_dropped_total")
				return ok && v >= 1
			})
			if st := depState(t, fp.Admin, "wrs-feedback", "http"); st != "down" {
				t.Errorf("/status shows the sink %q", st)
			}

			logMark = fp.LogMark()
			before := sink.count()
			relay.set(pass)
			healed := time.Now()
			send(t, pf, cleanClient, "sink back", "https://d.example.org/\r\n")
			// The worker may be waiting out its retry backoff (1s doubling,
			// five attempts) before it tries again.
			recovered(t, fp, logMark, healed, "feedback sink up", `"WRS feedback sink up again"`, 30*time.Second)
			waitUntil(t, "feedback batches to arrive again", 30*time.Second, func() bool { return sink.count() > before })
		})
	}
}

// scanFaultConfig: smart is ICAP at smartURL (a relay to c-icap), the
// conventional scanner clamd at convAddr. A scan gets scanTimeout.
func scanFaultConfig(smartURL, convAddr, qdir string, fallback bool) []string {
	var cfg []string
	cfg = append(cfg, "admin_probe_interval: 1s", "scan:")
	if smartURL != "" {
		cfg = append(cfg, "  smart: {url: \""+smartURL+"\"}")
	}
	cfg = append(cfg,
		"  conventional: {url: \"tcp://"+convAddr+"\"}",
		fmt.Sprintf("  fallback_to_conventional: %v", fallback),
		"  disable_smart_after: 2",
		"  recheck_interval: 1s",
		"  timeout: "+scanTimeout.String(),
		"  dial_timeout: 1s",
		"timeouts: {stages: 20s}",
		"quarantine: {dir: "+qdir+"}",
		"policy:",
		"  rules:",
		"    - {name: virus, if: {scan: infected}, then: quarantine}",
	)
	return cfg
}

const scanTimeout = 2 * time.Second

// scanFaults are the scanner faults: what each sends instead of an answer.
// Slow delays each answer turn (an ICAP scan has one or two: "100
// Continue" after the preview, then the verdict; clamd one).
func scanFaults(malformedReply string) []struct {
	name  string
	fault faultMode
	ok    bool
} {
	return []struct {
		name  string
		fault faultMode
		ok    bool
	}{
		{name: "refused", fault: refused},
		{name: "black hole", fault: blackHole},
		{name: "slow under timeout", fault: slow(scanTimeout / 5), ok: true},
		{name: "slow over timeout", fault: slow(scanTimeout * 3 / 2)},
		{name: "malformed reply", fault: malformed(malformedReply)},
		{name: "dies mid-request", fault: dieAfter(200)},
	}
}

// Row 4, smart scan (ICAP) with fallback_to_conventional: a message that
// smart cannot scan is scanned conventionally at once (delivered,
// scan=clean(conventional)); after two failures the mode switches to
// conventional; once smart answers its probe again (recheck_interval 1s)
// the mode switches back by itself. EICAR is caught throughout.
func TestFaultSmartScan(t *testing.T) {
	for _, tc := range scanFaults("ICAP/1.0 299 Whatever\r\nISTag: x\r\n\r\n") {
		t.Run(tc.name, func(t *testing.T) {
			clamd, icap := scanners(t)
			relay := startFaultTCP(t, icap.Addr())
			qdir := filepath.Join(t.TempDir(), "quarantine")
			pf := harness.StartPostfix(t, harness.PostfixOptions{})
			fp := startFoxproxy(t, pf.FilterAddr, pf.ReinjectAddr,
				scanFaultConfig("icap://"+relay.addr+"/avscan", clamd.Addr(), qdir, true)...)
			send(t, pf, cleanClient, "before", "hello\r\n")
			wantContains(t, "before: trace", traceOf(t, pf, "before"), "scan=clean(smart)")

			logMark, mark := fp.LogMark(), pf.MaillogMark()
			relay.set(tc.fault)
			if tc.ok {
				send(t, pf, cleanClient, "slow smart", "hello\r\n")
				wantContains(t, "trace", traceOf(t, pf, "slow smart"), "scan=clean(smart)")
				if strings.Contains(fp.Log()[logMark:], `"scan backend down"`) {
					t.Errorf("smart reported down for answers inside the timeout")
				}
				return
			}
			for _, s := range []string{"fault one", "fault two"} {
				qid := send(t, pf, cleanClient, s, "hello\r\n")
				if o := postfixOutcome(t, pf, mark, qid, 30*time.Second); o.status != "sent" || !strings.Contains(o.reply, "queued as") {
					t.Errorf("%s: %s (%s), want delivered", s, o.status, o.reply)
				}
				wantContains(t, s+": trace", traceOf(t, pf, s), "scan=clean(conventional)")
			}
			fp.WaitLogSince(t, logMark, `"scan backend down".*"backend":"smart"`, 10*time.Second)
			fp.WaitLogSince(t, logMark, `"scan mode switched".*"from":"smart","to":"conventional"`, 10*time.Second)
			res := sendEICAR(t, pf)
			if o := postfixOutcome(t, pf, mark, res.QueueID, 30*time.Second); !strings.Contains(o.reply, "quarantined as") {
				t.Errorf("EICAR while switched: %s (%s), want quarantined", o.status, o.reply)
			}

			logMark = fp.LogMark()
			relay.set(pass)
			healed := time.Now()
			recovered(t, fp, logMark, healed, "mode back to smart", `"scan mode switched".*"from":"conventional","to":"smart"`, 2*scanTimeout+5*time.Second)
			send(t, pf, cleanClient, "after", "hello\r\n")
			wantContains(t, "after: trace", traceOf(t, pf, "after"), "scan=clean(smart)")
			pf.WaitQueueEmpty(t, 10*time.Second)
			if n := len(pf.Delivered(harness.BoxRcpt)); n != 4 {
				t.Errorf("%d messages delivered, want 4 (EICAR must not be one)", n)
			}
		})
	}
}

// Row 4, conventional scan only (clamd): a message no scanner can scan is
// deferred with 451 4.7.1 and waits in Postfix's queue; the scanner is
// reported down, then up within one probe interval of its return, and
// Postfix's retry delivers the message exactly once.
func TestFaultConventionalScan(t *testing.T) {
	for _, tc := range scanFaults("stream: this is not what clamd says\x00") {
		t.Run(tc.name, func(t *testing.T) {
			clamd := harness.StartClamd(t)
			conv := clamd.Addr()
			var relay *faultTCP
			if !tc.fault.is(modeRefused) {
				relay = startFaultTCP(t, clamd.Addr())
				conv = relay.addr
			}
			qdir := filepath.Join(t.TempDir(), "quarantine")
			pf := harness.StartPostfix(t, harness.PostfixOptions{})
			fp := startFoxproxy(t, pf.FilterAddr, pf.ReinjectAddr, scanFaultConfig("", conv, qdir, false)...)
			send(t, pf, cleanClient, "before", "hello\r\n")
			wantContains(t, "before: trace", traceOf(t, pf, "before"), "scan=clean(conventional)")

			inject, heal := func() { relay.set(tc.fault) }, func() { relay.set(pass) }
			if tc.fault.is(modeRefused) {
				inject, heal = clamd.Stop, clamd.Start
			}
			logMark, mark := fp.LogMark(), pf.MaillogMark()
			inject()
			qid := send(t, pf, cleanClient, "during", "hello\r\n")
			o := postfixOutcome(t, pf, mark, qid, 30*time.Second)
			if tc.ok {
				if o.status != "sent" {
					t.Errorf("answers inside the timeout: %s (%s), want delivered", o.status, o.reply)
				}
				wantContains(t, "trace", traceOf(t, pf, "during"), "scan=clean(conventional)")
				return
			}
			if o.status != "deferred" || !strings.Contains(o.reply, "451 4.7.1") {
				t.Fatalf("during the fault: %s (%s), want deferred with 451 4.7.1", o.status, o.reply)
			}
			line := fp.waitMessage(t, qid)
			if line["verdict"] != "tempfail" || line["rule"] != "on_scan_unavailable" {
				t.Errorf("log line: verdict %v rule %v, want tempfail on_scan_unavailable", line["verdict"], line["rule"])
			}
			if q := pf.Queue(); len(q) != 1 || !strings.Contains(q[0].Recipients[0].DelayReason, "451 4.7.1") {
				t.Errorf("queue: %+v", q)
			}
			fp.WaitLogSince(t, logMark, `"scan backend down".*"backend":"conventional"`, 10*time.Second)
			if n := len(pf.Delivered(harness.BoxRcpt)); n != 1 {
				t.Fatalf("%d messages delivered during the fault, want only the one before", n)
			}

			logMark = fp.LogMark()
			heal()
			healed := time.Now()
			recovered(t, fp, logMark, healed, "clamd up", `"scan backend up".*"backend":"conventional"`, scanTimeout+5*time.Second)
			m := waitSubject(t, pf, "during")
			t.Logf("recovery: the deferred message was delivered %v after the fault ended", time.Since(healed).Round(10*time.Millisecond))
			wantContains(t, "after: trace", m.Header().Get("X-Foxproxy"), "scan=clean(conventional)")
			pf.WaitQueueEmpty(t, 20*time.Second)
			if n := len(pf.Delivered(harness.BoxRcpt)); n != 2 {
				t.Errorf("%d messages delivered, want 2 (each once)", n)
			}
		})
	}
}

// Row "downstream": the re-injection smtpd. Unreachable or failing before
// the message is handed over: 451 4.4.1 (connect, greeting) or 451 4.4.2
// (later), Postfix keeps the message and delivers it exactly once after
// the smtpd is back; the monitor logs the downstream down and up. (A
// downstream that takes the message but whose reply to the final dot is
// lost cannot be told from one that did not: 451 4.4.2 and Postfix's retry
// may deliver it twice, as on any SMTP hop, RFC 1047; not tested here.)
func TestFaultDownstream(t *testing.T) {
	const (
		connect = time.Second
		command = 4 * time.Second
	)
	cases := []struct {
		name  string
		fault faultMode
		want  string        // the 4xx Postfix logs; "" for delivered
		by    time.Duration // deferred before this, when set
	}{
		{name: "refused", fault: refused, want: "451 4.4.1"},
		// The greeting is part of connecting: timeouts.downstream_connect.
		{name: "black hole", fault: blackHole, want: "451 4.4.1", by: command - time.Second/2},
		{name: "slow under timeout", fault: slow(connect / 4)},
		{name: "slow over timeout", fault: slow(connect * 3 / 2), want: "451 4.4.1", by: command - time.Second/2},
		{name: "garbage greeting", fault: malformed("hello, I am not an SMTP server\r\n"), want: "451 4.4.1"},
		{name: "5xx greeting", fault: malformed("554 5.3.2 not accepting mail right now\r\n"), want: "451 4.4.1"},
		// timeouts.downstream_command.
		{name: "black hole after MAIL", fault: muteAfter("MAIL FROM:"), want: "451 4.4.2"},
		{name: "dies mid-DATA", fault: dieInData(10), want: "451 4.4.2"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pf := harness.StartPostfix(t, harness.PostfixOptions{})
			relay := startFaultTCP(t, pf.ReinjectAddr)
			fp := startFoxproxy(t, pf.FilterAddr, relay.addr,
				"admin_probe_interval: 1s",
				"timeouts: {downstream_connect: "+connect.String()+", downstream_command: "+command.String()+", downstream_data: 4s}")
			send(t, pf, cleanClient, "before", "hello\r\n")
			waitSubject(t, pf, "before")
			fp.WaitLog(t, `"dependency state changed".*"kind":"downstream".*"to":"up"`, 5*time.Second)

			logMark, mark := fp.LogMark(), pf.MaillogMark()
			relay.set(tc.fault)
			start := time.Now()
			qid := send(t, pf, cleanClient, "during", "hello\r\nsecond line\r\n")
			o := postfixOutcome(t, pf, mark, qid, 30*time.Second)
			if tc.want == "" {
				if o.status != "sent" {
					t.Errorf("answers inside the timeout: %s (%s), want delivered", o.status, o.reply)
				}
				waitSubject(t, pf, "during")
				return
			}
			if o.status != "deferred" || !strings.Contains(o.reply, tc.want) {
				t.Fatalf("during the fault: %s (%s), want deferred with %s", o.status, o.reply, tc.want)
			}
			took := time.Since(start)
			t.Logf("deferred %v after the message was sent", took.Round(10*time.Millisecond))
			if tc.by > 0 && took > tc.by {
				t.Errorf("deferred only after %v: the greeting was not bounded by timeouts.downstream_connect (%v)", took, connect)
			}
			if q := pf.Queue(); len(q) != 1 || !strings.Contains(q[0].Recipients[0].DelayReason, tc.want) {
				t.Errorf("queue: %+v", q)
			}
			if !tc.fault.is(modeSlow) && !tc.fault.is(modeDieInData) && !tc.fault.is(modeMute) {
				fp.WaitLogSince(t, logMark, `"dependency state changed".*"kind":"downstream".*"to":"down"`, 10*time.Second)
			}
			if n := len(pf.Delivered(harness.BoxRcpt)); n != 1 {
				t.Fatalf("%d messages delivered during the fault, want only the one before", n)
			}

			logMark = fp.LogMark()
			relay.set(pass)
			healed := time.Now()
			if !tc.fault.is(modeSlow) && !tc.fault.is(modeDieInData) && !tc.fault.is(modeMute) {
				// One probe interval (1s) plus a probe of a black hole (5s).
				recovered(t, fp, logMark, healed, "downstream up", `"dependency state changed".*"kind":"downstream".*"to":"up"`, 10*time.Second)
			}
			waitSubject(t, pf, "during")
			t.Logf("recovery: the deferred message was delivered %v after the fault ended", time.Since(healed).Round(10*time.Millisecond))
			pf.WaitQueueEmpty(t, 20*time.Second)
			time.Sleep(time.Second) // a duplicate would arrive within Postfix's 1s queue run
			if n := len(pf.Delivered(harness.BoxRcpt)); n != 2 {
				t.Errorf("%d messages delivered, want 2 (each once)", n)
			}
		})
	}
}

package integration

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/foxproxy/foxproxy/integration/harness"
)

// The test list: 127.0.0.2 (the RFC 5782 test point) is listed as spam,
// 127.0.0.3 as an exploit source; other clients are not listed. swaks sends
// from these loopback addresses, Postfix passes them on with XFORWARD.
func startBlockList(t *testing.T) *harness.Rbldnsd {
	return harness.StartRbldnsd(t, harness.Zone{Name: "bl.example.test", Type: "ip4set", Lines: []string{
		"$SOA 0 ns.bl.example.test hostmaster.example.test 0 1h 10m 1d 1m",
		":127.0.0.2:Listed in the test list: $",
		"127.0.0.2",
		"127.0.0.3 :127.0.0.4:Exploit source $",
	}})
}

func ersConfig(rbl *harness.Rbldnsd, extra ...string) []string {
	return append([]string{
		"dns: {servers: [" + rbl.Addr() + "], timeout: 500ms}",
		"ers:",
		"  zones: [{zone: bl.example.test, codes: {127.0.0.2: spam, 127.0.0.4: exploit}}]",
		"  recheck_interval: 1s",
		"  budget: 3s",
	}, extra...)
}

const ersPolicy = `policy:
  rules:
    - {name: ers-exploit, if: {ers: [exploit]}, then: reject}
    - {name: ers-spam, if: {ers: [spam]}, then: tag, subject_prefix: "[SPAM]"}`

func sendFrom(t *testing.T, pf *harness.Postfix, ip, subject string) harness.SendResult {
	t.Helper()
	res := harness.Send(t, harness.SendOptions{Server: pf.InboundAddr, Subject: subject,
		Args: []string{"--local-interface", ip}})
	if res.Code != 250 {
		t.Fatalf("inbound smtpd refused the message from %s: %s", ip, res.Reply)
	}
	return res
}

// A listed client is refused or tagged as the policy says, an unlisted one
// passes, and the finding is in the trace header and the log.
func TestERSListedClientsThroughPostfix(t *testing.T) {
	rbl := startBlockList(t)
	pf := harness.StartPostfix(t, harness.PostfixOptions{})
	fp := startFoxproxy(t, pf.FilterAddr, pf.ReinjectAddr, append(ersConfig(rbl), ersPolicy)...)

	exploit := sendFrom(t, pf, "127.0.0.3", "from an exploit source")
	got := pf.WaitLog(t, exploit.QueueID+`: to=<rcpt@example.test>.*dsn=5\.7\.1, status=bounced \((.*)\)`, 20*time.Second)
	if !strings.Contains(got[1], "550 5.7.1 Service unavailable; client host [127.0.0.3] blocked using bl.example.test; Exploit source 127.0.0.3") {
		t.Fatalf("bounce reason: %s", got[1])
	}

	sendFrom(t, pf, "127.0.0.2", "from a spammer")
	sendFrom(t, pf, "127.0.0.5", "from a clean client")
	msgs := pf.WaitDelivered(t, harness.BoxRcpt, 2, 20*time.Second)
	bySubject := map[string]harness.Message{}
	for _, m := range msgs {
		bySubject[m.Header().Get("Subject")] = m
	}
	spam, ok := bySubject["[SPAM] from a spammer"]
	if !ok {
		t.Fatalf("tagged message missing; subjects: %v", keys(bySubject))
	}
	if tr := spam.Header().Get("X-Foxproxy"); !strings.Contains(tr, "ers=listed(spam)") || !strings.Contains(tr, "rule=ers-spam") {
		t.Fatalf("trace header %q", tr)
	}
	if spam.Header().Get("X-Foxproxy-Flag") != "ers-spam" {
		t.Fatalf("tag header missing:\n%s", spam.Data)
	}
	clean, ok := bySubject["from a clean client"]
	if !ok || !strings.Contains(clean.Header().Get("X-Foxproxy"), "ers=clean") {
		t.Fatalf("clean message: %v", keys(bySubject))
	}
	if len(pf.Delivered(harness.BoxRcpt)) != 2 {
		t.Fatal("the exploit source's message was delivered")
	}

	lines := fp.waitMessages(t, 3, 10*time.Second)
	verdicts := map[string]string{}
	for _, l := range lines {
		verdicts[l["client"].(string)] = l["verdict"].(string) + "/" + l["rule"].(string)
	}
	want := map[string]string{"127.0.0.3": "reject/ers-exploit", "127.0.0.2": "tag/ers-spam", "127.0.0.5": "deliver/default"}
	for c, v := range want {
		if verdicts[c] != v {
			t.Errorf("client %s: %s, want %s", c, verdicts[c], v)
		}
	}
}

func keys(m map[string]harness.Message) []string {
	var k []string
	for s := range m {
		k = append(k, s)
	}
	return k
}

// The appliance's latch, fixed: with the list down at the first message,
// ERS is disabled and mail flows; when the list comes back, ERS re-enables
// itself within one re-check interval, without a restart. Later outages
// only skip ERS for the messages they hit.
func TestERSDisabledAtFirstMailRecovers(t *testing.T) {
	rbl := startBlockList(t)
	rbl.Stop()
	pf := harness.StartPostfix(t, harness.PostfixOptions{})
	fp := startFoxproxy(t, pf.FilterAddr, pf.ReinjectAddr, append(ersConfig(rbl), ersPolicy)...)

	sendFrom(t, pf, "127.0.0.2", "list down")
	m := pf.WaitDelivered(t, harness.BoxRcpt, 1, 20*time.Second)[0]
	if tr := m.Header().Get("X-Foxproxy"); !strings.Contains(tr, "ers=disabled") || m.Header().Get("Subject") != "list down" {
		t.Fatalf("first message while the list is down: subject %q, trace %q", m.Header().Get("Subject"), tr)
	}
	fp.WaitLog(t, `"ERS zone state changed".*"zone":"bl.example.test".*"to":"disabled"`, 5*time.Second)

	mark := fp.LogMark()
	rbl.Start()
	started := time.Now()
	fp.WaitLogSince(t, mark, `"ERS zone state changed".*"zone":"bl.example.test".*"to":"up"`, 10*time.Second)
	t.Logf("ERS re-enabled %v after the list came back (recheck_interval 1s)", time.Since(started).Round(10*time.Millisecond))

	sendFrom(t, pf, "127.0.0.2", "list back")
	m2 := waitSubject(t, pf, "[SPAM] list back")
	if !strings.Contains(m2.Header().Get("X-Foxproxy"), "ers=listed(spam)") {
		t.Fatalf("after recovery: %q", m2.Header().Get("X-Foxproxy"))
	}

	// After a passed check, an outage never disables ERS: the message is
	// delivered with ERS skipped.
	rbl.Stop()
	sendFrom(t, pf, "127.0.0.3", "list down again")
	m3 := waitSubject(t, pf, "list down again")
	if !strings.Contains(m3.Header().Get("X-Foxproxy"), "ers=skipped") {
		t.Fatalf("outage after a passed check: %q", m3.Header().Get("X-Foxproxy"))
	}
	if strings.Count(fp.Log(), `"to":"disabled"`) != 1 {
		t.Fatalf("ERS disabled again after a passed check:\n%s", tail(fp.Log(), 10))
	}
}

func waitSubject(t *testing.T, pf *harness.Postfix, subject string) harness.Message {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for _, m := range pf.Delivered(harness.BoxRcpt) {
			if m.Header().Get("Subject") == subject {
				return m
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no message with subject %q delivered; log tail:\n%s", subject, tail(pf.Maillog(), 15))
	return harness.Message{}
}

// ersRow is one dependency row of /status, with what the ERS tests read.
type ersRow struct {
	Kind      string            `json:"kind"`
	Name      string            `json:"name"`
	State     string            `json:"state"`
	OK        bool              `json:"ok"`
	LastError string            `json:"last_error"`
	Detail    string            `json:"detail"`
	Counters  map[string]uint64 `json:"counters"`
}

// statusRow returns the /status row of kind and name.
func statusRow(t *testing.T, admin, kind, name string) ersRow {
	t.Helper()
	_, body := httpGet(t, admin+"/status", "application/json")
	var st struct {
		Dependencies []ersRow `json:"dependencies"`
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("status JSON: %v\n%s", err, body)
	}
	for _, d := range st.Dependencies {
		if d.Kind == kind && d.Name == name {
			return d
		}
	}
	t.Fatalf("no dependency %s %s in %s", kind, name, body)
	return ersRow{}
}

// The first message after start decides a zone's state, as the README
// says, not the health monitor: with the list server dead from the start
// and no mail, the zone stays unchecked through several probes, which only
// show the failure; one message disables it (and is delivered with
// ers=disabled); the list coming back re-enables it by itself within
// recheck_interval (1s) and a margin.
func TestERSFirstMessageDecidesZoneState(t *testing.T) {
	rbl := startBlockList(t)
	rbl.Stop()
	pf := harness.StartPostfix(t, harness.PostfixOptions{})
	fp := startFoxproxy(t, pf.FilterAddr, pf.ReinjectAddr, append(ersConfig(rbl), "admin_probe_interval: 1s", ersPolicy)...)

	// Rounds of probes are counted on the downstream's row: the monitor
	// starts a round only when the last one (ERS's probe included) ended.
	const rounds = 4
	startRounds := statusRow(t, fp.Admin, "downstream", "smtpd").Counters["probes"]
	waitFor(t, fmt.Sprintf("%d probe rounds", rounds), 30*time.Second, func() bool {
		zone := statusRow(t, fp.Admin, "ers", "bl.example.test")
		if zone.State != "unchecked" {
			t.Fatalf("zone %s before any message (probes must not decide): %+v\nlog:\n%s", zone.State, zone, tail(fp.Log(), 10))
		}
		return statusRow(t, fp.Admin, "downstream", "smtpd").Counters["probes"] >= startRounds+rounds+1
	})
	zone := statusRow(t, fp.Admin, "ers", "bl.example.test")
	if zone.State != "unchecked" || zone.OK || zone.LastError == "" || !strings.Contains(zone.Detail, "test points do not answer") ||
		zone.Counters["checks"] != 0 {
		t.Fatalf("after %d probes of a dead list, no message: %+v", rounds, zone)
	}
	if strings.Contains(fp.Log(), "ERS zone state changed") {
		t.Fatalf("zone state changed with no message:\n%s", tail(fp.Log(), 10))
	}

	sendFrom(t, pf, "127.0.0.2", "first message, list dead")
	m := waitSubject(t, pf, "first message, list dead")
	if tr := m.Header().Get("X-Foxproxy"); !strings.Contains(tr, "ers=disabled") {
		t.Fatalf("first message while the list is dead: trace %q", tr)
	}
	fp.WaitLog(t, `"ERS zone state changed".*"zone":"bl.example.test".*"from":"unchecked","to":"disabled"`, 5*time.Second)
	if zone := statusRow(t, fp.Admin, "ers", "bl.example.test"); zone.State != "disabled" || zone.OK || zone.Counters["checks"] == 0 {
		t.Fatalf("after the first message: %+v", zone)
	}

	rbl.Start()
	started := time.Now()
	waitFor(t, "zone up within recheck_interval and a margin", 6*time.Second, func() bool {
		return statusRow(t, fp.Admin, "ers", "bl.example.test").State == "up"
	})
	t.Logf("zone up %v after the list came back (recheck_interval 1s)", time.Since(started).Round(10*time.Millisecond))
	if zone := statusRow(t, fp.Admin, "ers", "bl.example.test"); !zone.OK || zone.Detail != "" {
		t.Fatalf("after recovery: %+v", zone)
	}
}

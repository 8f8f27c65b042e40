package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/foxproxy/foxproxy/integration/harness"
)

// scanners starts a clamd (conventional scan) and a c-icap in front of it
// (smart scan).
func scanners(t *testing.T) (*harness.Clamd, *harness.CICAP) {
	clamd := harness.StartClamd(t)
	return clamd, harness.StartCICAP(t, clamd)
}

func scanConfig(clamd *harness.Clamd, icap *harness.CICAP, fallback bool, extra ...string) []string {
	fb := "false"
	if fallback {
		fb = "true"
	}
	return append([]string{
		"scan:",
		"  smart: {url: \"" + icap.URL() + "\"}",
		"  conventional: {url: \"tcp://" + clamd.Addr() + "\"}",
		"  fallback_to_conventional: " + fb,
		"  disable_smart_after: 2",
		"  recheck_interval: 1s",
		"  timeout: 5s",
		"  dial_timeout: 1s",
	}, extra...)
}

func quarantineConfig(t *testing.T) (string, []string) {
	dir := filepath.Join(t.TempDir(), "quarantine")
	return dir, []string{
		"quarantine: {dir: " + dir + "}",
		"policy:",
		"  rules:",
		"    - {name: virus, if: {scan: infected}, then: quarantine}",
	}
}

func sendEICAR(t *testing.T, pf *harness.Postfix) harness.SendResult {
	t.Helper()
	res := harness.Send(t, harness.SendOptions{Server: pf.InboundAddr, Data: harness.EICARMessage(harness.SenderAddr, harness.RcptAddr)})
	if res.Code != 250 {
		t.Fatalf("inbound smtpd: %s", res.Reply)
	}
	return res
}

// EICAR is quarantined and never delivered; a clean message is delivered
// with the scan in its trace header.
func TestScanQuarantinesEICAR(t *testing.T) {
	clamd, icap := scanners(t)
	qdir, qcfg := quarantineConfig(t)
	pf := harness.StartPostfix(t, harness.PostfixOptions{})
	fp := startFoxproxy(t, pf.FilterAddr, pf.ReinjectAddr, append(scanConfig(clamd, icap, true), qcfg...)...)

	res := sendEICAR(t, pf)
	got := pf.WaitLog(t, res.QueueID+`: to=<rcpt@example.test>.*status=sent \(250 2.0.0 Ok: quarantined as (\S+)\)`, 20*time.Second)
	e := readQuarantine(t, qdir, got[1])
	if e.Rule != "virus" || len(e.Findings) != 1 || e.Findings[0].Detail != harness.EICARThreat || e.Findings[0].Backend != "smart" {
		t.Fatalf("quarantine entry %+v", e)
	}
	if e.QueueID != res.QueueID || e.From != harness.SenderAddr || e.Rcpts[0] != harness.RcptAddr {
		t.Fatalf("quarantine envelope %+v", e)
	}

	sendFrom(t, pf, "127.0.0.1", "clean mail")
	m := waitSubject(t, pf, "clean mail")
	if tr := m.Header().Get("X-Foxproxy"); !strings.Contains(tr, "scan=clean(smart)") {
		t.Fatalf("trace %q", tr)
	}
	if n := len(pf.Delivered(harness.BoxRcpt)); n != 1 {
		t.Fatalf("%d messages delivered; EICAR must not be one of them", n)
	}
	line := fp.waitMessages(t, 2, 5*time.Second)[0]
	if line["verdict"] != "quarantine" || line["quarantine_id"] != got[1] {
		t.Fatalf("log line %v", line)
	}
}

type quarantineEntry struct {
	Rule     string   `json:"rule"`
	From     string   `json:"from"`
	Rcpts    []string `json:"rcpts"`
	QueueID  string   `json:"queue_id"`
	Findings []struct {
		Stage, Status, Detail, Backend string
	} `json:"findings"`
}

func readQuarantine(t *testing.T, dir, id string) quarantineEntry {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, id+".json"))
	if err != nil {
		t.Fatalf("quarantine entry %s: %v", id, err)
	}
	var e quarantineEntry
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatal(err)
	}
	msg, err := os.ReadFile(filepath.Join(dir, id+".eml"))
	if err != nil || !strings.Contains(string(msg), "eicar.com") {
		t.Fatalf("quarantined message: %v", err)
	}
	return e
}

// Smart scan down and no fallback (the appliance's item 4 (1)): 451, the
// message waits in Postfix's queue, and is delivered exactly once after the
// ICAP server returns and the queue is flushed.
func TestSmartDownWithoutFallbackDefers(t *testing.T) {
	clamd, icap := scanners(t)
	pf := harness.StartPostfix(t, harness.PostfixOptions{QueueRunDelay: "1h", MinBackoff: "1h", MaxBackoff: "1h"})
	startFoxproxy(t, pf.FilterAddr, pf.ReinjectAddr, scanConfig(clamd, icap, false)...)
	icap.Stop()

	sendFrom(t, pf, "127.0.0.1", "while smart is down")
	q := pf.WaitDeferred(t, 1, 20*time.Second)
	if r := q[0].Recipients[0].DelayReason; !strings.Contains(r, "451 4.7.1") {
		t.Fatalf("deferred for %q", r)
	}
	if len(pf.Delivered(harness.BoxRcpt)) != 0 {
		t.Fatal("delivered unscanned")
	}
	icap.Start()
	pf.Flush()
	m := waitSubject(t, pf, "while smart is down")
	if !strings.Contains(m.Header().Get("X-Foxproxy"), "scan=clean(smart)") {
		t.Fatalf("trace %q", m.Header().Get("X-Foxproxy"))
	}
	pf.WaitQueueEmpty(t, 10*time.Second)
	if n := len(pf.Delivered(harness.BoxRcpt)); n != 1 {
		t.Fatalf("delivered %d times", n)
	}
}

// Smart scan down with fallback (item 4 (2)): each message is scanned
// conventionally at once; after disable_smart_after failures the mode
// switches; when smart answers again it switches back by itself.
func TestSmartDownFallsBackSwitchesAndReturns(t *testing.T) {
	clamd, icap := scanners(t)
	qdir, qcfg := quarantineConfig(t)
	pf := harness.StartPostfix(t, harness.PostfixOptions{})
	fp := startFoxproxy(t, pf.FilterAddr, pf.ReinjectAddr, append(scanConfig(clamd, icap, true), qcfg...)...)
	icap.Stop()

	for _, s := range []string{"fallback one", "fallback two", "fallback three"} {
		sendFrom(t, pf, "127.0.0.1", s)
		m := waitSubject(t, pf, s)
		if tr := m.Header().Get("X-Foxproxy"); !strings.Contains(tr, "scan=clean(conventional)") {
			t.Fatalf("%s: trace %q", s, tr)
		}
	}
	fp.WaitLog(t, `"scan mode switched".*"from":"smart".*"to":"conventional"`, 5*time.Second)
	// Malware is still caught while switched.
	res := sendEICAR(t, pf)
	got := pf.WaitLog(t, res.QueueID+`: .*quarantined as (\S+)\)`, 20*time.Second)
	if e := readQuarantine(t, qdir, got[1]); e.Findings[0].Backend != "conventional" {
		t.Fatalf("EICAR while switched: %+v", e)
	}

	mark := fp.LogMark()
	icap.Start()
	fp.WaitLogSince(t, mark, `"scan mode switched".*"from":"conventional".*"to":"smart"`, 10*time.Second)
	sendFrom(t, pf, "127.0.0.1", "smart again")
	m := waitSubject(t, pf, "smart again")
	if tr := m.Header().Get("X-Foxproxy"); !strings.Contains(tr, "scan=clean(smart)") {
		t.Fatalf("after smart returned: trace %q", tr)
	}
}

// Both scanners down: deferred, nothing lost, delivered once they return.
func TestBothScannersDownDefers(t *testing.T) {
	clamd, icap := scanners(t)
	pf := harness.StartPostfix(t, harness.PostfixOptions{QueueRunDelay: "1h", MinBackoff: "1h", MaxBackoff: "1h"})
	startFoxproxy(t, pf.FilterAddr, pf.ReinjectAddr, scanConfig(clamd, icap, true)...)
	icap.Stop()
	clamd.Stop()

	sendFrom(t, pf, "127.0.0.1", "nothing scans")
	q := pf.WaitDeferred(t, 1, 20*time.Second)
	if r := q[0].Recipients[0].DelayReason; !strings.Contains(r, "451 4.7.1") {
		t.Fatalf("deferred for %q", r)
	}
	clamd.Start()
	icap.Start()
	pf.Flush()
	waitSubject(t, pf, "nothing scans")
	pf.WaitQueueEmpty(t, 10*time.Second)
	if n := len(pf.Delivered(harness.BoxRcpt)); n != 1 {
		t.Fatalf("delivered %d times", n)
	}
}

package integration

// Hold and rescan (scan.hold_after) through real Postfix, clamd and c-icap:
// while no scanner answers, mail is deferred until it has waited
// hold_after in Postfix, then held with 250; once a scanner answers the
// held mail is rescanned, clean mail delivered exactly once and EICAR
// quarantined; and a SIGKILL in the middle of the rescan neither loses nor
// duplicates anything.

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/foxproxy/foxproxy/admin"
	"github.com/foxproxy/foxproxy/integration/harness"
)

const holdAfter = 3 * time.Second

// holdSetup starts the scanners, a Postfix that retries only when told to
// (postqueue -f), and foxproxy holding after holdAfter; the scanners are
// then stopped.
func holdSetup(t *testing.T, rate string) (*harness.Clamd, *harness.CICAP, *harness.Postfix, *foxproxy, string) {
	clamd, icap := scanners(t)
	qdir, qcfg := quarantineConfig(t)
	pf := harness.StartPostfix(t, harness.PostfixOptions{QueueRunDelay: "1h", MinBackoff: "1h", MaxBackoff: "1h"})
	cfg := scanConfig(clamd, icap, true,
		"  hold_after: "+holdAfter.String(),
		"  rescan_rate: "+rate,
		"  rescan_interval: 1s")
	fp := startFoxproxy(t, pf.FilterAddr, pf.ReinjectAddr, append(append(cfg, "admin_probe_interval: 1s"), qcfg...)...)
	icap.Stop()
	clamd.Stop()
	return clamd, icap, pf, fp, qdir
}

// sendHeld sends a clean message with a known Message-ID.
func sendHeld(t *testing.T, pf *harness.Postfix, n int) harness.SendResult {
	t.Helper()
	res := harness.Send(t, harness.SendOptions{Server: pf.InboundAddr, Subject: fmt.Sprintf("held %d", n),
		Headers: []string{fmt.Sprintf("Message-Id: <held-%d@hold.example.test>", n)}, Body: "scan me later\r\n"})
	if res.Code != 250 {
		t.Fatalf("inbound smtpd: %s", res.Reply)
	}
	return res
}

// waitHeld flushes Postfix's queue until every queue ID was answered
// "held for rescan" and returns the held IDs.
func waitHeld(t *testing.T, pf *harness.Postfix, qids []string) []string {
	t.Helper()
	pf.WaitDeferred(t, len(qids), 20*time.Second)
	for _, e := range pf.Queue() {
		if r := e.Recipients[0].DelayReason; !strings.Contains(r, "451 4.7.1") {
			t.Fatalf("deferred for %q, want the scan's 451 4.7.1", r)
		}
	}
	time.Sleep(holdAfter + time.Second) // the Received date has a resolution of one second
	mark := pf.MaillogMark()
	pf.Flush()
	var ids []string
	for _, q := range qids {
		m := pf.WaitLogSince(t, mark, q+`: to=<rcpt@example\.test>.*status=sent \(250 2\.0\.0 Ok: held for rescan as (\S+)\)`, 20*time.Second)
		ids = append(ids, m[1])
	}
	pf.WaitQueueEmpty(t, 10*time.Second)
	return ids
}

func heldList(t *testing.T, fp *foxproxy) (int, string) {
	t.Helper()
	r := runFoxproxyCLI(t, "quarantine", "list", "--held", "-config", fp.ConfigPath)
	if r.code != 0 {
		t.Fatalf("quarantine list --held: exit %d: %s", r.code, r.stderr)
	}
	var n int
	if m := regexp.MustCompile(`(?m)^(\d+) entr`).FindStringSubmatch(r.stdout); m != nil {
		fmt.Sscan(m[1], &n)
	} else {
		t.Fatalf("list --held: %q", r.stdout)
	}
	return n, r.stdout
}

// deliveredByMessageID counts the messages in rcpt's mailbox by Message-ID.
func deliveredByMessageID(pf *harness.Postfix) map[string]int {
	seen := map[string]int{}
	for _, m := range pf.Delivered(harness.BoxRcpt) {
		seen[m.Header().Get("Message-ID")]++
	}
	return seen
}

func TestHoldAndRescanThroughPostfix(t *testing.T) {
	clamd, icap, pf, fp, qdir := holdSetup(t, "10")

	clean := sendHeld(t, pf, 1)
	eicar := sendEICAR(t, pf)
	ids := waitHeld(t, pf, []string{clean.QueueID, eicar.QueueID})
	if n := len(pf.Delivered(harness.BoxRcpt)); n != 0 {
		t.Fatalf("%d messages delivered unscanned", n)
	}
	if n, out := heldList(t, fp); n != 2 || !strings.Contains(out, ids[0]) || !strings.Contains(out, "scan=unscanned") {
		t.Fatalf("held area:\n%s", out)
	}
	if n, out := quarantineEntries(t, fp.ConfigPath); n != 0 {
		t.Fatalf("held mail shows in the quarantine: %s", out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	st, err := admin.Fetch(ctx, fp.Admin)
	cancel()
	if err != nil || st.Held == nil || st.Held.Count != 2 || st.Held.OldestAgeSeconds <= 0 {
		t.Fatalf("/status held: %+v, %v", st.Held, err)
	}
	// And the status page in a browser says so.
	dom := harness.BrowserDOM(t, fp.Admin+"/status", 3*time.Second)
	if !regexp.MustCompile(`<div id="held" class="meta warn" data-count="2">Held for rescan: 2 messages, oldest held \d+s ago</div>`).MatchString(dom) {
		t.Fatalf("status page lacks the held mail:\n%s", dom)
	}

	mark := fp.LogMark()
	clamd.Start()
	icap.Start()
	m := waitSubject(t, pf, "held 1")
	wantContains(t, "trace", m.Header().Get("X-Foxproxy"), "id="+ids[0], "scan=clean(", "verdict=deliver")
	if m.Header().Get("Return-Path") != "<"+harness.SenderAddr+">" {
		t.Errorf("Return-Path %q: the original envelope sender was not kept", m.Header().Get("Return-Path"))
	}
	fp.WaitLogSince(t, mark, `"held message rescanned and quarantined".*"held_id":"`+ids[1]+`"`, 20*time.Second)
	e := readQuarantine(t, qdir, ids[1])
	if e.Findings[0].Status != "infected" || e.QueueID != eicar.QueueID {
		t.Fatalf("quarantined after the rescan: %+v", e)
	}
	// The re-injection smtpd heard the original queue ID (XFORWARD).
	pf.WaitLog(t, `orig_queue_id=`+clean.QueueID, 10*time.Second)

	waitUntil(t, "the held area to empty", 10*time.Second, func() bool {
		time.Sleep(500 * time.Millisecond) // each look runs the CLI
		n, _ := heldList(t, fp)
		return n == 0
	})
	pf.WaitQueueEmpty(t, 10*time.Second)
	time.Sleep(2 * time.Second) // two more rescan intervals: nothing may be sent again
	if got := deliveredByMessageID(pf); len(got) != 1 || got["<held-1@hold.example.test>"] != 1 {
		t.Fatalf("delivered by Message-ID: %v, want the clean one once", got)
	}
	if n, _ := quarantineEntries(t, fp.ConfigPath); n != 1 {
		t.Fatalf("quarantine has %d entries, want EICAR only", n)
	}
}

// SIGKILL while held messages are being rescanned (one every 1.5 s), then a
// restart: every message ends up delivered exactly once or quarantined.
// Should the kill land between a final dot and the entry's deletion, the
// message is left held and marked; the test then does what an
// administrator does (the downstream's log decides release or delete).
func TestHoldRescanSIGKILL(t *testing.T) {
	const clean = 5
	clamd, icap, pf, fp, _ := holdSetup(t, "0.66")

	var qids []string
	for i := 1; i <= clean; i++ {
		qids = append(qids, sendHeld(t, pf, i).QueueID)
	}
	eicar := sendEICAR(t, pf)
	qids = append(qids, eicar.QueueID)
	ids := waitHeld(t, pf, qids)

	mark := fp.LogMark()
	clamd.Start()
	icap.Start()
	fp.WaitLogSince(t, mark, `"held message rescanned and (delivered|quarantined)"`, 30*time.Second)
	time.Sleep(500 * time.Millisecond)
	fp.kill(t)
	before := deliveredByMessageID(pf)
	n, out := heldList(t, fp)
	t.Logf("killed with %d messages delivered and %d held:\n%s", len(before), n, out)
	if n == 0 || n == len(ids) {
		t.Fatalf("the kill did not land during the rescan: %d of %d still held", n, len(ids))
	}

	fp.restart(t)
	waitUntil(t, "the held area to empty or wait for a decision", 60*time.Second, func() bool {
		time.Sleep(time.Second) // each look runs the CLI
		n, out := heldList(t, fp)
		return n == 0 || n == strings.Count(out, "[may have been delivered")
	})
	// An administrator's decision for any message the kill left uncertain.
	if _, out := heldList(t, fp); strings.Contains(out, "[may have been delivered") {
		for i, id := range ids {
			if !strings.Contains(out, id) {
				continue
			}
			if pf.CountLog(`orig_queue_id=`+qids[i]) > 0 {
				runFoxproxyCLI(t, "quarantine", "delete", "--held", id, "-config", fp.ConfigPath)
			} else {
				runFoxproxyCLI(t, "quarantine", "release", "--held", "--force", id, "-config", fp.ConfigPath)
			}
		}
	}
	pf.WaitQueueEmpty(t, 20*time.Second)
	time.Sleep(2 * time.Second)

	got := deliveredByMessageID(pf)
	for i := 1; i <= clean; i++ {
		if id := fmt.Sprintf("<held-%d@hold.example.test>", i); got[id] != 1 {
			t.Errorf("%s delivered %d times, want once (all: %v)", id, got[id], got)
		}
	}
	if len(got) != clean {
		t.Errorf("delivered Message-IDs %v, want the %d clean ones", got, clean)
	}
	if n, out := quarantineEntries(t, fp.ConfigPath); n != 1 || !strings.Contains(out, ids[len(ids)-1]) {
		t.Errorf("quarantine: %d entries, want EICAR (%s) once:\n%s", n, ids[len(ids)-1], out)
	}
	if n, out := heldList(t, fp); n != 0 {
		t.Errorf("held area not empty:\n%s", out)
	}
}

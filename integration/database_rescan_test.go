package integration

// Held mail in the database survives the host that held it: host A holds
// mail while no scanner answers, is killed with SIGKILL in the middle of
// its rescan, and host B (another foxproxy with its own Postfix, on the
// same PostgreSQL) finishes the work once A's claim has lapsed.

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/foxproxy/foxproxy/integration/harness"
)

// claimLease is the database.claim_lease of the database tests: the
// shortest the configuration allows, so that B takes over within seconds.
const claimLease = 3 * time.Second

// heldHostConfig is a host's configuration for the hold tests on the
// database: conventional scan through scanner (a fault relay in front of
// clamd), holding after holdAfter, EICAR quarantined.
func heldHostConfig(pg *harness.Postgres, scanner string, qdir string) []string {
	return []string{
		"database: {url: \"" + pg.URL() + "\", timeout: 10s, claim_lease: " + claimLease.String() + "}",
		"quarantine: {dir: " + qdir + "}",
		"admin_probe_interval: 1s",
		"scan:",
		"  conventional: {url: \"tcp://" + scanner + "\"}",
		"  timeout: 5s",
		"  dial_timeout: 1s",
		"  hold_after: " + holdAfter.String(),
		"  rescan_rate: 0.66",
		"  rescan_interval: 1s",
		"policy:",
		"  rules:",
		"    - {name: virus, if: {scan: infected}, then: quarantine}",
	}
}

// Five clean messages and EICAR are held on host A. A's scanner comes
// back, with a slow downstream; A is killed with SIGKILL while it is
// sending one of them (its claim in the database is marked "sending").
// Then B's scanner comes back, and B rescans everything else: each clean
// message is delivered exactly once over both downstreams (counted by
// Message-ID in both Maildirs), EICAR is quarantined once. The message A
// was sending is never sent again by B: once A's lease has lapsed it is
// listed from B as "may have been delivered" and stays held until an
// administrator on B decides (release --force if A's downstream does not
// have it, delete if it does); then nothing is left held.
func TestDatabaseHeldRescanSIGKILLTwoHosts(t *testing.T) {
	const clean = 5
	pg := harness.StartPostgres(t)
	clamd := harness.StartClamd(t)
	scanA := startFaultTCP(t, clamd.Addr())
	scanB := startFaultTCP(t, clamd.Addr())
	pfA := harness.StartPostfix(t, harness.PostfixOptions{QueueRunDelay: "1h", MinBackoff: "1h", MaxBackoff: "1h"})
	pfB := harness.StartPostfix(t, harness.PostfixOptions{})
	downA := startFaultTCP(t, pfA.ReinjectAddr)
	fpA := startFoxproxy(t, pfA.FilterAddr, downA.addr, heldHostConfig(pg, scanA.addr, t.TempDir())...)
	fpB := startFoxproxy(t, pfB.FilterAddr, pfB.ReinjectAddr, heldHostConfig(pg, scanB.addr, t.TempDir())...)
	scanA.set(refused)
	scanB.set(refused)

	var qids []string
	for i := 1; i <= clean; i++ {
		qids = append(qids, sendHeld(t, pfA, i).QueueID)
	}
	qids = append(qids, sendEICAR(t, pfA).QueueID)
	ids := waitHeld(t, pfA, qids)
	if n, out := heldList(t, fpB); n != len(ids) {
		t.Fatalf("B lists %d held messages, want the %d A holds:\n%s", n, len(ids), out)
	}

	db, err := pgx.Connect(context.Background(), pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())

	// A's downstream answers each command 1.5 s late, so a delivery
	// stays "sending" (after RCPT, until the answer to the final dot)
	// for seconds: long enough to find it in the database and kill A then.
	downA.set(slow(1500 * time.Millisecond))
	scanA.set(pass)
	pidA := fpA.PID()
	var sendingID string
	waitUntil(t, "A to be sending a held message", 60*time.Second, func() bool {
		err := db.QueryRow(context.Background(), `SELECT id FROM entries
			WHERE area = 'held' AND claim_pid = $1 AND sending AND claim_expires > now()`, pidA).Scan(&sendingID)
		return err == nil
	})
	fpA.kill(t)
	idx := indexOf(ids, sendingID)
	if idx < 0 || idx >= clean {
		t.Fatalf("A was sending %s, which is none of the clean held messages %v", sendingID, ids[:clean])
	}
	t.Logf("A killed while sending %s (queue ID %s)", sendingID, qids[idx])

	// After the lease the entry is uncertain, and B's listing says so.
	waitUntil(t, "B to list A's interrupted delivery as uncertain", 30*time.Second, func() bool {
		time.Sleep(500 * time.Millisecond) // each look runs the CLI
		_, out := heldList(t, fpB)
		return heldLine(out, sendingID, "[may have been delivered")
	})

	// B's scanner comes back: B rescans everything but the uncertain one.
	scanB.set(pass)
	waitUntil(t, "B to empty the held area but for the uncertain message", 90*time.Second, func() bool {
		time.Sleep(time.Second)
		n, out := heldList(t, fpB)
		return n == 1 && heldLine(out, sendingID, "[may have been delivered")
	})
	pfB.WaitQueueEmpty(t, 20*time.Second)
	// Three more leases and rescan rounds: B must leave it alone.
	time.Sleep(3 * claimLease)
	if n, out := heldList(t, fpB); n != 1 || !heldLine(out, sendingID, "[may have been delivered") {
		t.Fatalf("held area after B's rescan, want only %s, uncertain:\n%s", sendingID, out)
	}
	uncertainMID := fmt.Sprintf("<held-%d@hold.example.test>", idx+1)
	if got := deliveredByMessageID(pfB); got[uncertainMID] != 0 {
		t.Fatalf("B sent %s (the message A was sending when killed) by itself: %v", uncertainMID, got)
	}

	// The administrator's decision, on B: did A's downstream queue it?
	// A's Postfix, retrying only when told to, has delivered whatever it
	// accepted by now; its Maildir answers.
	pfA.WaitQueueEmpty(t, 20*time.Second)
	if deliveredByMessageID(pfA)[uncertainMID] == 1 {
		if r := runFoxproxyCLI(t, "quarantine", "delete", "--held", sendingID, "-config", fpB.ConfigPath); r.code != 0 {
			t.Fatalf("delete --held on B: %+v", r)
		}
	} else {
		if r := runFoxproxyCLI(t, "quarantine", "release", "--held", "--force", sendingID, "-config", fpB.ConfigPath); r.code != 0 {
			t.Fatalf("release --held --force on B: %+v", r)
		}
	}
	pfB.WaitQueueEmpty(t, 20*time.Second)
	time.Sleep(2 * time.Second) // two more rescan intervals: nothing may be sent again

	a, b := deliveredByMessageID(pfA), deliveredByMessageID(pfB)
	for i := 1; i <= clean; i++ {
		mid := fmt.Sprintf("<held-%d@hold.example.test>", i)
		if a[mid]+b[mid] != 1 {
			t.Errorf("%s delivered %d times through A and %d through B, want once in all", mid, a[mid], b[mid])
		}
	}
	for _, got := range []map[string]int{a, b} {
		for mid := range got {
			if !strings.HasPrefix(mid, "<held-") {
				t.Errorf("delivered Message-IDs: A %v, B %v, want only the %d clean ones", a, b, clean)
			}
		}
	}
	if n, out := quarantineEntries(t, fpB.ConfigPath); n != 1 || !strings.Contains(out, ids[clean]) {
		t.Errorf("quarantine seen from B: %d entries, want EICAR (%s) once:\n%s", n, ids[clean], out)
	}
	if n, out := heldList(t, fpB); n != 0 {
		t.Errorf("held area not empty:\n%s", out)
	}
	var left int
	if err := db.QueryRow(context.Background(), "SELECT count(*) FROM entries WHERE area = 'held'").Scan(&left); err != nil || left != 0 {
		t.Errorf("held rows in the database: %d, %v", left, err)
	}
}

func indexOf(list []string, s string) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return -1
}

// heldLine reports whether the listing's line for id contains want.
func heldLine(listing, id, want string) bool {
	for _, line := range strings.Split(listing, "\n") {
		if strings.Contains(line, id) && strings.Contains(line, want) {
			return true
		}
	}
	return false
}

package integration

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/foxproxy/foxproxy/integration/harness"
)

// quarantineMe is the sender the database tests' rule quarantines.
const quarantineMe = "quarantine-me@example.test"

// databaseConfig are the lines that keep custody in pg and quarantine
// mail from quarantineMe.
func databaseConfig(pg *harness.Postgres, qdir string) []string {
	return []string{
		"database: {url: \"" + pg.URL() + "\", timeout: 3s}",
		"quarantine: {dir: " + qdir + "}",
		"admin_probe_interval: 1s",
		"policy:",
		"  rules:",
		"    - {name: held-back, if: {from: [" + quarantineMe + "]}, then: quarantine}",
	}
}

// writeHostConfig writes the configuration a second foxproxy host would
// have: the same database, its own downstream (its own Postfix).
func writeHostConfig(t *testing.T, name, downstream string, pg *harness.Postgres) string {
	t.Helper()
	lines := []string{"listen: " + harness.FreeAddr(t), "downstream: " + downstream, "hostname: " + name}
	lines = append(lines, databaseConfig(pg, filepath.Join(t.TempDir(), "quarantine"))...)
	path := filepath.Join(t.TempDir(), name+".yaml")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func sendQuarantined(t *testing.T, pf *harness.Postfix, subject string) (queueID, entryID string) {
	t.Helper()
	res := harness.Send(t, harness.SendOptions{Server: pf.InboundAddr, From: quarantineMe, Subject: subject,
		Args: []string{"--local-interface", "127.0.0.2"}})
	if res.Code != 250 {
		t.Fatalf("inbound smtpd: %s", res.Reply)
	}
	id := pf.WaitLog(t, res.QueueID+`: to=<rcpt@example\.test>.*status=sent \(250 2\.0\.0 Ok: quarantined as (\S+)\)`, 20*time.Second)[1]
	return res.QueueID, id
}

// With database.url set, a message quarantined by host A is in the
// database (not in quarantine.dir); host B, another configuration on the
// same database with its own Postfix, lists it and releases it through its
// own downstream, exactly once, with the original client kept; two
// releases of one entry from A and B at once deliver it once. The database
// stopped: a quarantine verdict gets 451 and stays in Postfix, clean mail
// is delivered; the database back: the deferred message is quarantined,
// without a restart of foxproxy.
func TestDatabaseCustodyTwoHosts(t *testing.T) {
	pg := harness.StartPostgres(t)
	pfA := harness.StartPostfix(t, harness.PostfixOptions{})
	pfB := harness.StartPostfix(t, harness.PostfixOptions{})
	qdir := filepath.Join(t.TempDir(), "quarantine")
	fpA := startFoxproxy(t, pfA.FilterAddr, pfA.ReinjectAddr, databaseConfig(pg, qdir)...)
	cfgB := writeHostConfig(t, "foxproxy-b.test", pfB.ReinjectAddr, pg)
	pid := fpA.PID()

	queueID, id := sendQuarantined(t, pfA, "first")
	conn, err := pgx.Connect(context.Background(), pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var storedBy string
	if err := conn.QueryRow(context.Background(), "SELECT host FROM entries WHERE area = 'quarantine' AND id = $1", id).Scan(&storedBy); err != nil || storedBy != "foxproxy.test" {
		t.Fatalf("entry %s in the database: host %q, %v", id, storedBy, err)
	}
	if files, _ := os.ReadDir(qdir); len(files) != 0 {
		t.Fatalf("quarantine.dir used with database.url set: %v", files)
	}

	list := runFoxproxyCLI(t, "quarantine", "list", "-config", cfgB)
	if list.code != 0 || !strings.Contains(list.stdout, id) || !strings.Contains(list.stdout, "held-back") {
		t.Fatalf("list on host B: %+v", list)
	}
	mark := pfB.MaillogMark()
	rel := runFoxproxyCLI(t, "quarantine", "release", id, "-config", cfgB)
	m := releasedAs.FindStringSubmatch(rel.stdout)
	if rel.code != 0 || m == nil {
		t.Fatalf("release on host B: %+v", rel)
	}
	got := pfB.WaitLogSince(t, mark, m[2]+`: client=\S+, orig_queue_id=(\S+), orig_client=\S+\[([0-9.]+)\]`, 10*time.Second)
	if got[1] != queueID || got[2] != "127.0.0.2" {
		t.Fatalf("B's re-injection log: orig_queue_id=%s orig_client=%s, want %s and 127.0.0.2", got[1], got[2], queueID)
	}
	msg := pfB.WaitDelivered(t, harness.BoxRcpt, 1, 20*time.Second)[0]
	if r := msg.Header().Get("X-Foxproxy-Released"); !strings.Contains(r, "id="+id) || !strings.Contains(r, "host=foxproxy-b.test") {
		t.Fatalf("X-Foxproxy-Released: %q", r)
	}
	if again := runFoxproxyCLI(t, "quarantine", "release", id, "-config", fpA.ConfigPath); again.code != 1 || !strings.Contains(again.stderr, "no such entry") {
		t.Fatalf("release on A after B released: %+v", again)
	}

	// Two administrators, one on each host, release one entry at once.
	_, id2 := sendQuarantined(t, pfA, "second")
	var wg sync.WaitGroup
	results := make([]cliResult, 2)
	for i, cfg := range []string{fpA.ConfigPath, cfgB} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = runFoxproxyCLI(t, "quarantine", "release", id2, "-config", cfg)
		}()
	}
	wg.Wait()
	if ok := btoi(results[0].code == 0) + btoi(results[1].code == 0); ok != 1 {
		t.Fatalf("%d of two simultaneous releases succeeded: %+v", ok, results)
	}
	pfA.WaitQueueEmpty(t, 20*time.Second)
	pfB.WaitQueueEmpty(t, 20*time.Second)
	if a, b := len(pfA.Delivered(harness.BoxRcpt)), len(pfB.Delivered(harness.BoxRcpt)); a+b != 2 {
		t.Fatalf("delivered %d (A) + %d (B), want 2: the first once, the second once", a, b)
	}

	// The database goes away.
	pg.Stop()
	res := harness.Send(t, harness.SendOptions{Server: pfA.InboundAddr, From: quarantineMe, Subject: "during the outage"})
	if res.Code != 250 {
		t.Fatalf("inbound smtpd: %s", res.Reply)
	}
	pfA.WaitLog(t, res.QueueID+`: to=<rcpt@example\.test>.*status=deferred.*451 4\.3\.0`, 30*time.Second)
	clean := harness.Send(t, harness.SendOptions{Server: pfA.InboundAddr, Subject: "clean during the outage"})
	pfA.WaitLog(t, clean.QueueID+`: to=<rcpt@example\.test>.*status=sent \(250 .*queued as`, 30*time.Second)
	waitStatus(t, fpA, "down")

	// It comes back: the deferred message is quarantined, no restart.
	pg.Start()
	waitStatus(t, fpA, "up")
	pfA.Flush()
	pfA.WaitLog(t, res.QueueID+`: to=<rcpt@example\.test>.*status=sent \(250 2\.0\.0 Ok: quarantined as`, 30*time.Second)
	if !fpA.Running() || fpA.PID() != pid {
		t.Fatal("foxproxy was restarted or died during the outage")
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// waitStatus waits until foxproxy's /status shows the database in state.
func waitStatus(t *testing.T, fp *foxproxy, state string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		resp, err := http.Get(fp.Admin + "/status")
		if err == nil {
			var st struct {
				Dependencies []struct {
					Kind, State, Detail string
				} `json:"dependencies"`
			}
			json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			for _, d := range st.Dependencies {
				if d.Kind == "database" {
					last = d.State + " " + d.Detail
					if d.State == state {
						return
					}
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("database not %s in /status within 30s (last: %q)", state, last)
}

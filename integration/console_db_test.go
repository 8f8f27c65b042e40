package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/foxproxy/foxproxy/integration/harness"
)

// startFoxproxyNamed is startFoxproxy for a host named hostname: a second
// MX host of one site, whose name its audit and its entries carry.
func startFoxproxyNamed(t *testing.T, hostname, listen, downstream string, extra ...string) *foxproxy {
	t.Helper()
	adminAddr := harness.FreeAddr(t)
	cfg := append([]string{"listen: " + listen, "downstream: " + downstream, "hostname: " + hostname, "admin_listen: " + adminAddr}, extra...)
	path := filepath.Join(t.TempDir(), hostname+".yaml")
	if err := os.WriteFile(path, []byte(strings.Join(cfg, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := harness.RunProcess(t, harness.BuildFoxproxy(t), "-config", path)
	p.WaitLog(t, `"foxproxy started"`, 20*time.Second)
	harness.WaitPort(t, listen, 5*time.Second)
	return &foxproxy{Process: p, Addr: listen, ConfigPath: path, Admin: "http://" + adminAddr}
}

// consoleAPI calls a foxproxy's console API with HTTP Basic credentials
// and decodes the JSON answer into out.
func consoleAPI(t *testing.T, fp *foxproxy, method, path, user, password string, out any) int {
	t.Helper()
	req, err := http.NewRequest(method, fp.Admin+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(user, password)
	c := &http.Client{Timeout: 60 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("%s %s: %d, not JSON: %v", method, path, resp.StatusCode, err)
	}
	return resp.StatusCode
}

// withMessageID counts the messages in a box that carry Message-ID id.
func withMessageID(pf *harness.Postfix, id string) int {
	n := 0
	for _, m := range pf.Delivered(harness.BoxRcpt) {
		if m.Header().Get("Message-ID") == id {
			n++
		}
	}
	return n
}

type consoleEvent struct {
	Time                       time.Time
	User, Action, Host, Result string
}

// With the database store, a message quarantined on host A is released
// from host B's console (its JSON API, as an admin of B's console.users):
// B lists A's entry, a viewer's release is refused, the admin's release is
// delivered exactly once, through B's Postfix and never A's. The entry is
// then gone from both hosts, and A's console still shows who released it
// from which host: GET /api/quarantine/{id} answers 404 with the entry's
// history from the audit table.
func TestConsoleReleaseFromAnotherHost(t *testing.T) {
	pg := harness.StartPostgres(t)
	pfA := harness.StartPostfix(t, harness.PostfixOptions{})
	pfB := harness.StartPostfix(t, harness.PostfixOptions{})
	const alicePW, victorPW = "alice: correct horse", "victor: battery staple"
	users := []string{"console:", "  users:",
		`    - {name: alice, role: admin, password_hash: "` + passwdHash(t, alicePW) + `"}`,
		`    - {name: victor, role: viewer, password_hash: "` + passwdHash(t, victorPW) + `"}`,
	}
	fpA := startFoxproxy(t, pfA.FilterAddr, pfA.ReinjectAddr,
		append(databaseConfig(pg, filepath.Join(t.TempDir(), "quarantine")), users...)...)
	fpB := startFoxproxyNamed(t, "foxproxy-b.test", pfB.FilterAddr, pfB.ReinjectAddr,
		append(databaseConfig(pg, filepath.Join(t.TempDir(), "quarantine")), users...)...)

	messageID := fmt.Sprintf("<cross-host.%d@example.test>", time.Now().UnixNano())
	res := harness.Send(t, harness.SendOptions{Server: pfA.InboundAddr, From: quarantineMe, Data: []byte("From: <" + quarantineMe + ">\r\n" +
		"To: <rcpt@example.test>\r\nSubject: released from B\r\nMessage-ID: " + messageID + "\r\n\r\nQuarantined on A.\r\n")})
	if res.Code != 250 {
		t.Fatalf("inbound smtpd of A: %s", res.Reply)
	}
	id := pfA.WaitLog(t, res.QueueID+`: to=<rcpt@example\.test>.*status=sent \(250 2\.0\.0 Ok: quarantined as (\S+)\)`, 20*time.Second)[1]

	var list []struct{ ID, From, Rule, Host string }
	if code := consoleAPI(t, fpB, "GET", "/api/quarantine", "alice", alicePW, &list); code != http.StatusOK {
		t.Fatalf("B's list: %d", code)
	}
	found := false
	for _, e := range list {
		// The entry names the host that took the message in, A.
		found = found || e.ID == id && e.From == quarantineMe && e.Rule == "held-back" && e.Host == "foxproxy.test"
	}
	if !found {
		t.Fatalf("B's console does not list A's entry %s: %+v", id, list)
	}
	var refusal struct{ Error string }
	if code := consoleAPI(t, fpB, "POST", "/api/quarantine/"+id+"/release", "victor", victorPW, &refusal); code != http.StatusForbidden {
		t.Fatalf("a viewer's release on B: %d %+v", code, refusal)
	}

	var rel struct {
		Delivered bool   `json:"delivered"`
		QueuedAs  string `json:"queued_as"`
	}
	if code := consoleAPI(t, fpB, "POST", "/api/quarantine/"+id+"/release", "alice", alicePW, &rel); code != http.StatusOK || !rel.Delivered || rel.QueuedAs == "" {
		t.Fatalf("alice's release on B: %d %+v", code, rel)
	}
	pfB.WaitLog(t, regexp.QuoteMeta(rel.QueuedAs)+`: client=\S+, orig_queue_id=`+regexp.QuoteMeta(res.QueueID), 10*time.Second)
	pfB.WaitDelivered(t, harness.BoxRcpt, 1, 20*time.Second)
	pfA.WaitQueueEmpty(t, 20*time.Second)
	pfB.WaitQueueEmpty(t, 20*time.Second)
	if a, b := withMessageID(pfA, messageID), withMessageID(pfB, messageID); a != 0 || b != 1 {
		t.Fatalf("%s delivered %d times through A's Postfix and %d through B's, want 0 and 1", messageID, a, b)
	}
	fpB.WaitLog(t, `"msg":"console audit","user":"alice","action":"release","area":"quarantine","entry":"`+regexp.QuoteMeta(id)+
		`","host":"foxproxy-b.test".*"result":"delivered, queued as `+regexp.QuoteMeta(rel.QueuedAs)+`"`, 5*time.Second)

	// The entry is gone; A's console shows who released it, and where.
	var gone struct {
		Error   string
		History []consoleEvent
	}
	if code := consoleAPI(t, fpA, "GET", "/api/quarantine/"+id, "victor", victorPW, &gone); code != http.StatusNotFound {
		t.Fatalf("GET of the released entry on A: %d %+v", code, gone)
	}
	if len(gone.History) != 1 || gone.History[0].Action != "release" || gone.History[0].User != "alice" ||
		gone.History[0].Host != "foxproxy-b.test" || gone.History[0].Result != "delivered: queued as "+rel.QueuedAs {
		t.Fatalf("A's history of the entry released on B: %+v", gone)
	}
	// A's admin cannot release it again: nothing more is delivered.
	if code := consoleAPI(t, fpA, "POST", "/api/quarantine/"+id+"/release", "alice", alicePW, &refusal); code != http.StatusNotFound {
		t.Fatalf("a second release on A: %d %+v", code, refusal)
	}
	pfA.WaitQueueEmpty(t, 20*time.Second)
	if a, b := withMessageID(pfA, messageID), withMessageID(pfB, messageID); a != 0 || b != 1 {
		t.Fatalf("after a second release: %d through A, %d through B, want 0 and 1", a, b)
	}
}

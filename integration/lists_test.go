package integration

import (
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/foxproxy/foxproxy/integration/harness"
)

// publisher is a list publisher as the README describes one: a key made
// with `foxproxy bundle keygen`, bundles signed with `foxproxy bundle
// sign`, served over HTTPS.
type publisher struct {
	bin, dir, key, pub string
	srv                *httptest.Server
	caFile             string
	mu                 sync.Mutex
	bundle             []byte
}

func newPublisher(t *testing.T) *publisher {
	t.Helper()
	p := &publisher{bin: harness.BuildFoxproxy(t), dir: t.TempDir()}
	p.key = filepath.Join(p.dir, "bundle.key")
	out := p.run(t, "bundle", "keygen", "-out", p.key)
	m := regexp.MustCompile(`public key \(update.public_key\): (\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("keygen printed no public key:\n%s", out)
	}
	p.pub = m[1]
	p.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		b := p.bundle
		p.mu.Unlock()
		if b == nil {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	}))
	t.Cleanup(p.srv.Close)
	p.caFile = filepath.Join(p.dir, "ca.pem")
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.srv.Certificate().Raw})
	if err := os.WriteFile(p.caFile, ca, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *publisher) run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(p.bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("foxproxy %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// publish signs the given list files as a bundle and serves it.
func (p *publisher) publish(t *testing.T, version string, files map[string]string) {
	t.Helper()
	dir := filepath.Join(p.dir, version)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name+".txt"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(p.dir, version+".tar.gz")
	p.run(t, "bundle", "sign", "-key", p.key, "-dir", dir, "-out", out, "-version", version)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	p.bundle = b
	p.mu.Unlock()
}

func (p *publisher) config(stateDir string) []string {
	return []string{
		"update:",
		"  url: " + p.srv.URL + "/foxproxy/bundle.tar.gz",
		"  public_key: " + p.pub,
		"  interval: 1s",
		"  state_dir: " + stateDir,
		"  ca_file: " + p.caFile,
	}
}

// A client that an update adds to blocked_clients is refused on its next
// message, without a restart; the update's lists also survive a restart
// with the update server gone.
func TestListsUpdateBlocksClientThroughPostfix(t *testing.T) {
	pub := newPublisher(t)
	pub.publish(t, "v1", map[string]string{"blocked_clients": "# nothing of ours yet\n192.0.2.99\n"})
	pf := harness.StartPostfix(t, harness.PostfixOptions{})
	state := t.TempDir()
	cfg := append(pub.config(state), `policy:
  rules:
    - {name: blocked, if: {list: [blocked_clients]}, then: reject}`)
	fp := startFoxproxy(t, pf.FilterAddr, pf.ReinjectAddr, cfg...)
	fp.WaitLog(t, `"list bundle installed".*"to":"v1"`, 10*time.Second)

	sendFrom(t, pf, "127.0.0.7", "before the update")
	m := waitSubject(t, pf, "before the update")
	if tr := m.Header().Get("X-Foxproxy"); !strings.Contains(tr, "lists=clean") {
		t.Fatalf("trace header %q", tr)
	}

	mark := fp.LogMark()
	pub.publish(t, "v2", map[string]string{"blocked_clients": "192.0.2.99\n127.0.0.7\n"})
	fp.WaitLogSince(t, mark, `"list bundle installed".*"from":"v1".*"to":"v2"`, 10*time.Second)

	refused := sendFrom(t, pf, "127.0.0.7", "after the update")
	got := pf.WaitLog(t, refused.QueueID+`: to=<rcpt@example.test>.*dsn=5\.7\.1, status=bounced \((.*)\)`, 20*time.Second)
	t.Logf("bounced: %s", got[1])
	sendFrom(t, pf, "127.0.0.8", "another client")
	waitSubject(t, pf, "another client")
	for _, d := range pf.Delivered(harness.BoxRcpt) {
		if d.Header().Get("Subject") == "after the update" {
			t.Fatal("the newly blocked client's message was delivered")
		}
	}
	lines := fp.waitMessages(t, 3, 10*time.Second)
	var blocked map[string]any
	for _, l := range lines {
		if l["client"] == "127.0.0.7" && l["verdict"] == "reject" {
			blocked = l
		}
	}
	if blocked == nil || blocked["rule"] != "blocked" {
		t.Fatalf("no reject by rule blocked in the log: %v", lines)
	}

	// Restart with the update server gone: the stored v2 is in force
	// before any download, and the failed downloads change nothing.
	fp.Stop()
	pub.srv.Close()
	fp2 := startFoxproxy(t, pf.FilterAddr, pf.ReinjectAddr, cfg...)
	fp2.WaitLog(t, `"list bundle loaded from the state directory".*"version":"v2"`, 10*time.Second)
	fp2.WaitLog(t, `"list update failed; keeping the lists in force".*"reason":"unreachable"`, 10*time.Second)
	again := sendFrom(t, pf, "127.0.0.7", "after the restart")
	pf.WaitLog(t, again.QueueID+`: to=<rcpt@example.test>.*dsn=5\.7\.1, status=bounced`, 20*time.Second)
}

// An approved client skips ERS: the DNS list names it, the policy would
// reject it, and its mail is delivered with ers=skipped.
func TestListsApprovedClientSkipsERS(t *testing.T) {
	rbl := startBlockList(t)
	pf := harness.StartPostfix(t, harness.PostfixOptions{})
	approved := filepath.Join(t.TempDir(), "approved-clients.txt")
	if err := os.WriteFile(approved, []byte("# partners\n127.0.0.3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	startFoxproxy(t, pf.FilterAddr, pf.ReinjectAddr, append(ersConfig(rbl), ersPolicy,
		"lists: {approved_clients: "+approved+"}")...)

	sendFrom(t, pf, "127.0.0.3", "from an approved exploit source")
	m := waitSubject(t, pf, "from an approved exploit source")
	tr := m.Header().Get("X-Foxproxy")
	if !strings.Contains(tr, "lists=listed(approved_clients)") || !strings.Contains(tr, "ers=skipped") {
		t.Fatalf("trace header %q", tr)
	}
	// rbldnsd was never asked about it: ERS did not look it up, not even
	// at MAIL time.
	queries := rbl.Queries()
	if len(queries) == 0 {
		t.Fatal("rbldnsd logged no queries at all: ERS did not run its startup check")
	}
	for _, q := range queries {
		if strings.HasPrefix(q, "3.0.0.127.bl.example.test") {
			t.Errorf("the approved client was looked up: %v", queries)
		}
	}
}

// The status shows the lists in force, the update source, and the real
// clamd's database version (VERSION); the metrics count the entries.
func TestListsStatusAndClamAVDatabase(t *testing.T) {
	clamd := harness.StartClamd(t)
	pub := newPublisher(t)
	pub.publish(t, "v7", map[string]string{"blocked_urls": "evil.example\nphish.example\n"})
	pf := harness.StartPostfix(t, harness.PostfixOptions{})
	blocked := filepath.Join(t.TempDir(), "blocked-clients.txt")
	if err := os.WriteFile(blocked, []byte("192.0.2.0/24\n2001:db8::/32\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fp := startFoxproxy(t, pf.FilterAddr, pf.ReinjectAddr, append(pub.config(t.TempDir()),
		"admin_probe_interval: 1s",
		"lists: {blocked_clients: "+blocked+"}",
		"scan:",
		"  conventional: {url: \"tcp://"+clamd.Addr()+"\"}",
	)...)
	fp.WaitLog(t, `"list bundle installed".*"to":"v7"`, 10*time.Second)

	var st struct {
		Dependencies []struct {
			Kind, Name, State, Detail string
			OK                        bool
			Counters                  map[string]uint64
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	rows := map[string]int{}
	for time.Now().Before(deadline) {
		_, body := httpGet(t, fp.Admin+"/status", "")
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatal(err)
		}
		for i, d := range st.Dependencies {
			rows[d.Kind] = i
		}
		if _, ok := rows["clamav-db"]; ok {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	files, upd, db := st.Dependencies[rows["lists"]], st.Dependencies[rows["update"]], st.Dependencies[rows["clamav-db"]]
	if files.Kind != "lists" || files.State != "loaded" || files.Counters["blocked_clients"] != 2 {
		t.Errorf("lists row %+v", files)
	}
	if upd.Kind != "update" || upd.State != "current" || !upd.OK || !strings.Contains(upd.Detail, "bundle v7") || upd.Counters["blocked_urls"] != 2 {
		t.Errorf("update row %+v", upd)
	}
	if db.Kind != "clamav-db" || db.Name != "conventional" {
		t.Fatalf("no clamav-db row: %+v", st.Dependencies)
	}
	t.Logf("clamav-db row: state %s, %q", db.State, db.Detail)
	if !strings.Contains(db.Detail, "ClamAV ") {
		t.Errorf("clamav-db detail %q", db.Detail)
	}
	// The status page shows the bundle in force and its age.
	dom := harness.BrowserDOM(t, fp.Admin+"/status", 3*time.Second)
	if !regexp.MustCompile(`<tr class="dep ok" data-kind="update" [^>]*data-state="current">.*?<td class="detail">bundle v7, created [^<]+ \([^<]+ old\)</td>`).MatchString(dom) ||
		!regexp.MustCompile(`data-kind="clamav-db" [^>]*>.*?<td class="detail">ClamAV `).MatchString(dom) {
		t.Errorf("status page lacks the update bundle or the ClamAV database:\n%s", dom)
	}

	_, text := httpGet(t, fp.Admin+"/metrics", "")
	for sample, want := range map[string]float64{
		`foxproxy_lists_entries{list="blocked_clients",source="files"}`: 2,
		`foxproxy_lists_entries{list="blocked_urls",source="update"}`:   2,
		`foxproxy_update_consecutive_failures`:                          0,
		`foxproxy_update_failures_total{reason="signature"}`:            0,
	} {
		if got, ok := metric(text, sample); !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", sample, got, ok, want)
		}
	}
	if v, ok := metric(text, `foxproxy_lists_age_seconds{source="update"}`); !ok || v < 0 || v > 3600 {
		t.Errorf("update age %v (present %v)", v, ok)
	}
}

package integration

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/foxproxy/foxproxy/integration/harness"
	"github.com/foxproxy/foxproxy/internal/testutil"
)

func httpGet(t *testing.T, url, accept string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metric returns the value of one sample in a Prometheus text exposition,
// e.g. metric(text, `foxproxy_messages_total{rule="default",verdict="deliver"}`).
func metric(text, sample string) (float64, bool) {
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, sample+" ") {
			v, err := strconv.ParseFloat(strings.TrimSpace(line[len(sample):]), 64)
			return v, err == nil
		}
	}
	return 0, false
}

type statusJSON struct {
	ScanMode     string `json:"scan_mode"`
	Dependencies []struct {
		Kind, Name, State string
		OK                bool
	} `json:"dependencies"`
	Recent []struct{ Verdict, Client string } `json:"recent"`
}

func depState(t *testing.T, admin, kind, name string) string {
	t.Helper()
	_, body := httpGet(t, admin+"/status", "application/json")
	var st statusJSON
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("status JSON: %v\n%s", err, body)
	}
	for _, d := range st.Dependencies {
		if d.Kind == kind && d.Name == name {
			return d.State
		}
	}
	t.Fatalf("no dependency %s %s in %s", kind, name, body)
	return ""
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, what, timeout, cond)
}

// runStatus runs `foxproxy status` against the admin endpoint.
func runStatus(t *testing.T, admin string) (string, int) {
	t.Helper()
	out, err := exec.Command(harness.BuildFoxproxy(t), "status", "-admin", admin).CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

var depRow = regexp.MustCompile(`<tr class="dep (\w+)" data-kind="scan" data-name="conventional" data-state="(\w+)">`)

// What an administrator sees: counters after known traffic, and a stopped
// scanner shown as down (and then up again) within one probe interval in
// /status, /metrics, the status page in a real browser and `foxproxy
// status`; /readyz follows the downstream.
func TestOperationsShowTrafficAndOutages(t *testing.T) {
	clamd := harness.StartClamd(t)
	rbl := startBlockList(t)
	qdir, _ := quarantineConfig(t)
	pf := harness.StartPostfix(t, harness.PostfixOptions{})
	fp := startFoxproxy(t, pf.FilterAddr, pf.ReinjectAddr, append(ersConfig(rbl),
		"admin_probe_interval: 1s",
		"scan:",
		"  conventional: {url: \"tcp://"+clamd.Addr()+"\"}",
		"  timeout: 5s",
		"quarantine: {dir: "+qdir+"}",
	)...)

	for i := 0; i < 3; i++ {
		sendFrom(t, pf, "127.0.0.5", "clean "+strconv.Itoa(i))
	}
	sendEICAR(t, pf)
	fp.waitMessages(t, 4, 20*time.Second)

	_, text := httpGet(t, fp.Admin+"/metrics", "")
	for sample, want := range map[string]float64{
		`foxproxy_messages_total{rule="default",verdict="deliver"}`:        3,
		`foxproxy_messages_total{rule="on_infected",verdict="quarantine"}`: 1,
		`foxproxy_smtp_replies_total{class="2xx",command="DATA"}`:          4,
		`foxproxy_stage_findings_total{stage="scan",status="infected"}`:    1,
		`foxproxy_stage_findings_total{stage="ers",status="clean"}`:        4,
		`foxproxy_dependency_up{kind="scan",name="conventional"}`:          1,
		`foxproxy_dependency_up{kind="downstream",name="smtpd"}`:           1,
		`foxproxy_scan_mode{mode="conventional"}`:                          1,
		`foxproxy_spool_bytes`: 0,
	} {
		if got, ok := metric(text, sample); !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", sample, got, ok, want)
		}
	}
	if v, ok := metric(text, "foxproxy_dns_cache_misses_total"); !ok || v < 1 {
		t.Errorf("DNS cache misses not counted: %v %v", v, ok)
	}
	if out, code := runStatus(t, fp.Admin); code != 0 || !strings.Contains(out, ": OK") {
		t.Fatalf("foxproxy status with everything up: exit %d\n%s", code, out)
	}

	// Stop the scanner: within one probe interval everything says so.
	clamd.Stop()
	waitFor(t, "/status to show clamd down", 5*time.Second, func() bool {
		return depState(t, fp.Admin, "scan", "conventional") == "down"
	})
	_, text = httpGet(t, fp.Admin+"/metrics", "")
	if v, _ := metric(text, `foxproxy_dependency_up{kind="scan",name="conventional"}`); v != 0 {
		t.Errorf("dependency_up gauge for a stopped clamd: %v", v)
	}
	out, code := runStatus(t, fp.Admin)
	if code != 1 || !regexp.MustCompile(`(?m)^! scan conventional +down`).MatchString(out) {
		t.Fatalf("foxproxy status with clamd down: exit %d\n%s", code, out)
	}
	dom := harness.BrowserDOM(t, fp.Admin+"/status", 3*time.Second)
	if m := depRow.FindStringSubmatch(dom); m == nil || m[1] != "bad" || m[2] != "down" {
		t.Fatalf("status page does not show the scanner down:\n%s", dom)
	}
	// downstream, the ERS zone, clamd, and clamd's signature database.
	if !strings.Contains(dom, "1 of 4 dependencies not up") {
		t.Errorf("status page banner:\n%s", dom)
	}
	if !strings.Contains(dom, "<td>on_infected</td>") || !strings.Contains(dom, "<td>127.0.0.5</td>") {
		t.Errorf("status page lacks the recent verdicts:\n%s", dom)
	}

	clamd.Start()
	waitFor(t, "/status to show clamd up again", 5*time.Second, func() bool {
		return depState(t, fp.Admin, "scan", "conventional") == "up"
	})
	dom = harness.BrowserDOM(t, fp.Admin+"/status", 3*time.Second)
	if m := depRow.FindStringSubmatch(dom); m == nil || m[1] != "ok" || m[2] != "up" {
		t.Fatalf("status page after recovery:\n%s", dom)
	}
	if _, code := runStatus(t, fp.Admin); code != 0 {
		t.Fatalf("foxproxy status after recovery: exit %d", code)
	}

	// /readyz follows the downstream smtpd.
	if code, _ := httpGet(t, fp.Admin+"/readyz", ""); code != 200 {
		t.Fatalf("/readyz with everything up: %d", code)
	}
	pf.Stop()
	waitFor(t, "/readyz to fail with the downstream down", 5*time.Second, func() bool {
		code, _ := httpGet(t, fp.Admin+"/readyz", "")
		return code == 503
	})
	fp.WaitLog(t, `"dependency state changed".*"kind":"downstream".*"to":"down"`, 5*time.Second)
	pf.Start()
	waitFor(t, "/readyz to pass again", 5*time.Second, func() bool {
		code, _ := httpGet(t, fp.Admin+"/readyz", "")
		return code == 200
	})
	if code, _ := httpGet(t, fp.Admin+"/healthz", ""); code != 200 {
		t.Fatalf("/healthz: %d", code)
	}
	hc, err := exec.Command(harness.BuildFoxproxy(t), "healthcheck", "-admin", fp.Admin).CombinedOutput()
	if err != nil || !strings.Contains(string(hc), "ready") {
		t.Fatalf("foxproxy healthcheck: %v %s", err, hc)
	}
}

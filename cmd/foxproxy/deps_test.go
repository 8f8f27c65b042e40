package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/foxproxy/foxproxy/admin"
	"github.com/foxproxy/foxproxy/config"
	"github.com/foxproxy/foxproxy/metrics"
)

// closedAddr is a loopback address where nothing listens on network.
func closedAddr(t *testing.T, network string) string {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().String()
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// The key service (the failure table's row 5) and the click service's
// reputation backend (row 6) are dependencies like the others: rows in
// /status, in `foxproxy status` and in foxproxy_dependency_up.
func TestStatusShowsKeyServiceAndClickBackend(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "click-k1")
	if err := os.WriteFile(secret, []byte(strings.Repeat("s", 40)), 0o600); err != nil {
		t.Fatal(err)
	}
	wkdAddr := closedAddr(t, "tcp")
	path := filepath.Join(dir, "foxproxy.yaml")
	yaml := `downstream: ` + closedAddr(t, "tcp") + `
dns: {servers: ["` + closedAddr(t, "udp") + `"], timeout: 500ms}
wrs:
  zones: [{zone: dbl.example.test}]
  breaker_failures: 1
  breaker_probe_interval: 1h
click:
  listen: 127.0.0.1:0
  base_url: https://click.example.test
  on_unavailable: warn
  keys: [{id: k1, secret_file: ` + secret + `}]
encryption:
  openpgp:
    wkd: true
    timeout: 2s
    resolve: {openpgpkey.example.org: "` + wkdAddr + `", example.org: "` + wkdAddr + `"}
`
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := wire(cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.close)
	monitor := admin.NewMonitor(cfg.Downstream, time.Hour, zap.NewNop())
	monitor.SetSources(w.sources())
	m := metrics.New(metrics.Gauges{Dependencies: monitor.Dependencies})
	h := &admin.Handler{Monitor: monitor, Recent: admin.NewRecent(), Registry: m.Registry,
		Info: admin.Info{Version: "test", Started: time.Now(), Listen: func() string { return "" }, Sessions: func() int { return 0 }}}
	srv := httptest.NewServer(h.ServeMux())
	t.Cleanup(srv.Close)

	rows := func() map[string]admin.Dependency {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/status", nil)
		req.Header.Set("Accept", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var st admin.Status
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			t.Fatal(err)
		}
		out := map[string]admin.Dependency{}
		for _, d := range st.Dependencies {
			out[d.Kind+" "+d.Name] = d
		}
		return out
	}
	metricsText := func() string {
		t.Helper()
		resp, err := http.Get(srv.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	wantMetrics := func(lines ...string) {
		t.Helper()
		text := metricsText()
		for _, l := range lines {
			if !strings.Contains(text, l+"\n") {
				t.Errorf("metrics lack %q", l)
			}
		}
	}

	// Nothing asked yet: both healthy.
	r := rows()
	if d := r["encryption wkd"]; d.State != "unchecked" || !d.OK {
		t.Errorf("encryption wkd at start: %+v", d)
	}
	if d := r["click wrs"]; d.State != "up" || !d.OK || d.Target != "dbl.example.test" {
		t.Errorf("click wrs at start: %+v", d)
	}
	wantMetrics(`foxproxy_dependency_up{kind="encryption",name="wkd"} 1`, `foxproxy_dependency_up{kind="click",name="wrs"} 1`)

	// A key lookup that gets no answer, and a click check whose DNS
	// list does not answer (the breaker opens after one failure).
	ctx := context.Background()
	if got := w.enc.Lookup(ctx, []string{"alice@example.org"}); got[0].Outcome != "unavailable" {
		t.Fatalf("lookup: %+v", got[0])
	}
	if _, err := w.wrs.CheckURL(ctx, "https://www.example.net/"); err == nil {
		t.Fatal("click check answered without a DNS server")
	}
	monitor.ProbeNow(ctx) // asks WKD again: still refused

	r = rows()
	if d := r["encryption wkd"]; d.State != "failing" || d.OK || !strings.Contains(d.LastError, "connection refused") ||
		strings.Contains(d.LastError, "alice") || d.Counters["probes"] != 1 || d.Counters["unavailable"] != 2 ||
		!strings.Contains(d.Detail, "on_key_service_unavailable=quarantine") {
		t.Errorf("encryption wkd after a failed lookup: %+v", d)
	}
	if d := r["click wrs"]; d.State != "down" || d.OK || !strings.Contains(d.Detail, "dbl.example.test") ||
		!strings.Contains(d.Detail, "on_unavailable=warn") || d.Since.IsZero() {
		t.Errorf("click wrs with its backend's breaker open: %+v", d)
	}
	wantMetrics(`foxproxy_dependency_up{kind="encryption",name="wkd"} 0`, `foxproxy_dependency_up{kind="click",name="wrs"} 0`,
		`foxproxy_dependency_state{kind="encryption",name="wkd",state="failing"} 1`,
		`foxproxy_dependency_state{kind="click",name="wrs",state="down"} 1`)

	// `foxproxy status` shows both rows and exits 1.
	res := runCLI("status", "-admin", srv.URL)
	if res.code != 1 || !strings.Contains(res.out, "encryption wkd") || !strings.Contains(res.out, "click wrs") {
		t.Errorf("foxproxy status: exit %d\n%s%s", res.code, res.out, res.errOut)
	}
}

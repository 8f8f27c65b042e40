package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/foxproxy/foxproxy/proxy"
)

func TestRecentKeepsTheLast50NewestFirst(t *testing.T) {
	r := NewRecent()
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	for i := 0; i < 120; i++ {
		r.Message(proxy.MessageEvent{Time: now.Add(time.Duration(i) * time.Second), ID: string(rune('a' + i%26)),
			Verdict: "deliver", Client: netip.MustParseAddr("192.0.2.1")})
	}
	recent, rate, total := r.Snapshot(now.Add(120 * time.Second))
	if len(recent) != 50 || total != 120 {
		t.Fatalf("%d recent, %d total", len(recent), total)
	}
	if !recent[0].Time.After(recent[1].Time) || recent[0].Time != now.Add(119*time.Second) {
		t.Fatalf("not newest first: %v %v", recent[0].Time, recent[1].Time)
	}
	// 120 messages within the 5-minute window: 24 per minute.
	if rate != 24 {
		t.Fatalf("rate %v per minute", rate)
	}
	// Ten minutes later the window is empty.
	if _, rate, _ := r.Snapshot(now.Add(10 * time.Minute)); rate != 0 {
		t.Fatalf("stale rate %v", rate)
	}
}

func testHandler(t *testing.T, downstream string) *Handler {
	m := NewMonitor(downstream, time.Hour, zap.NewNop())
	m.ProbeNow(context.Background())
	return &Handler{Monitor: m, Recent: NewRecent(), Registry: prometheus.NewRegistry(),
		Info: Info{Version: "test", Started: time.Now(), Listen: func() string { return "127.0.0.1:1" }, Sessions: func() int { return 0 }}}
}

func TestReadyzFollowsTheDownstream(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("220-mx.example ESMTP\r\n220 ready\r\n"))
			c.Close()
		}
	}()
	up := testHandler(t, ln.Addr().String())
	srv := httptest.NewServer(up.ServeMux())
	defer srv.Close()
	if err := Ready(context.Background(), srv.URL); err != nil {
		t.Fatalf("ready with a greeting downstream: %v", err)
	}
	ln.Close()
	up.Monitor.ProbeNow(context.Background())
	if err := Ready(context.Background(), srv.URL); err == nil || !strings.Contains(err.Error(), "downstream") {
		t.Fatalf("ready with the downstream gone: %v", err)
	}
}

func TestStatusNegotiatesHTMLAndJSON(t *testing.T) {
	h := testHandler(t, "127.0.0.1:1")
	srv := httptest.NewServer(h.ServeMux())
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL+"/status", nil)
	req.Header.Set("Accept", "text/html,application/xhtml+xml")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("browser got %v %v", resp.Header.Get("Content-Type"), err)
	}
	resp.Body.Close()
	st, err := Fetch(context.Background(), srv.URL)
	if err != nil || st.Version != "test" || len(st.Dependencies) != 1 || st.Dependencies[0].OK || st.Healthy() {
		t.Fatalf("JSON status: %+v %v", st, err)
	}
	var b bytes.Buffer
	Print(&b, st)
	if !strings.Contains(b.String(), "PROBLEM: 1 of 1 dependencies not up") || !strings.Contains(b.String(), "! downstream smtpd") {
		t.Fatalf("terminal output:\n%s", b.String())
	}
	if resp, _ := http.Get(srv.URL + "/debug/pprof/"); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("pprof served without admin_pprof: %d", resp.StatusCode)
	}
}

// The terminal shows a healthy row's detail (the list bundle in force, the
// ClamAV database) and a failing row's error.
func TestPrintShowsDetailOrError(t *testing.T) {
	now := time.Now()
	st := Status{Now: now, Dependencies: []Dependency{
		{Kind: "update", Name: "lists", State: "up", OK: true, Since: now, Detail: "bundle v7, 3h old"},
		{Kind: "scan", Name: "conventional", State: "down", Since: now, Detail: "clamd", LastError: "connection refused"},
	}}
	var b bytes.Buffer
	Print(&b, st)
	out := b.String()
	if !strings.Contains(out, "bundle v7, 3h old") || !strings.Contains(out, "connection refused") || strings.Contains(out, "  clamd\n") {
		t.Fatalf("terminal output:\n%s", out)
	}
}

// serveFrom runs one request through the admin mux as if it arrived on a
// connection from remote to local.
func serveFrom(h *Handler, local, remote, path, accept string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, path, nil)
	req.RemoteAddr = remote
	req = req.WithContext(context.WithValue(req.Context(), http.LocalAddrContextKey, net.TCPAddrFromAddrPort(netip.MustParseAddrPort(local))))
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	rec := httptest.NewRecorder()
	h.ServeMux().ServeHTTP(rec, req)
	return rec
}

// A non-loopback admin_listen (a container's 0.0.0.0) serves health and
// metrics to the orchestrator and the status without the last messages;
// a client on loopback still sees them.
func TestStatusShowsMailDataOnlyOverLoopback(t *testing.T) {
	h := testHandler(t, "127.0.0.1:1")
	h.AdminListen, h.Pprof = "0.0.0.0:10080", true
	h.Recent.Message(proxy.MessageEvent{Time: time.Now(), ID: "msgid-7f3a", From: "alice@sender.example",
		Verdict: "deliver", Client: netip.MustParseAddr("192.0.2.77")})
	// A failed ERS lookup's error names the client, reversed in the DNS
	// question; a WRS one a host linked from a message.
	h.Monitor.SetSources(&Sources{Dependencies: func() []Dependency {
		return []Dependency{
			{Kind: "ers", Name: "zen.example", State: "up", OK: true, LastError: "dns: 77.2.0.192.zen.example A: server 127.0.0.1:53: i/o timeout"},
			{Kind: "wrs", Name: "dbl.example", State: "closed", OK: true, LastError: "dns: phish-link.example.dbl.example A: refused"},
		}
	}})
	mailData := []string{"msgid-7f3a", "alice@sender.example", "192.0.2.77", "77.2.0.192", "phish-link.example"}

	for _, c := range []struct{ name, local, remote string }{
		{"other host", "198.18.0.2:10080", "198.18.0.1:40000"},
		{"other host to a mapped address", "[::ffff:198.18.0.2]:10080", "[::ffff:198.18.0.1]:40000"},
		{"loopback source, outside address", "198.18.0.2:10080", "127.0.0.1:40000"},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, path := range []string{"/healthz", "/metrics"} {
				if rec := serveFrom(h, c.local, c.remote, path, ""); rec.Code != http.StatusOK {
					t.Errorf("%s: %d %s", path, rec.Code, rec.Body)
				}
			}
			rec := serveFrom(h, c.local, c.remote, "/status", "application/json")
			body := rec.Body.String()
			if rec.Code != http.StatusOK {
				t.Fatalf("/status: %d %s", rec.Code, body)
			}
			for _, s := range mailData {
				if strings.Contains(body, s) {
					t.Errorf("/status shows %q to %s:\n%s", s, c.remote, body)
				}
			}
			var st Status
			if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
				t.Fatal(err)
			}
			if st.Messages != 1 || len(st.Dependencies) != 3 || st.Dependencies[1].LastError != "i/o timeout" ||
				st.Dependencies[2].LastError != "refused" || st.Recent == nil || len(st.Recent) != 0 ||
				!strings.Contains(st.MailDataWithheld, "admin_listen 0.0.0.0:10080") ||
				!strings.Contains(st.MailDataWithheld, "http://127.0.0.1:10080") {
				t.Errorf("status without mail data: %+v", st)
			}
			var b bytes.Buffer
			Print(&b, st)
			if !strings.Contains(b.String(), "LAST MESSAGES: not shown: mail data") {
				t.Errorf("terminal output:\n%s", b.String())
			}
			page := serveFrom(h, c.local, c.remote, "/status", "text/html")
			if page.Code != http.StatusOK || !strings.Contains(page.Body.String(), "mail_data_withheld") {
				t.Errorf("status page: %d", page.Code)
			}
			rec = serveFrom(h, c.local, c.remote, "/debug/pprof/", "")
			if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "admin_listen 0.0.0.0:10080") {
				t.Errorf("pprof: %d %s", rec.Code, rec.Body)
			}
		})
	}
	for _, c := range []struct{ local, remote string }{
		{"127.0.0.1:10080", "127.0.0.1:40000"},
		{"[::1]:10080", "[::1]:40000"},
		{"[::ffff:127.0.0.1]:10080", "[::ffff:127.0.0.1]:40000"},
	} {
		rec := serveFrom(h, c.local, c.remote, "/status", "application/json")
		var st Status
		if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
			t.Fatal(err)
		}
		if len(st.Recent) != 1 || st.Recent[0].From != "alice@sender.example" || st.Recent[0].ID != "msgid-7f3a" || st.MailDataWithheld != "" ||
			!strings.Contains(st.Dependencies[1].LastError, "77.2.0.192") {
			t.Errorf("loopback %s: %+v", c.remote, st)
		}
		if rec := serveFrom(h, c.local, c.remote, "/debug/pprof/", ""); rec.Code != http.StatusOK {
			t.Errorf("pprof over loopback %s: %d", c.remote, rec.Code)
		}
	}
}

// With console accounts, mail data follows the login, not the address:
// a logged-in request from another host gets it, a request on loopback
// without a login does not. With admin_metrics_auth, /metrics wants the
// login too; health stays open; the console is mounted.
func TestMailDataFollowsConsoleLogin(t *testing.T) {
	h := testHandler(t, "127.0.0.1:1")
	h.AdminListen = "0.0.0.0:10080"
	h.Recent.Message(proxy.MessageEvent{Time: time.Now(), ID: "msgid-7f3a", From: "alice@sender.example", Verdict: "deliver"})
	h.Accounts = fakeAccounts{}
	h.MetricsAuth = func() bool { return true }
	h.Console = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("console " + r.URL.Path)) })

	status := func(local, remote string, login bool) Status {
		t.Helper()
		req := httptest.NewRequest(http.MethodGet, "/status", nil)
		req.RemoteAddr = remote
		req = req.WithContext(context.WithValue(req.Context(), http.LocalAddrContextKey, net.TCPAddrFromAddrPort(netip.MustParseAddrPort(local))))
		if login {
			req.Header.Set("Authorization", "Basic good")
		}
		rec := httptest.NewRecorder()
		h.ServeMux().ServeHTTP(rec, req)
		var st Status
		if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	if st := status("198.18.0.2:10080", "198.18.0.1:40000", true); len(st.Recent) != 1 || st.MailDataWithheld != "" {
		t.Errorf("logged in from another host: %+v", st)
	}
	if st := status("127.0.0.1:10080", "127.0.0.1:40000", false); len(st.Recent) != 0 || !strings.Contains(st.MailDataWithheld, "console.users") {
		t.Errorf("loopback without a login: %+v", st)
	}
	if rec := serveFrom(h, "198.18.0.2:10080", "198.18.0.1:40000", "/metrics", ""); rec.Code != http.StatusUnauthorized || rec.Header().Get("WWW-Authenticate") == "" {
		t.Errorf("/metrics without a login: %d", rec.Code)
	}
	for _, p := range []string{"/healthz", "/console/messages", "/api/quarantine"} {
		rec := serveFrom(h, "198.18.0.2:10080", "198.18.0.1:40000", p, "")
		if rec.Code != http.StatusOK || p != "/healthz" && rec.Body.String() != "console "+p {
			t.Errorf("%s: %d %s", p, rec.Code, rec.Body)
		}
	}
}

type fakeAccounts struct{}

func (fakeAccounts) HasUsers() bool { return true }
func (fakeAccounts) LoggedIn(r *http.Request) bool {
	return r.Header.Get("Authorization") == "Basic good"
}

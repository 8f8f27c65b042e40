package admin

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

//go:embed status.html
var statusPage []byte

// Info describes the running proxy for /status.
type Info struct {
	Version  string
	Started  time.Time
	Listen   func() string // "" while not listening
	Sessions func() int
}

// Handler serves the admin endpoints.
type Handler struct {
	Monitor  *Monitor
	Recent   *Recent
	Registry *prometheus.Registry
	Info     Info
	Pprof    bool
	// AdminListen is the configured admin_listen, named when mail data is
	// withheld from a request that did not come over loopback.
	AdminListen string
	// Console, when set, serves the web console under /console/ and its
	// API under /api/ (package console).
	Console http.Handler
	// Accounts, when set and it has users (console.users), decides who
	// gets mail data: logged-in requests, wherever they come from,
	// instead of requests over loopback.
	Accounts Accounts
	// MetricsAuth, when set and true, puts /metrics behind a login
	// (admin_metrics_auth); it is asked per request, so a reload applies.
	MetricsAuth func() bool
}

// Accounts are the console's accounts (package console's Server).
type Accounts interface {
	// HasUsers reports whether any account is configured.
	HasUsers() bool
	// LoggedIn reports whether r carries a valid login (a session cookie
	// or HTTP Basic credentials).
	LoggedIn(r *http.Request) bool
}

// ServeMux returns the admin endpoints:
//
//	/healthz       200 while the process runs
//	/readyz        200 when foxproxy listens and the downstream answered its last probe, else 503
//	/metrics       Prometheus
//	/status        JSON, or the status page for a browser (Accept: text/html)
//	/debug/pprof/  only with admin_pprof: true
//
//	/console/, /api/  the web console and its API, when Console is set
//
// Without console accounts the admin endpoint has no login: mail data
// (the last verdicts: senders, clients, message IDs) goes only to requests
// that came over loopback (see FromLoopback); any other request gets the
// status without it. With accounts (Accounts has users), mail data goes to a
// logged-in request only, loopback or not. pprof is for loopback either
// way. Health and metrics hold no mail data and are served to anyone who
// reaches admin_listen (an orchestrator probes them from outside the
// container); metrics behind a login while MetricsAuth says so.
func (h *Handler) ServeMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", h.readyz)
	mux.Handle("/metrics", h.metricsAuth(promhttp.HandlerFor(h.Registry, promhttp.HandlerOpts{})))
	if h.Console != nil {
		mux.Handle("/console/", h.Console)
		mux.Handle("/api/", h.Console)
	}
	mux.HandleFunc("/status", h.status)
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/status", http.StatusFound)
	})
	if h.Pprof {
		mux.HandleFunc("/debug/pprof/", h.loopbackOnly(pprof.Index))
		mux.HandleFunc("/debug/pprof/cmdline", h.loopbackOnly(pprof.Cmdline))
		mux.HandleFunc("/debug/pprof/profile", h.loopbackOnly(pprof.Profile))
		mux.HandleFunc("/debug/pprof/symbol", h.loopbackOnly(pprof.Symbol))
		mux.HandleFunc("/debug/pprof/trace", h.loopbackOnly(pprof.Trace))
	}
	return mux
}

func (h *Handler) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	switch {
	case h.Info.Listen() == "":
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte("not listening\n"))
	case !h.Monitor.DownstreamOK():
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte("downstream not reachable\n"))
	default:
		w.Write([]byte("ready\n"))
	}
}

// FromLoopback reports whether r came over loopback: both ends of its
// connection are loopback addresses, so the client runs in foxproxy's own
// network namespace (the host, or the container / pod), as on a loopback
// admin_listen. The kernel does not route 127.0.0.0/8 or ::1 in from
// another interface (RFC 1122 §3.2.1.3, RFC 4291 §2.5.3), so a host
// elsewhere cannot pass for such a client.
func FromLoopback(r *http.Request) bool {
	local, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return false
	}
	la, err := netip.ParseAddrPort(local.String())
	if err != nil {
		return false
	}
	ra, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	return la.Addr().Unmap().IsLoopback() && ra.Addr().Unmap().IsLoopback()
}

// mailData reports whether r may see mail data: with console accounts,
// when it carries a login; without, when it came over loopback.
func (h *Handler) mailData(r *http.Request) bool {
	if h.withAccounts() {
		return h.Accounts.LoggedIn(r)
	}
	return FromLoopback(r)
}

func (h *Handler) withAccounts() bool { return h.Accounts != nil && h.Accounts.HasUsers() }

// metricsAuth answers 401 to a request without a console login while
// admin_metrics_auth is on.
func (h *Handler) metricsAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.MetricsAuth != nil && h.MetricsAuth() && !(h.withAccounts() && h.Accounts.LoggedIn(r)) {
			w.Header().Set("WWW-Authenticate", `Basic realm="foxproxy", charset="UTF-8"`)
			http.Error(w, "login needed (admin_metrics_auth: true): HTTP Basic with a console.users account", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// withheldReason says why a request gets no mail data; the status JSON,
// the status page and `foxproxy status` show it.
func (h *Handler) withheldReason() string {
	if h.withAccounts() {
		return "mail data (the last messages: senders, clients, message IDs) is shown only after a login (console.users): " +
			"log in at /console/login, or send HTTP Basic credentials"
	}
	port := "PORT"
	if _, p, err := net.SplitHostPort(h.AdminListen); err == nil {
		port = p
	}
	return fmt.Sprintf("mail data (the last messages: senders, clients, message IDs) is shown only to clients on loopback: "+
		"admin_listen %s accepts other hosts and the admin endpoint has no login; "+
		"ask from inside foxproxy's network namespace, e.g. foxproxy status -admin http://127.0.0.1:%s, "+
		"or set console.users to log in from other hosts", h.AdminListen, port)
}

// withoutMailData is the status as a client off loopback gets it: no
// recent verdicts, and the ERS and WRS rows' last error cut to its cause
// ("i/o timeout"), because a failed lookup's error names its DNS question,
// which holds the connecting client's address (ERS) or a host linked from a
// message (WRS). The Dependencies slice is the snapshot's own.
func (h *Handler) withoutMailData(st Status) Status {
	st.Recent = []Verdict{}
	st.MailDataWithheld = h.withheldReason()
	for i, d := range st.Dependencies {
		if d.Kind == "ers" || d.Kind == "wrs" {
			if j := strings.LastIndex(d.LastError, ": "); j >= 0 {
				st.Dependencies[i].LastError = d.LastError[j+2:]
			}
		}
	}
	return st
}

// loopbackOnly answers 403 to a request that did not come over loopback.
func (h *Handler) loopbackOnly(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !FromLoopback(r) {
			http.Error(w, fmt.Sprintf("forbidden: served only to clients on loopback: admin_listen %s accepts other hosts", h.AdminListen), http.StatusForbidden)
			return
		}
		next(w, r)
	}
}

// Snapshot assembles the status, mail data included.
func (h *Handler) Snapshot() Status {
	now := time.Now()
	st := Status{
		Version: h.Info.Version, Started: h.Info.Started, Now: now,
		Listen: h.Info.Listen(), Sessions: h.Info.Sessions(),
		Dependencies: h.Monitor.Dependencies(),
	}
	st.ScanMode, st.ScanModeReason = h.Monitor.ScanMode()
	if held, ok := h.Monitor.Held(); ok {
		st.Held = &held
	}
	st.Recent, st.MessagesPerMinute, st.Messages = h.Recent.Snapshot(now)
	if st.Recent == nil {
		st.Recent = []Verdict{}
	}
	return st
}

func (h *Handler) status(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if wantsHTML(r) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		// The page is static: it fetches this same URL as JSON and renders
		// it, and again every few seconds.
		w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'")
		w.Write(statusPage)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	st := h.Snapshot()
	if !h.mailData(r) {
		st = h.withoutMailData(st)
	}
	enc.Encode(st)
}

func wantsHTML(r *http.Request) bool {
	switch r.URL.Query().Get("format") {
	case "json":
		return false
	case "html":
		return true
	}
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

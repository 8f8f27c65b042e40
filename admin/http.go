package admin

import (
	_ "embed"
	"encoding/json"
	"net/http"
	"net/http/pprof"
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
}

// ServeMux returns the admin endpoints:
//
//	/healthz       200 while the process runs
//	/readyz        200 when foxproxy listens and the downstream answered its last probe, else 503
//	/metrics       Prometheus
//	/status        JSON, or the status page for a browser (Accept: text/html)
//	/debug/pprof/  only with admin_pprof: true
func (h *Handler) ServeMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", h.readyz)
	mux.Handle("/metrics", promhttp.HandlerFor(h.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/status", h.status)
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/status", http.StatusFound)
	})
	if h.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
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

// Snapshot assembles the status.
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
	enc.Encode(h.Snapshot())
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

// Package admin is foxproxy's operations side: the admin HTTP listener
// (/healthz, /readyz, /metrics, /status with a status page, optional
// pprof), the health monitor that probes every dependency on a schedule,
// and the client that `foxproxy status` and the container health check use.
//
// Every external dependency is reported in one shape (health.Report, here
// Dependency), by whoever owns it: the ERS zones and WRS backends, the
// scanners, the local lists and their updater, the key service, and the
// downstream smtpd, whose owner is the monitor here.
package admin

import (
	"sync"
	"time"

	"github.com/foxproxy/foxproxy/health"
	"github.com/foxproxy/foxproxy/proxy"
)

// Dependency is one external dependency's health, in the shape every
// owner reports it (package health).
type Dependency = health.Report

// Verdict is one recent message on the status page: no content, no
// subject, only what an administrator needs to see what happened.
type Verdict struct {
	Time    time.Time `json:"time"`
	ID      string    `json:"id"`
	Client  string    `json:"client"`
	From    string    `json:"from"`
	Verdict string    `json:"verdict"`
	Rule    string    `json:"rule,omitempty"`
	Reply   int       `json:"reply,omitempty"`
}

// Status is what /status returns.
type Status struct {
	Version  string    `json:"version"`
	Started  time.Time `json:"started"`
	Now      time.Time `json:"now"`
	Listen   string    `json:"listen"`
	Sessions int       `json:"sessions"`
	// ScanMode is the scan stage's active mode ("" without scanning), and
	// ScanModeReason why it is that.
	ScanMode       string       `json:"scan_mode,omitempty"`
	ScanModeReason string       `json:"scan_mode_reason,omitempty"`
	Dependencies   []Dependency `json:"dependencies"`
	// MessagesPerMinute is the rate over the last five minutes.
	MessagesPerMinute float64   `json:"messages_per_minute"`
	Messages          uint64    `json:"messages"`
	Recent            []Verdict `json:"recent"`
	// MailDataWithheld, when set, says why Recent is empty: the request
	// did not come over loopback.
	MailDataWithheld string `json:"mail_data_withheld,omitempty"`
	// Held is set when the configuration holds mail for rescan.
	Held *Held `json:"held,omitempty"`
}

// Healthy reports whether every dependency is OK.
func (s Status) Healthy() bool {
	for _, d := range s.Dependencies {
		if !d.OK {
			return false
		}
	}
	return true
}

// Recent keeps the last verdicts and the message rate. It is a
// proxy.Observer (only Message does anything).
type Recent struct {
	mu    sync.Mutex
	ring  []Verdict
	next  int
	full  bool
	total uint64
	// Messages per second over the rate window, as a ring of buckets: the
	// memory stays the same at any rate.
	buckets   [rateSeconds]uint32
	bucketSec [rateSeconds]int64
}

const (
	recentSize  = 50
	rateSeconds = 300 // the rate window: five minutes
)

// NewRecent returns an empty Recent.
func NewRecent() *Recent { return &Recent{ring: make([]Verdict, recentSize)} }

var _ proxy.Observer = (*Recent)(nil)

func (r *Recent) SessionOpened()      {}
func (r *Recent) SessionClosed()      {}
func (r *Recent) Refused(string, int) {}
func (r *Recent) Spooled(int64)       {}

// Message records one message.
func (r *Recent) Message(ev proxy.MessageEvent) {
	v := Verdict{Time: ev.Time, ID: ev.ID, From: ev.From, Verdict: ev.Verdict, Rule: ev.Rule, Reply: ev.ReplyCode}
	if ev.Client.IsValid() {
		v.Client = ev.Client.String()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ring[r.next] = v
	r.next = (r.next + 1) % recentSize
	if r.next == 0 {
		r.full = true
	}
	r.total++
	sec := ev.Time.Unix()
	i := sec % rateSeconds
	if r.bucketSec[i] != sec {
		r.bucketSec[i], r.buckets[i] = sec, 0
	}
	r.buckets[i]++
}

// Snapshot returns the recent verdicts, newest first, the rate per minute
// over the window, and the total.
func (r *Recent) Snapshot(now time.Time) (recent []Verdict, perMinute float64, total uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.next
	if r.full {
		n = recentSize
	}
	for i := 0; i < n; i++ {
		recent = append(recent, r.ring[(r.next-1-i+recentSize)%recentSize])
	}
	var n5 uint64
	for i := range r.buckets {
		if age := now.Unix() - r.bucketSec[i]; age >= 0 && age < rateSeconds {
			n5 += uint64(r.buckets[i])
		}
	}
	return recent, float64(n5) / (rateSeconds / 60), r.total
}

// Package metrics exposes what foxproxy does as Prometheus metrics: the
// proxy reports each message and session (it is a proxy.Observer), and the
// dependencies' health and the DNS cache are read when Prometheus scrapes.
package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/foxproxy/foxproxy/admin"
	"github.com/foxproxy/foxproxy/proxy"
)

// Metrics holds foxproxy's instruments in their own registry.
type Metrics struct {
	Registry *prometheus.Registry

	messages        *prometheus.CounterVec
	replies         *prometheus.CounterVec
	findings        *prometheus.CounterVec
	stageSeconds    *prometheus.HistogramVec
	messageSeconds  prometheus.Histogram
	messageBytes    prometheus.Histogram
	sessions        prometheus.Gauge
	spoolBytes      prometheus.Gauge
	sessionsHandled prometheus.Counter
	encCopies       *prometheus.CounterVec
}

var _ proxy.Observer = (*Metrics)(nil)

// Gauges are read at scrape time from these.
type Gauges struct {
	// Dependencies returns every dependency's health.
	Dependencies func() []admin.Dependency
	// ScanMode returns the active scan mode ("" without scanning).
	ScanMode func() string
	// Counters returns named monotonic counters of the running
	// configuration's parts (DNS cache hits, feedback drops...), keyed by
	// metric name without the foxproxy_ prefix; see CounterNames.
	Counters func() map[string]uint64
	// Held returns the held area's state (ok false: no mail is held for
	// rescan in this configuration).
	Held func() (admin.Held, bool)
}

// CounterNames are the scrape-time counters and their help texts.
var CounterNames = map[string]string{
	"dns_lookups_total":                   "DNS-list lookups asked of the DNS client.",
	"dns_cache_hits_total":                "DNS-list lookups answered from the cache.",
	"dns_cache_misses_total":              "DNS-list lookups not in the cache (queried or joined a query in flight).",
	"dns_queries_total":                   "DNS queries sent to servers.",
	"dns_failures_total":                  "DNS queries that failed (timeout, refused, server error).",
	"wrs_feedback_sent_total":             "URL feedback records delivered to the feedback sink.",
	"wrs_feedback_dropped_total":          "URL feedback records dropped (queue full or sink down).",
	"quarantine_failures_total":           "Quarantine and hold writes that failed (the message was deferred).",
	"message_log_written_total":           "Message log rows written to the database.",
	"message_log_dropped_total":           "Message log rows dropped: the queue was full, the database did not take them, or foxproxy stopped first.",
	"message_log_failed_total":            "Message log batch writes that failed (each dropped its rows).",
	"database_errors_total":               "Custody database operations that failed (unreachable, timed out, refused).",
	"database_acquires_total":             "Connections taken from the custody database's pool.",
	"database_acquire_waits_total":        "Pool acquires that had to wait for a connection.",
	"database_acquire_milliseconds_total": "Time spent taking connections from the custody database's pool.",
}

// New registers foxproxy's metrics (and the Go runtime's) in a new registry.
func New(g Gauges) *Metrics {
	m := &Metrics{Registry: prometheus.NewRegistry()}
	f := func(c prometheus.Collector) { m.Registry.MustRegister(c) }
	f(collectors.NewGoCollector())
	f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.messages = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "foxproxy_messages_total",
		Help: "Messages by verdict (deliver, tag, quarantine, reject, tempfail, discard; refused, aborted, error when no verdict was reached) and deciding rule."},
		[]string{"verdict", "rule"})
	m.replies = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "foxproxy_smtp_replies_total",
		Help: "Replies to MAIL and RCPT refusals and to the end of DATA, by command and class (2xx, 4xx, 5xx)."},
		[]string{"command", "class"})
	m.findings = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "foxproxy_stage_findings_total",
		Help: "Findings by stage and status (clean, listed, infected, skipped, disabled, unavailable, error)."},
		[]string{"stage", "status"})
	m.stageSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "foxproxy_stage_duration_seconds",
		Help: "Time each stage took per message.", Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}},
		[]string{"stage"})
	m.messageSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "foxproxy_message_duration_seconds",
		Help: "Time from MAIL to the reply to the end of DATA.", Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}})
	m.messageBytes = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "foxproxy_message_size_bytes",
		Help: "Size of received messages.", Buckets: prometheus.ExponentialBuckets(1024, 4, 9)})
	m.sessions = prometheus.NewGauge(prometheus.GaugeOpts{Name: "foxproxy_sessions", Help: "SMTP sessions in progress."})
	m.sessionsHandled = prometheus.NewCounter(prometheus.CounterOpts{Name: "foxproxy_sessions_total", Help: "SMTP sessions accepted."})
	m.spoolBytes = prometheus.NewGauge(prometheus.GaugeOpts{Name: "foxproxy_spool_bytes", Help: "Message content held while being checked (memory and spill files)."})
	m.encCopies = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "foxproxy_encryption_copies_total",
		Help: "Recipients' copies under an encrypt verdict by outcome (encrypted; without a key: quarantined, rejected, tempfailed, unencrypted)."},
		[]string{"outcome"})
	for _, o := range proxy.CopyOutcomes {
		m.encCopies.WithLabelValues(o) // present from the start, at 0, for rate() in alerts
	}
	for _, c := range []prometheus.Collector{m.messages, m.replies, m.findings, m.stageSeconds, m.messageSeconds,
		m.messageBytes, m.sessions, m.sessionsHandled, m.spoolBytes, m.encCopies} {
		f(c)
	}
	f(&scrapeCollector{g: g})
	return m
}

func class(code int) string {
	if code < 200 || code > 599 {
		return "other"
	}
	return strconv.Itoa(code/100) + "xx"
}

// SessionOpened implements proxy.Observer.
func (m *Metrics) SessionOpened() { m.sessions.Inc(); m.sessionsHandled.Inc() }

// SessionClosed implements proxy.Observer.
func (m *Metrics) SessionClosed() { m.sessions.Dec() }

// Refused implements proxy.Observer.
func (m *Metrics) Refused(command string, code int) {
	m.replies.WithLabelValues(command, class(code)).Inc()
}

// Spooled implements proxy.Observer.
func (m *Metrics) Spooled(delta int64) { m.spoolBytes.Add(float64(delta)) }

// Message implements proxy.Observer.
func (m *Metrics) Message(ev proxy.MessageEvent) {
	m.messages.WithLabelValues(ev.Verdict, ev.Rule).Inc()
	// The reply to the end of DATA; a message answered at RCPT had each
	// RCPT's reply counted by Refused.
	if ev.ReplyCode != 0 && ev.ReplyCommand == "" {
		m.replies.WithLabelValues("DATA", class(ev.ReplyCode)).Inc()
	}
	for _, f := range ev.Findings {
		m.findings.WithLabelValues(string(f.Stage), string(f.Status)).Inc()
		m.stageSeconds.WithLabelValues(string(f.Stage)).Observe(f.Duration.Seconds())
	}
	for o, n := range ev.EncryptionCopies {
		m.encCopies.WithLabelValues(o).Add(float64(n))
	}
	m.messageSeconds.Observe(ev.Duration.Seconds())
	if ev.Size > 0 {
		m.messageBytes.Observe(float64(ev.Size))
	}
}

var (
	depUp = prometheus.NewDesc("foxproxy_dependency_up",
		"1 when the dependency is healthy (the status page's green), else 0.", []string{"kind", "name"}, nil)
	depState = prometheus.NewDesc("foxproxy_dependency_state",
		"1 for the dependency's current state (up, down, disabled, unchecked, open, ...).", []string{"kind", "name", "state"}, nil)
	depSince = prometheus.NewDesc("foxproxy_dependency_state_since_seconds",
		"Unix time the dependency entered its current state.", []string{"kind", "name"}, nil)
	heldMessages = prometheus.NewDesc("foxproxy_held_messages",
		"Messages in the held area: accepted while no scanner answered, waiting for their rescan.", nil, nil)
	heldOldest = prometheus.NewDesc("foxproxy_held_oldest_age_seconds",
		"Age of the oldest held message (0 when none is held).", nil, nil)
	scanMode = prometheus.NewDesc("foxproxy_scan_mode",
		"1 for the scan mode in use (smart or conventional).", []string{"mode"}, nil)
)

// scrapeCollector reads the dependencies and counters when scraped, so the
// numbers are always the owners' own and follow a reload.
type scrapeCollector struct{ g Gauges }

func (c *scrapeCollector) Describe(ch chan<- *prometheus.Desc) {
	prometheus.DescribeByCollect(c, ch)
}

func (c *scrapeCollector) Collect(ch chan<- prometheus.Metric) {
	if c.g.Dependencies != nil {
		for _, d := range c.g.Dependencies() {
			up := 0.0
			if d.OK {
				up = 1
			}
			ch <- prometheus.MustNewConstMetric(depUp, prometheus.GaugeValue, up, d.Kind, d.Name)
			ch <- prometheus.MustNewConstMetric(depState, prometheus.GaugeValue, 1, d.Kind, d.Name, string(d.State))
			if !d.Since.IsZero() {
				ch <- prometheus.MustNewConstMetric(depSince, prometheus.GaugeValue, float64(d.Since.Unix()), d.Kind, d.Name)
			}
		}
	}
	if c.g.ScanMode != nil {
		if mode := c.g.ScanMode(); mode != "" {
			for _, m := range []string{"smart", "conventional"} {
				v := 0.0
				if m == mode {
					v = 1
				}
				ch <- prometheus.MustNewConstMetric(scanMode, prometheus.GaugeValue, v, m)
			}
		}
	}
	if c.g.Held != nil {
		if h, ok := c.g.Held(); ok {
			ch <- prometheus.MustNewConstMetric(heldMessages, prometheus.GaugeValue, float64(h.Count))
			ch <- prometheus.MustNewConstMetric(heldOldest, prometheus.GaugeValue, h.OldestAgeSeconds)
		}
	}
	if c.g.Counters != nil {
		vals := c.g.Counters()
		for name, help := range CounterNames {
			if v, ok := vals[name]; ok {
				ch <- prometheus.MustNewConstMetric(prometheus.NewDesc("foxproxy_"+name, help, nil, nil), prometheus.CounterValue, float64(v))
			}
		}
	}
}

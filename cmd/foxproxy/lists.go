package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/foxproxy/foxproxy/config"
	"github.com/foxproxy/foxproxy/health"
	"github.com/foxproxy/foxproxy/links"
	"github.com/foxproxy/foxproxy/lists"
	"github.com/foxproxy/foxproxy/lists/liststage"
	"github.com/foxproxy/foxproxy/pipeline"
	"github.com/foxproxy/foxproxy/scan"
	"github.com/foxproxy/foxproxy/update"
)

// listsWiring is the local lists' part of a runtime: the holder every
// message snapshots, the file watcher, the updater, and the ClamAV
// database monitor that shares their status rows.
type listsWiring struct {
	holder      *lists.Holder
	files       lists.Files
	filesStatus lists.FilesStatus
	watcher     *lists.Watcher
	updater     *update.Updater
	clamdb      *scan.DBMonitor
}

// listFiles maps the configuration's lists.* keys to list kinds.
func listFiles(c config.Lists) lists.Files {
	f := lists.Files{}
	for name, p := range c.Files() {
		if k, ok := lists.KindOf(name); ok {
			f[k] = p
		}
	}
	return f
}

// newUpdater builds the updater of cfg.Update for holder h.
func newUpdater(cfg *config.Config, h *lists.Holder, log *zap.Logger) (*update.Updater, error) {
	key, _ := cfg.Update.Ed25519Key() // validated with the configuration
	return update.New(update.Config{
		URL: cfg.Update.URL, PublicKey: key, Interval: cfg.Update.Interval.D(), Timeout: cfg.Update.Timeout.D(),
		MaxBytes: int64(cfg.Update.MaxBytes), StateDir: cfg.Update.StateDir, CAFile: cfg.Update.CAFile,
		Holder: h, Logger: log,
	})
}

// wireLists sets up the local lists and returns the "lists" stage, or nil
// when no list file and no update source is configured. A list file that
// cannot be read or has an invalid entry refuses the configuration (at
// start and on SIGHUP); an update source that is down never does: the last
// good bundle on disk is loaded first, without network access.
func (w *wired) wireLists(cfg *config.Config, log *zap.Logger) (pipeline.Stage, error) {
	h := lists.NewHolder()
	w.Runtime.Lists = h
	lw := &listsWiring{holder: h, files: listFiles(cfg.Lists)}
	w.lists = lw
	if cfg.Scan.Enabled() {
		lw.clamdb = scan.NewDBMonitor(map[string]string{"smart": cfg.Scan.Smart.URL, "conventional": cfg.Scan.Conventional.URL},
			cfg.Scan.ClamAVMaxAge.D(), scan.Options{Timeout: cfg.Scan.Timeout.D(), DialTimeout: cfg.Scan.DialTimeout.D()})
		w.closers = append(w.closers, lw.clamdb.Close)
	}
	if len(lw.files) == 0 && !cfg.Update.Enabled() {
		return nil, nil
	}
	if len(lw.files) > 0 {
		st, err := lists.LoadInto(lw.files, h)
		if err != nil {
			return nil, fmt.Errorf("lists: %w", err)
		}
		lw.filesStatus = st
		if cfg.Lists.Watch {
			lw.watcher, err = lists.Watch(lw.files, h, st, 500*time.Millisecond, log)
			if err != nil {
				return nil, fmt.Errorf("lists: %w", err)
			}
			w.closers = append(w.closers, lw.watcher.Close)
		}
	}
	if cfg.Update.Enabled() {
		u, err := newUpdater(cfg, h, log.Named("update"))
		if err != nil {
			return nil, err
		}
		if err := u.LoadState(); err != nil {
			log.Warn("the stored list bundle does not verify; waiting for a download", zap.Error(err))
		}
		lw.updater = u
		w.closers = append(w.closers, u.Close)
	}
	// WRS's extraction settings (buildWRS), so that both stages share one
	// extraction per message.
	xc := links.Config{Limits: links.Limits{MaxURLs: cfg.WRS.MaxURLs}}
	if cfg.WRS.UnwrapRedirectors {
		xc.Redirectors = links.DefaultRedirectors()
	}
	return liststage.New(xc)
}

// startBackground starts polling for list updates. It is separate from
// wire so that `foxproxy policy test`, which wires the same stages, reads
// the stored bundle but never downloads or writes one.
func (w *wired) startBackground() {
	if w.lists != nil && w.lists.updater != nil {
		w.lists.updater.Start()
	}
}

// Reports implements health.Reporter: the rows of the list files, the
// update source and the ClamAV databases, each reported by its owner.
func (lw *listsWiring) Reports() []health.Report {
	var out []health.Report
	if len(lw.files) > 0 {
		out = append(out, lw.filesNow().Report(lw.files, lw.holder.Source(lists.FromFiles)))
	}
	if lw.updater != nil {
		out = append(out, lw.updater.Reports()...)
	}
	if lw.clamdb != nil {
		out = append(out, lw.clamdb.Reports()...)
	}
	return out
}

// filesNow is the list files' status: the watcher's when they are
// watched, else that of their one load.
func (lw *listsWiring) filesNow() lists.FilesStatus {
	if lw.watcher != nil {
		return lw.watcher.Status()
	}
	return lw.filesStatus
}

// listsCollector exports the lists' and the ClamAV database's state to
// Prometheus, read at scrape time from the runtime in use.
type listsCollector struct{ current func() *wired }

var (
	listEntries = prometheus.NewDesc("foxproxy_lists_entries",
		"Entries in force per local list and source (files, update).", []string{"list", "source"}, nil)
	listAge = prometheus.NewDesc("foxproxy_lists_age_seconds",
		"Age of the lists in force: since the update bundle was created, or since the list files last changed.", []string{"source"}, nil)
	updateFailures = prometheus.NewDesc("foxproxy_update_failures_total",
		"Failed list update attempts by reason (unreachable, http_status, truncated, hash, signature, manifest, malformed_list, ...).", []string{"reason"}, nil)
	updateConsecutive = prometheus.NewDesc("foxproxy_update_consecutive_failures",
		"Failed list update attempts since the last success.", nil, nil)
	updateLastSuccess = prometheus.NewDesc("foxproxy_update_last_success_timestamp_seconds",
		"Unix time of the last update attempt that ended with a current bundle.", nil, nil)
	clamavDBAge = prometheus.NewDesc("foxproxy_clamav_db_age_seconds",
		"Age of a clamd's daily signature database (clamd VERSION).", []string{"scanner"}, nil)
	clamavDBVersion = prometheus.NewDesc("foxproxy_clamav_db_version",
		"A clamd's daily signature database version.", []string{"scanner"}, nil)
)

func (c listsCollector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }

func (c listsCollector) Collect(ch chan<- prometheus.Metric) {
	w := c.current()
	if w == nil || w.lists == nil {
		return
	}
	lw, h := w.lists, w.Runtime.Lists
	now := time.Now()
	for src, name := range map[lists.Source]string{lists.FromFiles: "files", lists.FromUpdate: "update"} {
		s := h.Source(src)
		if s == nil {
			continue
		}
		for _, k := range lists.Kinds() {
			ch <- prometheus.MustNewConstMetric(listEntries, prometheus.GaugeValue, float64(s.Len(k)), k.String(), name)
		}
	}
	if len(lw.files) > 0 {
		if st := lw.filesNow(); !st.Changed.IsZero() {
			ch <- prometheus.MustNewConstMetric(listAge, prometheus.GaugeValue, now.Sub(st.Changed).Seconds(), "files")
		}
	}
	if lw.updater != nil {
		st := lw.updater.Status()
		if !st.Created.IsZero() {
			ch <- prometheus.MustNewConstMetric(listAge, prometheus.GaugeValue, now.Sub(st.Created).Seconds(), "update")
		}
		for _, r := range []string{update.ReasonUnreachable, update.ReasonHTTP, update.ReasonTooLarge, update.ReasonTruncated,
			update.ReasonHash, update.ReasonSignature, update.ReasonManifest, update.ReasonMalformed, update.ReasonOlder, update.ReasonState} {
			ch <- prometheus.MustNewConstMetric(updateFailures, prometheus.CounterValue, float64(st.Failures[r]), r)
		}
		ch <- prometheus.MustNewConstMetric(updateConsecutive, prometheus.GaugeValue, float64(st.ConsecutiveFailures))
		if !st.LastSuccess.IsZero() {
			ch <- prometheus.MustNewConstMetric(updateLastSuccess, prometheus.GaugeValue, float64(st.LastSuccess.Unix()))
		}
	}
	if lw.clamdb != nil {
		for _, s := range lw.clamdb.States() {
			if s.Version.Date.IsZero() {
				continue
			}
			ch <- prometheus.MustNewConstMetric(clamavDBAge, prometheus.GaugeValue, now.Sub(s.Version.Date).Seconds(), s.Role)
			ch <- prometheus.MustNewConstMetric(clamavDBVersion, prometheus.GaugeValue, float64(s.Version.Daily), s.Role)
		}
	}
}

// listsSummary is check-config's line about the local lists ("" when none
// are configured).
func listsSummary(cfg *config.Config) string {
	var parts []string
	files := cfg.Lists.Files()
	if len(files) > 0 {
		var names []string
		for _, k := range lists.Kinds() {
			if _, ok := files[k.String()]; ok {
				names = append(names, k.String())
			}
		}
		s := fmt.Sprintf("files for %s", strings.Join(names, ", "))
		if cfg.Lists.Watch {
			s += " (reloaded on change)"
		}
		parts = append(parts, s)
	}
	if cfg.Update.Enabled() {
		parts = append(parts, fmt.Sprintf("update from %s every %s, kept in %s", cfg.Update.URL,
			humanDuration(cfg.Update.Interval.D()), cfg.Update.StateDir))
	}
	return strings.Join(parts, "; ")
}

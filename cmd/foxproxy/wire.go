package main

import (
	"context"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/foxproxy/foxproxy/admin"
	"github.com/foxproxy/foxproxy/config"
	"github.com/foxproxy/foxproxy/delivery"
	"github.com/foxproxy/foxproxy/encryption"
	"github.com/foxproxy/foxproxy/health"
	"github.com/foxproxy/foxproxy/links"
	"github.com/foxproxy/foxproxy/msglog"
	"github.com/foxproxy/foxproxy/pipeline"
	"github.com/foxproxy/foxproxy/policy"
	"github.com/foxproxy/foxproxy/proxy"
	"github.com/foxproxy/foxproxy/quarantine"
	"github.com/foxproxy/foxproxy/reputation"
	"github.com/foxproxy/foxproxy/scan"
)

// wired is a runtime plus what must be stopped with it.
type wired struct {
	*proxy.Runtime
	// Config is the whole configuration the runtime was built from (the
	// runtime's own Config is the SMTP side's part of it).
	Config   *config.Config
	closers  []func()
	dns      *reputation.DNSClient
	ers      *reputation.ERS
	wrs      *reputation.WRS
	feedback *reputation.Feedback
	scan     *scan.Stage
	lists    *listsWiring
	enc      *encryption.Gateway
	db       *dbWiring // the custody database (database.url); nil: quarantine.dir
	// msglog writes the message log to the database, through the pool
	// logDB (both nil without one).
	msglog *msglog.Writer
	logDB  msglog.DB
	// custodyFailures counts quarantine and hold writes that failed (the
	// message got 451), for foxproxy_quarantine_failures_total.
	custodyFailures atomic.Uint64
}

// wire builds the stages, the policy and the quarantine from a
// configuration. This is the one place where stages are put in order: ERS
// (the client), then the message's content checks. The order is the order
// of findings in logs and in the trace header.
func wire(cfg *config.Config, log *zap.Logger) (w *wired, err error) {
	w = &wired{Runtime: &proxy.Runtime{Config: cfg.Proxy()}, Config: cfg}
	defer func() {
		if err != nil {
			w.close()
		}
	}()
	var stages []pipeline.Stage

	// The local lists come first: they need no network, and ERS and WRS
	// consult the message's snapshot of them.
	listStage, err := w.wireLists(cfg, log.Named("lists"))
	if err != nil {
		return nil, err
	}
	if listStage != nil {
		stages = append(stages, listStage)
	}

	var dnsClient *reputation.DNSClient
	if len(cfg.ERS.Zones) > 0 || len(cfg.WRS.Zones) > 0 {
		dnsClient, err = reputation.NewDNSClient(reputation.DNSConfig{
			Servers:   cfg.DNS.Servers,
			Timeout:   cfg.DNS.Timeout.D(),
			CacheSize: cacheSize(cfg.DNS.CacheSize),
		})
		if err != nil {
			return nil, fmt.Errorf("dns: %w", err)
		}
		w.closers = append(w.closers, func() { dnsClient.Close() })
		w.dns = dnsClient
	}

	if len(cfg.ERS.Zones) > 0 {
		zones, err := dnsLists(cfg.ERS.Zones)
		if err != nil {
			return nil, err
		}
		w.ers, err = reputation.NewERS(reputation.ERSConfig{
			Zones:            zones,
			Client:           dnsClient,
			Budget:           cfg.ERS.Budget.D(),
			RecheckInterval:  cfg.ERS.RecheckInterval.D(),
			SkipStartupCheck: !cfg.ERS.StartupCheck,
			Logger:           log.Named("ers"),
			Lists:            w.Runtime.Lists,
		})
		if err != nil {
			return nil, fmt.Errorf("ers: %w", err)
		}
		w.closers = append(w.closers, func() { w.ers.Close() })
		stages = append(stages, w.ers)
	}

	if cfg.WRS.Enabled() {
		if err := w.buildWRS(cfg.WRS, dnsClient, log.Named("wrs")); err != nil {
			return nil, fmt.Errorf("wrs: %w", err)
		}
		stages = append(stages, w.wrs)
	}

	if cfg.Scan.Enabled() {
		w.scan, err = buildScan(cfg.Scan, log.Named("scan"))
		if err != nil {
			return nil, fmt.Errorf("scan: %w", err)
		}
		w.closers = append(w.closers, func() { w.scan.Close() })
		stages = append(stages, w.scan)
	}

	w.Pipeline = pipeline.New(stages...)
	w.Policy, err = policy.New(cfg.Policy, int64(cfg.Limits.MaxHeaderBytes))
	if err != nil {
		return nil, err
	}
	if w.Links, err = buildLinkRewriter(cfg); err != nil { // click.go
		return nil, err
	}
	if cfg.Encryption.Enabled() {
		g, err := encryption.New(cfg.Encryption, log.Named("encryption"))
		if err != nil {
			return nil, fmt.Errorf("encryption: %w", err)
		}
		w.closers = append(w.closers, g.Close)
		w.enc = g
		w.Encryption, w.EncryptionActions = gateway{g}, encryptionActions(cfg)
	}
	if cfg.Database.URL != "" {
		// Opened whether or not a rule quarantines: the message log is
		// written there too.
		if err := w.openDatabase(cfg, log); err != nil { // database.go
			return nil, err
		}
	}
	if (cfg.Quarantine.Dir != "" || cfg.Database.URL != "") && cfg.UsesQuarantine() {
		store, err := w.openCustody(cfg) // database.go
		if err != nil {
			return nil, err
		}
		w.Quarantine = quarantiner{store: store, host: cfg.Proxy().HostnameOrDefault(), failures: &w.custodyFailures}
		if r := cfg.Quarantine.Retention.D(); r > 0 {
			stop := purgeEvery(store, r, time.Hour, log.Named("quarantine"))
			w.closers = append(w.closers, stop)
		}
	}
	return w, nil
}

func (w *wired) buildWRS(c config.WRS, dnsClient *reputation.DNSClient, log *zap.Logger) error {
	wc := reputation.WRSConfig{
		Client:  dnsClient,
		Budget:  c.Budget.D(),
		Breaker: reputation.BreakerConfig{Failures: c.BreakerFailures, ProbeInterval: c.BreakerProbeInterval.D()},
		Logger:  log,
		Lists:   w.Runtime.Lists, // the click service asks the lists in force
	}
	wc.Extractor.Limits.MaxURLs = c.MaxURLs
	if c.UnwrapRedirectors {
		wc.Extractor.Redirectors = links.DefaultRedirectors()
	}
	for _, z := range c.Zones {
		codes, err := reputation.ParseCodes(z.Codes)
		if err != nil {
			return fmt.Errorf("zone %s: %w", z.Zone, err)
		}
		wc.Zones = append(wc.Zones, reputation.DNSZone{Name: z.Zone, Codes: codes, Bitmask: z.Bitmask, SkipIPs: z.SkipIPs, TestPoint: z.TestPoint})
	}
	if sb := c.SafeBrowsing; sb.APIKey != "" {
		wc.SafeBrowsing = &reputation.SafeBrowsingConfig{APIKey: sb.APIKey, BaseURL: sb.BaseURL, Timeout: sb.Timeout.D(),
			ThreatTypes: sb.ThreatTypes, ClientVersion: delivery.Version}
	}
	if c.Feedback.URL != "" || c.Feedback.File != "" {
		fb, err := reputation.NewFeedback(reputation.FeedbackConfig{URL: c.Feedback.URL, File: c.Feedback.File,
			QueueSize: c.Feedback.QueueSize, BatchSize: c.Feedback.BatchSize, Logger: log.Named("feedback")})
		if err != nil {
			return err
		}
		w.feedback = fb
		w.closers = append(w.closers, func() { fb.Close() })
		wc.Feedback = fb
	}
	wrs, err := reputation.NewWRS(wc)
	if err != nil {
		return err
	}
	w.wrs = wrs
	// Closed before the feedback it reports to (closers run in reverse).
	w.closers = append(w.closers, func() { wrs.Close() })
	return nil
}

func buildScan(sc config.Scan, log *zap.Logger) (*scan.Stage, error) {
	opts := scan.Options{
		Timeout:       sc.Timeout.D(),
		DialTimeout:   sc.DialTimeout.D(),
		MaxConcurrent: sc.MaxConcurrent,
		PingTestVirus: sc.PingTestVirus,
	}
	cfg := scan.Config{
		Mode:                   scan.Mode(sc.ActiveMode()),
		FallbackToConventional: sc.FallbackToConventional,
		DisableSmartAfter:      sc.DisableSmartAfter,
		RecheckInterval:        sc.RecheckInterval.D(),
		StayConventional:       sc.StayConventional,
		MaxSize:                int64(sc.MaxSize),
		Oversize:               scan.OversizeAction(sc.Oversize),
		Logger:                 log,
	}
	var err error
	if sc.Smart.URL != "" {
		if cfg.Smart, err = scan.NewScanner(sc.Smart.URL, opts); err != nil {
			return nil, err
		}
	}
	if sc.Conventional.URL != "" {
		if cfg.Conventional, err = scan.NewScanner(sc.Conventional.URL, opts); err != nil {
			closeScanner(cfg.Smart)
			return nil, err
		}
	}
	st, err := scan.NewStage(cfg)
	if err != nil {
		closeScanner(cfg.Smart)
		closeScanner(cfg.Conventional)
	}
	return st, err
}

func closeScanner(s scan.Scanner) {
	if c, ok := s.(io.Closer); ok {
		c.Close()
	}
}

// purgeEvery enforces the quarantine's retention while foxproxy runs: at
// start and then every interval, entries older than retention are deleted.
func purgeEvery(store quarantine.Store, retention, interval time.Duration, log *zap.Logger) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			if n, err := store.Purge(context.Background(), retention); err != nil {
				log.Warn("quarantine purge failed", zap.Error(err))
			} else if n > 0 {
				log.Info("quarantine purged", zap.Int("deleted", n), zap.Duration("retention", retention))
			}
			select {
			case <-done:
				return
			case <-time.After(interval):
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// cacheSize maps the configuration's "0 = no cache" to the DNS client's
// "negative = no cache".
func cacheSize(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

func dnsLists(lists []config.DNSList) ([]reputation.Zone, error) {
	var zones []reputation.Zone
	for _, l := range lists {
		codes, err := reputation.ParseCodes(l.Codes)
		if err != nil {
			return nil, fmt.Errorf("zone %s: %w", l.Zone, err)
		}
		zones = append(zones, reputation.Zone{Name: l.Zone, Codes: codes, TXT: l.TXT})
	}
	return zones, nil
}

func (w *wired) stageNames() []string {
	names := []string{}
	for _, s := range w.Pipeline.Stages() {
		names = append(names, string(s.Name()))
	}
	return names
}

func (w *wired) close() {
	for i := len(w.closers) - 1; i >= 0; i-- {
		w.closers[i]()
	}
	w.closers = nil
}

// closeWhenIdle stops the runtime's background work once no session uses
// it. Sessions keep their runtime, so this waits for the sessions that were
// open at the reload; new ones already use the new runtime.
func (w *wired) closeWhenIdle(srv *proxy.Server) {
	if len(w.closers) == 0 {
		return
	}
	go func() {
		srv.WaitRuntimeIdle(w.Runtime)
		w.close()
	}()
}

// sources reports this runtime's dependencies to the admin side, in one
// shape whoever owns them.
func (w *wired) sources() *admin.Sources {
	src := &admin.Sources{Dependencies: w.dependencies, Held: w.heldStats}
	if w.ers != nil {
		src.Probers = append(src.Probers, w.ers)
	}
	if w.scan != nil {
		src.Probers = append(src.Probers, w.scan)
		src.ScanMode = func() (string, string) {
			h := w.scan.Health()
			return string(h.Active), h.Reason
		}
	}
	if w.lists != nil && w.lists.clamdb != nil && w.lists.clamdb.Len() > 0 {
		src.Probers = append(src.Probers, w.lists.clamdb)
	}
	if w.enc != nil {
		if _, wkd := w.enc.WKDHealth(); wkd {
			src.Probers = append(src.Probers, w.enc)
		}
	}
	if w.db != nil {
		src.Probers = append(src.Probers, w.db)
	}
	return src
}

// dependencies are the status page's rows of this runtime's dependencies,
// each reported by its owner, in the failure table's order: reputation,
// scanning, the local lists, the key service (row 5) and the click
// service's reputation backend (row 6).
func (w *wired) dependencies() []health.Report {
	var owners []health.Reporter
	if w.ers != nil {
		owners = append(owners, w.ers)
	}
	if w.wrs != nil {
		owners = append(owners, w.wrs)
	}
	if w.feedback != nil {
		owners = append(owners, w.feedback)
	}
	if w.scan != nil {
		owners = append(owners, w.scan)
	}
	if w.lists != nil {
		owners = append(owners, w.lists)
	}
	if w.enc != nil {
		owners = append(owners, w.enc)
	}
	if w.Config.Click.Listen != "" { // click.go
		owners = append(owners, health.Func(w.clickReports))
	}
	if w.db != nil { // database.go
		owners = append(owners, w.db)
	}
	return health.Collect(owners...)
}

// counters are the running configuration's cumulative counters for the
// metrics (names in metrics.CounterNames).
func (w *wired) counters() map[string]uint64 {
	c := map[string]uint64{}
	if w.dns != nil {
		st := w.dns.Stats()
		c["dns_lookups_total"] = st.Lookups
		c["dns_cache_hits_total"] = st.CacheHits
		c["dns_cache_misses_total"] = st.Lookups - st.CacheHits
		c["dns_queries_total"] = st.Queries
		c["dns_failures_total"] = st.Failures
	}
	if w.feedback != nil {
		var sent, dropped uint64
		for _, st := range w.feedback.Stats() {
			sent += st.Sent
			dropped += st.Dropped
		}
		c["wrs_feedback_sent_total"] = sent
		c["wrs_feedback_dropped_total"] = dropped
	}
	if w.db != nil {
		w.db.counters(c)
	}
	if w.msglog != nil {
		st := w.msglog.Stats()
		c["message_log_written_total"] = st.Written
		c["message_log_dropped_total"] = st.Dropped
		c["message_log_failed_total"] = st.Failed
	}
	if w.Quarantine != nil {
		c["quarantine_failures_total"] = w.custodyFailures.Load()
	}
	return c
}

// quarantiner stores the proxy's quarantine verdicts in a quarantine.Store.
type quarantiner struct {
	store quarantine.Store
	host  string // this foxproxy's hostname, recorded in each entry
	// failures counts writes that failed (nil: not counted).
	failures *atomic.Uint64
}

func (q quarantiner) Quarantine(ctx context.Context, it proxy.QuarantineItem) (string, error) {
	e := entryOf(it)
	e.Host = q.host
	id, err := q.store.Put(ctx, e, it.Tx.Message.Open())
	q.count(err)
	return id, err
}

// count counts a failed custody write: the message got 451 and stays in
// Postfix, and an administrator wants to see that rise before Postfix's
// queue does.
func (q quarantiner) count(err error) {
	if err != nil && q.failures != nil {
		q.failures.Add(1)
	}
}

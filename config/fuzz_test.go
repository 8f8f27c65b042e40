package config_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/foxproxy/foxproxy/config"
	"github.com/foxproxy/foxproxy/links"
	"github.com/foxproxy/foxproxy/policy"
	"github.com/foxproxy/foxproxy/reputation"
	"github.com/foxproxy/foxproxy/scan"
)

// fuzzSeeds are whole configuration files: the embedded default, the
// shapes README.md documents, and near misses.
func fuzzSeeds(t testing.TB) [][]byte {
	seeds := [][]byte{config.DefaultYAML()}
	for _, s := range []string{
		"listen: 127.0.0.1:10025\ndownstream: 127.0.0.1:10026\n",
		"ers:\n  zones:\n    - zone: zen.example.org\n      codes: {127.0.0.2: spam, 127.0.0.4: exploit, 127.0.0.10: dynamic}\n      txt: true\n  startup_check: true\n  recheck_interval: 1m\n  budget: 5s\n",
		"wrs:\n  zones: [{zone: multi.surbl.org, bitmask: {8: phish, 16: malware, 64: spam}}]\n  safebrowsing: {api_key: k, timeout: 2s}\n  feedback: {url: \"http://127.0.0.1:1/fb\", queue_size: 2, batch_size: 1}\n",
		"scan:\n  smart: {url: \"icap://127.0.0.1:1344/avscan\"}\n  conventional: {url: \"unix:/run/clamav/clamd.ctl\"}\n  fallback_to_conventional: true\n  disable_smart_after: 5\n",
		"policy:\n  rules:\n    - {name: partners, if: {client: [192.0.2.0/24]}, then: deliver}\n    - if: {ers: [spam, exploit]}\n      then: reject\n      reply: {code: 554, enhanced: 5.7.1, text: \"blocked: {client} is listed at {ers.zone}\"}\n    - {if: {header: [{name: Subject, matches: \"(?i)lottery\"}], size_over: 10KB}, then: tag, subject_prefix: \"[SPAM]\"}\n  on_scan_unavailable: pass\n  on_infected: reject\n",
		"quarantine: {dir: /var/lib/foxproxy/quarantine, retention: 30d}\n",
		"a: &a [x, x]\nb: &b [*a, *a]\nallowed_clients: *b\n",
		"timeouts:\n  comand: 5s\n",
		"limits: {max_recipients: -1, max_command_line: 2MiB}\n",
		"listen: [\n",
		"\xff\xfe\x00listen: x\n",
		"policy: {rules: [{if: {header: [{name: X, matches: \"(\"}]}, then: tag}]}\n",
		"allowed_clients: 127.0.0.1\nxforward_clients: [\"::1\", 10.0.0.0/8]\nmax_message_bytes: 1k\n",
	} {
		seeds = append(seeds, []byte(s))
	}
	return seeds
}

// FuzzParse feeds arbitrary files to the configuration parser. It must
// never panic. A refused file gets *config.Error or config.Errors, each
// naming the file and where in it (a line, or a key). An accepted file is
// one foxproxy can run on: everything wire() builds from it can be built.
func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	dns, err := reputation.NewDNSClient(reputation.DNSConfig{Servers: []string{"127.0.0.1:1"}})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { dns.Close() })
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := config.Parse(data, "fuzz.yaml")
		if err != nil {
			checkRefusal(t, data, err)
			return
		}
		checkRunnable(t, cfg, dns)
	})
}

func checkRefusal(t *testing.T, data []byte, err error) {
	var one *config.Error
	var all config.Errors
	switch {
	case errors.As(err, &one):
		all = config.Errors{one}
	case errors.As(err, &all):
		if len(all) == 0 {
			t.Fatalf("empty config.Errors for %q", data)
		}
	default:
		t.Fatalf("error of type %T, want *config.Error or config.Errors: %v", err, err)
	}
	for _, e := range all {
		if e.File != "fuzz.yaml" || e.Msg == "" {
			t.Fatalf("error without file or message: %+v", e)
		}
		if e.Line <= 0 && e.Key == "" {
			t.Fatalf("error says neither the line nor the key: %q (input %q)", e.Error(), data)
		}
		if n := yamlLines(data); e.Line > n {
			t.Fatalf("error names line %d of a %d-line file: %q", e.Line, n, e.Error())
		}
	}
}

// checkRunnable builds what cmd/foxproxy's wire() builds, short of sockets
// and files: none of it may refuse a configuration that Parse accepted.
func checkRunnable(t *testing.T, cfg *config.Config, dns *reputation.DNSClient) {
	if len(cfg.AllowedClients) == 0 || cfg.MaxMessageBytes <= 0 || cfg.Listen == "" || cfg.Downstream == "" {
		t.Fatalf("accepted an unusable configuration: %+v", cfg)
	}
	if _, err := policy.New(cfg.Policy, int64(cfg.Limits.MaxHeaderBytes)); err != nil {
		t.Fatalf("accepted, but the policy is refused: %v", err)
	}
	if len(cfg.ERS.Zones) > 0 {
		var zones []reputation.Zone
		for _, l := range cfg.ERS.Zones {
			codes, err := reputation.ParseCodes(l.Codes)
			if err != nil {
				t.Fatalf("accepted, but ERS zone %s: %v", l.Zone, err)
			}
			zones = append(zones, reputation.Zone{Name: l.Zone, Codes: codes, TXT: l.TXT})
		}
		ers, err := reputation.NewERS(reputation.ERSConfig{Zones: zones, Client: dns, Budget: cfg.ERS.Budget.D(),
			RecheckInterval: cfg.ERS.RecheckInterval.D(), SkipStartupCheck: !cfg.ERS.StartupCheck})
		if err != nil {
			t.Fatalf("accepted, but ERS is refused: %v", err)
		}
		ers.Close()
	}
	if w := cfg.WRS; w.Enabled() {
		wc := reputation.WRSConfig{Client: dns, Budget: w.Budget.D(),
			Breaker: reputation.BreakerConfig{Failures: w.BreakerFailures, ProbeInterval: w.BreakerProbeInterval.D()}}
		wc.Extractor.Limits.MaxURLs = w.MaxURLs
		if w.UnwrapRedirectors {
			wc.Extractor.Redirectors = links.DefaultRedirectors()
		}
		for _, z := range w.Zones {
			codes, err := reputation.ParseCodes(z.Codes)
			if err != nil {
				t.Fatalf("accepted, but WRS zone %s: %v", z.Zone, err)
			}
			wc.Zones = append(wc.Zones, reputation.DNSZone{Name: z.Zone, Codes: codes, Bitmask: z.Bitmask, SkipIPs: z.SkipIPs, TestPoint: z.TestPoint})
		}
		if sb := w.SafeBrowsing; sb.APIKey != "" {
			wc.SafeBrowsing = &reputation.SafeBrowsingConfig{APIKey: sb.APIKey, BaseURL: sb.BaseURL, Timeout: sb.Timeout.D(), ThreatTypes: sb.ThreatTypes}
		}
		if fb := w.Feedback; fb.URL != "" || fb.File != "" {
			// Validated only: NewFeedback would create the file.
			fc := reputation.FeedbackConfig{URL: fb.URL, File: fb.File, QueueSize: fb.QueueSize, BatchSize: fb.BatchSize}
			if err := fc.Validate(); err != nil {
				t.Fatalf("accepted, but the feedback sink is refused: %v", err)
			}
		}
		wrs, err := reputation.NewWRS(wc)
		if err != nil {
			t.Fatalf("accepted, but WRS is refused: %v", err)
		}
		wrs.Close()
	}
	if sc := cfg.Scan; sc.Enabled() {
		opts := scan.Options{Timeout: sc.Timeout.D(), DialTimeout: sc.DialTimeout.D(), MaxConcurrent: sc.MaxConcurrent}
		sconf := scan.Config{Mode: scan.Mode(sc.ActiveMode()), FallbackToConventional: sc.FallbackToConventional,
			DisableSmartAfter: sc.DisableSmartAfter, RecheckInterval: sc.RecheckInterval.D(), StayConventional: sc.StayConventional,
			MaxSize: int64(sc.MaxSize), Oversize: scan.OversizeAction(sc.Oversize)}
		var err error
		if sc.Smart.URL != "" {
			if sconf.Smart, err = scan.NewScanner(sc.Smart.URL, opts); err != nil {
				t.Fatalf("accepted, but the smart scanner is refused: %v", err)
			}
		}
		if sc.Conventional.URL != "" {
			if sconf.Conventional, err = scan.NewScanner(sc.Conventional.URL, opts); err != nil {
				t.Fatalf("accepted, but the conventional scanner is refused: %v", err)
			}
		}
		st, err := scan.NewStage(sconf)
		if err != nil {
			t.Fatalf("accepted, but the scan stage is refused: %v", err)
		}
		st.Close()
	}
}

// yamlLines counts lines as YAML does (§5.4): CRLF, CR and LF break a line,
// and so do NEL, LS and PS in a UTF-8 file.
func yamlLines(data []byte) int {
	s := strings.ReplaceAll(string(data), "\r\n", "\n")
	n := 1
	for _, r := range s {
		switch r {
		case '\n', '\r', 0x85, 0x2028, 0x2029:
			n++
		}
	}
	return n
}

package metrics

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.yaml.in/yaml/v3"

	"github.com/foxproxy/foxproxy/admin"
	"github.com/foxproxy/foxproxy/clicktime"
	"github.com/foxproxy/foxproxy/pipeline"
	"github.com/foxproxy/foxproxy/proxy"
)

func newTest() *Metrics {
	return New(Gauges{
		Dependencies: func() []admin.Dependency {
			return []admin.Dependency{{Kind: "scan", Name: "smart", State: "down"}, {Kind: "ers", Name: "bl.example", State: "up", OK: true, Since: time.Unix(1000, 0)}}
		},
		ScanMode: func() string { return "conventional" },
		Counters: func() map[string]uint64 { return map[string]uint64{"dns_cache_hits_total": 7, "dns_lookups_total": 9} },
		Held:     func() (admin.Held, bool) { return admin.Held{Count: 2, OldestAgeSeconds: 90}, true },
	})
}

func TestCountersAfterKnownTraffic(t *testing.T) {
	m := newTest()
	clean := pipeline.Finding{Stage: "scan", Status: pipeline.Clean, Duration: 3 * time.Millisecond}
	for i := 0; i < 3; i++ {
		m.Message(proxy.MessageEvent{Verdict: "deliver", Rule: "default", ReplyCode: 250, Size: 2000, Findings: []pipeline.Finding{clean}, Client: netip.MustParseAddr("192.0.2.1")})
	}
	m.Message(proxy.MessageEvent{Verdict: "quarantine", Rule: "virus", ReplyCode: 250,
		Findings: []pipeline.Finding{{Stage: "scan", Status: pipeline.Infected}}})
	m.Refused("RCPT", 550)
	m.SessionOpened()
	m.SessionOpened()
	m.SessionClosed()
	m.Spooled(500)

	for name, want := range map[string]float64{
		"deliver/default": 3, "quarantine/virus": 1,
	} {
		v, r, _ := strings.Cut(name, "/")
		if got := testutil.ToFloat64(m.messages.WithLabelValues(v, r)); got != want {
			t.Errorf("messages %s = %v, want %v", name, got, want)
		}
	}
	if got := testutil.ToFloat64(m.replies.WithLabelValues("DATA", "2xx")); got != 4 {
		t.Errorf("DATA 2xx = %v", got)
	}
	if got := testutil.ToFloat64(m.replies.WithLabelValues("RCPT", "5xx")); got != 1 {
		t.Errorf("RCPT 5xx = %v", got)
	}
	if got := testutil.ToFloat64(m.findings.WithLabelValues("scan", "clean")); got != 3 {
		t.Errorf("scan clean findings = %v", got)
	}
	if testutil.ToFloat64(m.sessions) != 1 || testutil.ToFloat64(m.sessionsHandled) != 2 || testutil.ToFloat64(m.spoolBytes) != 500 {
		t.Error("session or spool gauges wrong")
	}
}

func TestEncryptionCopiesCounted(t *testing.T) {
	m := newTest()
	m.Message(proxy.MessageEvent{Verdict: "encrypt", EncryptionCopies: map[string]int{proxy.CopyEncrypted: 2, proxy.CopyQuarantined: 1}})
	m.Message(proxy.MessageEvent{Verdict: "encrypt", EncryptionCopies: map[string]int{proxy.CopyTempfailed: 3}})
	m.Message(proxy.MessageEvent{Verdict: "encrypt", EncryptionCopies: map[string]int{proxy.CopyEncrypted: 1}})
	m.Message(proxy.MessageEvent{Verdict: "deliver"})
	want := `
# HELP foxproxy_encryption_copies_total Recipients' copies under an encrypt verdict by outcome (encrypted; without a key: quarantined, rejected, tempfailed, unencrypted).
# TYPE foxproxy_encryption_copies_total counter
foxproxy_encryption_copies_total{outcome="encrypted"} 3
foxproxy_encryption_copies_total{outcome="quarantined"} 1
foxproxy_encryption_copies_total{outcome="rejected"} 0
foxproxy_encryption_copies_total{outcome="tempfailed"} 3
foxproxy_encryption_copies_total{outcome="unencrypted"} 0
`
	if err := testutil.GatherAndCompare(m.Registry, strings.NewReader(want), "foxproxy_encryption_copies_total"); err != nil {
		t.Fatal(err)
	}
}

func TestScrapeTimeGauges(t *testing.T) {
	m := newTest()
	want := `
# HELP foxproxy_dependency_up 1 when the dependency is healthy (the status page's green), else 0.
# TYPE foxproxy_dependency_up gauge
foxproxy_dependency_up{kind="ers",name="bl.example"} 1
foxproxy_dependency_up{kind="scan",name="smart"} 0
`
	if err := testutil.GatherAndCompare(m.Registry, strings.NewReader(want), "foxproxy_dependency_up"); err != nil {
		t.Fatal(err)
	}
	want = `
# HELP foxproxy_scan_mode 1 for the scan mode in use (smart or conventional).
# TYPE foxproxy_scan_mode gauge
foxproxy_scan_mode{mode="conventional"} 1
foxproxy_scan_mode{mode="smart"} 0
`
	if err := testutil.GatherAndCompare(m.Registry, strings.NewReader(want), "foxproxy_scan_mode"); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(m.Registry, "foxproxy_dns_cache_hits_total"); err != nil || n != 1 {
		t.Fatalf("dns cache hits: %d %v", n, err)
	}
}

// The dashboard and the alert rules only use metrics that exist.
func TestDeployFilesUseRealMetrics(t *testing.T) {
	m := newTest()
	clicktime.NewMetrics(m.Registry)
	m.Message(proxy.MessageEvent{Verdict: "deliver", ReplyCode: 250, Findings: []pipeline.Finding{{Stage: "ers"}}})
	m.Refused("MAIL", 451)
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, f := range families {
		known[f.GetName()] = true
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			known[f.GetName()+suffix] = true
		}
	}
	for name := range CounterNames {
		known["foxproxy_"+name] = true // present once their source exists
	}
	// The lists', the updater's and the ClamAV database's collector lives
	// in cmd/foxproxy and reads a running configuration: take its names
	// from its source.
	srcs, _ := filepath.Glob("../cmd/foxproxy/*.go")
	desc := regexp.MustCompile(`prometheus\.NewDesc\("(foxproxy_[a-z_]+)"`)
	for _, src := range srcs {
		if strings.HasSuffix(src, "_test.go") {
			continue
		}
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range desc.FindAllStringSubmatch(string(b), -1) {
			known[m[1]] = true
		}
	}
	if !known["foxproxy_update_consecutive_failures"] || !known["foxproxy_clamav_db_age_seconds"] {
		t.Fatalf("the lists' metric names were not found in ../cmd/foxproxy")
	}
	// Counters whose every label value exists from the start: a selector
	// on them must name a real value (a typo would never fire).
	values := map[string]map[string]bool{} // "family label" → values
	for _, f := range families {
		if f.GetName() != "foxproxy_clicks_total" && f.GetName() != "foxproxy_encryption_copies_total" {
			continue
		}
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				k := f.GetName() + " " + l.GetName()
				if values[k] == nil {
					values[k] = map[string]bool{}
				}
				values[k][l.GetValue()] = true
			}
		}
	}
	selector := regexp.MustCompile(`(foxproxy_clicks_total|foxproxy_encryption_copies_total)\{([^}]*)\}`)
	matcher := regexp.MustCompile(`([a-z_]+)\s*(=~|=)\s*\\?"([^"\\]*)\\?"`)
	name := regexp.MustCompile(`foxproxy_[a-z_]+`)
	for _, file := range []string{"../deploy/grafana-dashboard.json", "../deploy/prometheus-alerts.yml"} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(file, ".json") {
			var dash struct {
				Panels []struct {
					ID      int
					Targets []struct{ Expr string }
				}
			}
			if err := json.Unmarshal(b, &dash); err != nil || len(dash.Panels) == 0 {
				t.Fatalf("%s: %v", file, err)
			}
			ids := map[int]bool{}
			for _, p := range dash.Panels {
				if ids[p.ID] || len(p.Targets) == 0 {
					t.Errorf("%s: panel %d repeated or without targets", file, p.ID)
				}
				ids[p.ID] = true
			}
		}
		if strings.HasSuffix(file, ".yml") {
			var rules struct {
				Groups []struct {
					Rules []struct{ Alert, Expr string } `yaml:"rules"`
				} `yaml:"groups"`
			}
			if err := yaml.Unmarshal(b, &rules); err != nil || len(rules.Groups) == 0 || len(rules.Groups[0].Rules) < 3 {
				t.Fatalf("%s: %v %+v", file, err, rules)
			}
		}
		for _, n := range name.FindAllString(string(b), -1) {
			if !known[n] {
				t.Errorf("%s uses %s, which foxproxy does not export", file, n)
			}
		}
		for _, sel := range selector.FindAllStringSubmatch(string(b), -1) {
			for _, m := range matcher.FindAllStringSubmatch(sel[2], -1) {
				if m[1] == "instance" || m[1] == "job" {
					continue // Prometheus's own target labels
				}
				vals, ok := values[sel[1]+" "+m[1]]
				if !ok {
					t.Errorf("%s: %s has no label %s", file, sel[1], m[1])
					continue
				}
				found := vals[m[3]]
				if m[2] == "=~" {
					re := regexp.MustCompile("^(?:" + m[3] + ")$")
					for v := range vals {
						found = found || re.MatchString(v)
					}
				}
				if !found {
					t.Errorf("%s: %s matches no value of %s (%v)", file, sel[0], m[1], vals)
				}
			}
		}
	}
}

// A message answered at RCPT (before_queue) counts as its verdict once; its
// replies are the RCPT refusals, not a reply to DATA.
func TestMessageAnsweredAtRcpt(t *testing.T) {
	m := newTest()
	m.Refused("RCPT", 550)
	m.Refused("RCPT", 550)
	m.Message(proxy.MessageEvent{Verdict: "reject", Rule: "ers-spam", ReplyCode: 550, ReplyCommand: "RCPT",
		Findings: []pipeline.Finding{{Stage: "ers", Status: pipeline.Listed}}})
	if got := testutil.ToFloat64(m.messages.WithLabelValues("reject", "ers-spam")); got != 1 {
		t.Errorf("messages reject/ers-spam = %v", got)
	}
	if got := testutil.ToFloat64(m.replies.WithLabelValues("RCPT", "5xx")); got != 2 {
		t.Errorf("RCPT 5xx = %v", got)
	}
	if got := testutil.ToFloat64(m.replies.WithLabelValues("DATA", "5xx")); got != 0 {
		t.Errorf("DATA 5xx = %v", got)
	}
	if got := testutil.ToFloat64(m.findings.WithLabelValues("ers", "listed")); got != 1 {
		t.Errorf("ers listed findings = %v", got)
	}
}

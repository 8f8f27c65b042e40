package metrics

import (
	"net/netip"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.yaml.in/yaml/v3"

	"github.com/foxproxy/foxproxy/admin"
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
	name := regexp.MustCompile(`foxproxy_[a-z_]+`)
	for _, file := range []string{"../deploy/grafana-dashboard.json", "../deploy/prometheus-alerts.yml"} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
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
	}
}

package policy_test

import (
	"fmt"
	"log"
	"net/netip"

	"github.com/foxproxy/foxproxy/lists/liststage"
	"github.com/foxproxy/foxproxy/pipeline"
	"github.com/foxproxy/foxproxy/policy"
	"github.com/foxproxy/foxproxy/reputation"
	"github.com/foxproxy/foxproxy/scan"
	"github.com/foxproxy/foxproxy/settings"
)

// The rules are checked and compiled once (package config does this for
// the policy section of the file, naming the file, line and key of each
// problem); each message's findings then give one verdict: the first rule
// that matches, else deliver, with the scan guard after the rules.
func Example() {
	cfg := policy.Config{
		Rules: []policy.Rule{
			{Name: "spam-client", If: policy.Condition{ERS: settings.StringList{"spam"}}, Then: "reject"},
			{Name: "blocked-sender", If: policy.Condition{List: settings.StringList{"blocked_senders"}}, Then: "quarantine"},
		},
		OnScanUnavailable: "tempfail",
		OnInfected:        "quarantine",
	}
	cfg.Validate(func(key, format string, args ...any) {
		log.Fatalf("policy.%s: %s", key, fmt.Sprintf(format, args...))
	})
	engine, err := policy.New(cfg, 1<<20)
	if err != nil {
		log.Fatal(err)
	}
	tx := &pipeline.Transaction{Client: netip.MustParseAddr("198.51.100.1"), From: "a@sender.example", Rcpts: []string{"b@rcpt.example"}}
	for _, findings := range [][]pipeline.Finding{
		{
			{Stage: reputation.ERSStage, Status: pipeline.Listed, Categories: []string{"spam"},
				Items: []pipeline.Item{{What: "198.51.100.1", Zone: "bl.example.org", Category: "spam"}}},
			{Stage: scan.StageName, Status: pipeline.Clean},
		},
		{
			{Stage: liststage.Name, Status: pipeline.Listed, Categories: []string{"blocked_senders"}},
			{Stage: reputation.ERSStage, Status: pipeline.Clean},
			{Stage: scan.StageName, Status: pipeline.Clean},
		},
		{
			{Stage: reputation.ERSStage, Status: pipeline.Clean},
			{Stage: scan.StageName, Status: pipeline.Clean},
		},
		{
			{Stage: reputation.ERSStage, Status: pipeline.Clean},
			{Stage: scan.StageName, Status: pipeline.Unavailable},
		},
	} {
		v := engine.Decide(tx, findings)
		fmt.Printf("%s by %s (%v)", v.Action, v.Rule, v.Reason)
		if v.Reply != nil {
			fmt.Printf(": %d %s", v.Reply.Code, v.Reply.Text)
		}
		fmt.Println()
	}
	// Output:
	// reject by spam-client (rule): 550 Service unavailable; client host [198.51.100.1] blocked using bl.example.org
	// quarantine by blocked-sender (rule)
	// deliver by default (default)
	// tempfail by on_scan_unavailable (unscanned): 451 Error: scan service temporarily unavailable, try again later
}

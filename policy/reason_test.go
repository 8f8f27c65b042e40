package policy

import (
	"testing"

	"github.com/foxproxy/foxproxy/pipeline"
)

// Why a verdict was reached is its Reason, whatever the rule that decided
// is called: a configured rule may even be named like a policy key.
func TestVerdictReason(t *testing.T) {
	e := engine(t, `
policy:
  rules:
    - {name: on_scan_unavailable, if: {from: "*@defer.example"}, then: tempfail}
    - {name: virus, if: {scan: infected}, then: quarantine}
  on_infected: reject
quarantine: {dir: /tmp}
`)
	cases := []struct {
		name     string
		from     string
		findings []pipeline.Finding
		rule     string
		reason   Reason
	}{
		{"a rule decided", "a@b.example", []pipeline.Finding{scanVir}, "virus", ReasonRule},
		{"a rule named like the key", "a@defer.example", []pipeline.Finding{scanOK}, "on_scan_unavailable", ReasonRule},
		{"no rule matched", "a@b.example", []pipeline.Finding{scanOK}, RuleDefault, ReasonDefault},
		{"unscanned", "a@b.example", []pipeline.Finding{scanGone}, RuleOnScanUnavailable, ReasonUnscanned},
	}
	for _, c := range cases {
		v := e.Decide(tx("198.51.100.1", c.from, []string{"c@d.example"}, ""), c.findings)
		if v.Rule != c.rule || v.Reason != c.reason {
			t.Errorf("%s: rule %q reason %v, want %q %v", c.name, v.Rule, v.Reason, c.rule, c.reason)
		}
	}

	// on_infected decides when the deciding rule did not test the scan.
	inf := engine(t, "policy: {on_infected: reject}\n")
	if v := inf.Decide(tx("198.51.100.1", "a@b.example", nil, ""), []pipeline.Finding{scanVir}); v.Rule != RuleOnInfected || v.Reason != ReasonInfected {
		t.Errorf("infected: rule %q reason %v", v.Rule, v.Reason)
	}
	if v := (DeliverAll{}).Decide(nil, nil); v.Reason != ReasonDefault {
		t.Errorf("DeliverAll: reason %v", v.Reason)
	}
}

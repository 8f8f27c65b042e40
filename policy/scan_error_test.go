package policy

import (
	"testing"

	"github.com/foxproxy/foxproxy/pipeline"
)

// Regression (issue 9): a scanner that answers something unusable (a
// malformed clamd reply, an error of its own) gives scan=error, and such a
// message was delivered unscanned. It is deferred like scan=unavailable,
// passes with on_scan_unavailable: pass, and a rule that tests the scan
// itself is still obeyed as written.
func TestScanErrorGuard(t *testing.T) {
	scanErr := pipeline.Finding{Stage: "scan", Status: pipeline.Error, Detail: "conventional: malformed reply"}
	e := engine(t, rules)
	v := e.Decide(tx("198.51.100.1", "a@b.example", []string{"c@d.example"}, ""), []pipeline.Finding{ersClean, scanErr})
	if v.Action != Tempfail || v.Rule != "on_scan_unavailable" || v.Reply == nil || v.Reply.Code != 451 {
		t.Fatalf("scan=error: %+v, want tempfail by on_scan_unavailable", v)
	}
	if v := e.Decide(tx("198.51.100.1", "a@b.example", nil, ""), []pipeline.Finding{ersSpam, scanErr}); v.Action != Reject {
		t.Fatalf("listed, scan=error: %+v, want the reject", v)
	}
	pass := engine(t, "policy: {on_scan_unavailable: pass}\n")
	if v := pass.Decide(tx("198.51.100.1", "", nil, ""), []pipeline.Finding{scanErr}); v.Action != Deliver {
		t.Fatalf("on_scan_unavailable: pass: %+v", v)
	}
	explicit := engine(t, "policy:\n  rules:\n    - {if: {scan: error}, then: tag}\n")
	if v := explicit.Decide(tx("198.51.100.1", "", nil, ""), []pipeline.Finding{scanErr}); v.Action != Tag {
		t.Fatalf("a rule on scan: error: %+v", v)
	}
}

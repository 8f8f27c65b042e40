package reputation

import "github.com/foxproxy/foxproxy/pipeline"

// The stages' names in findings, the trace header ("ers=listed(spam)"),
// logs, metrics and the policy's conditions (if: {ers: [...]}, if: {wrs:
// [...]}).
const (
	ERSStage pipeline.StageName = "ers"
	WRSStage pipeline.StageName = "wrs"
)

// Statuses are the statuses ERS and WRS report, in the order the
// configuration's errors list them. A Listed finding's categories are
// those its zones' answers map to (Zone.Codes, DNSZone.Codes, else
// CategoryListed), Safe Browsing's (SafeBrowsingConfig.ThreatTypes), or
// LocalListCategory: configured, so a condition may name any.
var Statuses = []pipeline.Status{pipeline.Listed, pipeline.Clean, pipeline.Skipped, pipeline.Disabled}

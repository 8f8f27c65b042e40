package scan

import "github.com/foxproxy/foxproxy/pipeline"

// StageName is the scan stage's name in findings, the trace header
// ("scan=infected(Eicar-Test-Signature)"), logs, metrics and the policy's
// condition (if: {scan: [...]}).
const StageName pipeline.StageName = "scan"

// Statuses are the statuses the scan stage reports, in the order the
// configuration's errors list them. It reports no categories: an Infected
// finding names the threat in its Detail.
var Statuses = []pipeline.Status{pipeline.Clean, pipeline.Infected, pipeline.Unavailable, pipeline.Skipped, pipeline.Error}

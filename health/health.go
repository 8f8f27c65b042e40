// Package health is the one shape in which foxproxy reports an external
// dependency's health: each dependency's owner (the reputation stages, the
// scanners, the local lists and their updater, the key service, the
// downstream) returns its own rows as Reports, and the admin side shows
// them unchanged in /status, `foxproxy status` and the
// foxproxy_dependency_* metrics. It imports no foxproxy package, so every
// owner can use it from below.
package health

import "time"

// State is a dependency's state in its owner's words. The words every
// owner means the same by are below; an owner defines its own (a disabled
// ERS zone, an open WRS breaker, an outdated ClamAV database...) as States
// in its package, and Report.OK says whether they count as healthy.
type State string

const (
	// Unknown: nothing has been seen of it yet, or what was seen says
	// nothing about it.
	Unknown State = "unknown"
	// Unchecked: no check has run yet; nothing is known to be wrong.
	Unchecked State = "unchecked"
	// Up: its last check or use was answered.
	Up State = "up"
	// Down: its last check or use failed.
	Down State = "down"
)

// Report is one external dependency's health: one row of the status page.
// The JSON names are /status's.
type Report struct {
	// Kind is the owner's kind (ers, wrs, scan, downstream...); Name
	// tells instances apart (a zone, a scanner role, an address).
	Kind string `json:"kind"`
	Name string `json:"name"`
	// State is the owner's own word: up, down, disabled, unchecked,
	// unknown, open (a WRS breaker)...
	State State `json:"state"`
	// OK says whether the state counts as healthy: readiness, the exit
	// code of `foxproxy status` and the foxproxy_dependency_up gauge use it.
	OK bool `json:"ok"`
	// Target is what it talks to (a URL, an address).
	Target string `json:"target,omitempty"`
	// Since is when State was entered.
	Since     time.Time `json:"since,omitzero"`
	LastError string    `json:"last_error,omitempty"`
	// NextProbe is when it is checked next (zero: not planned).
	NextProbe time.Time `json:"next_probe,omitzero"`
	// Detail says more, for a person.
	Detail   string            `json:"detail,omitempty"`
	Counters map[string]uint64 `json:"counters,omitempty"`
}

// Reporter is a dependency owner: it reports its dependencies' health,
// one Report per dependency, in a stable order.
type Reporter interface {
	Reports() []Report
}

// Func adapts a function to a Reporter.
type Func func() []Report

// Reports calls f.
func (f Func) Reports() []Report { return f() }

// Collect concatenates the owners' reports, in the owners' order.
func Collect(owners ...Reporter) []Report {
	var out []Report
	for _, o := range owners {
		out = append(out, o.Reports()...)
	}
	return out
}

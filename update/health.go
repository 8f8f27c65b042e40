package update

import (
	"fmt"
	"net/url"
	"time"

	"github.com/foxproxy/foxproxy/health"
)

// The update source's states in Reports, besides health.Unchecked (no
// attempt yet).
const (
	// Current: the last attempt ended with the newest bundle in force.
	Current health.State = "current"
	// Failing: the attempts since the last success failed; the bundle in
	// force stays.
	Failing health.State = "failing"
)

var _ health.Reporter = (*Updater)(nil)

// Reports implements health.Reporter: the update source's row (kind
// "update", named by its host), with the failures by reason and the
// bundle's entries per list as counters.
func (u *Updater) Reports() []health.Report {
	st := u.Status()
	name := st.URL
	if pu, err := url.Parse(st.URL); err == nil {
		name = pu.Host
	}
	r := health.Report{Kind: "update", Name: name, Target: st.URL, NextProbe: st.NextAttempt,
		LastError: st.LastError, Counters: map[string]uint64{"consecutive_failures": uint64(st.ConsecutiveFailures)}}
	for reason, n := range st.Failures {
		r.Counters["failures_"+reason] = n
	}
	for l, n := range st.Entries {
		r.Counters[l] = uint64(n)
	}
	switch {
	case st.ConsecutiveFailures > 0:
		r.State, r.OK, r.Since = Failing, false, st.LastSuccess
	case st.LastAttempt.IsZero():
		r.State, r.OK = health.Unchecked, true
	default:
		r.State, r.OK, r.Since = Current, true, st.LastSuccess
	}
	if st.Version != "" {
		r.Detail = fmt.Sprintf("bundle %s, created %s (%s old)", st.Version, st.Created.UTC().Format(time.RFC3339),
			time.Since(st.Created).Round(time.Minute))
	} else {
		r.Detail = "no bundle yet"
	}
	return []health.Report{r}
}

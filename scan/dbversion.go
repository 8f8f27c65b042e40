package scan

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DBVersion is what clamd's VERSION says about its signature database.
type DBVersion struct {
	// Engine is "ClamAV 1.0.7".
	Engine string
	// Daily is the daily.cvd (or .cld) version, 0 when clamd runs on a
	// database without one (only local .hdb/.ndb files, as in tests).
	Daily int
	// Date is the daily database's build time, zero when unknown.
	Date time.Time
}

// ParseClamdVersion reads a VERSION reply:
// "ClamAV 1.0.7/27480/Wed Nov 25 09:00:00 2026", or "ClamAV 1.0.7" alone.
// The date is clamd's ctime format, in the server's local time zone, which
// the reply does not name; it is read as UTC (at most a day off, which is
// fine for an age measured in days).
func ParseClamdVersion(s string) (DBVersion, error) {
	s = strings.TrimSpace(s)
	parts := strings.SplitN(s, "/", 3)
	v := DBVersion{Engine: parts[0]}
	if !strings.HasPrefix(v.Engine, "ClamAV ") {
		return v, fmt.Errorf("not a clamd VERSION reply: %q", clip(s))
	}
	if len(parts) == 1 {
		return v, nil
	}
	if len(parts) != 3 {
		return v, fmt.Errorf("VERSION reply without a database date: %q", clip(s))
	}
	n, err := strconv.Atoi(parts[1])
	if err != nil || n < 0 {
		return v, fmt.Errorf("VERSION reply with a bad database version: %q", clip(s))
	}
	v.Daily = n
	d, err := time.Parse(time.ANSIC, strings.Join(strings.Fields(parts[2]), " "))
	if err != nil {
		// ANSIC pads the day with a space; Fields removed it.
		d, err = time.Parse("Mon Jan 2 15:04:05 2006", strings.Join(strings.Fields(parts[2]), " "))
	}
	if err != nil {
		return v, fmt.Errorf("VERSION reply with a bad database date: %q", clip(s))
	}
	v.Date = d
	return v, nil
}

// DBMonitor asks clamd scanners for their database version when probed,
// and remembers the answers for the status page and metrics.
type DBMonitor struct {
	scanners []dbScanner
	maxAge   time.Duration

	mu    sync.Mutex
	state map[string]DBState
}

type dbScanner struct {
	role string
	c    *Clamd
}

// DBState is one clamd's last answer.
type DBState struct {
	Role    string
	Scanner string
	Version DBVersion
	Checked time.Time
	Err     string
	// Old is true when the database is older than the monitor's maxAge.
	Old bool
}

// NewDBMonitor returns a monitor for the clamd scanners among addrs (by
// role: smart, conventional); ICAP addresses are skipped. maxAge 0 never
// calls a database old.
func NewDBMonitor(addrs map[string]string, maxAge time.Duration, opts Options) *DBMonitor {
	m := &DBMonitor{maxAge: maxAge, state: map[string]DBState{}}
	for _, role := range []string{"smart", "conventional"} {
		a := addrs[role]
		if a == "" || strings.HasPrefix(strings.ToLower(a), "icap://") {
			continue
		}
		c, err := NewClamd(a, opts)
		if err != nil {
			continue
		}
		m.scanners = append(m.scanners, dbScanner{role, c})
	}
	return m
}

// Probe asks every clamd for its VERSION.
func (m *DBMonitor) Probe(ctx context.Context) {
	for _, s := range m.scanners {
		st := DBState{Role: s.role, Scanner: s.c.Name(), Checked: time.Now()}
		reply, err := s.c.Version(ctx)
		if err == nil {
			st.Version, err = ParseClamdVersion(reply)
		}
		if err != nil {
			st.Err = err.Error()
		}
		st.Old = m.maxAge > 0 && !st.Version.Date.IsZero() && st.Checked.Sub(st.Version.Date) > m.maxAge
		m.mu.Lock()
		m.state[s.role] = st
		m.mu.Unlock()
	}
}

// States returns the last answers, by role order.
func (m *DBMonitor) States() []DBState {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []DBState
	for _, s := range m.scanners {
		if st, ok := m.state[s.role]; ok {
			out = append(out, st)
		}
	}
	return out
}

// Len is the number of clamd scanners monitored.
func (m *DBMonitor) Len() int { return len(m.scanners) }

// Close closes the monitor's clamd clients.
func (m *DBMonitor) Close() {
	for _, s := range m.scanners {
		s.c.Close()
	}
}

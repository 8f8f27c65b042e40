package admin

import "time"

// Held is the quarantine's held area (scan.hold_after): messages accepted
// while no scanner answered, waiting for their rescan. A count that grows,
// or an oldest age that keeps rising after the scanners are back, wants a
// look.
type Held struct {
	Count  int       `json:"count"`
	Oldest time.Time `json:"oldest,omitzero"`
	// OldestAgeSeconds is Now - Oldest, for readers without a clock.
	OldestAgeSeconds float64 `json:"oldest_age_seconds"`
}

// Held returns the held area's state; ok is false when the running
// configuration holds no mail.
func (m *Monitor) Held() (h Held, ok bool) {
	f := m.sources.Load().Held
	if f == nil {
		return Held{}, false
	}
	h, ok = f()
	if ok && !h.Oldest.IsZero() {
		h.OldestAgeSeconds = m.now().Sub(h.Oldest).Seconds()
	}
	return h, ok
}

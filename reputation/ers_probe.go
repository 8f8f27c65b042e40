package reputation

import (
	"context"
	"sync"
)

// Probe checks every zone now, for the status page and the metrics, so a
// list server that went away (or came back) shows while no mail arrives:
//
//   - an unchecked zone asks its RFC 5782 test points for display only:
//     the answer (or the error) shows in its Health, and the zone stays
//     unchecked. The first message after start runs the connectivity
//     check that decides whether the zone is up or disabled, as on the
//     appliance; a probe at start, with no mail, must not disable it;
//   - an up or down zone asks its test points and records the answer as
//     up or down; a probe never disables a zone that passed its check,
//     exactly like a failed lookup;
//   - a disabled zone is left to its own re-check timer.
func (e *ERS) Probe(ctx context.Context) {
	var wg sync.WaitGroup
	for _, h := range e.health {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.probe(ctx)
		}()
	}
	wg.Wait()
}

// Probe details of a zone that no message has checked yet.
const (
	detailProbePassed = "no message yet: the test points answer; the first message runs the connectivity check"
	detailProbeFailed = "no message yet: the test points do not answer; the first message runs the connectivity check and disables the zone if they still do not"
)

func (h *zoneHealth) probe(ctx context.Context) {
	h.mu.Lock()
	from := h.state
	h.mu.Unlock()
	if from == StateDisabled {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, h.e.checkTimeout)
	err := CheckHealth(cctx, h.e.client, h.zone)
	cancel()
	if err != nil && (h.e.closed.Load() || ctx.Err() != nil) {
		return // cut short: says nothing about the zone
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.state == StateUnchecked:
		// Shown, never acted upon: only a message decides (see above).
		// lastCheck stays the time of the last connectivity check.
		if err == nil {
			h.lastErr, h.probeDetail = "", detailProbePassed
		} else {
			h.lastErr, h.probeDetail = err.Error(), detailProbeFailed
		}
		return
	case from == StateUnchecked, h.state == StateDisabled:
		// The first message's check ended while this probe ran: its
		// answer is newer than the probe's.
		return
	}
	now := h.e.clock.Now()
	h.lastCheck = now
	if err == nil {
		h.consecutive = 0
		if h.state == StateDown {
			h.setLocked(StateUp, now, "test points answer again")
		}
		return
	}
	h.lastErr = err.Error()
	if h.state == StateUp {
		h.setLocked(StateDown, now, "test points do not answer: "+h.lastErr+" (zone stays enabled)")
	}
}

package reputation

import (
	"context"
	"sync"
)

// Probe checks every zone now, for the status page and the metrics, so a
// list server that went away (or came back) shows while no mail arrives:
//
//   - an unchecked zone runs its connectivity check, as its first message
//     would (with a monitor, that happens at start);
//   - an up or down zone asks its RFC 5782 test points and records the
//     answer as up or down; a probe never disables a zone that passed its
//     check, exactly like a failed lookup;
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

func (h *zoneHealth) probe(ctx context.Context) {
	h.mu.Lock()
	switch h.state {
	case StateDisabled:
		h.mu.Unlock()
		return
	case StateUnchecked:
		done := h.beginCheckLocked(true)
		h.mu.Unlock()
		if done != nil {
			select {
			case <-done:
			case <-ctx.Done():
			}
		}
		return
	}
	h.mu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, h.e.checkTimeout)
	err := CheckHealth(cctx, h.e.client, h.zone)
	cancel()
	if err != nil && (h.e.closed.Load() || ctx.Err() != nil) {
		return // cut short: says nothing about the zone
	}
	h.mu.Lock()
	defer h.mu.Unlock()
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

package scan

import (
	"context"
	"sync"
)

// Probe pings every scanner now and records what it finds, so the status
// page and the metrics show a scanner that went away (or came back) even
// while no mail arrives. A smart scanner that answers while the stage is
// switched to conventional switches it back, as Recheck does; a failed
// probe never switches the mode by itself (scans decide that).
func (s *Stage) Probe(ctx context.Context) {
	var wg sync.WaitGroup
	if s.smart != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.Recheck(ctx)
		}()
	}
	if s.conv != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pctx, cancel := context.WithTimeout(ctx, s.cfg.ProbeTimeout)
			defer cancel()
			err := s.conv.scanner.Ping(pctx)
			now := s.clock.Now()
			s.mu.Lock()
			defer s.mu.Unlock()
			s.conv.probes++
			if err != nil {
				s.markDown(s.conv, now, err)
			} else {
				s.markUp(s.conv, now, "probe answered")
			}
		}()
	}
	wg.Wait()
}

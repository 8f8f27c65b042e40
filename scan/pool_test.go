package scan

import "time"

// replace makes cs the only idle connections, closing the others (tests
// that hand out a particular connection next).
func (p *idlePool[C]) replace(cs ...C) {
	p.mu.Lock()
	old := p.idle
	p.idle = nil
	for _, c := range cs {
		p.idle = append(p.idle, idleConn[C]{c, time.Now()})
	}
	p.mu.Unlock()
	for _, ic := range old {
		ic.c.Close()
	}
}

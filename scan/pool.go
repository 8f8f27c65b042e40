package scan

import (
	"io"
	"sync"
	"time"
)

// idlePool keeps connections for reuse (clamd sessions, ICAP keep-alive):
// the newest idle connection is handed out first, and one that idled too
// long or looks closed is dropped instead.
type idlePool[C io.Closer] struct {
	mu     sync.Mutex
	idle   []idleConn[C]
	closed bool
}

type idleConn[C any] struct {
	c     C
	since time.Time
}

// get returns an idle connection that idled at most maxIdle and passes
// alive, closing the others it pops on the way.
func (p *idlePool[C]) get(now time.Time, maxIdle time.Duration, alive func(C) bool) (C, bool) {
	for {
		p.mu.Lock()
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			var zero C
			return zero, false
		}
		ic := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		if now.Sub(ic.since) > maxIdle || !alive(ic.c) {
			ic.c.Close()
			continue
		}
		return ic.c, true
	}
}

// put keeps c, or closes it when the pool holds max already or is closed.
func (p *idlePool[C]) put(c C, now time.Time, max int) {
	p.mu.Lock()
	if p.closed || len(p.idle) >= max {
		p.mu.Unlock()
		c.Close()
		return
	}
	p.idle = append(p.idle, idleConn[C]{c, now})
	p.mu.Unlock()
}

// drain closes the pool and returns what was idle, for the caller to end.
func (p *idlePool[C]) drain() []C {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	out := make([]C, len(p.idle))
	for i, ic := range p.idle {
		out[i] = ic.c
	}
	p.idle = nil
	return out
}

// state reports the idle count and whether the pool is closed (tests).
func (p *idlePool[C]) state() (idle int, closed bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle), p.closed
}

// readHead reads the first len(buf) bytes of a message (all of it when it
// is shorter: eof). Scanners keep the head so that a request that failed on
// a connection found dead can be sent again.
func readHead(r io.Reader, buf []byte) (head []byte, eof bool, err error) {
	n, err := io.ReadFull(r, buf)
	switch err {
	case nil:
		return buf[:n], false, nil
	case io.EOF, io.ErrUnexpectedEOF:
		return buf[:n], true, nil
	}
	return nil, false, err
}

package delivery

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Pool keeps idle connections to the downstream for the next transaction of
// any inbound session, the way Postfix's smtp client keeps a connection
// cache: connecting, the greeting, EHLO and QUIT are then paid once per
// connection instead of once per message.
//
// A connection goes back only after a clean transaction (Conn.Reusable).
// Handed out again, it is first checked without a word on the wire: a
// connection whose downstream closed it (idle timeout, restart) has its
// end of file, or the 421 Postfix's smtpd sends at smtpd_timeout, waiting
// to be read, and is discarded before anything of a message is sent. The
// next transaction on it then starts with RSET, pipelined with XFORWARD
// and MAIL where the downstream offers PIPELINING (no extra round trip),
// and any reply but 250 to it, or none within rsetTimeout, breaks the
// connection before MAIL's reply counts: the caller dials afresh and sends
// the message there (Conn.Mail). The XFORWARD attributes go with every
// MAIL, so what the downstream records per message is the same on a
// reused connection as on a fresh one.
//
// Idle connections are closed after the idle bound (below Postfix's
// smtpd_timeout, so foxproxy normally hangs up first) and at most maxIdle
// are kept; the newest is reused first, so the oldest age out when the
// load drops. Each idle connection holds one re-injection smtpd process;
// in use and idle together they never exceed the peak of transactions in
// flight, which the re-injection service has to serve anyway.
type Pool struct {
	mu      sync.Mutex
	idle    []idleConn // oldest first
	maxIdle int
	idleFor time.Duration
	timer   *time.Timer // closes expired idle connections; nil when none wait
	closed  bool
	now     func() time.Time

	dials, reuses, discards atomic.Int64
}

type idleConn struct {
	c     *Conn
	since time.Time // when it went idle
}

// rsetTimeout bounds the reply to the RSET before a reused connection's
// transaction, like Postfix's smtp_rset_timeout (20s): the
// downstream_command bound of minutes is for a busy downstream, not for
// one that forgot a connection.
const rsetTimeout = 20 * time.Second

// NewPool returns a pool that keeps at most maxIdle connections, each for
// at most idleFor. maxIdle 0 keeps none: every transaction dials.
func NewPool(maxIdle int, idleFor time.Duration) *Pool {
	return &Pool{maxIdle: maxIdle, idleFor: idleFor, now: time.Now}
}

// SetLimits changes the bounds (a configuration reload); idle connections
// beyond the new ones are closed.
func (p *Pool) SetLimits(maxIdle int, idleFor time.Duration) {
	p.mu.Lock()
	p.maxIdle, p.idleFor = maxIdle, idleFor
	drop := p.trimLocked()
	p.scheduleLocked()
	p.mu.Unlock()
	closeAll(drop)
}

// PoolStats counts what a Pool did since it was made.
type PoolStats struct {
	Dials    int64 // connections dialled
	Reuses   int64 // idle connections handed out again
	Discards int64 // idle connections found closed by the downstream
}

// Stats returns the counts so far.
func (p *Pool) Stats() PoolStats {
	return PoolStats{Dials: p.dials.Load(), Reuses: p.reuses.Load(), Discards: p.discards.Load()}
}

// Idle returns the number of idle connections kept now.
func (p *Pool) Idle() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

// Get returns a connection for a transaction with the downstream o names:
// an idle one that the downstream has not closed, else a new one. reused
// says which; a reused connection can still fail at Mail (its RSET was
// refused, or the downstream closed it meanwhile), and the caller then
// dials once more with Dial.
func (p *Pool) Get(ctx context.Context, o DialOptions) (c *Conn, reused bool, err error) {
	for {
		ic, ok := p.take(o)
		if !ok {
			break
		}
		if !ic.c.closedByPeer() {
			ic.c.needRset = true
			p.reuses.Add(1)
			return ic.c, true, nil
		}
		// Whatever went idle before it has most likely gone the same
		// way: a restart ends them all.
		p.discards.Add(1)
		ic.c.discard()
		p.dropOlder(ic.since)
	}
	c, err = p.Dial(ctx, o)
	return c, false, err
}

// Dial connects afresh, bypassing the idle connections.
func (p *Pool) Dial(ctx context.Context, o DialOptions) (*Conn, error) {
	p.dials.Add(1)
	return Dial(ctx, o)
}

// Put gives back a connection whose user is done with it: kept when it is
// reusable and there is room, closed (QUIT) otherwise.
func (p *Pool) Put(c *Conn) {
	if c == nil {
		return
	}
	if !c.Reusable() {
		go c.Close()
		return
	}
	p.mu.Lock()
	if p.closed || p.maxIdle <= 0 || p.idleFor <= 0 {
		p.mu.Unlock()
		go c.Close()
		return
	}
	p.idle = append(p.idle, idleConn{c: c, since: p.now()})
	drop := p.trimLocked()
	if p.timer == nil {
		// An armed timer fires for the oldest connection at the latest;
		// expire then arms it for the next. One timer per Put was an
		// allocation per message.
		p.scheduleLocked()
	}
	p.mu.Unlock()
	closeAll(drop)
}

// Close closes every idle connection, with QUIT, before it returns (the
// process may be about to exit), and every one given back later.
func (p *Pool) Close() {
	p.mu.Lock()
	p.closed = true
	drop := p.idle
	p.idle = nil
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, ic := range drop {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ic.c.Close() // bounded: Close gives QUIT 5s
		}()
	}
	wg.Wait()
}

// take removes and returns the newest idle connection dialled with o.
// Expired ones and ones for another downstream (after a reload) are
// closed on the way.
func (p *Pool) take(o DialOptions) (idleConn, bool) {
	p.mu.Lock()
	var drop []idleConn
	defer func() { closeAll(drop) }()
	defer p.mu.Unlock()
	now := p.now()
	for len(p.idle) > 0 {
		ic := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if ic.c.opts != o || now.Sub(ic.since) >= p.idleFor {
			drop = append(drop, ic)
			continue
		}
		return ic, true
	}
	return idleConn{}, false
}

// dropOlder discards the idle connections that went idle at or before t.
func (p *Pool) dropOlder(t time.Time) {
	p.mu.Lock()
	i := 0
	for i < len(p.idle) && !p.idle[i].since.After(t) {
		i++
	}
	drop := append([]idleConn(nil), p.idle[:i]...)
	p.idle = append(p.idle[:0], p.idle[i:]...)
	p.mu.Unlock()
	// Some may still be alive: QUIT, so the downstream's log shows a
	// polite end rather than a lost connection.
	closeAll(drop)
}

// trimLocked removes the oldest idle connections beyond maxIdle and
// returns them to be closed.
func (p *Pool) trimLocked() []idleConn {
	n := len(p.idle) - max(p.maxIdle, 0)
	if n <= 0 {
		return nil
	}
	drop := append([]idleConn(nil), p.idle[:n]...)
	p.idle = append(p.idle[:0], p.idle[n:]...)
	return drop
}

// scheduleLocked arms the timer for the oldest idle connection's expiry.
func (p *Pool) scheduleLocked() {
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
	if len(p.idle) == 0 || p.closed {
		return
	}
	wait := p.idle[0].since.Add(p.idleFor).Sub(p.now())
	p.timer = time.AfterFunc(max(wait, 0), p.expire)
}

// expire closes the idle connections whose time is up.
func (p *Pool) expire() {
	p.mu.Lock()
	now := p.now()
	i := 0
	for i < len(p.idle) && now.Sub(p.idle[i].since) >= p.idleFor {
		i++
	}
	drop := append([]idleConn(nil), p.idle[:i]...)
	p.idle = append(p.idle[:0], p.idle[i:]...)
	p.timer = nil
	p.scheduleLocked()
	p.mu.Unlock()
	closeAll(drop)
}

// closeAll says QUIT on each connection, in the background: the caller
// may be a session on its way to a message.
func closeAll(cs []idleConn) {
	if len(cs) == 0 {
		return
	}
	go func() {
		for _, ic := range cs {
			ic.c.Close()
		}
	}()
}

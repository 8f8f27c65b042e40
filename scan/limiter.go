package scan

import (
	"context"
	"sync"
)

// limiter is a counting semaphore whose limit can change at run time (an
// ICAP server's Max-Connections lowers it). Acquire honours ctx.
type limiter struct {
	mu    sync.Mutex
	n     int
	limit int
	wake  chan struct{} // closed and replaced on every release
}

func newLimiter(limit int) *limiter {
	return &limiter{limit: max(limit, 1), wake: make(chan struct{})}
}

func (l *limiter) acquire(ctx context.Context) error {
	for {
		l.mu.Lock()
		if l.n < l.limit {
			l.n++
			l.mu.Unlock()
			return nil
		}
		wake := l.wake
		l.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
		}
	}
}

func (l *limiter) release() {
	l.mu.Lock()
	l.n--
	close(l.wake)
	l.wake = make(chan struct{})
	l.mu.Unlock()
}

func (l *limiter) setLimit(limit int) {
	l.mu.Lock()
	l.limit = max(limit, 1)
	close(l.wake)
	l.wake = make(chan struct{})
	l.mu.Unlock()
}

// inUse returns the slots taken and the limit.
func (l *limiter) inUse() (int, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n, l.limit
}

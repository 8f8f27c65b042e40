package lists

import (
	"sync"
	"sync/atomic"
)

// Source names where a Holder's layers come from, in lookup order.
type Source int

const (
	// FromFiles are the lists named in the configuration (lists.*).
	FromFiles Source = iota
	// FromUpdate is the last good update bundle.
	FromUpdate
	numSources
)

// Holder publishes the Set in force: the file lists and the update
// bundle's lists combined. Readers take Current() without locking; a
// writer replaces one source and the combination is swapped in atomically.
type Holder struct {
	cur     atomic.Pointer[Set]
	mu      sync.Mutex // serialises writers
	sources [numSources]*Set
}

// NewHolder returns a holder with empty lists.
func NewHolder() *Holder {
	h := &Holder{}
	h.cur.Store(&Set{})
	return h
}

// Current returns the Set in force. It is never nil and never changes:
// a message keeps using the snapshot it took.
func (h *Holder) Current() *Set {
	if h == nil {
		return &Set{}
	}
	return h.cur.Load()
}

// Replace puts s (nil: empty) in place of source src's lists.
func (h *Holder) Replace(src Source, s *Set) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sources[src] = s
	h.cur.Store(Combine(h.sources[:]...))
}

// Source returns the lists source src contributes (nil: none).
func (h *Holder) Source(src Source) *Set {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.sources[src]
}

package msglog

import (
	"slices"
	"sync"
)

// Ring keeps the last records in memory, for a foxproxy without a
// database (the console's recent messages) and as the newest rows of one
// with. Its Search has the semantics of Search.
type Ring struct {
	mu     sync.Mutex
	recs   []Record // a circle: next is the oldest once full
	next   int
	full   bool
	lastID int64
}

// DefaultRingSize is what the daemon keeps.
const DefaultRingSize = 1000

// NewRing returns an empty Ring of size records (DefaultRingSize if not
// positive).
func NewRing(size int) *Ring {
	if size <= 0 {
		size = DefaultRingSize
	}
	return &Ring{recs: make([]Record, size)}
}

// Add keeps r, forgetting the oldest record when the ring is full, and
// assigns r its ID. It is called on the mail path: it only copies.
func (g *Ring) Add(r Record) {
	r.clean()
	g.mu.Lock()
	defer g.mu.Unlock()
	g.lastID++
	r.ID = g.lastID
	g.recs[g.next] = r
	g.next = (g.next + 1) % len(g.recs)
	if g.next == 0 {
		g.full = true
	}
}

// Search returns the records kept that match q, newest first (by time,
// then ID, as Search orders the table: a record added late with an
// earlier time sorts by its time).
func (g *Ring) Search(q Query) (Page, error) {
	if err := q.check(); err != nil {
		return Page{}, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	n := g.next
	if g.full {
		n = len(g.recs)
	}
	// Sort the matches' indexes, and copy only the page: a search is
	// the console's, and must not copy the whole ring each time.
	var idx []int
	for i := range n {
		if q.matches(&g.recs[i]) {
			idx = append(idx, i)
		}
	}
	slices.SortFunc(idx, func(a, b int) int { return newestFirst(&g.recs[a], &g.recs[b]) })
	limit := q.limit()
	recs := make([]Record, 0, min(len(idx), limit+1))
	for _, i := range idx[:min(len(idx), limit+1)] {
		recs = append(recs, g.recs[i])
	}
	return page(recs, limit), nil
}

package reputation

import (
	"container/list"
	"sync"
	"time"
)

// cacheKey identifies one question. name is lower case and fully qualified.
type cacheKey struct {
	name  string
	qtype uint16
}

type cacheEntry struct {
	key     cacheKey
	ans     Answer
	expires time.Time
}

// answerCache is a bounded LRU of answers with per-entry expiry. One mutex
// is enough at mail rates: a hit is a map lookup and a list move. Expired
// entries are dropped when touched or when the LRU pushes them out, so the
// size bound holds either way.
type answerCache struct {
	mu  sync.Mutex
	max int
	ll  list.List // front = most recently used; values are *cacheEntry
	m   map[cacheKey]*list.Element
}

func newAnswerCache(max int) *answerCache {
	return &answerCache{max: max, m: make(map[cacheKey]*list.Element, min(max, 1024))}
}

// get returns the answer cached for k if it has not expired at now.
func (c *answerCache) get(k cacheKey, now time.Time) (Answer, bool) {
	if c == nil {
		return Answer{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.m[k]
	if !ok {
		return Answer{}, false
	}
	e := el.Value.(*cacheEntry)
	if !now.Before(e.expires) {
		c.ll.Remove(el)
		delete(c.m, k)
		return Answer{}, false
	}
	c.ll.MoveToFront(el)
	return e.ans, true
}

// put stores a until expires, evicting the least recently used entry when
// the cache is full.
func (c *answerCache) put(k cacheKey, a Answer, expires time.Time) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[k]; ok {
		e := el.Value.(*cacheEntry)
		e.ans, e.expires = a, expires
		c.ll.MoveToFront(el)
		return
	}
	c.m[k] = c.ll.PushFront(&cacheEntry{key: k, ans: a, expires: expires})
	for c.ll.Len() > c.max {
		old := c.ll.Back()
		c.ll.Remove(old)
		delete(c.m, old.Value.(*cacheEntry).key)
	}
}

// len returns the number of entries, expired ones included.
func (c *answerCache) len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}

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

// answerCache holds the DNS client's answers.
type answerCache = ttlCache[cacheKey, Answer]

func newAnswerCache(max int) *answerCache { return newTTLCache[cacheKey, Answer](max) }

type cacheEntry[K comparable, V any] struct {
	key     K
	val     V
	expires time.Time
}

// ttlCache is a bounded LRU with per-entry expiry, shared by the DNS
// client's answers and Safe Browsing's matches. One mutex is enough at mail
// rates: a hit is a map lookup and a list move. Expired entries are dropped
// when touched or when the LRU pushes them out, so the size bound holds
// either way. A nil cache stores nothing.
type ttlCache[K comparable, V any] struct {
	mu  sync.Mutex
	max int
	ll  list.List // front = most recently used; values are *cacheEntry
	m   map[K]*list.Element
}

func newTTLCache[K comparable, V any](max int) *ttlCache[K, V] {
	return &ttlCache[K, V]{max: max, m: make(map[K]*list.Element, min(max, 1024))}
}

// get returns the value cached for k if it has not expired at now.
func (c *ttlCache[K, V]) get(k K, now time.Time) (V, bool) {
	var zero V
	if c == nil {
		return zero, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.m[k]
	if !ok {
		return zero, false
	}
	e := el.Value.(*cacheEntry[K, V])
	if !now.Before(e.expires) {
		c.ll.Remove(el)
		delete(c.m, k)
		return zero, false
	}
	c.ll.MoveToFront(el)
	return e.val, true
}

// put stores v until expires, evicting the least recently used entry when
// the cache is full.
func (c *ttlCache[K, V]) put(k K, v V, expires time.Time) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[k]; ok {
		e := el.Value.(*cacheEntry[K, V])
		e.val, e.expires = v, expires
		c.ll.MoveToFront(el)
		return
	}
	c.m[k] = c.ll.PushFront(&cacheEntry[K, V]{key: k, val: v, expires: expires})
	for c.ll.Len() > c.max {
		old := c.ll.Back()
		c.ll.Remove(old)
		delete(c.m, old.Value.(*cacheEntry[K, V]).key)
	}
}

// len returns the number of entries, expired ones included.
func (c *ttlCache[K, V]) len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}

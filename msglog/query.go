package msglog

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Query is what an administrator searches by. Every set field must match
// (they are ANDed); the zero Query matches every record.
type Query struct {
	// Sender and Recipient match an address exactly, ignoring case (the
	// domain is case-insensitive, and local parts that differ only in
	// case are, in practice, one mailbox). "" for the null sender cannot
	// be searched for: "" means no condition.
	Sender    string
	Recipient string
	Client    netip.Addr // the client's address; invalid: no condition
	// QueueID matches the upstream or the downstream queue ID.
	QueueID   string
	MessageID string // the Message-ID field's value, exactly
	MsgID     string // foxproxy's own ID
	Verdict   string
	Rule      string
	// Since (inclusive) and Until (exclusive) bound the time; zero: no
	// bound.
	Since, Until time.Time
	// Limit is the most records returned: DefaultLimit when 0, at most
	// MaxLimit.
	Limit int
	// After continues a search: only records older than the cursor (the
	// Next of the previous page).
	After *Cursor
}

// Limits of a page.
const (
	DefaultLimit = 50
	MaxLimit     = 1000
)

// Page is one page of a search, newest first.
type Page struct {
	Records []Record
	// Next is the cursor of the next (older) page; nil on the last.
	Next *Cursor
}

// Cursor is a position in the log's order (time, then ID, both
// descending): a search with After set to it returns what comes after.
type Cursor struct {
	Time time.Time
	ID   int64
}

// String encodes c for a URL: "<unix microseconds>.<id>".
func (c Cursor) String() string {
	return strconv.FormatInt(c.Time.UnixMicro(), 10) + "." + strconv.FormatInt(c.ID, 10)
}

// ParseCursor decodes Cursor.String.
func ParseCursor(s string) (Cursor, error) {
	t, id, ok := strings.Cut(s, ".")
	us, err1 := strconv.ParseInt(t, 10, 64)
	n, err2 := strconv.ParseInt(id, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		return Cursor{}, fmt.Errorf("cursor %q: want <unix microseconds>.<id>", s)
	}
	return Cursor{Time: time.UnixMicro(us).UTC(), ID: n}, nil
}

func (q Query) limit() int {
	switch {
	case q.Limit <= 0:
		return DefaultLimit
	case q.Limit > MaxLimit:
		return MaxLimit
	}
	return q.Limit
}

// check refuses a query that cannot be meant: bounds the wrong way round.
func (q Query) check() error {
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Until.After(q.Since) {
		return errors.New("search: until must be after since")
	}
	return nil
}

// matches is the query's condition, for Ring; Search says the same in SQL.
func (q Query) matches(r *Record) bool {
	if q.Sender != "" && !strings.EqualFold(r.Sender, q.Sender) {
		return false
	}
	if q.Recipient != "" {
		found := false
		for _, a := range r.Rcpts {
			if strings.EqualFold(a, q.Recipient) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	if q.Client.IsValid() && r.Client != q.Client.Unmap() {
		return false
	}
	if q.QueueID != "" && r.QueueID != q.QueueID && r.DownstreamQueueID != q.QueueID {
		return false
	}
	switch {
	case q.MessageID != "" && r.MessageID != q.MessageID,
		q.MsgID != "" && r.MsgID != q.MsgID,
		q.Verdict != "" && r.Verdict != q.Verdict,
		q.Rule != "" && r.Rule != q.Rule,
		!q.Since.IsZero() && r.Time.Before(q.Since),
		!q.Until.IsZero() && !r.Time.Before(q.Until):
		return false
	}
	if c := q.After; c != nil {
		if r.Time.After(c.Time) || (r.Time.Equal(c.Time) && r.ID >= c.ID) {
			return false
		}
	}
	return true
}

// newestFirst is the order of Search: time, then ID, descending.
func newestFirst(a, b *Record) int {
	if c := b.Time.Compare(a.Time); c != 0 {
		return c
	}
	return cmp.Compare(b.ID, a.ID)
}

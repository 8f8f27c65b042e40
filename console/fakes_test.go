package console

import (
	"context"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/foxproxy/foxproxy/quarantine"
)

// fakeArea is an Area in memory, for handler tests.
type fakeArea struct {
	mu       sync.Mutex
	entries  map[string]quarantine.Entry
	messages map[string]string
	history  map[string][]Event
	released []string
	deleted  []string
}

func newFakeArea() *fakeArea {
	return &fakeArea{entries: map[string]quarantine.Entry{}, messages: map[string]string{}, history: map[string][]Event{}}
}

func (a *fakeArea) put(e quarantine.Entry, msg string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.entries[e.ID] = e
	a.messages[e.ID] = msg
}

func (a *fakeArea) List(_ context.Context, f Filter) ([]quarantine.Entry, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []quarantine.Entry
	for _, e := range a.entries {
		if f.Match(e) {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(x, y quarantine.Entry) int { return strings.Compare(x.ID, y.ID) })
	return out, nil
}

func (a *fakeArea) Get(_ context.Context, id string) (quarantine.Entry, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e, ok := a.entries[id]
	if !ok {
		return e, ErrNotFound
	}
	return e, nil
}

func (a *fakeArea) Open(_ context.Context, id string) (io.ReadCloser, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	m, ok := a.messages[id]
	if !ok {
		return nil, ErrNotFound
	}
	return io.NopCloser(strings.NewReader(m)), nil
}

func (a *fakeArea) Delete(_ context.Context, id, user string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.entries[id]; !ok {
		return ErrNotFound
	}
	delete(a.entries, id)
	a.deleted = append(a.deleted, id+" by "+user)
	return nil
}

func (a *fakeArea) Release(_ context.Context, id, user string) (ReleaseResult, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e, ok := a.entries[id]
	if !ok {
		return ReleaseResult{}, ErrNotFound
	}
	delete(a.entries, id)
	a.released = append(a.released, id+" by "+user)
	return ReleaseResult{Delivered: true, Accepted: e.Rcpts, QueuedAs: "4ABC"}, nil
}

func (a *fakeArea) History(_ context.Context, id string) ([]Event, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.history[id], nil
}

func (a *fakeArea) actions() (released, deleted []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.released), slices.Clone(a.deleted)
}

// fakeMessages is a message log in memory.
type fakeMessages struct {
	msgs       []Message
	searchable bool
}

func (m *fakeMessages) Search(_ context.Context, q MessageQuery) (MessagePage, error) {
	var out []Message
	for _, x := range m.msgs {
		if q.Sender != "" && !strings.Contains(x.Sender, q.Sender) {
			continue
		}
		out = append(out, x)
	}
	return MessagePage{Messages: out}, nil
}

func (m *fakeMessages) Searchable() bool { return m.searchable }

// fakeAudit records audit events.
type fakeAudit struct {
	mu     sync.Mutex
	events []AuditEvent
}

func (a *fakeAudit) Record(_ context.Context, ev AuditEvent) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.events = append(a.events, ev)
	return nil
}

func (a *fakeAudit) all() []AuditEvent {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.events)
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

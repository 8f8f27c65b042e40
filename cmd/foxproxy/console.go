package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/foxproxy/foxproxy/config"
	"github.com/foxproxy/foxproxy/console"
	"github.com/foxproxy/foxproxy/delivery"
	"github.com/foxproxy/foxproxy/pipeline"
	"github.com/foxproxy/foxproxy/proxy"
	"github.com/foxproxy/foxproxy/quarantine"
	"github.com/foxproxy/foxproxy/release"
)

// This file adapts today's stores to the web console's interfaces: the
// file store under quarantine.dir (fileArea) and the last messages kept in
// memory (recentLog). The database store of shared custody brings its own.

// fileArea is the quarantine or the held area of the file store, as the
// running configuration names it.
type fileArea struct {
	held bool
	cfg  func() *config.Config
	now  func() time.Time
}

var _ console.Area = fileArea{}

func (a fileArea) store() (*quarantine.Store, error) {
	cfg := a.cfg()
	if cfg.Quarantine.Dir == "" {
		return nil, errors.New("quarantine.dir is empty")
	}
	st, err := quarantine.OpenExisting(cfg.Quarantine.Dir)
	if err != nil {
		return nil, err
	}
	if a.held {
		return st.HeldView(), nil
	}
	return st, nil
}

func (a fileArea) List(_ context.Context, f console.Filter) ([]quarantine.Entry, error) {
	st, err := a.store()
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil // nothing quarantined yet: foxproxy creates it on the first
	}
	if err != nil {
		return nil, err
	}
	all, err := st.List()
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []quarantine.Entry
	for _, e := range all {
		if f.Match(e) {
			out = append(out, e)
		}
	}
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[len(out)-f.Limit:] // the newest: List is oldest first
	}
	return out, nil
}

func (a fileArea) Get(_ context.Context, id string) (quarantine.Entry, error) {
	st, err := a.store()
	if err != nil {
		return quarantine.Entry{}, notFoundIfMissing(err)
	}
	return st.Get(id)
}

func (a fileArea) Open(_ context.Context, id string) (io.ReadCloser, error) {
	st, err := a.store()
	if err != nil {
		return nil, notFoundIfMissing(err)
	}
	return st.Open(id)
}

func notFoundIfMissing(err error) error {
	if errors.Is(err, os.ErrNotExist) {
		return quarantine.ErrNotFound
	}
	return err
}

// Delete deletes an entry, unless a release holds a claim on it: then
// the message may be on its way, and deleting would lose the record.
func (a fileArea) Delete(_ context.Context, id, _ string) error {
	st, err := a.store()
	if err != nil {
		return notFoundIfMissing(err)
	}
	if ce, ok := st.Claimed(id); ok && ce.Running {
		return fmt.Errorf("a release is running: %s", strings.TrimPrefix(ce.Error(), "quarantine: "))
	}
	return st.Delete(id)
}

// Release delivers an entry as `foxproxy quarantine release` does (the
// release package, the same claim, the same X-Foxproxy-Released field),
// naming the console user as who released it.
func (a fileArea) Release(ctx context.Context, id, user string) (console.ReleaseResult, error) {
	// The administrator's browser may go away; the release must not stop
	// half-way because of it (every step of it has its own timeout).
	ctx = context.WithoutCancel(ctx)
	cfg := a.cfg()
	st, err := a.store()
	if err != nil {
		return console.ReleaseResult{}, notFoundIfMissing(err)
	}
	e, err := st.Get(id)
	if err != nil {
		return console.ReleaseResult{}, err
	}
	claim, err := st.Claim(id, false)
	var ce *quarantine.ClaimedError
	if errors.As(err, &ce) {
		msg := strings.TrimPrefix(ce.Error(), "quarantine: ")
		if !ce.Running || ce.Uncertain != "" {
			msg += fmt.Sprintf("; look for it in the downstream's log (orig_queue_id=%s), then release it with "+
				"foxproxy quarantine release --force, or delete it", e.QueueID)
		}
		return console.ReleaseResult{}, errors.New(msg)
	}
	if err != nil {
		return console.ReleaseResult{}, err
	}
	msg, err := st.Open(id)
	if err != nil {
		claim.Drop()
		return console.ReleaseResult{}, err
	}
	defer msg.Close()
	var content io.Reader = msg
	if cfg.RemoveIncomingTrace {
		content, _ = delivery.RemoveIncomingTrace(msg, int64(cfg.Limits.MaxHeaderBytes))
	}
	size := e.Size
	if len(e.Encrypt) > 0 {
		q := &quarantineCLI{cfg: cfg, stdout: io.Discard, stderr: io.Discard, now: a.now}
		enc, err := q.encryptForRelease(ctx, e, content)
		if err != nil {
			claim.Drop()
			return console.ReleaseResult{}, err
		}
		if enc != nil {
			defer enc.Close()
			content, size = enc.Open(), enc.Size()
		}
	}
	by := []string{"by=" + pipeline.TraceToken(user), "via=console"}
	header := releasedHeader(cfg.HostnameOrDefault(), e, by, a.now())
	res, err := release.Release(ctx, release.Request{
		Store: st, Claim: claim, Entry: e, Now: a.now,
		Options: delivery.ReinjectOptions{
			Addr:           cfg.Downstream,
			Hostname:       cfg.HostnameOrDefault(),
			ConnectTimeout: cfg.Timeouts.DownstreamConnect.D(),
			CommandTimeout: cfg.Timeouts.DownstreamCommand.D(),
			DataTimeout:    cfg.Timeouts.DownstreamData.D(),
		},
		Size: size + int64(len(header)),
		Send: func(ctx context.Context, o delivery.ReinjectOptions, env delivery.Envelope) (*delivery.Reinjected, error) {
			return delivery.Reinject(ctx, o, env, io.MultiReader(strings.NewReader(header), content))
		},
	})
	var recErr *release.RecordError
	switch {
	case errors.Is(err, delivery.ErrReinjectUncertain):
		return console.ReleaseResult{}, fmt.Errorf("%v: it may have been delivered; the entry is kept and marked: look for it in the downstream's log "+
			"(orig_queue_id=%s), then release it with foxproxy quarantine release --force, or delete it", err, e.QueueID)
	case errors.As(err, &recErr):
		return resultOf(res), fmt.Errorf("delivered to %s (queued as %s), but %v; do not release it again", strings.Join(res.Accepted, ", "), res.QueuedAs, recErr)
	case err != nil:
		return console.ReleaseResult{}, fmt.Errorf("not released: %w; the entry is kept", err)
	}
	return resultOf(res), nil
}

func resultOf(res *release.Result) console.ReleaseResult {
	r := console.ReleaseResult{Delivered: len(res.Refused) == 0, Accepted: res.Accepted, QueuedAs: res.QueuedAs, Detail: "250 " + printable(res.Reply)}
	for _, rf := range res.Refused {
		r.Refused = append(r.Refused, fmt.Sprintf("%s: %d %s", rf.Rcpt, rf.Code, printable(rf.Reply)))
	}
	if len(r.Refused) > 0 {
		r.Detail = "the downstream refused " + strings.Join(r.Refused, "; ") + "; the entry is kept for those recipients only"
	}
	return r
}

// History is what the file store knows of an entry: when it came, its
// partial releases, and a claim left by a release.
func (a fileArea) History(_ context.Context, id string) ([]console.Event, error) {
	st, err := a.store()
	if err != nil {
		return nil, notFoundIfMissing(err)
	}
	e, err := st.Get(id)
	if err != nil {
		return nil, err
	}
	what := "quarantined"
	if a.held {
		what = "held"
	}
	// The file store is one host's: everything in it happened here.
	host := a.cfg().HostnameOrDefault()
	evs := []console.Event{{Time: e.Time, Action: what, Host: host, Result: "rule " + e.Rule}}
	for _, r := range e.Released {
		evs = append(evs, console.Event{Time: r.Time, Action: "partial release", Host: host,
			Result: "delivered to " + strings.Join(r.Rcpts, ", ") + ", queued as " + r.QueuedAs})
	}
	if ce, ok := st.Claimed(id); ok {
		evs = append(evs, console.Event{Time: a.now(), Action: "claimed", Host: host, Result: strings.TrimPrefix(ce.Error(), "quarantine: ")})
	}
	return evs, nil
}

// recentLog keeps the last messages in memory for the console's Messages
// page when there is no database: a proxy.Observer, bounded.
type recentLog struct {
	host string
	mu   sync.Mutex
	ring []console.Message
	next int
	n    int
}

const recentLogSize = 2000

func newRecentLog(host string) *recentLog {
	return &recentLog{host: host, ring: make([]console.Message, recentLogSize)}
}

var (
	_ proxy.Observer   = (*recentLog)(nil)
	_ console.Messages = (*recentLog)(nil)
)

func (l *recentLog) SessionOpened()      {}
func (l *recentLog) SessionClosed()      {}
func (l *recentLog) Refused(string, int) {}
func (l *recentLog) Spooled(int64)       {}

func (l *recentLog) Message(ev proxy.MessageEvent) {
	m := console.Message{Time: ev.Time.UTC(), Host: l.host, ID: ev.ID, QueueID: ev.QueueID, DownstreamQueueID: ev.DownstreamQueueID,
		Sender: ev.From, Size: ev.Size, Verdict: ev.Verdict, Rule: ev.Rule, Reply: ev.ReplyCode,
		Findings: release.EntryFindings(ev.Findings), QuarantineID: ev.QuarantineID}
	if ev.Client.IsValid() {
		m.Client = ev.Client.String()
	}
	if m.QuarantineID != "" {
		m.Area = "quarantine"
		if ev.Verdict == "hold" {
			m.Area = "held"
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ring[l.next] = m
	l.next = (l.next + 1) % recentLogSize
	l.n = min(l.n+1, recentLogSize)
}

// Searchable is false: only the messages in memory are searched.
func (l *recentLog) Searchable() bool { return false }

// Search filters the messages in memory, newest first; the cursor is how
// many matches to skip.
func (l *recentLog) Search(_ context.Context, q console.MessageQuery) (console.MessagePage, error) {
	skip := 0
	if q.Cursor != "" {
		n, err := strconv.Atoi(q.Cursor)
		if err != nil || n < 0 {
			return console.MessagePage{}, fmt.Errorf("bad cursor %q", q.Cursor)
		}
		skip = n
	}
	limit := q.Limit
	if limit <= 0 {
		limit = 50
	}
	l.mu.Lock()
	msgs := make([]console.Message, 0, l.n)
	for i := 1; i <= l.n; i++ {
		msgs = append(msgs, l.ring[(l.next-i+recentLogSize)%recentLogSize])
	}
	l.mu.Unlock()
	var page console.MessagePage
	matched := 0
	for _, m := range msgs {
		if !matchMessage(m, q) {
			continue
		}
		matched++
		if matched <= skip {
			continue
		}
		if len(page.Messages) == limit {
			page.Next = strconv.Itoa(skip + limit)
			break
		}
		page.Messages = append(page.Messages, m)
	}
	return page, nil
}

func matchMessage(m console.Message, q console.MessageQuery) bool {
	has := func(field, want string) bool {
		return want == "" || strings.Contains(strings.ToLower(field), strings.ToLower(want))
	}
	switch {
	case !has(m.Sender, q.Sender), !has(m.Client, q.Client), !has(m.MessageID, q.MessageID):
		return false
	case q.Rcpt != "" && !slices.ContainsFunc(m.Rcpts, func(r string) bool { return has(r, q.Rcpt) }):
		return false
	case q.QueueID != "" && !has(m.QueueID, q.QueueID) && !has(m.DownstreamQueueID, q.QueueID):
		return false
	case q.Verdict != "" && m.Verdict != q.Verdict, q.Rule != "" && m.Rule != q.Rule:
		return false
	case !q.Since.IsZero() && m.Time.Before(q.Since), !q.Until.IsZero() && m.Time.After(q.Until):
		return false
	}
	return true
}

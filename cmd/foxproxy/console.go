package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/foxproxy/foxproxy/console"
	"github.com/foxproxy/foxproxy/delivery"
	"github.com/foxproxy/foxproxy/pgstore"
	"github.com/foxproxy/foxproxy/pipeline"
	"github.com/foxproxy/foxproxy/quarantine"
	"github.com/foxproxy/foxproxy/release"
)

// This file adapts foxproxy's custody to the web console's interfaces:
// storeArea is the quarantine or the held area of the running
// configuration's store (the directory, or the database of shared
// custody); the message log is messageLog (msglog.go).

// storeArea is the quarantine or the held area of the store the running
// configuration keeps mail in.
type storeArea struct {
	held    bool
	current func() *wired
	now     func() time.Time
}

var _ console.Area = storeArea{}

// store returns the area's store; nil when the configuration keeps no
// mail (no quarantine.dir, no database.url).
func (a storeArea) store() (quarantine.Store, error) {
	qr, ok := a.current().Quarantine.(quarantiner)
	if !ok {
		return nil, nil
	}
	if a.held {
		return qr.store.HeldView(), nil
	}
	return qr.store, nil
}

// cli is the command line's release, run for a console user.
func (a storeArea) cli(st quarantine.Store) *quarantineCLI {
	return &quarantineCLI{cfg: a.current().Config, store: st, stdout: io.Discard, stderr: io.Discard, now: a.now, held: a.held}
}

func (a storeArea) List(ctx context.Context, f console.Filter) ([]quarantine.Entry, error) {
	st, err := a.store()
	if st == nil || err != nil {
		return nil, err
	}
	all, err := st.List(ctx)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil // nothing kept yet: the area is made with its first entry
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

func (a storeArea) Get(ctx context.Context, id string) (quarantine.Entry, error) {
	st, err := a.store()
	if st == nil || err != nil {
		return quarantine.Entry{}, notFoundIf(err)
	}
	return st.Get(ctx, id)
}

func (a storeArea) Open(ctx context.Context, id string) (io.ReadCloser, error) {
	st, err := a.store()
	if st == nil || err != nil {
		return nil, notFoundIf(err)
	}
	return st.Open(ctx, id)
}

// notFoundIf is ErrNotFound for an area that keeps nothing (nil) or whose
// directory is not there.
func notFoundIf(err error) error {
	if err == nil || errors.Is(err, os.ErrNotExist) {
		return quarantine.ErrNotFound
	}
	return err
}

// Delete deletes an entry, unless a release holds a claim on it: then
// the message may be on its way, and deleting would lose the record.
func (a storeArea) Delete(ctx context.Context, id, _ string) error {
	st, err := a.store()
	if st == nil || err != nil {
		return notFoundIf(err)
	}
	if ce, ok := st.Claimed(ctx, id); ok && ce.Running {
		return fmt.Errorf("a release is running: %s", strings.TrimPrefix(ce.Error(), "quarantine: "))
	}
	return st.Delete(ctx, id)
}

// Release delivers an entry as `foxproxy quarantine release` does (the
// same function: the same claim, the same X-Foxproxy-Released field),
// naming the console user as who released it.
func (a storeArea) Release(ctx context.Context, id, user string) (console.ReleaseResult, error) {
	// The administrator's browser may go away; the release must not stop
	// half-way because of it (every step of it has its own timeout).
	ctx = context.WithoutCancel(ctx)
	st, err := a.store()
	if st == nil || err != nil {
		return console.ReleaseResult{}, notFoundIf(err)
	}
	by := []string{"by=" + pipeline.TraceToken(user), "via=console"}
	e, res, err := a.cli(st).releaseByHand(ctx, id, false, by)
	var ce *quarantine.ClaimedError
	var recErr *release.RecordError
	switch {
	case errors.As(err, &ce):
		msg := strings.TrimPrefix(ce.Error(), "quarantine: ")
		if !ce.Running || ce.Uncertain != "" {
			msg += fmt.Sprintf("; look for it in the downstream's log (orig_queue_id=%s), then release it with "+
				"foxproxy quarantine release --force, or delete it", e.QueueID)
		}
		return console.ReleaseResult{}, errors.New(msg)
	case errors.Is(err, delivery.ErrReinjectUncertain):
		return console.ReleaseResult{}, fmt.Errorf("%v: it may have been delivered; the entry is kept and marked: look for it in the downstream's log "+
			"(orig_queue_id=%s), then release it with foxproxy quarantine release --force, or delete it", err, e.QueueID)
	case errors.As(err, &recErr):
		return resultOf(res), fmt.Errorf("delivered to %s (queued as %s), but %v; do not release it again", strings.Join(res.Accepted, ", "), res.QueuedAs, recErr)
	case errors.Is(err, quarantine.ErrNotFound):
		return console.ReleaseResult{}, err
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

// History is what the store knows of an entry: when it came and from
// which host, its partial releases, a claim left by a release, and, with
// the database, the audit of every host's console (who released, deleted
// or downloaded it, when, where), oldest first. An entry that is gone
// (released in full, or deleted) keeps its audit: History returns it, and
// the console shows it with the 404.
func (a storeArea) History(ctx context.Context, id string) ([]console.Event, error) {
	st, err := a.store()
	if st == nil || err != nil {
		return nil, notFoundIf(err)
	}
	shared, isShared := st.(sharedHistory)
	var audit []console.Event
	if isShared {
		rows, err := shared.AuditTrail(ctx, id)
		if err != nil {
			return nil, err
		}
		for _, r := range rows {
			res := r.Result
			if r.Detail != "" {
				res += ": " + r.Detail
			}
			audit = append(audit, console.Event{Time: r.Time, User: r.User, Action: r.Action, Host: r.Host, Result: res})
		}
	}
	e, err := st.Get(ctx, id)
	if errors.Is(err, quarantine.ErrNotFound) && len(audit) > 0 {
		return audit, nil
	}
	if err != nil {
		return nil, err
	}
	what := "quarantined"
	if a.held {
		what = "held"
	}
	// The file store is this host's; the database names the host that
	// stored the entry.
	host := a.current().Config.Proxy().HostnameOrDefault()
	if isShared {
		if h, err := shared.StoredBy(ctx, id); err == nil {
			host = h
		}
	}
	evs := []console.Event{{Time: e.Time, Action: what, Host: host, Result: "rule " + e.Rule}}
	for _, r := range e.Released {
		// Which host re-injected a partial release: the file store's
		// own; in the database, the console's audit row that names its
		// queue ID ("" when it was the command line's, which the
		// entry does not record).
		relHost := host
		if isShared {
			relHost = ""
			for _, ev := range audit {
				if ev.Action == "release" && r.QueuedAs != "" && strings.Contains(ev.Result, "queued as "+r.QueuedAs) {
					relHost = ev.Host
				}
			}
		}
		evs = append(evs, console.Event{Time: r.Time, Action: "partial release", Host: relHost,
			Result: "delivered to " + strings.Join(r.Rcpts, ", ") + ", queued as " + r.QueuedAs})
	}
	if ce, ok := st.Claimed(ctx, id); ok {
		claimHost := ce.Host
		if claimHost == "" {
			claimHost = a.current().Config.Proxy().HostnameOrDefault()
		}
		evs = append(evs, console.Event{Time: a.now(), Action: "claimed", Host: claimHost, Result: strings.TrimPrefix(ce.Error(), "quarantine: ")})
	}
	if len(audit) > 0 {
		// The audit goes between the entry's own events by time; those
		// stay in their order (the claim, stamped now, last).
		evs = append(evs, audit...)
		sort.SliceStable(evs, func(i, j int) bool { return evs[i].Time.Before(evs[j].Time) })
	}
	return evs, nil
}

// sharedHistory is what the database store (pgstore.Store) knows of an
// entry beyond quarantine.Store: the host that stored it, and the audit
// of every host's console.
type sharedHistory interface {
	AuditTrail(ctx context.Context, id string) ([]pgstore.AuditRow, error)
	StoredBy(ctx context.Context, id string) (string, error)
}

var _ sharedHistory = (*pgstore.Store)(nil)

// consoleAudit keeps the console's audit events in the database's audit
// table when the running configuration has one (database.url); without,
// the console's log line is the whole record.
type consoleAudit struct {
	current func() *wired
}

var _ console.Audit = consoleAudit{}

// Record implements console.Audit.
func (c consoleAudit) Record(ctx context.Context, ev console.AuditEvent) error {
	w := c.current()
	if w.db == nil {
		return nil
	}
	st := w.db.db.Quarantine()
	switch ev.Area {
	case "quarantine":
	case "held":
		st = w.db.db.HeldArea()
	default:
		return fmt.Errorf("audit: area %q is not quarantine or held", ev.Area)
	}
	result, detail := splitResult(ev.Result)
	return st.RecordAudit(ctx, pgstore.AuditRow{Time: ev.Time, Host: ev.Host, User: ev.User, Action: ev.Action,
		EntryID: ev.Entry, Client: ev.Client, Result: result, Detail: detail})
}

// splitResult splits the console's result ("delivered, queued as X",
// "partial: ...", "failed: ...", "ok") into its first word, which the
// audit table keeps for a query, and the rest.
func splitResult(s string) (result, detail string) {
	i := strings.IndexAny(s, ",:")
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.TrimSpace(s[i+1:])
}

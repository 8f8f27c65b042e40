// Package release delivers a message foxproxy kept, a quarantined one or
// one held for rescan, to the downstream, and records in the store it came
// from what became of it. The command line (foxproxy quarantine release),
// the rescan of held mail and any console call Release; none of them
// writes its own bookkeeping.
//
// Release sends the entry with its original envelope (sender, recipients,
// MAIL and RCPT parameters, XFORWARD) and only then changes the store: the
// entry is deleted after the downstream's 250 to every recipient; when the
// downstream refused some, the entry keeps those only, with a record of
// who got the message, so that a later release cannot deliver twice. While
// it sends, the caller's claim on the entry is marked "sending" (durably,
// before DATA): a release that dies before it learnt the outcome leaves an
// entry nobody sends again without an administrator's decision.
//
// It never answers an SMTP client and never decides what a message
// deserves: package proxy and the policy do. It sits between package
// delivery (the SMTP client) and package quarantine (storage), which know
// nothing of each other.
package release

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/foxproxy/foxproxy/delivery"
	"github.com/foxproxy/foxproxy/pipeline"
	"github.com/foxproxy/foxproxy/quarantine"
)

// Request is one release of a claimed entry.
type Request struct {
	// Store holds the entry: the quarantine or its held area.
	Store quarantine.Store
	// Claim is the caller's claim on the entry (quarantine.Store.Claim;
	// callers differ in when they may take one over). Release gives it up
	// or keeps it, marked, whatever happens.
	Claim quarantine.Claim
	Entry quarantine.Entry
	// Options say where and how to deliver; Release adds the marking of
	// the claim to BeforeData.
	Options delivery.ReinjectOptions
	// Size is the size of what Send sends, for SIZE= (0: not announced).
	Size int64
	// Send delivers the message to env: delivery.Reinject of the stored
	// message with header lines on top, or delivery.ReinjectVerdict for a
	// rescanned one. It must keep Reinject's contract on errors.
	Send func(ctx context.Context, o delivery.ReinjectOptions, env delivery.Envelope) (*delivery.Reinjected, error)
	// Now stamps the record of a partial release (nil: time.Now).
	Now func() time.Time
}

// Result is what a Release delivered.
type Result struct {
	*delivery.Reinjected
	// Entry is the entry as the store has it now: after a partial
	// release, waiting for the refused recipients only, with a record of
	// the release.
	Entry quarantine.Entry
}

// RecordError is a Release that delivered (its result says to whom) but
// could not record it in the store. The claim stays, marked, so the entry
// is not sent again without an administrator's decision.
type RecordError struct {
	Op  string // "deleted" or "updated": what could not be done to the entry
	Err error
}

func (e *RecordError) Error() string { return "the entry could not be " + e.Op + ": " + e.Err.Error() }
func (e *RecordError) Unwrap() error { return e.Err }

// Release sends r.Entry to the downstream and records the outcome.
//
// An error without a result means nothing was delivered (Reinject's
// contract): the claim is given up, and the entry waits for another
// release; except when the error wraps delivery.ErrReinjectUncertain,
// when the claim is kept, marked with the error. A result with a
// *RecordError: delivered, not recorded. A result without an error:
// delivered and recorded; when res.Refused is not empty, the entry now
// waits for those recipients only (res.Entry).
func Release(ctx context.Context, r Request) (*Result, error) {
	now := r.Now
	if now == nil {
		now = time.Now
	}
	e := r.Entry
	o := r.Options
	callerBefore := o.BeforeData
	o.BeforeData = func() error {
		if callerBefore != nil {
			if err := callerBefore(); err != nil {
				return err
			}
		}
		return r.Claim.MarkSending()
	}
	sent, err := r.Send(ctx, o, Envelope(e, r.Size))
	if errors.Is(err, delivery.ErrReinjectUncertain) {
		if kerr := r.Claim.KeepUncertain(err.Error()); kerr != nil {
			return nil, errors.Join(err, fmt.Errorf("cannot mark the entry: %w", kerr))
		}
		return nil, err
	}
	if err != nil {
		r.Claim.Drop()
		return nil, err
	}
	res := &Result{Reinjected: sent, Entry: e}
	if len(res.Refused) == 0 {
		if err := r.Store.Delete(ctx, e.ID); err != nil && !errors.Is(err, quarantine.ErrNotFound) {
			r.Claim.KeepUncertain("delivered (" + res.Reply + ") but the entry could not be deleted")
			return res, &RecordError{Op: "deleted", Err: err}
		}
		r.Claim.Drop()
		return res, nil
	}
	// Some recipients refused: the others have the message now. The entry
	// stays for the refused ones only, so a later release (after the
	// downstream's problem is fixed) cannot deliver twice.
	var left []string
	for _, rf := range res.Refused {
		left = append(left, rf.Rcpt)
	}
	e.Rcpts = left
	e.Released = append(e.Released, quarantine.Release{Time: now().UTC(), Rcpts: res.Accepted, QueuedAs: res.QueuedAs})
	if err := r.Store.Update(ctx, e); err != nil {
		r.Claim.KeepUncertain("delivered to " + strings.Join(res.Accepted, ", ") + " but the entry could not be updated")
		return res, &RecordError{Op: "updated", Err: err}
	}
	r.Claim.Drop()
	res.Entry = e
	return res, nil
}

// Envelope is the envelope e was received with; size is announced with
// SIZE= when not 0.
func Envelope(e quarantine.Entry, size int64) delivery.Envelope {
	return delivery.Envelope{From: e.From, Rcpts: e.Rcpts, MailParams: e.MailOptions, RcptParams: e.RcptOptions,
		Xforward: delivery.XforwardFromMap(e.Xforward), Size: size}
}

// EntryFindings are findings as a quarantine entry records them.
func EntryFindings(fs []pipeline.Finding) []quarantine.Finding {
	var out []quarantine.Finding
	for _, f := range fs {
		out = append(out, quarantine.Finding{Stage: string(f.Stage), Status: string(f.Status),
			Categories: f.Categories, Detail: f.Detail, Backend: f.Backend})
	}
	return out
}

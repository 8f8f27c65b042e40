package main

import (
	"context"
	"crypto/rand"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/foxproxy/foxproxy/admin"
	"github.com/foxproxy/foxproxy/delivery"
	"github.com/foxproxy/foxproxy/policy"
	"github.com/foxproxy/foxproxy/proxy"
	"github.com/foxproxy/foxproxy/quarantine"
	"github.com/foxproxy/foxproxy/release"
	"github.com/foxproxy/foxproxy/rescan"
	"github.com/foxproxy/foxproxy/scan"
)

var _ proxy.Holder = quarantiner{}

// Hold keeps a message no scanner could scan in the held area (scan.
// hold_after). A message already held under the same upstream queue ID and
// envelope is not stored twice: that is Postfix retrying after foxproxy
// held it but died before its 250 arrived, and two held copies would be
// two deliveries after the rescan. Its entry is found by name (see
// quarantine.DerivedID).
func (q quarantiner) Hold(ctx context.Context, it proxy.QuarantineItem, arrived time.Time) (id string, err error) {
	defer func() { q.count(err) }()
	held, err := q.store.Held()
	if err != nil {
		return "", err
	}
	e := entryOf(it)
	e.Host = q.host
	e.Rule = "hold_after"
	e.Reason = "no scanner could scan it; held for rescan"
	e.Arrived = arrived.UTC()
	for i, f := range e.Findings {
		if f.Stage == string(scan.StageName) {
			e.Findings[i].Status = "unscanned"
		}
	}
	if e.QueueID == "" {
		// Nothing names a retry; still named by arrival, like the others,
		// so the held area's "oldest" is always an arrival time.
		id = quarantine.DerivedID(e.Arrived, rand.Text())
		if err := held.PutAs(ctx, id, e, it.Tx.Message.Open()); !errors.Is(err, quarantine.ErrExists) {
			return id, err
		}
		return held.Put(ctx, e, it.Tx.Message.Open())
	}
	// Named by arrival and envelope, so a retry finds its entry in O(1):
	// during a long outage the held area is large, and listing it for
	// every arriving message would make holding slower as it grows.
	id = heldID(e)
	err = held.PutAs(ctx, id, e, it.Tx.Message.Open())
	if !errors.Is(err, quarantine.ErrExists) {
		return id, err
	}
	if x, gerr := held.Get(ctx, id); gerr == nil && x.QueueID == e.QueueID && x.From == e.From && x.Size == e.Size && slices.Equal(x.Rcpts, e.Rcpts) {
		return id, nil // held already: Postfix retried before it heard our 250
	}
	return held.Put(ctx, e, it.Tx.Message.Open()) // another message with the same derived ID
}

// heldID names a held entry by its arrival, upstream queue ID and envelope.
func heldID(e quarantine.Entry) string {
	return quarantine.DerivedID(e.Arrived, strings.Join(append([]string{e.QueueID, e.From, strconv.FormatInt(e.Size, 10)}, e.Rcpts...), "\x00"))
}

// entryOf is the quarantine entry for a proxy item: what a release needs
// to send it again, and what an administrator needs to decide.
func entryOf(it proxy.QuarantineItem) quarantine.Entry {
	tx := it.Tx
	e := quarantine.Entry{
		From: tx.From, Rcpts: tx.Rcpts, QueueID: tx.QueueID,
		Size: tx.Message.Size(), Rule: it.Verdict.Rule, MailOptions: it.MailParams, RcptOptions: it.RcptParams,
		Xforward: it.Xforward.Map(), Findings: release.EntryFindings(it.Findings),
	}
	if tx.Client.IsValid() {
		e.Client = tx.Client.String()
	}
	e.Reason = it.Reason
	if it.Verdict.Action == policy.Encrypt {
		e.Encrypt = it.Verdict.EncryptRcpts
	}
	return e
}

// stores returns the runtime's quarantine and held area when it holds mail.
func (w *wired) stores() (q, held quarantine.Store, ok bool) {
	qr, isQ := w.Quarantine.(quarantiner)
	if !isQ || !w.Config.Holds() || w.scan == nil {
		return nil, nil, false
	}
	held, err := qr.store.Held()
	if err != nil {
		return nil, nil, false
	}
	return qr.store, held, true
}

// heldStats reports the held area for /status and the metrics.
func (w *wired) heldStats() (admin.Held, bool) {
	_, held, ok := w.stores()
	if !ok {
		return admin.Held{}, false
	}
	n, oldest, err := held.Stats(context.Background())
	if err != nil {
		return admin.Held{}, false
	}
	return admin.Held{Count: n, Oldest: oldest}, true
}

// startRescan starts the rescan of held mail for a runtime that holds
// mail; the returned function stops it (and waits for the message in
// hand). The rescan belongs to the running process, not to wire: `policy
// test` wires a runtime too and must not start one.
func startRescan(w *wired, log *zap.Logger) (stop func()) {
	q, held, ok := w.stores()
	if !ok {
		return func() {}
	}
	cfg := w.Config
	st := w.scan
	l := rescan.Start(rescan.Config{
		Held: held, Quarantine: q, Pipeline: w.Pipeline, Policy: w.Policy,
		Ready: func(ctx context.Context) bool { return scannerAnswers(ctx, st) },
		Reinject: delivery.ReinjectOptions{
			Addr: cfg.Downstream, Hostname: cfg.Proxy().HostnameOrDefault(),
			ConnectTimeout: cfg.Timeouts.DownstreamConnect.D(), CommandTimeout: cfg.Timeouts.DownstreamCommand.D(),
			DataTimeout: cfg.Timeouts.DownstreamData.D(), Links: w.Links, RemoveIncomingTrace: cfg.RemoveIncomingTrace,
			Log: log.Named("rescan"),
		},
		Hostname: cfg.Proxy().HostnameOrDefault(), StageTimeout: cfg.Timeouts.Stages.D(),
		MaxHeaderBytes: int64(cfg.Limits.MaxHeaderBytes),
		Rate:           cfg.Scan.RescanRate, Batch: cfg.Scan.RescanBatch, Interval: cfg.Scan.RescanInterval.D(),
		Logger: log.Named("rescan"),
	})
	return l.Stop
}

// scannerAnswers probes the scanners and reports whether one is up: the
// rescan's cue. A scanner that answers the probe but not a scan only
// costs one message's attempt; the round then ends.
func scannerAnswers(ctx context.Context, st *scan.Stage) bool {
	st.Probe(ctx)
	h := st.Health()
	for _, b := range []*scan.BackendHealth{h.Smart, h.Conventional} {
		if b != nil && b.State == scan.StateUp {
			return true
		}
	}
	return false
}

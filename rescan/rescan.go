// Package rescan empties the quarantine's held area: messages foxproxy
// accepted with 250 while no scanner answered (scan.hold_after). When a
// scanner answers again, each held message, oldest first and at a bounded
// rate, goes through the stages and the policy exactly as if it had just
// arrived, and then:
//
//   - deliver, tag: re-injected with its original envelope and the trace
//     header, like live mail;
//   - quarantine, and also reject or tempfail by a rule: moved to the
//     quarantine with the new findings (the sender was told 250 already,
//     so there is nobody left to refuse);
//   - discard: deleted;
//   - still unscanned: stays held, and the round ends (the scanner went
//     away again).
//
// A message leaves the held area only after its new destination has it.
// What makes that safe against a crash at any point:
//
//   - a move to the quarantine keeps the entry's ID, so a move a crash
//     interrupted is finished, not repeated, the next time (the ID on both
//     sides: delete the held copy);
//   - a delivery claims the entry (quarantine.Claim) and, after the
//     downstream accepted the recipients and before DATA, marks the claim
//     "sending", durably. The entry is deleted after the downstream's 250.
//     A claim left "sending" by a process that is gone means the message
//     may or may not have been queued downstream (SMTP has no way to ask;
//     RFC 1047), so it is never sent again by itself: it waits for an
//     administrator, who finds it in the downstream's log by
//     orig_queue_id= and releases it (--force) or deletes it.
//
// So nothing is lost and nothing is delivered twice by the loop; the one
// window, between the final dot and the durable delete of the entry, ends
// in a decision an administrator makes, not in a duplicate.
package rescan

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/foxproxy/foxproxy/delivery"
	"github.com/foxproxy/foxproxy/pipeline"
	"github.com/foxproxy/foxproxy/policy"
	"github.com/foxproxy/foxproxy/quarantine"
	"github.com/foxproxy/foxproxy/release"
)

// Config configures a Loop.
type Config struct {
	// Held is the held area; Quarantine the quarantine proper, where
	// rescanned mail that is not delivered goes.
	Held, Quarantine quarantine.Store
	Pipeline         *pipeline.Pipeline
	Policy           policy.Decider
	// Ready probes the scanners now and reports whether one answers. The
	// held area is left alone while it says false.
	Ready func(ctx context.Context) bool
	// Reinject is where and how delivered mail goes (the downstream).
	Reinject delivery.ReinjectOptions
	// Hostname is for the trace header.
	Hostname string
	// StageTimeout bounds the stages on one message (timeouts.stages).
	StageTimeout time.Duration
	// MaxHeaderBytes bounds the header block a tag's subject prefix edits.
	MaxHeaderBytes int64
	// Rate is messages per second; Batch the most messages per round
	// before the scanners are probed again; Interval how often the held
	// area is looked at while there is nothing to do.
	Rate     float64
	Batch    int
	Interval time.Duration
	Logger   *zap.Logger

	// deliver is delivery.ReinjectVerdict; tests replace it.
	deliver func(ctx context.Context, o delivery.ReinjectOptions, env delivery.Envelope, host, id string, v policy.Verdict,
		findings []pipeline.Finding, open func() io.Reader, maxHeaderBytes int64) (*delivery.Reinjected, error)
	// sleep waits between messages; tests make it instant.
	sleep func(d time.Duration, stop <-chan struct{}) bool
}

// Loop is a running rescan.
type Loop struct {
	cfg  Config
	log  *zap.Logger
	stop chan struct{}
	done chan struct{}
	// reported are the IDs an administrator was told about (uncertain
	// deliveries), so each is logged once per process, not every round.
	mu       sync.Mutex
	reported map[string]bool
}

// Start starts the loop. Stop ends it.
func Start(cfg Config) *Loop {
	l := newLoop(cfg)
	go l.run()
	return l
}

func newLoop(cfg Config) *Loop {
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.deliver == nil {
		cfg.deliver = delivery.ReinjectVerdict
	}
	if cfg.sleep == nil {
		cfg.sleep = sleep
	}
	if cfg.Rate <= 0 {
		cfg.Rate = 1
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 100
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 30 * time.Second
	}
	if cfg.StageTimeout <= 0 {
		cfg.StageTimeout = 2 * time.Minute
	}
	return &Loop{cfg: cfg, log: cfg.Logger, stop: make(chan struct{}), done: make(chan struct{}), reported: map[string]bool{}}
}

// Stop ends the loop and waits for the message in hand. That message's
// delivery is never cut short (a cut after the final dot would leave its
// outcome unknown); it is bounded by the downstream timeouts.
func (l *Loop) Stop() {
	close(l.stop)
	<-l.done
}

func sleep(d time.Duration, stop <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-stop:
		return false
	case <-t.C:
		return true
	}
}

func (l *Loop) run() {
	defer close(l.done)
	if err := l.cfg.Held.Tidy(context.Background()); err != nil {
		l.log.Warn("cannot tidy the held area", zap.Error(err))
	}
	for {
		more := l.Round()
		if more {
			continue // a full batch: probe again and go on at once
		}
		if !l.cfg.sleep(l.cfg.Interval, l.stop) {
			return
		}
	}
}

func (l *Loop) stopped() bool {
	select {
	case <-l.stop:
		return true
	default:
		return false
	}
}

// outcome is what became of one held message.
type outcome int

const (
	moved   outcome = iota // delivered, quarantined or discarded: it left the held area
	skipped                // left where it is (claimed, uncertain, failed on its own)
	halt                   // the scanner or the downstream is down: end the round
)

// Round works through the held area once: nothing when it is empty or no
// scanner answers, else up to Batch messages, oldest first, at Rate. It
// reports whether a full batch was done and more may wait.
func (l *Loop) Round() (more bool) {
	entries, err := l.cfg.Held.List(context.Background())
	if err != nil {
		l.log.Warn("cannot list the held area", zap.Error(err))
		return false
	}
	if len(entries) == 0 || l.stopped() {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.StageTimeout)
	ready := l.cfg.Ready(ctx)
	cancel()
	if !ready {
		l.log.Debug("held messages wait: no scanner answers", zap.Int("held", len(entries)))
		return false
	}
	// Oldest first: by arrival in Postfix, the order the mail came in.
	sort.SliceStable(entries, func(i, j int) bool { return arrival(entries[i]).Before(arrival(entries[j])) })
	pause := time.Duration(float64(time.Second) / l.cfg.Rate)
	done := 0
	for _, e := range entries {
		if l.stopped() {
			return false
		}
		if done == l.cfg.Batch {
			return true
		}
		switch l.process(e) {
		case halt:
			return false
		case moved:
			done++
			if !l.cfg.sleep(pause, l.stop) {
				return false
			}
		}
	}
	return false
}

func arrival(e quarantine.Entry) time.Time {
	if !e.Arrived.IsZero() {
		return e.Arrived
	}
	return e.Time
}

// process rescans one held message and carries out the verdict.
func (l *Loop) process(e quarantine.Entry) outcome {
	log := l.log.With(zap.String("held_id", e.ID), zap.String("queue_id", e.QueueID))
	ctx := context.Background() // each store bounds its own waits
	inQuarantine, err := l.cfg.Quarantine.Has(ctx, e.ID)
	if err != nil {
		log.Error("cannot look for a held message in the quarantine; it stays held", zap.Error(err))
		return halt
	}
	if inQuarantine {
		// A move to the quarantine got as far as the quarantine's copy.
		if err := l.cfg.Held.Delete(ctx, e.ID); err != nil && !errors.Is(err, quarantine.ErrNotFound) {
			log.Error("cannot delete a held message already in the quarantine", zap.Error(err))
			return skipped
		}
		log.Info("held message: finished an interrupted move to the quarantine")
		return moved
	}
	claim, err := l.claim(ctx, e.ID, log)
	if err != nil {
		return skipped
	}
	defer claim.Drop() // no-op once the entry is gone or the claim kept

	msg, err := l.cfg.Held.Open(ctx, e.ID)
	if err != nil {
		log.Error("cannot open a held message", zap.Error(err))
		return skipped
	}
	defer msg.Close()
	content := storedContent{m: msg}
	tx := &pipeline.Transaction{ID: e.ID, ClientName: e.Xforward["NAME"], Helo: e.Xforward["HELO"],
		QueueID: e.QueueID, From: e.From, Rcpts: e.Rcpts, Message: content}
	if a, err := netip.ParseAddr(e.Client); err == nil {
		tx.Client = a
	}
	sctx, cancel := context.WithTimeout(ctx, l.cfg.StageTimeout)
	findings, err := l.cfg.Pipeline.Run(sctx, tx)
	cancel()
	if err != nil {
		// A stage's bug on this message: as live mail would be deferred,
		// this one stays held; the next round tries again.
		log.Error("a stage failed on a held message; it stays held", zap.Error(err))
		return skipped
	}
	v := l.cfg.Policy.Decide(tx, findings)
	log = log.With(zap.String("verdict", string(v.Action)), zap.String("rule", v.Rule), zap.Array("findings", findingsLog(findings)))
	switch {
	case v.Action == policy.Tempfail && v.Reason == policy.ReasonUnscanned:
		log.Info("held message still cannot be scanned; it stays held")
		return halt
	case v.Action == policy.Deliver || v.Action == policy.Tag:
		return l.deliver(e, claim, content, findings, v, log)
	case v.Action == policy.Discard:
		if err := l.cfg.Held.Delete(ctx, e.ID); err != nil {
			log.Error("cannot delete a discarded held message", zap.Error(err))
			return skipped
		}
		log.Info("held message rescanned and discarded")
		return moved
	}
	reason := ""
	switch v.Action {
	case policy.Quarantine:
	case policy.Encrypt:
		// The rescan does not look up keys: the copy waits in the
		// quarantine, and a release encrypts it (never in clear).
		e.Encrypt = v.EncryptRcpts
		reason = fmt.Sprintf("rescan verdict encrypt by rule %s; a release encrypts it", v.Rule)
	default:
		reason = fmt.Sprintf("rescan verdict %s by rule %s; the sender was already told 250, so it is quarantined instead", v.Action, v.Rule)
	}
	return l.toQuarantine(e, content, findings, v.Rule, reason, log)
}

// claim claims a held entry, taking over the claim of a process that is
// gone if that one never began to send (nothing can have been delivered).
func (l *Loop) claim(ctx context.Context, id string, log *zap.Logger) (quarantine.Claim, error) {
	claim, err := l.cfg.Held.Claim(ctx, id, false)
	var ce *quarantine.ClaimedError
	if errors.As(err, &ce) && !ce.Running && ce.Uncertain == "" {
		claim, err = l.cfg.Held.Claim(ctx, id, true)
	}
	if err == nil {
		return claim, nil
	}
	if errors.As(err, &ce) && ce.Running && ce.Uncertain == "" {
		return nil, err // a release by hand, another host, or the loop of a reloaded configuration has it
	}
	if !errors.As(err, &ce) {
		log.Warn("cannot claim a held message; it stays held", zap.Error(err))
		return nil, err
	}
	l.mu.Lock()
	first := !l.reported[id]
	l.reported[id] = true
	l.mu.Unlock()
	if first {
		log.Error("held message needs an administrator: it may have been delivered already; "+
			"look for orig_queue_id= in the downstream's log, then foxproxy quarantine release --held --force ID, or delete --held ID",
			zap.Error(err))
	}
	return nil, err
}

// deliver re-injects a rescanned message and deletes it after the 250
// (release.Release).
func (l *Loop) deliver(e quarantine.Entry, claim quarantine.Claim, content storedContent, findings []pipeline.Finding,
	v policy.Verdict, log *zap.Logger) outcome {
	// Not cancelled by Stop: only the downstream timeouts end a delivery.
	res, err := release.Release(context.Background(), release.Request{
		Store: l.cfg.Held, Claim: claim, Entry: e, Options: l.cfg.Reinject, Size: content.Size(),
		Send: func(ctx context.Context, o delivery.ReinjectOptions, env delivery.Envelope) (*delivery.Reinjected, error) {
			return l.cfg.deliver(ctx, o, env, l.cfg.Hostname, e.ID, v, findings, content.Open, l.cfg.MaxHeaderBytes)
		},
	})
	var re *delivery.ReinjectError
	var recErr *release.RecordError
	switch {
	case errors.Is(err, delivery.ErrReinjectUncertain):
		log.Error("held message sent, but the downstream's answer never came: it may have been queued; it stays held until an administrator decides",
			zap.Error(err))
		return skipped
	case errors.As(err, &re) && !re.Temporary():
		return l.toQuarantine(e, content, findings, v.Rule, "the downstream refused it after the rescan: "+re.Error(), log)
	case errors.As(err, &recErr):
		log.Error("held message delivered but its entry could not be "+recErr.Op+"; it will not be sent again by itself",
			zap.String("downstream_queue_id", res.QueuedAs), zap.Strings("rcpts", res.Accepted), zap.Error(err))
		return skipped
	case err != nil:
		// Nothing was delivered (Reinject's contract): a downstream that
		// is down or busy. Try again next round.
		log.Warn("held message could not be delivered; it stays held", zap.Error(err))
		return halt
	}
	if len(res.Refused) == 0 {
		log.Info("held message rescanned and delivered", zap.String("downstream_queue_id", res.QueuedAs), zap.Strings("rcpts", res.Accepted))
		return moved
	}
	// Some recipients refused: the others have it, and the entry keeps
	// only the refused ones, so nothing is delivered to anyone twice.
	permanent := false
	var why []string
	for _, r := range res.Refused {
		why = append(why, fmt.Sprintf("<%s>: %d %s", r.Rcpt, r.Code, r.Reply))
		permanent = permanent || r.Code/100 == 5
	}
	log.Warn("held message delivered to some recipients; the downstream refused others",
		zap.String("downstream_queue_id", res.QueuedAs), zap.Strings("refused", why))
	if permanent {
		return l.toQuarantine(res.Entry, content, findings, v.Rule, "the downstream refused "+strings.Join(why, "; "), log)
	}
	return moved
}

// toQuarantine moves a held entry to the quarantine, under its own ID,
// with the rescan's findings; the held copy is deleted after the
// quarantine's copy is durable.
func (l *Loop) toQuarantine(e quarantine.Entry, content storedContent, findings []pipeline.Finding, rule, reason string, log *zap.Logger) outcome {
	q := e
	q.Time, q.Rule, q.Reason, q.Findings = time.Now().UTC(), rule, reason, release.EntryFindings(findings)
	ctx := context.Background() // each store bounds its own waits
	if err := l.cfg.Quarantine.PutAs(ctx, e.ID, q, content.Open()); err != nil && !errors.Is(err, quarantine.ErrExists) {
		log.Error("cannot quarantine a rescanned held message; it stays held", zap.Error(err))
		return halt
	}
	if err := l.cfg.Held.Delete(ctx, e.ID); err != nil && !errors.Is(err, quarantine.ErrNotFound) {
		log.Error("rescanned message quarantined, but its held copy could not be deleted", zap.Error(err))
		return skipped
	}
	log.Info("held message rescanned and quarantined", zap.String("quarantine_id", e.ID), zap.String("reason", reason))
	return moved
}

// storedContent is a held message as pipeline.Content: every Open is an
// independent reader of the same stored message.
type storedContent struct{ m quarantine.Message }

func (c storedContent) Size() int64     { return c.m.Size() }
func (c storedContent) Open() io.Reader { return io.NewSectionReader(c.m, 0, c.m.Size()) }

// findingsLog renders findings in a log line as the trace header does.
type findingsLog []pipeline.Finding

func (fs findingsLog) MarshalLogArray(enc zapcore.ArrayEncoder) error {
	for _, f := range fs {
		enc.AppendString(f.Trace())
	}
	return nil
}

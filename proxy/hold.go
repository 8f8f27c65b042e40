package proxy

import (
	"context"
	"net/mail"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/foxproxy/foxproxy/policy"
)

// Holding is the third answer to a scanner outage, between deferring
// forever (451 until Postfix's maximal_queue_lifetime bounces the mail) and
// delivering unscanned: once a message has waited scan.hold_after in the
// local Postfix, foxproxy keeps it in the quarantine's held area, answers
// 250, and rescans it when a scanner answers again (package rescan).

// Holder is a Quarantiner that can also hold messages for rescan. Hold
// returns only once the message is durably stored; an error makes the proxy
// answer 4xx as if holding were off. arrived is when the local Postfix
// received the message.
type Holder interface {
	Hold(ctx context.Context, q QuarantineItem, arrived time.Time) (id string, err error)
}

// HoldClockSkew is how far in the future a Received date may lie and still
// be believed (as "arrived now"): Postfix and foxproxy may run on hosts
// whose clocks differ a little. A date further ahead is not evidence of
// any wait.
const HoldClockSkew = 5 * time.Minute

// hold carries out the on_scan_unavailable tempfail as a hold when
// scan.hold_after allows it. handled is false when the message is to be
// deferred as before; then answer is nil.
func (ss *session) hold(m *message) (handled bool, answer error) {
	tx, v := m.tx, m.verdict
	holdAfter := ss.rt.Config.HoldAfter.D()
	if v.Action != policy.Tempfail || v.Reason != policy.ReasonUnscanned || holdAfter <= 0 {
		return false, nil
	}
	h, ok := ss.rt.Quarantine.(Holder)
	if !ok || ss.rt.Quarantine == nil {
		return false, nil
	}
	now := ss.s.now()
	received := topReceived(m.content.Open(), int64(ss.rt.Config.Limits.MaxHeaderBytes))
	arrived, ok := ArrivalTime(received, now)
	if !ok {
		// Without a believable date the wait cannot be proven: defer, as
		// without hold_after. Postfix's own bounce after
		// maximal_queue_lifetime stays the limit for such mail.
		ss.log.Info("scan unavailable and no usable Received date: deferring instead of holding",
			zap.String("msg_id", tx.id), zap.String("received", truncateText(received, 200)))
		return false, nil
	}
	if waited := now.Sub(arrived); waited < holdAfter {
		return false, nil
	}
	id, err := h.Hold(m.ctx, ss.quarantineItem(m), arrived)
	ss.ds.Reset()
	if err != nil {
		ss.log.Error("cannot hold message; deferring it", zap.String("msg_id", tx.id), zap.Error(err))
		return true, errLocalProblem
	}
	m.sum.verdict, m.sum.rule, m.sum.quarantineID = "hold", "hold_after", id
	ss.log.Info("scan unavailable: message held for rescan", zap.String("msg_id", tx.id), zap.String("held_id", id),
		zap.Time("arrived", arrived), zap.Duration("waited", now.Sub(arrived)))
	return true, reply(250, [3]int{2, 0, 0}, "Ok: held for rescan as "+id)
}

// ArrivalTime reads when the local Postfix received a message from its
// topmost Received field's value (the date after the last ';', RFC 5322
// §3.6.7). A date up to HoldClockSkew in the future counts as now; a
// missing, unparsable or further future date gives ok false.
func ArrivalTime(received string, now time.Time) (t time.Time, ok bool) {
	i := strings.LastIndexByte(received, ';')
	if i < 0 {
		return time.Time{}, false
	}
	t, err := mail.ParseDate(strings.TrimSpace(received[i+1:]))
	if err != nil {
		return time.Time{}, false
	}
	if t.After(now) {
		if t.Sub(now) > HoldClockSkew {
			return time.Time{}, false
		}
		t = now
	}
	return t, true
}

func truncateText(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

package proxy

import (
	"go.uber.org/zap"

	"github.com/foxproxy/foxproxy/delivery"
	"github.com/foxproxy/foxproxy/spool"
)

// deliveryContent is the message with its verdict's changes applied
// (delivery.ApplyVerdict) under the session's configuration.
func (ss *session) deliveryContent(m *message) *delivery.Content {
	cfg := ss.rt.Config
	return delivery.ApplyVerdict(delivery.Rules{
		Links:       ss.rt.Links,
		RemoveTrace: cfg.RemoveIncomingTrace,
		Limit:       int64(cfg.Limits.MaxHeaderBytes),
		// Rewritten links are longer; the bound only stops a runaway.
		Spool: spool.Options{Dir: cfg.Spool.Dir, MemoryThreshold: int64(cfg.Spool.MemoryThreshold), MaxBytes: 2*ss.s.maxMessageBytes + 1<<20},
		Log:   ss.log.With(zap.String("msg_id", m.tx.id)),
	}, m.tx.id, m.content.Open, m.verdict)
}
